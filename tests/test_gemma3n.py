"""gemma-3n by hand: the rules its test models (tests/fixtures/models/gemma-3n*, transformers' defaults) exercise.
vLLM's own parameter counts, rope tables, KV sizing and parser are checked in test_parameters_against_vllm,
test_rope_tables, test_kv_against_vllm and test_serve_args_against_vllm."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from estimator.architecture import from_config
from estimator.cli import main
from estimator.errors import PlannerError
from estimator.memory import kv_cache_groups
from estimator.plan import PlanRequest, make_plan
from tests.conftest import tensor_weights

MODEL = str(Path(__file__).parent / "fixtures" / "models" / "gemma-3n")
TEXT = str(Path(__file__).parent / "fixtures" / "models" / "gemma-3n-text")


def raw(path: str) -> dict:
    return json.loads((Path(path) / "config.json").read_text())


def test_its_image_tower_cannot_be_sized_so_plans_leave_images_out():
    with pytest.raises(PlannerError) as err:
        make_plan(PlanRequest(model=MODEL, gpu="L4"))
    assert str(err.value) == (f"{MODEL}: the planner cannot size the image tower of Gemma3nForConditionalGeneration "
                              "(gemma-3n's is timm's MobileNet-V5); plan it without images: --limit-mm-per-prompt "
                              "'{\"image\": 0}' (vLLM then leaves that tower out) or --language-model-only")
    result = CliRunner().invoke(main, ["plan", "--model", MODEL, "--gpu", "L4"])
    assert result.exit_code == 1 and result.output.count("\n") == 1 and "MobileNet-V5" in result.output
    plan = make_plan(PlanRequest(model=MODEL, gpu="L4", limit_mm_per_prompt='{"image": 0}'))
    assert plan.serve_argv[plan.serve_argv.index("--limit-mm-per-prompt") + 1] == '{"image":0}'
    # the audio tower stays (681,348,640 parameters in transformers' encoder, 3,345,408 in vLLM's embedder)
    text_only = make_plan(PlanRequest(model=MODEL, gpu="L4", language_model_only=True))
    tower = (681_348_640 + 3_345_408) * 2 / 2**30
    assert (tensor_weights(plan) - tensor_weights(text_only)) / 2**30 == pytest.approx(tower, abs=1e-9)


def test_the_last_layers_share_earlier_caches_and_each_layer_has_its_width():
    text = from_config(raw(TEXT), "t")
    assert [i for i, a in enumerate(text.attention) if a.shares_kv] == list(range(20, 30))
    assert sorted(i for _, layers in kv_cache_groups(text) for i in layers) == list(range(20))
    gate = {t.name: t.rows for t in text.tensors if t.name.endswith("mlp.gate_proj")}
    assert gate["model.layers.9.mlp.gate_proj"] == 8192 and gate["model.layers.10.mlp.gate_proj"] == 6144
    assert text.intermediate_size == 8192  # the widest layer's, for the activation peak


def test_altup_and_laurel_by_hand():
    names = {t.name: t for t in from_config(raw(MODEL), "m").tensors}
    # 4 streams: the router (4 x 2,048), the coefficients (4 x (4 + 16)), three projections in and out
    assert (names["model.layers.0.altup.modality_router"].rows, names["model.layers.0.altup.modality_router"].cols) \
        == (4, 2048)
    assert names["model.layers.0.altup.correction_coefs+prediction_coefs"].numel == 4 * 20
    assert names["model.altup_projections"].numel == names["model.altup_unembed_projections"].numel == 3 * 2048 ** 2
    assert names["model.layers.0.laurel.linear_left"].numel == 64 * 2048
    # the mel axis: 128 -> 64 -> 32 columns after two stride-2 convolutions, times 32 channels
    assert names["audio_tower.subsample_conv_projection.input_proj_linear"].cols == 32 * 32


@pytest.mark.parametrize("change,message", [
    (dict(intermediate_size=[8192] * 3), "lists 3 intermediate sizes for 30 layers"),
    (dict(intermediate_size=[8192, "wide"]), "has intermediate_size=[8192, 'wide']; expected an integer or a list of "
                                             "positive integers"),
    (dict(num_kv_shared_layers=30), "shares the KV cache of all 30 layers"),
])
def test_configs_it_cannot_read_are_refused(change, message):
    with pytest.raises(PlannerError) as err:
        from_config(dict(raw(TEXT), **change), "acme/g3n")
    assert message in str(err.value) and "\n" not in str(err.value)


def test_keys_a_config_leaves_out_take_transformers_defaults_and_tables_sit_on_every_stage():
    from estimator.memory import stage_tensors

    text = raw(TEXT)
    sparse = {k: v for k, v in text.items() if k not in ("layer_types", "num_kv_shared_layers")}
    implicit = from_config(sparse, "t")
    # one global layer after every four sliding ones; no layer shares another's cache
    assert [a.kind for a in implicit.attention][:5] == ["sliding"] * 4 + ["full"]
    assert not any(a.shares_kv for a in implicit.attention)
    # one width for every layer
    uniform = from_config(dict(text, intermediate_size=4096), "t")
    assert {t.rows for t in uniform.tensors if t.name.endswith("mlp.gate_proj")} == {4096}
    # gemma3n.py builds the embeddings, per-layer tables, AltUp projections and final norm whatever the stage
    every = {"model.embed_tokens", "model.norm", "model.embed_tokens_per_layer", "model.per_layer_model_projection",
             "model.per_layer_projection_norm", "model.altup_projections", "model.altup_unembed_projections"}
    for stage in (0, 1):
        assert every <= {t.name for t in stage_tensors(implicit, 2, stage)}
