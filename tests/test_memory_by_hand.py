"""Issue 12: the memory plan pinned term by term on toy inputs whose answers are worked out by hand (the fast-suite
twin of the vLLM-oracle tests in test_kv_against_vllm.py), so a change to any rule fails here too."""

import dataclasses
from types import SimpleNamespace

import pytest

from estimator.architecture import ModelArch
from estimator.coefficients import PRIOR
from estimator.gpus import GIB, cpu_device, custom, lookup
from estimator.inventory import AttentionLayer, Tensor
from estimator.memory import (
    activation_bytes,
    blocks_per_request,
    cuda_graph_bytes,
    encoder_items,
    encoder_profile_bytes,
    expert_padding,
    forward_token_bytes,
    graph_padded,
    kv_cache_groups,
    kv_pool,
    largest_capture_size,
    mla_context_chunk_tokens,
    mla_profile_bytes,
    moe_dispatch,
    moe_kernel,
    moe_workspace_bytes,
    monolithic_allowed,
    non_torch_bytes,
    num_decode_capture_sizes,
    pp_layer_ranges,
    rank_bytes,
    sampler_bytes,
    shard_fraction,
    stage_tensors,
)
from estimator.plan import PlanRequest, make_plan
from estimator.quantization import QuantScheme

CO = dataclasses.replace(PRIOR, act_hidden_buffers=4.0, act_mlp_buffers=3.0, act_moe_buffers=2.0,
                         sampler_fp32_copies=3.0, act_qkv_buffers=1.0, cuda_graph_first_mib=100.0,
                         cuda_graph_mib_per_piece=0.5, cuda_graph_mib_per_full_layer=0.25,
                         non_torch_base_gib=0.25, non_torch_per_tp_rank_gib=0.125, non_torch_pp_gib=0.5)


def toy_arch(**changes) -> ModelArch:
    fields = dict(architecture="LlamaForCausalLM", model_type="llama", hidden_size=1000, num_layers=4,
                  vocab_size=10_000, num_heads=8, num_kv_heads=2, head_dim=100, intermediate_size=3000,
                  dtype="bfloat16", tie_word_embeddings=False, tensors=(), quant=None,
                  attention=tuple(AttentionLayer("full", 2, 100, 100) for _ in range(4)))
    fields.update(changes)
    return ModelArch(**fields)


def toy_config(**changes):
    plan = make_plan(PlanRequest(model="meta-llama/Llama-3.1-8B-Instruct", gpu="H100", max_model_len=4096))
    base = dict(max_num_seqs=16, max_num_batched_tokens=512, block_size=16, max_model_len=4096,
                tensor_parallel_size=1, pipeline_parallel_size=1, enforce_eager=False)
    return dataclasses.replace(plan.config, **dict(base, **changes))


def test_activation_peak_of_a_dense_model_by_hand():
    cfg, h100 = toy_config(), lookup("H100")
    # per token: 4 x 1000 hidden + (8 + 2 x 2) x 100 q/k/v + 3 x 3000 MLP = 4000 + 1200 + 9000, two bytes each
    forward = 512 * (4000 + 1200 + 9000) * 2
    assert activation_bytes(toy_arch(), cfg, CO, last_stage=False, gpu=h100) == forward
    # the last stage also runs the dummy sampler over 16 requests: the bf16 logits (2 bytes) beside 3 float32
    # copies of the 10,000-word vocabulary, the Triton kernel's buffer of min(next_pow2(min(132 SMs, 16)), 132)
    # = 16 float32 rows, and the 512 tokens' hidden states; the forward pass is the larger here
    sampler = 512 * 1000 * 2 + 16 * 10_000 * (4 * 3 + 2) + 16 * 10_000 * 4
    assert sampler < forward and activation_bytes(toy_arch(), cfg, CO, last_stage=True, gpu=h100) == forward
    big_vocab = toy_arch(vocab_size=1_000_000)
    assert activation_bytes(big_vocab, cfg, CO, last_stage=True, gpu=h100) == \
        512 * 1000 * 2 + 16 * 1_000_000 * (4 * 3 + 2) + 16 * 1_000_000 * 4


def test_dummy_sampler_by_hand():
    vocab, h100, l4 = toy_arch(vocab_size=100_000), lookup("H100"), lookup("L4")
    many = toy_config(max_num_seqs=1024)
    # 1024 requests: the Triton buffer stops at the GPU's compute units (132 SMs on an H100, 58 on an L4)
    assert sampler_bytes(vocab, many, CO, h100, 1024) == 1024 * 100_000 * 14 + 132 * 100_000 * 4
    assert sampler_bytes(vocab, many, CO, l4, 1024) == 1024 * 100_000 * 14 + 58 * 100_000 * 4
    # 100 requests on an H100: 128 programs' worth of rows, the next power of two
    assert sampler_bytes(vocab, many, CO, h100, 100) == 100 * 100_000 * 14 + 128 * 100_000 * 4
    # a float32 model's cast to float32 is the same tensor: no model-dtype copy
    fp32 = dataclasses.replace(many, dtype="float32", resolved_dtype="float32")
    assert fp32.dtype_bytes == 4
    assert sampler_bytes(vocab, fp32, CO, h100, 1024) == 1024 * 100_000 * 12 + 132 * 100_000 * 4
    # vLLM's CPU backend has no Triton buffer; a custom device is assumed to have an H100's 132 SMs
    assert sampler_bytes(vocab, many, CO, cpu_device(64.0), 1024) == 1024 * 100_000 * 14
    assert sampler_bytes(vocab, many, CO, custom(40.0), 1024) == 1024 * 100_000 * 14 + 132 * 100_000 * 4


def test_activation_peak_under_tensor_parallelism_by_hand():
    cfg = toy_config(tensor_parallel_size=4)
    # a rank holds 8/4 q heads and max(1, 2/4) = 1 KV head: (2 + 2) x 100; the MLP's 3000 split four ways
    per_token = 4 * 1000 + 4 * 100 + 3 * 3000 / 4
    assert activation_bytes(toy_arch(), cfg, CO, last_stage=False, gpu=lookup("H100")) == 512 * per_token * 2


def test_activation_peak_of_a_moe_model_by_hand():
    moe = toy_arch(num_experts=8, experts_per_token=2, moe_intermediate_size=500, intermediate_size=100)
    cfg = toy_config(tensor_parallel_size=2)
    # On an H100 the Triton MoE kernel keeps its workspace for the process's life: 512 tokens x 2 experts x
    # max(500/2, 1000) and x max(2 x 500/2, 1000), two bytes each (both multiples of 256 bytes); the forward's
    # own buffers are the dense MLP's 3 x 100 / 2 beside the hidden and q/k/v rows
    workspace = 512 * 2 * 1000 * 2 + 512 * 2 * 1000 * 2
    forward = 512 * (4 * 1000 + (4 + 2 * 1) * 100 + 3 * 100 / 2) * 2
    assert moe_workspace_bytes(moe, cfg, lookup("H100")) == workspace
    assert activation_bytes(moe, cfg, CO, last_stage=False, gpu=lookup("H100")) == workspace + forward
    # the workspace stays under the sampler's peak too: 16 requests over a 1,000,000-word vocabulary
    big_vocab = dataclasses.replace(moe, vocab_size=1_000_000)
    sampler = 512 * 1000 * 2 + 16 * 1_000_000 * (4 * 3 + 2) + 16 * 1_000_000 * 4
    assert activation_bytes(big_vocab, cfg, CO, last_stage=True, gpu=lookup("H100")) == workspace + sampler
    # a monolithic kernel (TRTLLM-Gen on a B200) keeps none: two experts per token, each 2 x 500/2 intermediate
    # plus the hidden width: 2 x (500 + 1000) = 3000, above the dense MLP's 3 x 100 / 2, inside the forward
    per_token = 4 * 1000 + (4 + 2 * 1) * 100 + 2 * (2 * 500 / 2 + 1000)
    assert moe_workspace_bytes(moe, cfg, lookup("B200")) == 0
    assert activation_bytes(moe, cfg, CO, last_stage=False, gpu=lookup("B200")) == 512 * per_token * 2
    wide_dense = toy_arch(num_experts=8, experts_per_token=2, moe_intermediate_size=500, intermediate_size=9000)
    assert activation_bytes(wide_dense, cfg, CO, last_stage=False, gpu=lookup("B200")) == \
        512 * (4000 + 600 + 3 * 9000 / 2) * 2


def test_moe_workspace_by_kernel_by_hand():
    moe = toy_arch(num_experts=8, experts_per_token=2, moe_intermediate_size=3000, intermediate_size=100)
    cfg = toy_config()
    # unquantized experts: Triton on Ampere, Ada, Hopper and ROCm: 512 x 2 x max(3000, 1000) and
    # x max(6000, 1000) elements, two bytes each
    for gpu in ("A100-SXM4-80GB", "L40S", "H100", "MI300X"):
        assert moe_workspace_bytes(moe, cfg, lookup(gpu)) == 512 * 2 * (3000 + 6000) * 2, gpu
    # FlashInfer's CUTLASS kernel on consumer Blackwell: one hidden-wide row a token
    assert moe_workspace_bytes(moe, cfg, lookup("RTX-5090")) == 512 * 1000 * 2
    # the CPU kernels allocate per call; a dense model has no MoE kernel
    assert moe_workspace_bytes(moe, cfg, cpu_device(64.0)) == 0
    assert moe_workspace_bytes(toy_arch(), cfg, lookup("H100")) == 0
    # a buffer that is not a multiple of 256 bytes is rounded up: 7 tokens x 2 x 3000 x 2 = 84,000 -> 84,224
    # and 7 x 2 x 6000 x 2 = 168,000 -> 168,192
    seven = toy_config(max_num_batched_tokens=7, max_num_seqs=7)
    assert moe_workspace_bytes(moe, seven, lookup("H100")) == 84_224 + 168_192
    # MXFP4 experts: none on Hopper (the OAI Triton kernel is monolithic) and data-center Blackwell (TRTLLM-Gen);
    # Marlin on consumer Blackwell, over the weights' padded sizes (hidden to 256: 1024; intermediate to 128: 3072)
    mxfp4 = dataclasses.replace(cfg, quantization="mxfp4")
    assert moe_workspace_bytes(moe, mxfp4, lookup("H100")) == 0
    assert moe_workspace_bytes(moe, mxfp4, lookup("B200")) == 0
    assert moe_workspace_bytes(moe, mxfp4, lookup("RTX-5090")) == 512 * 2 * (3072 + 6144) * 2
    # quantized experts on data-center Blackwell other than MXFP4 keep the modular kernels' workspace
    fp8 = dataclasses.replace(cfg, quantization="fp8")
    assert moe_workspace_bytes(moe, fp8, lookup("B200")) == 512 * 2 * (3000 + 6000) * 2


def test_trtllm_expert_padding_by_hand():
    moe = toy_arch(num_experts=8, experts_per_token=2, moe_intermediate_size=1000, intermediate_size=100)
    cfg = toy_config(tensor_parallel_size=4)
    b200 = lookup("B200")
    # TRTLLM-Gen on a B200 takes renormalized routing: 1000 / 4 = 250 per rank, padded to 256
    assert moe_kernel(moe, cfg, b200) == "trtllm"
    assert expert_padding(moe, cfg, b200) == 256 / 250
    expert = Tensor("model.layers.0.mlp.experts.down_proj", 1000, 1000, shard="row", kind="expert", layer=0,
                    copies=8)
    assert rank_bytes(expert, moe, cfg, None, b200) == 8 * 1000 * 1000 * 2 / 4 * 256 / 250
    # ... and only the routed experts: the attention beside them is loaded as it is
    attention = Tensor("model.layers.0.self_attn.o_proj", 1000, 1000, shard="row", kind="linear", layer=0)
    assert rank_bytes(attention, moe, cfg, None, b200) == 1000 * 1000 * 2 / 4
    # already a multiple of 128 per rank (1024 / 4 = 256), elsewhere than TRTLLM-Gen, or quantized: as loaded
    assert expert_padding(dataclasses.replace(moe, moe_intermediate_size=1024), cfg, b200) == 1.0
    assert expert_padding(moe, cfg, lookup("H100")) == 1.0
    assert expert_padding(moe, dataclasses.replace(cfg, quantization="fp8"), b200) == 1.0
    assert expert_padding(toy_arch(), cfg, b200) == 1.0
    # routings TRTLLM-Gen does not take go to FlashInfer's CUTLASS kernel, unpadded
    for routing in ("plain", "custom"):
        other = dataclasses.replace(moe, moe_routing=routing)
        assert moe_kernel(other, cfg, b200) == "flashinfer_cutlass"
        assert expert_padding(other, cfg, b200) == 1.0
    # the kernel by device: Hopper and before Triton; consumer Blackwell CUTLASS; MXFP4 monolithic on Hopper and B200
    assert [moe_kernel(moe, cfg, lookup(g)) for g in ("A100-SXM4-80GB", "H100", "RTX-5090", "MI300X")] == \
        ["modular", "modular", "flashinfer_cutlass", "modular"]
    mxfp4 = dataclasses.replace(cfg, quantization="mxfp4")
    assert [moe_kernel(moe, mxfp4, lookup(g)) for g in ("H100", "B200", "RTX-5090", "MI300X")] == \
        ["oai_triton", "trtllm", "modular", "modular"]
    assert moe_kernel(moe, cfg, cpu_device(64.0)) == "cpu"
    # a 128-block FP8 checkpoint: TRTLLM-Gen on a B200 where it takes the routing (no padding of its experts'
    # intermediate size, which the FP8 kernel needs only to 16), its modular form where it does not (routed
    # outside the kernel); Triton on an H100; other blocks or per-tensor scales with dynamic activations keep the
    # modular kernels
    block_fp8 = dataclasses.replace(moe, quant=QuantScheme("fp8", 8, block=(128, 128), fp8_compute=True))
    fp8 = dataclasses.replace(cfg, quantization="fp8")
    assert moe_kernel(block_fp8, fp8, b200) == "trtllm" and moe_kernel(block_fp8, fp8, lookup("H100")) == "modular"
    assert expert_padding(block_fp8, fp8, b200) == 1.0
    assert moe_kernel(dataclasses.replace(block_fp8, moe_routing="plain"), fp8, b200) == "trtllm_modular"
    other_block = dataclasses.replace(moe, quant=QuantScheme("fp8", 8, block=(64, 64), fp8_compute=True))
    assert moe_kernel(other_block, fp8, b200) == "modular"
    assert moe_kernel(dataclasses.replace(moe, quant=QuantScheme("fp8", 8, fp8_compute=True)), fp8, b200) == "modular"
    awq = dataclasses.replace(moe, quant=QuantScheme("awq", 4, 128, zero_points=True))
    assert moe_kernel(awq, dataclasses.replace(cfg, quantization="awq"), b200) == "modular"


# (tp, dp, expert parallel, EPLB) -> whether each monolithic kernel takes the layout (bf16, fp8, nvfp4, mxfp4),
# as vLLM's experts classes answer (test_moe_kernels_against_vllm checks the same table against them)
MONOLITHIC_BY_LAYOUT = {
    (1, 1, False, False): (True, True, True, True),
    (2, 1, True, False): (True, True, True, True),  # EP on one engine: no dispatch
    (2, 1, True, True): (False, False, False, False),  # EPLB: none
    (1, 8, False, False): (True, True, True, False),  # a second engine: not MXFP4's
    (1, 8, True, False): (True, True, False, False),  # dispatch: not NVFP4's or MXFP4's
    (2, 4, True, False): (True, False, False, False),  # TP, DP and EP: sequence-parallel MoE, not FP8's
    (4, 2, False, False): (True, True, True, False),
}


def test_monolithic_kernels_by_parallel_layout():
    for (tp, dp, ep, eplb), expected in MONOLITHIC_BY_LAYOUT.items():
        cfg = toy_config(tensor_parallel_size=tp, data_parallel_size=dp, enable_expert_parallel=ep, enable_eplb=eplb)
        assert tuple(monolithic_allowed(cfg, k) for k in ("trtllm_bf16", "trtllm_fp8", "trtllm_nvfp4", "mxfp4")) \
            == expected, (tp, dp, ep, eplb)
    # dispatch needs EP and a second engine; sequence parallelism TP above 1 beside them
    assert [moe_dispatch(toy_config(tensor_parallel_size=tp, data_parallel_size=dp, enable_expert_parallel=ep))
            for tp, dp, ep in ((1, 2, False), (1, 2, True), (2, 1, True), (2, 2, True))] == \
        [(False, False), (True, False), (False, False), (True, True)]


def test_the_moe_kernel_by_scheme_device_and_layout():
    moe = toy_arch(num_experts=8, experts_per_token=2, moe_intermediate_size=1024, intermediate_size=100)
    plain = toy_config()
    eplb = toy_config(tensor_parallel_size=2, enable_expert_parallel=True, enable_eplb=True)
    dp_ep = toy_config(data_parallel_size=2, enable_expert_parallel=True)
    dp = toy_config(data_parallel_size=2)
    ep = toy_config(tensor_parallel_size=2, enable_expert_parallel=True)

    def kernels(arch, quantization, gpu, layouts=(plain, eplb, dp_ep, dp, ep)):
        return [moe_kernel(arch, dataclasses.replace(c, quantization=quantization), lookup(gpu)) for c in layouts]

    # unquantized on a B200: TRTLLM-Gen unless EPLB (then CUTLASS, or Triton with a second engine)
    assert kernels(moe, None, "B200") == ["trtllm", "flashinfer_cutlass", "trtllm", "trtllm", "trtllm"]
    assert kernels(dataclasses.replace(moe, moe_routing="plain"), None, "B200") == \
        ["flashinfer_cutlass", "flashinfer_cutlass", "modular", "modular", "flashinfer_cutlass"]
    assert kernels(moe, None, "RTX-5090") == ["flashinfer_cutlass", "flashinfer_cutlass", "modular", "modular",
                                              "flashinfer_cutlass"]
    assert kernels(dataclasses.replace(moe, moe_activation="swigluoai"), None, "B200") == ["modular"] * 5
    assert kernels(moe, None, "H100") == ["modular"] * 5
    # 128-block FP8
    block = dataclasses.replace(moe, quant=QuantScheme("fp8", 8, block=(128, 128), fp8_compute=True))
    assert kernels(block, "fp8", "B200") == ["trtllm", "modular", "trtllm", "trtllm", "trtllm"]
    assert kernels(dataclasses.replace(block, moe_routing="custom"), "fp8", "B200") == \
        ["trtllm_modular", "modular", "trtllm_modular", "trtllm_modular", "trtllm_modular"]
    assert kernels(dataclasses.replace(block, moe_activation="gelu"), "fp8", "B200") == ["modular"] * 5
    assert kernels(block, "fp8", "H100") == ["modular", "flashinfer_cutlass", "flashinfer_cutlass", "modular",
                                             "flashinfer_cutlass"]
    # TP, DP and EP together make the MoE sequence parallel, which TRTLLM-Gen's monolithic FP8 kernel does not take
    sequence = toy_config(tensor_parallel_size=2, data_parallel_size=2, enable_expert_parallel=True)
    assert kernels(block, "fp8", "B200", (sequence,)) == ["trtllm_modular"]
    assert kernels(moe, None, "B200", (sequence,)) == ["trtllm"]
    assert kernels(block, "fp8", "H20") == kernels(block, "fp8", "H100")
    assert kernels(block, "fp8", "L40S") == ["modular"] * 5
    assert kernels(block, "fp8", "MI300X") == ["modular"] * 5
    compressed = dataclasses.replace(moe, quant=QuantScheme("compressed-tensors", 8, block=(128, 128),
                                                            fp8_compute=True))
    assert kernels(compressed, "compressed-tensors", "B200") == kernels(block, "fp8", "B200")
    # per-tensor FP8 with static input scales (with dynamic ones: the modular kernels)
    static = dataclasses.replace(moe, quant=QuantScheme("modelopt", 8, fp8_compute=True, static_activations=True))
    assert kernels(static, "modelopt", "B200") == ["trtllm", "flashinfer_cutlass", "trtllm", "trtllm", "trtllm"]
    assert kernels(dataclasses.replace(static, moe_routing="plain"), "modelopt", "B200") == \
        ["flashinfer_cutlass"] * 5
    assert kernels(static, "modelopt", "H100") == ["flashinfer_cutlass"] * 5
    assert kernels(static, "modelopt", "RTX-5090") == ["flashinfer_cutlass"] * 5
    assert kernels(static, "modelopt", "L40S") == ["modular"] * 5
    assert kernels(static, "modelopt", "MI300X") == ["modular"] * 5
    dynamic = dataclasses.replace(moe, quant=QuantScheme("fp8", 8, fp8_compute=True))
    assert kernels(dynamic, "fp8", "B200") == ["modular"] * 5
    # NVFP4 W4A4: TRTLLM-Gen on a B200, monolithic without dispatch or EPLB; CUTLASS on consumer Blackwell
    nvfp4 = dataclasses.replace(moe, quant=QuantScheme("modelopt_fp4", 4, 16, scale_bytes=1, fp4_activations=True))
    assert kernels(nvfp4, "modelopt_fp4", "B200") == ["trtllm", "trtllm_modular", "trtllm_modular", "trtllm",
                                                      "trtllm"]
    assert kernels(dataclasses.replace(nvfp4, moe_routing="plain"), "modelopt_fp4", "B200") == ["trtllm_modular"] * 5
    assert kernels(nvfp4, "modelopt_fp4", "RTX-5090") == ["flashinfer_cutlass"] * 5
    assert kernels(nvfp4, "modelopt_fp4", "H100") == ["modular"] * 5
    w4a16 = dataclasses.replace(moe, quant=QuantScheme("modelopt_fp4", 4, 16, scale_bytes=1))
    assert kernels(w4a16, "modelopt_fp4", "B200") == ["modular"] * 5
    # MXFP4: monolithic with one engine and no dispatch or EPLB, else the same backend's modular form
    assert kernels(moe, "mxfp4", "H100") == ["oai_triton", "oai_triton_modular", "oai_triton_modular",
                                             "oai_triton_modular", "oai_triton"]
    assert kernels(moe, "mxfp4", "B200") == ["trtllm", "trtllm_mxfp4_modular", "trtllm_mxfp4_modular",
                                             "trtllm_mxfp4_modular", "trtllm"]
    assert kernels(moe, "mxfp4", "RTX-5090") == ["modular"] * 5


def test_modular_mxfp4_workspaces_by_hand():
    moe = toy_arch(num_experts=8, experts_per_token=2, moe_intermediate_size=1000, intermediate_size=100)
    # two engines: 512 tokens each gathered to every GPU, the experts sliced over both (1000 / 2, padded to 512
    # for OAI Triton); its output M x H and activation M x topk x I; TRTLLM-Gen's the unpadded M x H only
    dp = dataclasses.replace(toy_config(data_parallel_size=2), quantization="mxfp4")
    assert moe_workspace_bytes(moe, dp, lookup("H100")) == 1024 * 1000 * 2 + 1024 * 2 * 512 * 2
    assert moe_workspace_bytes(moe, dp, lookup("B200")) == 1024 * 1000 * 2


def test_fixed_overheads_by_hand():
    assert non_torch_bytes(toy_config(), CO, moe=False) == 0.25 * GIB
    assert non_torch_bytes(toy_config(tensor_parallel_size=4), CO, moe=False) == (0.25 + 3 * 0.125) * GIB
    assert non_torch_bytes(toy_config(pipeline_parallel_size=2), CO, moe=False) == (0.25 + 0.5) * GIB
    # 16 sequences: graphs up to 32 tokens, sizes 1, 2, 4, 8, 16, 24, 32 = 7, FULL decode graphs for 1 to 16 = 5.
    # The first capture: 100 MiB and the 32-token pool of the toy's forward buffers, (4 x 1000 + 1 x 1200 + 3 x 3000)
    # x 2 bytes per token; then 6 sizes of 11 pieces x 0.5 MiB, and 4 FULL graphs of 10 layers x 0.25 MiB
    h100, b200, arch = lookup("H100"), lookup("B200"), toy_arch()
    pool = 32 * 28_400
    assert largest_capture_size(toy_config(), h100) == 32
    assert num_decode_capture_sizes(toy_config(), h100) == 5
    assert cuda_graph_bytes(arch, toy_config(), h100, 10, CO) == (100 + 6 * 5.5 + 4 * 2.5) * 1024**2 + pool
    # each graph after the first counts at least 1 MiB: one layer's FULL graph (0.25 MiB) counts 1, its 2 pieces 1
    assert cuda_graph_bytes(arch, toy_config(), h100, 1, CO) == (100 + 6 * 1 + 4 * 1) * 1024**2 + pool
    # one capture size (a one-token budget): the first capture alone, its pool one token's
    one = toy_config(max_num_seqs=1, max_num_batched_tokens=1)
    assert cuda_graph_bytes(arch, one, h100, 10, CO) == 100 * 1024**2 + 28_400
    # speculative decoding's 2-token decode batches: FULL graphs for 2 to 32 tokens (2, 4, 8, 16, 24, 32)
    mtp = toy_config(speculative_config=(("method", "mtp"), ("num_speculative_tokens", 1)))
    assert num_decode_capture_sizes(mtp, h100) == 6
    # a pooling model captures PIECEWISE graphs only
    assert cuda_graph_bytes(toy_arch(pooling=True), toy_config(), h100, 10, CO) == (100 + 6 * 5.5) * 1024**2 + pool
    # with 4 sequences FULL graphs stop at 4 tokens (1, 2, 4) while PIECEWISE go to 8
    assert num_decode_capture_sizes(toy_config(max_num_seqs=4), h100) == 3
    assert largest_capture_size(toy_config(enforce_eager=True), h100) == 0
    many = toy_config(max_num_seqs=1024, max_num_batched_tokens=8192)
    assert largest_capture_size(many, h100) == 512 and largest_capture_size(many, b200) == 1024
    assert largest_capture_size(toy_config(max_num_seqs=1024, max_num_batched_tokens=300), h100) == 300
    # vLLM's CPU backend captures no CUDA graphs at all
    assert largest_capture_size(toy_config(), cpu_device(64.0)) == 0
    assert cuda_graph_bytes(arch, toy_config(), cpu_device(64.0), 10, CO) == 0


@pytest.mark.parametrize("tokens,largest,padded", [
    (0, 512, 0), (1, 512, 1), (3, 512, 4), (9, 512, 16), (256, 512, 256), (257, 512, 272), (512, 512, 512),
    (513, 512, 513), (5, 0, 5), (1, 1, 1), (2, 1, 2), (250, 252, 252)])
def test_graph_padding_by_hand(tokens, largest, padded):
    assert graph_padded(tokens, largest) == padded


def test_blocks_a_request_takes_by_hand():
    cfg = toy_config(max_model_len=4096, max_num_batched_tokens=512, block_size=16)
    assert blocks_per_request(("full", None), cfg) == 256
    # a sliding window of 1000 keeps window - 1 + the tokens in flight (pp + 1 = 2 batches of 512), + 1 block
    assert blocks_per_request(("sliding", 1000), cfg) == -(-(999 + 1024) // 16) + 1 == 128
    assert blocks_per_request(("sliding", 8000), cfg) == 256 + 1  # the window is longer than the request
    # at block boundaries: window - 1 + 1024 tokens of 2048 (128 blocks) and 2049 (129 blocks), + 1
    assert blocks_per_request(("sliding", 1025), cfg) == 129 and blocks_per_request(("sliding", 1026), cfg) == 130
    # chunked local attention keeps one chunk and the tokens in flight
    assert blocks_per_request(("chunked", 1000), cfg) == -(-(1000 + 1024) // 16) == 127
    assert blocks_per_request(("chunked", 1000), toy_config(pipeline_parallel_size=2)) == -(-(1000 + 1536) // 16)
    assert blocks_per_request(("full", None), cfg, max_len=100) == 7


def test_kv_cache_groups_by_hand():
    full, sliding = AttentionLayer("full", 2, 100, 100), AttentionLayer("sliding", 2, 100, 100, window=512)
    chunked = AttentionLayer("chunked", 2, 100, 100, window=512)
    assert kv_cache_groups(toy_arch()) == [(("full", None), [0, 1, 2, 3])]
    # 5 sliding for each full layer (Gemma 3): groups of the smaller count
    gemma = toy_arch(num_layers=12, attention=tuple(full if (i + 1) % 6 == 0 else sliding for i in range(12)))
    # (the 10 sliding layers are 0-4 and 6-10; five groups take every fifth of them)
    assert kv_cache_groups(gemma) == [(("sliding", 512), [0, 6]), (("sliding", 512), [1, 7]),
                                      (("sliding", 512), [2, 8]), (("sliding", 512), [3, 9]),
                                      (("sliding", 512), [4, 10]), (("full", None), [5, 11])]
    # alternating (gpt-oss, Gemma 2): one group of each
    alternating = toy_arch(attention=(sliding, full, sliding, full))
    assert kv_cache_groups(alternating) == [(("sliding", 512), [0, 2]), (("full", None), [1, 3])]
    # 4 against 3 is within 1.5x: the larger count sets the group size, one group of each
    close = toy_arch(num_layers=7, attention=(sliding, full) * 3 + (sliding,))
    assert kv_cache_groups(close) == [(("sliding", 512), [0, 2, 4, 6]), (("full", None), [1, 3, 5])]
    # 3 against 2 is not (3 is not below 1.5 x 2): groups of 2, the sliding layers split in two
    uneven = toy_arch(num_layers=5, attention=(sliding, full, sliding, full, sliding))
    assert kv_cache_groups(uneven) == [(("sliding", 512), [0, 4]), (("sliding", 512), [2]), (("full", None), [1, 3])]
    # chunked attention turns the hybrid manager off: every layer is full
    llama4 = toy_arch(attention=(chunked, chunked, chunked, full))
    assert kv_cache_groups(llama4) == [(("full", None), [0, 1, 2, 3])]
    mla = toy_arch(attention=tuple(AttentionLayer("mla", 1, 576, 0) for _ in range(4)))
    assert kv_cache_groups(mla) == [(("mla", None), [0, 1, 2, 3])]


def test_pipeline_stages_and_shards_by_hand():
    assert [list(r) for r in pp_layer_ranges(10, 3)] == [[0, 1, 2], [3, 4, 5, 6], [7, 8, 9]]
    assert [list(r) for r in pp_layer_ranges(9, 4)] == [[0, 1], [2, 3], [4, 5, 6], [7, 8]]
    arch = toy_arch(vocab_size=1000)
    assert shard_fraction(Tensor("q", 1, 1, "col", "linear", 0), arch, 4) == 0.25
    assert shard_fraction(Tensor("k", 1, 1, "kv", "linear", 0), arch, 8) == 0.5  # 2 KV heads: one per rank
    assert shard_fraction(Tensor("e", 1000, 1, "vocab", "embedding", None), arch, 3) == 342 / 1000  # 1024 / 3
    assert shard_fraction(Tensor("n", 1, 1, "rep", "norm", 0), arch, 4) == 1.0


def test_tensors_of_each_stage_by_hand():
    tensors = (Tensor("model.embed_tokens", 10, 10, "vocab", "embedding", None, place="first"),
               *(Tensor(f"model.layers.{i}.mlp", 1, 1, "col", "linear", i) for i in range(4)),
               Tensor("model.norm", 10, 1, "rep", "norm", None, place="last"))
    untied = toy_arch(tensors=tensors + (Tensor("lm_head", 10, 10, "vocab", "embedding", None, place="last"),))
    tied = toy_arch(tensors=tensors, tie_word_embeddings=True)

    def names(arch, stage):
        return [t.name for t in stage_tensors(arch, 2, stage)]

    assert names(untied, 0) == ["model.embed_tokens", "model.layers.0.mlp", "model.layers.1.mlp"]
    assert names(untied, 1) == ["model.layers.2.mlp", "model.layers.3.mlp", "model.norm", "lm_head"]
    # tied: the last stage keeps its own copy of the embeddings as its LM head
    assert names(tied, 1) == ["model.embed_tokens", "model.layers.2.mlp", "model.layers.3.mlp", "model.norm"]
    assert [t.name for t in stage_tensors(tied, 1, 0)] == [t.name for t in tensors]


def test_the_pool_by_hand():
    arch, cfg, gpu = toy_arch(), toy_config(gpu_memory_utilization=0.5), lookup("H100")
    pool = kv_pool(arch, cfg, gpu, CO, [10 * GIB])
    budget = -(-gpu.memory_bytes * 0.5 // 1)
    page = 16 * 2 * 200 * 2  # 16 tokens x 2 KV heads x (100 K + 100 V) x 2 bytes
    assert pool.budget == budget and pool.bytes_per_block == [page * 4]  # 4 layers in one group
    available = budget - 10 * GIB - pool.non_torch - pool.activation[0] - pool.cuda_graphs[0]
    assert pool.available == [available] and pool.num_blocks == available // (page * 4)
    assert pool.per_request == 256 and pool.kv_fits and pool.weights_fit and pool.overheads_fit
    # exactly one request and the null block: fits; one byte less: does not
    tight = (257 * page * 4) - available
    assert kv_pool(arch, cfg, gpu, CO, [10 * GIB - tight]).kv_fits
    assert not kv_pool(arch, cfg, gpu, CO, [10 * GIB - tight + 1]).kv_fits
    assert kv_pool(arch, cfg, gpu, CO, [budget]).weights_fit and not kv_pool(arch, cfg, gpu, CO, [budget + 1]).weights_fit
    assert not kv_pool(arch, cfg, gpu, CO, [10 * GIB + available]).overheads_fit


def test_mxfp4_experts_are_padded_for_the_kernel_vllm_picks_on_each_gpu():
    """gpt-oss-20b: 24 layers x 32 experts, hidden 2880, intermediate 2880, MXFP4 (4 bits + one 8-bit scale per 32).
    Marlin (consumer Blackwell) and TRT-LLM (B200) pad hidden to 3072 and the intermediate size to 2944; the OAI Triton
    kernels on Hopper keep both; ROCm pads both to 3072. Biases pad with them, held in float32 by the OAI Triton,
    TRT-LLM and ROCm kernels and in 16 bits by Marlin."""
    from estimator.gpus import GIB

    def mxfp4(rows, cols):
        return rows * cols * 0.5 + rows * (cols // 32)

    def experts_gib(hidden, inter, bias_bytes):
        per_layer = 32 * (mxfp4(2 * inter, hidden) + mxfp4(hidden, inter) + bias_bytes * (2 * inter + hidden))
        return 24 * per_layer / GIB

    def weights(gpu, tp=1):
        return make_plan(PlanRequest(model="openai/gpt-oss-20b", gpu=gpu, max_model_len=8192,
                                     tensor_parallel_size=tp, num_gpus=tp)).memory.per_gpu.weights_gib

    hopper = experts_gib(2880, 2880, 4)
    assert weights("GB10") - weights("H100") == pytest.approx(experts_gib(3072, 2944, 2) - hopper, rel=1e-9)
    assert weights("B200") - weights("GB10") == \
        pytest.approx(experts_gib(3072, 2944, 4) - experts_gib(3072, 2944, 2), rel=1e-9)
    assert weights("MI300X") - weights("H100") == pytest.approx(experts_gib(3072, 3072, 4) - hopper, rel=1e-9)
    # per TP rank the intermediate size is 1440, which Marlin pads to 1536 and the Triton kernels to 1472
    assert weights("RTX-5090", tp=2) - weights("H100", tp=2) == \
        pytest.approx(experts_gib(3072, 1536, 2) - experts_gib(2880, 1472, 4), rel=1e-9)
    # memory_public.csv line 8: a gpt-oss-20b derivative on a GB10 logged 13.7193 GiB of weights
    assert weights("GB10") == pytest.approx(13.7193, rel=0.005)


def test_each_mxfp4_expert_tensor_and_its_bias_by_hand():
    """gpt-oss-20b on a GB10 (Marlin): the w13 weight of 32 experts is [2 x 2944, 3072] in MXFP4 (half a byte per
    weight, a one-byte scale per 32); its bias [2 x 2944] stays 16-bit. On the CPU backend 2880 is already a multiple
    of its 32, so nothing pads."""
    from estimator.memory import padded_expert_bytes, rank_bytes, tensor_bytes

    plan = make_plan(PlanRequest(model="openai/gpt-oss-20b", gpu="GB10", max_model_len=8192))
    by_name = {t.name: t for t in plan.arch.tensors if t.layer == 0}
    w13, w13_bias = by_name["model.layers.0.mlp.experts.gate_up_proj"], \
        by_name["model.layers.0.mlp.experts.gate_up_proj.bias"]
    w2, w2_bias = by_name["model.layers.0.mlp.experts.down_proj"], by_name["model.layers.0.mlp.experts.down_proj.bias"]
    gb10 = lookup("GB10")
    assert padded_expert_bytes(w13, plan.arch, 1, plan.quant, gb10) == 32 * (2 * 2944 * 3072 / 2 + 2 * 2944 * 96)
    assert padded_expert_bytes(w13_bias, plan.arch, 1, plan.quant, gb10) == 32 * 2 * 2944 * 2
    assert padded_expert_bytes(w2, plan.arch, 1, plan.quant, gb10) == 32 * (3072 * 2944 / 2 + 3072 * 92)
    assert padded_expert_bytes(w2_bias, plan.arch, 1, plan.quant, gb10) == 32 * 3072 * 2
    # the OAI Triton kernels on an H100 and TRTLLM-Gen on a B200 hold the biases in float32; the CPU's kernel too
    assert padded_expert_bytes(w2_bias, plan.arch, 1, plan.quant, lookup("H100")) == 32 * 2880 * 4
    assert padded_expert_bytes(w13_bias, plan.arch, 1, plan.quant, lookup("B200")) == 32 * 2 * 2944 * 4
    assert padded_expert_bytes(w2_bias, plan.arch, 1, plan.quant, cpu_device(64.0)) == 32 * 2880 * 4
    assert rank_bytes(w13, plan.arch, plan.config, plan.quant, cpu_device(64.0)) == \
        32 * (2 * 2880 * 2880 / 2 + 2 * 2880 * 90)
    # the speed model streams the checkpoint's experts in MXFP4 too (no padding there), attention in 16 bits
    assert tensor_bytes(w13, 2, plan.quant) == 32 * (2 * 2880 * 2880 / 2 + 2 * 2880 * 90)
    assert tensor_bytes(by_name["model.layers.0.self_attn.q_proj"], 2, plan.quant) == 4096 * 2880 * 2


def test_a_stage_with_no_room_has_no_blocks_and_says_what_is_left():
    plan = make_plan(PlanRequest(model="meta-llama/Llama-3.1-8B-Instruct", gpu="L4", gpu_memory_utilization=0.7))
    assert not plan.memory.fits and plan.memory.num_gpu_blocks == 0
    tight = make_plan(PlanRequest(model="meta-llama/Llama-3.1-8B-Instruct", gpu="L4", max_model_len=131072,
                                  block_size=256))  # 32 MiB blocks: one block shows in the reason's 0.01 GiB
    m = tight.memory
    left = (m.available_kv_bytes[0] - m.bytes_per_block) / GIB  # one block is the null block vLLM holds back
    assert not m.fits and m.reason.endswith(f"but {left:.2f} GiB is available")


def test_kv_bytes_per_token_per_gpu_under_tensor_parallelism():
    # Llama-3.1-70B at TP 4: 80 layers x (K and V) x 8/4 KV heads x 128 x 2 bytes
    plan = make_plan(PlanRequest(model="meta-llama/Llama-3.1-70B-Instruct", gpu="H100", tensor_parallel_size=4,
                                 max_model_len=8192))
    assert plan.memory.kv_bytes_per_token_per_gpu == 80 * 2 * 2 * 128 * 2


def test_per_token_model_buffers_sit_on_the_first_pipeline_stage_only():
    def stages(pp, tokens):
        return [s.weights_gib for s in make_plan(PlanRequest(
            model="Qwen/Qwen3-VL-8B-Instruct", gpu="H100", pipeline_parallel_size=pp, num_gpus=pp, max_model_len=8192,
            max_num_batched_tokens=tokens)).memory.per_stage]
    first_more, last_more = (a - b for a, b in zip(stages(2, 8192), stages(2, 4096), strict=True))
    assert first_more == pytest.approx(3 * 4096 * 4096 * 2 / GIB) and last_more == 0


def test_a_sparse_mla_models_top_k_index_buffer_is_model_memory_on_every_stage():
    def stages(tokens):
        return [s.weights_gib for s in make_plan(PlanRequest(
            model="deepseek-ai/DeepSeek-V3.2", gpu="H200", tensor_parallel_size=8, pipeline_parallel_size=2,
            max_model_len=8192, max_num_batched_tokens=tokens)).memory.per_stage]
    more = [a - b for a, b in zip(stages(8192), stages(4096), strict=True)]
    assert more == [pytest.approx(4096 * 2048 * 4 / GIB)] * 2  # int32 [max_num_batched_tokens, index_topk]


def test_an_mla_layer_profiles_a_chunk_of_up_projected_context_beside_attention():
    plan = make_plan(PlanRequest(model="deepseek-ai/DeepSeek-V3", gpu="H200", tensor_parallel_size=8,
                                 max_model_len=32768, max_num_seqs=32))
    arch, cfg = plan.arch, plan.config
    # 64K tokens (8 x 32768, capped) x 128 / 8 heads x (128 nope + 128 v), bf16
    assert mla_profile_bytes(arch, cfg) == 65536 * 16 * 256 * 2
    # it lives in attention: the forward's peak takes the larger of it and the dense MLP's buffers
    mlp = 8192 * PRIOR.act_mlp_buffers * 18432 / 8 * 2
    without = dataclasses.replace(arch, mla_kv_up_dim=0)
    assert activation_bytes(arch, cfg, PRIOR, last_stage=False, gpu=plan.gpu) - \
        activation_bytes(without, cfg, PRIOR, last_stage=False, gpu=plan.gpu) == pytest.approx(65536 * 16 * 256 * 2 - mlp)
    # a short context profiles a short chunk: 8 x 1024 tokens, more than 4 blocks of 64 for each of 16 sequences
    assert mla_profile_bytes(arch, dataclasses.replace(cfg, max_model_len=1024, max_num_seqs=16)) == \
        8192 * 16 * 256 * 2
    assert mla_profile_bytes(make_plan(PlanRequest(model="meta-llama/Llama-3.1-8B-Instruct", gpu="H100")).arch,
                             cfg) == 0


@pytest.mark.parametrize("length, seqs, block, dcp, tokens", [
    (500, 200, 16, 1, 4 * 200 * 16),  # 4 blocks of every sequence outgrow 8 full-length requests
    (1001, 1, 64, 1, 8064),  # 8 x 1001 = 8008, up to whole 64-token blocks
    (100, 7, 16, 6, 816),  # 800, up to whole lcm(16, 6) = 48-token runs
    (32768, 1024, 64, 1, 65536),  # capped at 64K
])
def test_an_mla_context_chunk_by_hand(length, seqs, block, dcp, tokens):
    cfg = SimpleNamespace(max_model_len=length, max_num_seqs=seqs, block_size=block, decode_context_parallel_size=dcp)
    assert mla_context_chunk_tokens(cfg) == tokens


@pytest.mark.parametrize("gpu,kv,block,latent", [("H200", "auto", 64, 1152), ("H200", "fp8", 64, 656),
                                                 ("B200", "auto", 64, 1152), ("B200", "fp8", 64, 576),
                                                 ("RTX-PRO-6000", "auto", 64, 656), ("MI300X", "auto", 16, 1152)])
def test_a_sparse_mla_page_by_hand(gpu, kv, block, latent):
    plan = make_plan(PlanRequest(model="deepseek-ai/DeepSeek-V3.2", gpu=gpu, tensor_parallel_size=8,
                                 max_model_len=8192, kv_cache_dtype=kv))
    assert plan.config.block_size == block
    # one group of 61 layers; each block holds the latent and the indexer's 132-byte key of each token
    assert plan.memory.bytes_per_block == 61 * block * (latent + 132)


def test_glm5_takes_an_fp8_cache_on_data_center_blackwell_even_for_auto():
    def page(gpu):
        plan = make_plan(PlanRequest(model="zai-org/GLM-5", gpu=gpu, tensor_parallel_size=8, max_model_len=8192,
                                     quantization="fp8"))
        return plan.memory.bytes_per_block, plan.warnings
    b200, notes = page("B200")
    assert b200 == 78 * 64 * (576 + 132)  # FlashInfer's plain fp8 latent and the indexer key
    assert any("fp8_e4m3" in n and "GlmMoeDsaForCausalLM" in n for n in notes)
    h200, notes = page("H200")
    assert h200 == 78 * 64 * (1152 + 132) and not any("fp8_e4m3" in n for n in notes)


@pytest.mark.parametrize("flags,images", [
    (dict(max_num_seqs=16, max_model_len=8192), 32),  # the encoder budget: 8192 tokens / 256 a image
    (dict(max_num_seqs=1, max_model_len=1280), 5),  # one prompt of 1280 tokens holds only 5 images
    (dict(max_num_seqs=16, max_model_len=8192, max_num_batched_tokens=128), 1),  # at least one image
])
def test_gemma3s_vision_tower_profiling_pass_by_hand(flags, images):
    plan = make_plan(PlanRequest(model="google/gemma-3-4b-it", gpu="H100", **flags))
    # each image: 3 x 896 x 896 pixels in and 256 placeholders of 2560 out, held to the end of profile_run; through
    # SigLIP's 4096 patches a layer's peak is the residual and norm output (2 x 1152) and fc1's output and its
    # activation (2 x 4304), all bf16
    held = images * (3 * 896 * 896 + 256 * 2560) * 2
    tower = images * 4096 * (2 * 1152 + 2 * 4304) * 2
    language = dataclasses.replace(plan.arch, vision=None)
    decoder = activation_bytes(language, plan.config, plan.coefficients, last_stage=True, gpu=plan.gpu)
    assert plan.memory.per_gpu.activation_gib * GIB == pytest.approx(held + max(tower, decoder), rel=1e-12)
    assert encoder_profile_bytes(plan.arch, plan.config) == (held, tower)
    assert activation_bytes(plan.arch, plan.config, plan.coefficients, last_stage=True, gpu=plan.gpu) == held + max(tower, decoder)
    assert encoder_profile_bytes(language, plan.config) == (0, 0)  # a text-only model has no tower pass
    assert not any("vision encoder" in w for w in plan.warnings)


@pytest.mark.parametrize("tokens,seqs,max_len,per_item,items", [
    (8192, 1024, 131072, 256, 32), (128, 16, 8192, 256, 1), (8192, 2, 300, 256, 2), (8192, 1, 200, 256, 1),
    (16384, 64, 32768, 3080, 5), (8192, 3, 700, 256, 6)])
def test_encoder_items_by_hand(tokens, seqs, max_len, per_item, items):
    # what the encoder budget holds (at least one), capped by max_num_seqs prompts of as many whole items as fit
    # max_model_len (at least one each)
    cfg = dataclasses.replace(make_plan(PlanRequest(model="google/gemma-3-4b-it", gpu="H100",
                                                    max_model_len=8192)).config,
                              max_num_batched_tokens=tokens, max_num_seqs=seqs, max_model_len=max_len)
    assert encoder_items(cfg, per_item) == items


def test_the_vision_tower_runs_on_the_first_pipeline_stage_only():
    plan = make_plan(PlanRequest(model="google/gemma-3-27b-it", gpu="A100-SXM4-40GB", pipeline_parallel_size=2,
                                 num_gpus=2, max_model_len=8192, max_num_seqs=8, max_num_batched_tokens=8192))
    first, last = plan.memory.per_stage
    tower = 32 * 4096 * (2 * 1152 + 2 * 4304) * 2
    assert first.activation_gib * GIB >= tower and last.activation_gib * GIB < tower
    language = dataclasses.replace(plan.arch, vision=None)
    assert last.activation_gib * GIB == activation_bytes(language, plan.config, plan.coefficients, last_stage=True, gpu=plan.gpu)
    assert activation_bytes(plan.arch, plan.config, plan.coefficients, last_stage=True, first_stage=False,
                            gpu=plan.gpu) == \
        last.activation_gib * GIB


def test_mistral3s_pixtral_profiling_pass_by_hand():
    plan = make_plan(PlanRequest(model="mistralai/Mistral-Small-3.1-24B-Instruct-2503", gpu="H100",
                                 max_model_len=32768, max_num_batched_tokens=8192, tensor_parallel_size=2))
    # the largest image is 1540 px square: 110 x 110 patches of 14, one placeholder per 2 x 2 of them (3025);
    # 8192 batched tokens hold two. Pixtral's block peaks at 4 rows of 1024 and 3 of its 4096-wide MLP, split
    # over TP 2.
    held = 2 * (3 * 1540 * 1540 + 3025 * 5120) * 2
    tower = 2 * 12100 * (4 * 1024 + 3 * 4096 / 2) * 2
    assert encoder_profile_bytes(plan.arch, plan.config) == (held, tower)


def test_group_pages_by_hand():
    from estimator.memory import group_pages

    cfg = toy_config()
    # sliding layers of 5 KV heads beside full ones of 2 (100-wide heads): 2,000 and 800 bytes a token in bf16. 800
    # does not divide 2,000, so the full layers' page is padded to the sliding one's and keeps 16 tokens; a state
    # layer (no KV per token) keeps 16 too
    arch = toy_arch(num_kv_heads=5, num_heads=10, attention=(
        AttentionLayer("sliding", 5, 100, 100, 64), AttentionLayer("full", 2, 100, 100),
        AttentionLayer("sliding", 5, 100, 100, 64), AttentionLayer("mamba", 0, 0, 0, state=((4, 4, 0),))))
    page, sizes = group_pages(arch, cfg, 1)
    groups = [spec for spec, _ in kv_cache_groups(arch)]
    assert page == 16 * 2000
    assert dict(zip(groups, sizes, strict=True)) == {("sliding", 64): 16, ("full", None): 16, ("mamba", None): 16}
    # 4 KV heads beside 2 divide: the full layers' blocks hold twice the tokens
    divisible = toy_arch(attention=(AttentionLayer("sliding", 4, 100, 100, 64), AttentionLayer("full", 2, 100, 100)) * 2)
    page, sizes = group_pages(divisible, cfg, 1)
    assert page == 16 * 1600 and sorted(sizes) == [16, 32]


def test_nvfp4_experts_kernel_and_padding_by_hand():
    w4a4 = QuantScheme("modelopt_fp4", 4, 16, scale_bytes=1, fp4_activations=True)
    moe = toy_arch(num_experts=8, experts_per_token=2, moe_intermediate_size=1000, intermediate_size=100,
                   hidden_size=1000, quant=w4a4,
                   tensors=(Tensor("model.layers.0.mlp.experts.gate_up_proj", 1000, 2000, shard="col",
                                   kind="expert", layer=0, copies=8),))
    cfg = toy_config(tensor_parallel_size=4, quantization="modelopt_fp4")
    b200 = lookup("B200")
    # W4A4 on a B200: TRTLLM-Gen, monolithic for renormalized routing, modular otherwise; consumer Blackwell
    # FlashInfer CUTLASS; before Blackwell (and for W4A16 anywhere) Marlin
    assert moe_kernel(moe, cfg, b200) == "trtllm"
    assert moe_kernel(dataclasses.replace(moe, moe_routing="plain"), cfg, b200) == "trtllm_modular"
    assert [moe_kernel(moe, cfg, lookup(g)) for g in ("RTX-5090", "H100", "A100-SXM4-80GB")] == \
        ["flashinfer_cutlass", "modular", "modular"]
    w4a16 = dataclasses.replace(moe, quant=dataclasses.replace(w4a4, fp4_activations=False))
    assert moe_kernel(w4a16, cfg, b200) == "modular" and expert_padding(w4a16, cfg, b200) == 1.0
    # TRTLLM-Gen pads the per-rank intermediate size (1000 / 4 = 250) to 64 for gated experts (256) and the hidden
    # size (1000) to 256 (1024), in both its forms; FlashInfer CUTLASS and Marlin hold them as loaded
    assert expert_padding(moe, cfg, b200) == 256 / 250 * 1024 / 1000
    assert expert_padding(dataclasses.replace(moe, moe_routing="custom"), cfg, b200) == 256 / 250 * 1024 / 1000
    assert expert_padding(moe, cfg, lookup("RTX-5090")) == expert_padding(moe, cfg, lookup("H100")) == 1.0
    # non-gated experts (up and down only) take 128: 250 -> 256 too, but 1000 / 8 = 125 -> 128 against 192 gated
    plain_mlp = dataclasses.replace(moe, tensors=(Tensor("model.layers.0.mlp.experts.up_proj", 1000, 1000,
                                                         shard="col", kind="expert", layer=0, copies=8),))
    tp8 = dataclasses.replace(cfg, tensor_parallel_size=8)
    assert expert_padding(plain_mlp, tp8, b200) == 128 / 125 * 1024 / 1000
    assert expert_padding(moe, tp8, b200) == 128 / 125 * 1024 / 1000  # 125 -> 128 (a multiple of 64) gated too
    assert expert_padding(dataclasses.replace(moe, moe_intermediate_size=1440), tp8, b200) == 192 / 180 * 1.024
    assert expert_padding(dataclasses.replace(plain_mlp, moe_intermediate_size=1440), tp8, b200) == 256 / 180 * 1.024
    # the workspace: none for the monolithic kernel, one M x H buffer for TRTLLM-Gen's modular form
    assert moe_workspace_bytes(moe, cfg, b200) == 0
    assert moe_workspace_bytes(dataclasses.replace(moe, moe_routing="plain"), cfg, b200) == 512 * 1000 * 2
    assert moe_workspace_bytes(moe, cfg, lookup("RTX-5090")) == 512 * 1000 * 2


def test_the_forward_buffers_per_token_by_hand():
    # hidden 1000, 8 heads and 2 KV heads of 100, intermediate 3000, bf16; CO: 4 x hidden + 1 x QKV + 3 x MLP
    arch = toy_arch()
    assert forward_token_bytes(arch, toy_config(), CO) == (4 * 1000 + (8 + 2 * 2) * 100 + 3 * 3000) * 2
    # TP 2: 4 + 2 x 1 heads of 100 and 1500 of the intermediate size on each GPU
    assert forward_token_bytes(arch, toy_config(tensor_parallel_size=2), CO) == (4000 + 600 + 4500) * 2
    # whole heads per GPU: 5 KV heads over 2 GPUs are 2 each, 13 heads 6 each
    wide = toy_arch(num_heads=13, num_kv_heads=5)
    assert forward_token_bytes(wide, toy_config(tensor_parallel_size=2), CO) == (4000 + (6 + 2 * 2) * 100 + 4500) * 2


@pytest.mark.parametrize("model,pooling", [("meta-llama/Llama-3.1-8B-Instruct", False),
                                           ("Qwen/Qwen3-Embedding-8B", True)])
def test_the_plan_subtracts_the_graph_estimate_of_its_model(model, pooling):
    plan = make_plan(PlanRequest(model=model, gpu="H100", max_model_len=4096))
    arch, cfg, gpu = plan.arch, plan.config, plan.gpu
    assert arch.pooling is pooling
    expected = cuda_graph_bytes(arch, cfg, gpu, arch.num_layers, PRIOR)
    assert plan.memory.per_gpu.cuda_graph_gib * GIB == pytest.approx(expected, rel=1e-12)
    # a pooling model's missing FULL graphs are not in it
    generating = dataclasses.replace(arch, pooling=False)
    assert (expected < cuda_graph_bytes(generating, cfg, gpu, arch.num_layers, PRIOR)) is pooling


def test_float32_gates_and_score_correction_biases_by_hand():
    """vLLM builds GLM-4.5's and MiniMax-M2's MoE gates with params_dtype float32 (glm4_moe.py, minimax_m2.py
    GateLinear) and every score-correction bias as a float32 parameter; DeepSeek's gate is in the model dtype."""
    from estimator.memory import weights_per_stage

    def routers(model):
        plan = make_plan(PlanRequest(model=model, gpu="H200", tensor_parallel_size=8, num_gpus=8, max_model_len=8192))
        gates = [t for t in plan.arch.tensors if t.kind == "router"]
        return plan, gates

    glm, gates = routers("zai-org/GLM-4.6")
    # 92 layers, the first 3 dense: 89 gates of 160 experts x 5120 and 89 biases of 160, all float32
    assert {(t.rows, t.cols, t.fixed_bytes) for t in gates} == {(160, 5120, 4), (160, 1, 4)} and len(gates) == 2 * 89
    # replicated on every rank: the gates' extra two bytes per element are 0.136 GiB per GPU
    extra = 89 * 160 * (5120 + 1) * 2
    assert extra / GIB == pytest.approx(0.1358, abs=1e-4)
    bf16 = dataclasses.replace(glm.arch, tensors=tuple(dataclasses.replace(t, fixed_bytes=0) for t in glm.arch.tensors))
    assert weights_per_stage(glm.arch, glm.config, None, glm.gpu, allocated=False)[0] - \
        weights_per_stage(bf16, glm.config, None, glm.gpu, allocated=False)[0] == extra
    _, minimax = routers("MiniMaxAI/MiniMax-M2")
    assert {t.fixed_bytes for t in minimax} == {4}
    _, deepseek = routers("deepseek-ai/DeepSeek-V3")
    assert {(t.cols, t.fixed_bytes) for t in deepseek} == {(7168, 0), (1, 4)}  # model-dtype gate, float32 bias
