"""NVIDIA ModelOpt checkpoints, planned from a directory as vLLM 0.32 loads them: the quantization config read from
config.json or the older hf_quant_config.json, weights by format, the KV cache dtype auto stands for, and the
formats the planner refuses (its vLLM-side twin is test_modelopt_against_vllm.py)."""

import json

import pytest
from click.testing import CliRunner

from estimator import architecture, gpus
from estimator.cli import main
from estimator.coefficients import DEFAULT
from estimator.errors import PlannerError
from estimator.gpus import GIB
from estimator.memory import weights_per_stage
from estimator.model_source import catalog_configs
from estimator.plan import PlanRequest, make_plan
from estimator.search import search
from estimator.workload import Workload

LLAMA = "meta-llama/Llama-3.1-8B-Instruct"
LEGACY_FP8 = {"producer": {"name": "modelopt", "version": "0.15.0"},
              "quantization": {"quant_algo": "FP8", "kv_cache_quant_algo": "FP8", "exclude_modules": ["lm_head"]}}
NVFP4 = {"quant_method": "modelopt", "quant_algo": "NVFP4", "group_size": 16, "ignore": ["lm_head"]}


def checkpoint(tmp_path, quant: dict, legacy_file: bool = False, name: str = "ckpt"):
    """Llama-3.1-8B's config.json with ``quant`` in it, or beside it in hf_quant_config.json."""
    directory = tmp_path / name
    directory.mkdir()
    config = dict(catalog_configs()[LLAMA])
    if legacy_file:
        (directory / "hf_quant_config.json").write_text(json.dumps(quant))
    else:
        config["quantization_config"] = quant
    (directory / "config.json").write_text(json.dumps(config))
    return str(directory)


def weights(plan) -> float:
    return weights_per_stage(plan.arch, plan.config, plan.quant, plan.gpu, allocated=False)[0]


def linear_params(arch, lm_head: bool = False):
    names = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    return [t for t in arch.tensors if t.name.endswith(names) or (lm_head and t.name == "lm_head")]


def test_the_older_hf_quant_config_json_is_read_beside_config_json_with_its_fp8_kv_cache(tmp_path):
    plan = make_plan(PlanRequest(model=checkpoint(tmp_path, LEGACY_FP8, legacy_file=True), gpu="H100",
                                 max_model_len=8192))
    assert (plan.config.quantization, plan.config.kv_cache_dtype, plan.config.kv_dtype_bytes) == \
        ("modelopt", "fp8_e4m3", 1)
    # every linear layer 1 byte a weight plus one fp32 scale where bf16 took 2; embeddings, LM head (excluded),
    # norms and the rotary tables as before
    bf16 = make_plan(PlanRequest(model=LLAMA, gpu="H100", max_model_len=8192))
    assert weights(bf16) - weights(plan) == sum(2 * t.numel - (t.numel + 4) for t in linear_params(plan.arch))
    # auto stands for the checkpoint's fp8 cache: said among the defaults, and nothing added to `vllm serve`
    assert "kv-cache-dtype=fp8_e4m3 (the checkpoint's KV cache quantization; what auto means here)" in \
        plan.config.defaults
    assert plan.serve_argv == [plan.serve_argv[0], "--max-model-len", "8192"]
    explicit = make_plan(PlanRequest(model=plan.serve_argv[0], gpu="H100", max_model_len=8192, kv_cache_dtype="auto"))
    assert explicit.memory.num_gpu_blocks == plan.memory.num_gpu_blocks and explicit.serve_argv == plan.serve_argv
    wider = make_plan(PlanRequest(model=plan.serve_argv[0], gpu="H100", max_model_len=8192,
                                  kv_cache_dtype="bfloat16"))
    assert wider.memory.bytes_per_block == 2 * plan.memory.bytes_per_block
    assert wider.serve_argv[-2:] == ["--kv-cache-dtype", "bfloat16"]


def test_config_json_wins_over_hf_quant_config_json(tmp_path):
    directory = checkpoint(tmp_path, NVFP4)
    (tmp_path / "ckpt" / "hf_quant_config.json").write_text(json.dumps(LEGACY_FP8))
    assert make_plan(PlanRequest(model=directory, gpu="B200")).config.quantization == "modelopt_fp4"


def test_nvfp4_weights_by_hand(tmp_path):
    plan = make_plan(PlanRequest(model=checkpoint(tmp_path, NVFP4), gpu="B200", max_model_len=8192))
    assert plan.config.kv_cache_dtype == "auto"  # no KV scheme in the checkpoint: the model dtype
    # half a byte a weight and one float8 scale per 16 along the input, where bf16 took 2 bytes
    bf16 = make_plan(PlanRequest(model=LLAMA, gpu="B200", max_model_len=8192))
    linear = linear_params(plan.arch)
    assert weights(bf16) - weights(plan) == sum(2 * t.numel - (t.numel // 2 + t.numel // 16) for t in linear)
    assert plan.memory.per_gpu.weights_gib == pytest.approx(weights(plan) / GIB, abs=1e-4)


def test_modelopt_quantizes_the_lm_head_unless_its_exclusions_name_it(tmp_path):
    kept = make_plan(PlanRequest(model=checkpoint(tmp_path, NVFP4, name="a"), gpu="B200", max_model_len=8192))
    head = next(t for t in kept.arch.tensors if t.name == "lm_head")
    quantized = make_plan(PlanRequest(model=checkpoint(tmp_path, dict(NVFP4, ignore=[]), name="b"), gpu="B200",
                                      max_model_len=8192))
    saved = weights(kept) - weights(quantized)
    assert saved == 2 * head.numel - (head.numel // 2 + head.numel // 16)


def test_the_quantization_flag_must_name_the_checkpoints_method(tmp_path):
    directory = checkpoint(tmp_path, NVFP4)
    assert make_plan(PlanRequest(model=directory, gpu="B200", quantization="modelopt_fp4")).serve_argv[-2:] == \
        ["--quantization", "modelopt_fp4"]
    with pytest.raises(PlannerError, match=r"^--quantization modelopt does not match the checkpoint's quantization "
                                           r"\(modelopt_fp4\)"):
        make_plan(PlanRequest(model=directory, gpu="B200", quantization="modelopt"))


@pytest.mark.parametrize("quant,message", [
    ({"quant_method": "modelopt", "quant_algo": "MIXED_PRECISION", "ignore": []},
     "ModelOpt MIXED_PRECISION needs a non-empty quantized_layers mapping in its quantization config (vLLM requires "
     "it); fix the checkpoint's config.json or hf_quant_config.json"),
    ({"quant_method": "modelopt", "quant_algo": "MIXED_PRECISION", "ignore": [],
      "quantized_layers": {"model.layers.0.mlp.down_proj": {"quant_algo": "IQ2_XS"}}},
     "ModelOpt MIXED_PRECISION layer model.layers.0.mlp.down_proj uses quant_algo 'IQ2_XS', which the planner does "
     "not size"),
    ({"producer": {"name": "modelopt"}, "quantization": {"quant_algo": "MIXED_PRECISION", "exclude_modules": []}},
     "ModelOpt quant_algo 'MIXED_PRECISION' is not one vLLM loads from this config"),
    ({"quant_method": "modelopt", "quant_algo": "INT4_AWQ"},
     "ModelOpt quant_algo 'INT4_AWQ' is not one vLLM loads from this config (supported: FP8, "
     "FP8_PER_CHANNEL_PER_TOKEN, FP8_PB_WO, NVFP4, W4A16_NVFP4, MXFP8, MIXED_PRECISION); the planner will not guess "
     "its memory"),
    ({"producer": {"name": "modelopt"}, "quantization": {"quant_algo": "MXFP8", "kv_cache_quant_algo": None,
                                                          "exclude_modules": []}},
     "ModelOpt quant_algo 'MXFP8' is not one vLLM loads from this config (supported: FP8, FP8_PER_CHANNEL_PER_TOKEN, "
     "FP8_PB_WO, NVFP4)"),
    ({"producer": {"name": "modelopt"}, "quantization": {"quant_algo": "NVFP4", "exclude_modules": []}},
     "ModelOpt NVFP4 quantization config lacks group_size, kv_cache_quant_algo, which vLLM requires"),
    ({"quant_method": "modelopt", "quant_algo": "FP8", "ignore": "lm_head"},
     "the ModelOpt exclusion list (exclude_modules / ignore) is not a list; fix the checkpoint's quantization "
     "config"),
    ({"quant_method": "modelopt", "quantization": "FP8"},
     "the ModelOpt quantization config's \"quantization\" entry is not an object; fix the checkpoint's "
     "quantization config"),
    ({"quant_method": "modelopt", "quantization": {"quant_algo": "MXFP8", "exclude_modules": []}},
     "ModelOpt MXFP8 quantization config lacks kv_cache_quant_algo, which vLLM requires; fix the checkpoint's "
     "hf_quant_config.json"),
    ({"quant_method": "modelopt", "quantization": {"quant_algo": "MXFP8", "kv_cache_quant_algo": None}},
     "ModelOpt MXFP8 quantization config lacks exclude_modules, which vLLM requires"),
    ({"quant_method": "modelopt", "ignore": []}, "ModelOpt quantization_config has no quant_algo"),
    ({"quant_method": "modelopt", "quantization": {"quant_algo": "NVFP4", "kv_cache_quant_algo": "NVFP4",
                                                   "group_size": 16, "exclude_modules": []}},
     "the checkpoint stores its KV cache as nvfp4, which the planner does not size; give --kv-cache-dtype fp8 or "
     "bfloat16 to plan that instead"),
])
def test_what_the_planner_cannot_size_is_one_line_and_exit_1(tmp_path, quant, message):
    result = CliRunner().invoke(main, ["plan", "--model", checkpoint(tmp_path, quant), "--gpu", "B200"])
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: {message}") and result.output.count("\n") == 1
    assert "Traceback" not in result.output


def test_an_fp4_kv_checkpoint_plans_with_the_kv_cache_dtype_given(tmp_path):
    quant = {"quant_method": "modelopt", "quantization": {"quant_algo": "NVFP4", "kv_cache_quant_algo": "NVFP4",
                                                          "group_size": 16, "exclude_modules": []}}
    plan = make_plan(PlanRequest(model=checkpoint(tmp_path, quant), gpu="B200", kv_cache_dtype="fp8"))
    assert plan.config.kv_dtype_bytes == 1 and plan.serve_argv[-2:] == ["--kv-cache-dtype", "fp8"]


def test_the_search_sizes_auto_as_the_checkpoints_kv_cache(tmp_path):
    # On an L4 with 256 sequences of 8k tokens the KV pool binds: fp8 holds twice the tokens of bf16.
    workload = Workload(input_len=4000, output_len=1000, concurrency=256)
    fixed = {"tensor_parallel_size": 1, "max_num_seqs": 256, "max_model_len": 8192, "max_num_batched_tokens": 8192}

    def best_tps(quant, kv):
        source = json.loads(open(checkpoint(tmp_path, quant, name=f"{len(str(quant))}-{kv}") + "/config.json").read())
        arch = architecture.from_config(source, "ckpt")
        return search(arch, gpus.lookup("L4"), 1, dict(fixed, kv_cache_dtype=kv), workload, DEFAULT) \
            .best["output_tokens_per_s"]

    assert best_tps(LEGACY_FP8["quantization"] | {"quant_method": "modelopt", "ignore": ["lm_head"]}, "auto") == \
        best_tps(LEGACY_FP8["quantization"] | {"quant_method": "modelopt", "ignore": ["lm_head"]}, "fp8")
    without_kv = {"quant_method": "modelopt", "quant_algo": "FP8", "ignore": ["lm_head"]}
    assert best_tps(without_kv, "auto") < best_tps(without_kv, "fp8")


# What --kv-cache-dtype auto stands for, by the checkpoint's KV settings (vLLM's get_kv_cache_quant_algo_string,
# checked case by case against vLLM itself in test_modelopt_against_vllm.py): None leaves the model dtype.
KV_SETTINGS = [
    ({"kv_cache_quant_algo": "FP8"}, "fp8_e4m3"),
    ({"kv_cache_quant_algo": "fp8"}, "fp8_e4m3"),
    ({"kv_cache_quant_algo": "NVFP4"}, "nvfp4"),
    ({"kv_cache_quant_algo": "INT8"}, None),  # vLLM warns and keeps auto
    ({"kv_cache_quant_algo": None}, None),
    ({}, None),
    ({"kv_cache_scheme": {"dynamic": False, "num_bits": 8, "type": "float"}}, "fp8_e4m3"),
    ({"kv_cache_scheme": {"dynamic": True, "num_bits": 8, "type": "float"}}, None),
    ({"kv_cache_scheme": {"num_bits": 8, "type": "float"}}, None),  # dynamic must be false, not missing
    ({"kv_cache_scheme": {"dynamic": False, "num_bits": 8, "type": "int"}}, None),
    ({"kv_cache_scheme": {"num_bits": 4, "type": "float"}}, "nvfp4"),
    ({"kv_cache_scheme": {"num_bits": 4, "type": "int"}}, None),
    # the scheme dict is read before the algo string
    ({"kv_cache_scheme": {"dynamic": False, "num_bits": 8, "type": "float"}, "kv_cache_quant_algo": "NVFP4"},
     "fp8_e4m3"),
]


@pytest.mark.parametrize("settings,expected", KV_SETTINGS)
def test_the_kv_cache_dtype_a_checkpoint_names(settings, expected):
    from estimator.quantization import from_config

    flat = from_config({"quant_method": "modelopt", "quant_algo": "FP8", "ignore": [], **settings})
    assert flat.kv_cache_dtype == expected
    nested = from_config({"quant_method": "modelopt", "quantization": {
        "quant_algo": "FP8", "exclude_modules": [], **settings}})
    assert nested.kv_cache_dtype == expected
    # the nested object's settings come first, then the top level's
    if settings:
        outer = from_config({"quant_method": "modelopt", **settings, "quantization": {
            "quant_algo": "FP8", "exclude_modules": [], "kv_cache_quant_algo": "FP8"}})
        assert outer.kv_cache_dtype == (expected if "kv_cache_scheme" in settings else "fp8_e4m3")


@pytest.mark.parametrize("config,method", [
    ({"quant_method": "modelopt", "quant_algo": "FP8"}, ("modelopt", 8, None, None, False)),
    ({"quant_method": "modelopt", "quant_algo": "fp8_per_channel_per_token"}, ("modelopt", 8, None, None, True)),
    ({"quant_method": "modelopt", "quant_algo": "FP8_PB_WO"}, ("modelopt", 8, None, (128, 128), False)),
    ({"quant_method": "modelopt_fp4", "quant_algo": "NVFP4"}, ("modelopt_fp4", 4, 16, None, False)),
    ({"quant_method": "modelopt", "quant_algo": "NVFP4", "group_size": 32}, ("modelopt_fp4", 4, 32, None, False)),
    ({"quant_method": "modelopt", "quant_algo": "W4A16_NVFP4"}, ("modelopt_fp4", 4, 16, None, False)),
    ({"quant_method": "modelopt", "quant_algo": "MXFP8"}, ("modelopt_mxfp8", 8, 32, None, False)),
    ({"quantization": {"quant_algo": "FP8_PB_WO", "modelopt_quant_config": {}}}, ("modelopt", 8, None, (128, 128),
                                                                                  False)),
    ({"producer": {"name": "modelopt"}, "quantization": {"quant_algo": "nvfp4", "group_size": 16,
                                                          "kv_cache_quant_algo": None, "exclude_modules": []}},
     ("modelopt_fp4", 4, 16, None, False)),
])
def test_each_modelopt_format_is_read_as_vllm_names_and_stores_it(config, method):
    from estimator.quantization import from_config

    scheme = from_config(config)
    assert (scheme.method, scheme.weight_bits, scheme.group_size, scheme.block, scheme.channel_scales) == method
    assert scheme.scale_bytes == (1 if method[2] else 2) and scheme.substring_ignore and not scheme.online
    assert scheme.fp8_compute == (method[1] == 8)


def test_nvfp4_runs_w4a4_unless_the_checkpoint_quantizes_weights_only():
    from estimator.quantization import from_config

    assert from_config(NVFP4).fp4_activations and from_config(NVFP4).nvfp4
    assert not from_config(dict(NVFP4, quant_algo="W4A16_NVFP4")).fp4_activations
    # ModelOptNvFp4Config: NVFP4 whose every config group leaves activations out runs as W4A16
    groups = {"group_0": {"weights": {"num_bits": 4}, "input_activations": None},
              "group_1": {"weights": {"num_bits": 4}, "input_activations": None}}
    assert not from_config(dict(NVFP4, config_groups=groups)).fp4_activations
    groups["group_1"]["input_activations"] = {"num_bits": 4, "type": "float"}
    assert from_config(dict(NVFP4, config_groups=groups)).fp4_activations
    assert from_config(dict(NVFP4, config_groups={})).fp4_activations
    assert not from_config({"quant_method": "modelopt", "quant_algo": "MXFP8", "ignore": []}).nvfp4


def test_modelopt_exclusions_match_anywhere_in_the_name_or_as_wildcards():
    from estimator.quantization import from_config

    scheme = from_config({"quant_method": "modelopt", "quant_algo": "FP8",
                          "ignore": ["lm_head", "model.layers.0.self_attn*", "*.mlp.gate", "visual"]})
    assert [scheme.skips(m) for m in ("model.layers.0.self_attn.q_proj", "model.layers.10.self_attn.q_proj",
                                      "model.layers.3.mlp.gate", "model.layers.3.mlp.gate_proj",
                                      "model.visual.blocks.0.attn.qkv", "lm_head")] == \
        [True, False, True, False, True, True]
    assert not scheme.quantizes_lm_head
    assert from_config({"quant_method": "modelopt", "quant_algo": "FP8", "ignore": ["*.mlp.gate"]}).quantizes_lm_head
    assert not from_config({"quant_method": "modelopt", "quant_algo": "FP8", "ignore": ["*head"]}).quantizes_lm_head


def mixed_qwen_moe(tmp_path, with_layers: bool = True, lm_head: bool = False) -> str:
    """Qwen3-30B-A3B as a ModelOpt MIXED_PRECISION checkpoint: FP8 attention, NVFP4 routed experts."""
    config = dict(catalog_configs()["Qwen/Qwen3-30B-A3B"])
    layers = {}
    for i in range(config["num_hidden_layers"]):
        layers |= {f"model.layers.{i}.self_attn.{p}": {"quant_algo": "FP8"} for p in ("q_proj", "k_proj", "v_proj",
                                                                                      "o_proj")}
        layers |= {f"model.layers.{i}.mlp.experts.{e}.{p}": {"quant_algo": "NVFP4", "group_size": 16}
                   for e in range(1) for p in ("gate_proj", "up_proj", "down_proj")}
    if lm_head:
        layers["lm_head"] = {"quant_algo": "FP8"}
    quant = {"quant_method": "modelopt", "quant_algo": "MIXED_PRECISION", "ignore": [] if lm_head else ["lm_head"],
             "kv_cache_scheme": {"dynamic": False, "num_bits": 8, "type": "float"}}
    directory = tmp_path / f"mixed-{with_layers}-{lm_head}"
    directory.mkdir()
    if with_layers:
        quant["quantized_layers"] = layers
    else:  # older checkpoints keep the per-layer map only in hf_quant_config.json
        (directory / "hf_quant_config.json").write_text(json.dumps(
            {"producer": {"name": "modelopt"}, "quantization": {"quant_algo": "MIXED_PRECISION",
                                                                "quantized_layers": layers}}))
    (directory / "config.json").write_text(json.dumps(dict(config, quantization_config=quant)))
    return str(directory)


def test_mixed_precision_sizes_each_layer_by_its_algo(tmp_path):
    from estimator.memory import moe_kernel

    plan = make_plan(PlanRequest(model=mixed_qwen_moe(tmp_path), gpu="B200", max_model_len=8192))
    assert (plan.config.quantization, plan.config.kv_cache_dtype) == ("modelopt_mixed", "fp8_e4m3")
    bf16 = make_plan(PlanRequest(model="Qwen/Qwen3-30B-A3B", gpu="B200", max_model_len=8192))
    attention = [t for t in plan.arch.tensors if t.name.endswith(("q_proj", "k_proj", "v_proj", "o_proj"))]
    experts = [t for t in plan.arch.tensors if t.kind == "expert"]
    # FP8 attention: a byte a weight and one fp32 scale; NVFP4 experts: half a byte and a float8 scale per 16
    saved = sum(2 * t.numel - (t.numel + 4) for t in attention) + \
        sum(2 * t.numel - (t.numel // 2 + t.numel // 16) for t in experts)
    assert weights(bf16) - weights(plan) == saved
    # the experts' NVFP4 picks TRTLLM-Gen on a B200, though most entries (attention's four a layer) are FP8
    assert plan.arch.quant.weight_bits == 8 and moe_kernel(plan.arch, plan.config, plan.gpu) == "trtllm"
    # the per-layer map read from hf_quant_config.json where config.json leaves it out, as vLLM reads it
    older = make_plan(PlanRequest(model=mixed_qwen_moe(tmp_path, with_layers=False), gpu="B200", max_model_len=8192))
    assert weights(older) == weights(plan)


def test_mixed_precision_quantizes_the_lm_head_only_where_an_entry_names_it(tmp_path):
    plan = make_plan(PlanRequest(model=mixed_qwen_moe(tmp_path), gpu="B200", max_model_len=8192))
    named = make_plan(PlanRequest(model=mixed_qwen_moe(tmp_path, lm_head=True), gpu="B200", max_model_len=8192))
    head = next(t for t in plan.arch.tensors if t.name == "lm_head")
    assert not plan.arch.quant.quantizes_lm_head and named.arch.quant.quantizes_lm_head
    assert weights(plan) - weights(named) == 2 * head.numel - (head.numel + 4)


@pytest.mark.parametrize("layers,expected", [
    # a layer's own entry; else the first entry below it; experts by any entry below them, else below their MLP
    ({"model.layers.0.mlp.down_proj": {"quant_algo": "MXFP8"}}, {"model.layers.0.mlp.down_proj": "modelopt_mxfp8"}),
    ({"model.layers.0.mlp.down_proj.weight": {"quant_algo": "MXFP8"}},
     {"model.layers.0.mlp.down_proj": "modelopt_mxfp8"}),
    ({"model.layers.0.mlp.experts.7.up_proj": {"quant_algo": "NVFP4"}},
     {"model.layers.0.mlp.experts.down_proj": "modelopt_fp4", "model.layers.0.mlp.down_proj": None}),
    ({"model.layers.0.mlp.shared_expert.up_proj": {"quant_algo": "FP8_PB_WO", "group_size": 64}},
     {"model.layers.0.mlp.experts.gate_up_proj": "fp8", "model.layers.0.mlp.shared_expert.gate_proj": None,
      "model.layers.1.mlp.experts.gate_up_proj": None}),
])
def test_mixed_precision_layer_lookup(layers, expected):
    from estimator.memory import tensor_scheme
    from estimator.quantization import from_config

    scheme = from_config({"quant_method": "modelopt", "quant_algo": "MIXED_PRECISION", "ignore": [],
                          "quantized_layers": layers})
    got = {}
    for name in expected:
        found = tensor_scheme(name, "expert" if ".experts." in name else "linear", scheme)
        got[name] = found.method if found else None
    assert got == expected
    block = tensor_scheme("model.layers.0.mlp.experts.gate_up_proj", "expert", scheme)
    if block is not None and block.method == "fp8":
        assert block.block == (64, 64)


def mixed(layers, **settings) -> dict:
    return {"quant_method": "modelopt", "quant_algo": "MIXED_PRECISION", "ignore": [], "quantized_layers": layers,
            **settings}


def test_mixed_precision_details_follow_vllms_reading():
    from estimator.memory import tensor_scheme
    from estimator.quantization import from_config

    # experts take an entry below the experts before one below their MLP
    s = from_config(mixed({"model.layers.0.mlp.down_proj": {"quant_algo": "MXFP8"},
                           "model.layers.0.mlp.experts.3.up_proj": {"quant_algo": "NVFP4"}}))
    assert tensor_scheme("model.layers.0.mlp.experts.gate_up_proj", "expert", s).nvfp4
    # NVFP4's group: the config's, else the first NVFP4-family entry's, else 16
    entries = {"a.down_proj": {"quant_algo": "FP8_PB_WO", "group_size": 64},
               "b.down_proj": {"quant_algo": "W4A16_NVFP4", "group_size": 32},
               "c.down_proj": {"quant_algo": "nvfp4"}}
    assert [from_config(mixed(entries)).scheme_for(n, "linear").group_size for n in entries] == [None, 32, 32]
    assert from_config(mixed(entries, group_size=8)).scheme_for("c.down_proj", "linear").group_size == 8
    nvfp4_first = {"c.down_proj": {"quant_algo": "NVFP4", "group_size": 32},
                   "b.down_proj": {"quant_algo": "W4A16_NVFP4", "group_size": 8}}
    assert from_config(mixed(nvfp4_first)).scheme_for("b.down_proj", "linear").group_size == 32
    assert from_config(mixed({"c.down_proj": {"quant_algo": "NVFP4"}})).scheme_for("c.down_proj", "linear") \
        .group_size == 16
    block = from_config(mixed({"x.experts.0.up_proj": {"quant_algo": "FP8_BLOCK_SCALES"}})) \
        .scheme_for("x.experts.up_proj", "expert")
    assert (block.method, block.weight_bits, block.block, block.fp8_compute) == ("fp8", 8, (128, 128), True)
    # the KV cache named in the nested form
    nested = {"quant_method": "modelopt", "quantization": {"quant_algo": "MIXED_PRECISION", "kv_cache_quant_algo": "FP8",
                                                           "exclude_modules": ["layers.0.self_attn"],
                                                           "quantized_layers": {"x.q_proj": {"quant_algo": "FP8"}}}}
    scheme = from_config(nested)
    assert scheme.kv_cache_dtype == "fp8_e4m3"
    # ModelOpt's exclusion rule: anywhere in the name
    assert scheme.skips("model.layers.0.self_attn.q_proj") and not scheme.skips("model.layers.10.self_attn.q_proj")
    # the LM head: only where an entry names it and no exclusion does
    head = {"lm_head": {"quant_algo": "FP8"}}
    assert from_config(mixed(head)).quantizes_lm_head
    assert not from_config(mixed(head, ignore=["lm_*"])).quantizes_lm_head
    assert not from_config(mixed({"x.q_proj": {"quant_algo": "FP8"}})).quantizes_lm_head


@pytest.mark.parametrize("layers,message", [
    (["model.layers.0.mlp"], "ModelOpt MIXED_PRECISION needs a non-empty quantized_layers mapping"),
    ({"x.q_proj": "FP8"}, "ModelOpt MIXED_PRECISION layer x.q_proj uses quant_algo None, which the planner does "
                          "not size (supported: FP8, FP8_PER_CHANNEL_PER_TOKEN, FP8_PB_WO, NVFP4, W4A16_NVFP4, MXFP8, "
                          "FP8_BLOCK_SCALES); it will not guess its memory"),
    ({"x.q_proj": {"group_size": 16}}, "ModelOpt MIXED_PRECISION layer x.q_proj uses quant_algo None"),
    ({"x.q_proj": {"quant_algo": "FP8"}, "ignore": "lm_head"},
     "the ModelOpt exclusion list (exclude_modules / ignore) is not a list; fix the checkpoint's quantization config"),
])
def test_a_mixed_map_the_planner_cannot_read_is_refused(layers, message):
    from estimator.quantization import from_config

    config = mixed(layers)
    if isinstance(layers, dict) and "ignore" in layers:
        config = mixed({k: v for k, v in layers.items() if k != "ignore"}, ignore=layers["ignore"])
    with pytest.raises(PlannerError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        from_config(config)


@pytest.mark.parametrize("config_json,legacy,kept", [
    # the nested form in config.json, the flat form in the file
    ({"quant_method": "modelopt", "quantization": {"quant_algo": "MIXED_PRECISION"}},
     {"quantized_layers": {"f": {"quant_algo": "FP8"}}}, {"f"}),
    # config.json's own map is kept
    ({"quant_method": "modelopt", "quant_algo": "MIXED_PRECISION", "quantized_layers": {"c": {"quant_algo": "FP8"}}},
     {"quantization": {"quantized_layers": {"f": {"quant_algo": "FP8"}}}}, {"c"}),
    # not a mixed checkpoint: nothing is taken from the file
    ({"quant_method": "modelopt", "quant_algo": "FP8"}, {"quantization": {"quantized_layers": {"f": {}}}}, set()),
])
def test_the_per_layer_map_comes_from_hf_quant_config_json_only_where_config_json_lacks_it(config_json, legacy,
                                                                                            kept):
    from estimator.model_source import _mixed_layers_from_file

    _mixed_layers_from_file(config_json, legacy)
    settings = config_json.get("quantization", config_json)
    assert set(settings.get("quantized_layers", {})) == kept
