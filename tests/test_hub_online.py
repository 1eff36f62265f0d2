"""Issue 13: the online path, for real, through huggingface_hub against a local server speaking the hub's file API
(HF_ENDPOINT): configs, generation_config and safetensors metadata; a pinned revision; a gated repository, a
missing file, a slow server, one that drops the connection, and one that is not there at all."""

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from estimator.model_source import catalog_config
from estimator.plan import PlanRequest, make_plan
from tests.fake_hub import SLOW_S, FakeHub, safetensors_header

PARAMETERS = 596_049_920  # Qwen3-0.6B's published total
# What the hub might publish for an entry the catalog could only reconstruct: here, a shorter context
RECONSTRUCTED_ON_HUB = dict(catalog_config("Qwen/Qwen3.5-27B"), text_config=dict(
    catalog_config("Qwen/Qwen3.5-27B")["text_config"], max_position_embeddings=131072))


@pytest.fixture(scope="module")
def hub():
    config = catalog_config("Qwen/Qwen3-0.6B")
    pinned = dict(config, max_position_embeddings=8192)
    files = {
        ("acme/tiny", "main", "config.json"): json.dumps(config).encode(),
        ("acme/tiny", "main", "generation_config.json"): json.dumps({"temperature": 0.6, "top_p": 0.95}).encode(),
        ("acme/tiny", "main", "model.safetensors"): safetensors_header({"BF16": PARAMETERS}),
        ("acme/tiny", "v1", "config.json"): json.dumps(pinned).encode(),
        ("acme/noconfig", "main", "README.md"): b"no config here",
        # a Qwen2.5-VL repository: its preprocessor_config.json sizes the vision tower's profiling pass
        ("acme/vl", "main", "config.json"): json.dumps(catalog_config("Qwen/Qwen2.5-VL-7B-Instruct")).encode(),
        ("acme/vl", "main", "preprocessor_config.json"): json.dumps({"min_pixels": 3136,
                                                                     "max_pixels": 12845056}).encode(),
        # a sentence-transformers repository: vLLM serves it as a pooling (embedding) model
        ("acme/embed", "main", "config.json"): json.dumps(config).encode(),
        ("acme/embed", "main", "modules.json"): json.dumps([{"idx": 0, "name": "0", "path": "",
                                                              "type": "sentence_transformers.models.Transformer"}]).encode(),
        # a ModelOpt checkpoint of ModelOpt 0.29 and before: its quantization config beside config.json
        ("acme/fp8", "main", "config.json"): json.dumps(catalog_config("meta-llama/Llama-3.1-8B-Instruct")).encode(),
        # a catalog entry reconstructed from its model card: the hub's own config.json wins where it is there
        ("Qwen/Qwen3.5-27B", "main", "config.json"): json.dumps(RECONSTRUCTED_ON_HUB).encode(),
        ("acme/fp8", "main", "hf_quant_config.json"): json.dumps({
            "producer": {"name": "modelopt", "version": "0.15.0"},
            "quantization": {"quant_algo": "FP8", "kv_cache_quant_algo": "FP8", "exclude_modules": ["lm_head"]}}).encode(),
    }
    with FakeHub(files) as server:
        yield server


def plan(model, hub_url, tmp_path, *extra, offline=False, timeout_s="1"):
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_TOKEN")}
    env.update(HF_ENDPOINT=hub_url, HF_HOME=str(tmp_path / "hf"), HF_HUB_ETAG_TIMEOUT=timeout_s)
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    start = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "estimator", "plan", "--model", model, "--gpu", "H100", "--json",
                          *extra], capture_output=True, text=True, env=env, timeout=120)
    return run, time.monotonic() - start


def test_a_hub_vision_model_is_planned_with_its_processor_config(hub, tmp_path):
    run, _ = plan("acme/vl", hub.url, tmp_path, "--max-model-len", "32768")
    assert run.returncode == 0, run.stderr
    fetched = json.loads(run.stdout)
    catalog = make_plan(PlanRequest(model="Qwen/Qwen2.5-VL-7B-Instruct", gpu="H100", max_model_len=32768))
    assert fetched["memory"]["per_gpu"]["activation_gib"] == pytest.approx(catalog.memory.per_gpu.activation_gib,
                                                                          abs=1e-4)  # JSON rounds to 4 places
    assert not any("vision encoder" in w for w in fetched["warnings"])


def test_a_hub_model_is_planned_with_its_generation_config_and_exact_parameter_counts(hub, tmp_path):
    run, _ = plan("acme/tiny", hub.url, tmp_path)
    assert run.returncode == 0, run.stderr
    model = json.loads(run.stdout)["model"]
    assert model["source"] == "hub" and model["checkpoint_params"] == {"BF16": PARAMETERS}
    assert model["generation_config"] == {"temperature": 0.6, "top_p": 0.95}
    assert model["max_model_len"] == 40960
    # then from the local cache, with the hub out of reach
    cached, _ = plan("acme/tiny", "http://127.0.0.1:9", tmp_path, offline=True)
    assert cached.returncode == 0, cached.stderr
    assert json.loads(cached.stdout)["model"]["max_model_len"] == 40960


def test_a_sentence_transformers_repo_on_the_hub_is_planned_for_pooling(hub, tmp_path):
    generating, _ = plan("acme/tiny", hub.url, tmp_path)
    assert json.loads(generating.stdout)["config"]["runner"] == "generate"
    run, _ = plan("acme/embed", hub.url, tmp_path)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["config"]["runner"] == "pooling"
    # and again from the cache, offline: modules.json was kept with the config
    cached, _ = plan("acme/embed", "http://127.0.0.1:9", tmp_path, offline=True)
    assert cached.returncode == 0, cached.stderr
    assert json.loads(cached.stdout)["config"]["runner"] == "pooling"


def test_a_hub_modelopt_checkpoint_is_planned_with_its_hf_quant_config_json(hub, tmp_path):
    run, _ = plan("acme/fp8", hub.url, tmp_path, "--max-model-len", "8192")
    assert run.returncode == 0, run.stderr
    config = json.loads(run.stdout)["config"]
    assert (config["quantization"], config["kv_cache_dtype"]) == ("modelopt", "fp8_e4m3")
    # and from the cache, offline: the file was kept with the config
    cached, _ = plan("acme/fp8", "http://127.0.0.1:9", tmp_path, "--max-model-len", "8192", offline=True)
    assert cached.returncode == 0, cached.stderr
    assert json.loads(cached.stdout)["config"]["quantization"] == "modelopt"


def test_a_reconstructed_catalog_entry_gives_way_to_the_checkpoints_own_config(hub, tmp_path):
    run, _ = plan("Qwen/Qwen3.5-27B", hub.url, tmp_path)
    assert run.returncode == 0, run.stderr
    fetched = json.loads(run.stdout)
    assert (fetched["model"]["source"], fetched["model"]["max_model_len"]) == ("hub", 131072)
    assert not any("reconstructed" in w for w in fetched["warnings"])
    # no cache and no hub: the reconstruction answers, and says what it is
    stand_in, elapsed = plan("Qwen/Qwen3.5-27B", hub.url, tmp_path / "empty", offline=True)
    assert stand_in.returncode == 0, stand_in.stderr
    planned = json.loads(stand_in.stdout)
    assert (planned["model"]["source"], planned["model"]["max_model_len"]) == ("catalog", 262144)
    assert any(w.startswith("the catalog's config of Qwen/Qwen3.5-27B is reconstructed") and
               w.endswith("wherever the local Hugging Face cache or the hub has it") for w in planned["warnings"])
    # an unreachable hub costs one bounded probe, then the reconstruction answers
    unreachable, elapsed = plan("Qwen/Qwen3.5-27B", "http://127.0.0.1:9", tmp_path / "empty")
    assert unreachable.returncode == 0, unreachable.stderr
    assert json.loads(unreachable.stdout)["model"]["source"] == "catalog" and elapsed < 10


def test_a_revision_can_be_pinned(hub, tmp_path):
    run, _ = plan("acme/tiny", hub.url, tmp_path, "--revision", "v1")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["model"]["max_model_len"] == 8192
    missing, _ = plan("acme/tiny", hub.url, tmp_path, "--revision", "v9")
    assert missing.returncode == 1 and missing.stderr == "Error: acme/tiny has no revision 'v9' on the hub; check " \
                                                         "--revision\n"


@pytest.mark.parametrize("model, expected", [
    ("acme/gated", "acme/gated is gated on the hub: accept its license on huggingface.co, then set HF_TOKEN or run "
                   "`huggingface-cli login`"),
    ("acme/noconfig", "acme/noconfig has no config.json on the hub"),
    ("acme/unknown", "acme/unknown was not found on the Hugging Face hub (or it is private: set HF_TOKEN"),
    ("acme/drop", "the hub cannot be reached (RemoteProtocolError)"),
])
def test_hub_failures_are_one_line_naming_what_to_do(hub, tmp_path, model, expected):
    run, elapsed = plan(model, hub.url, tmp_path)
    assert run.returncode == 1 and run.stdout == ""
    assert len(run.stderr.splitlines()) == 1 and expected in run.stderr, run.stderr
    assert elapsed < 5


def test_a_slow_hub_is_given_up_on_after_the_timeout(hub, tmp_path):
    run, elapsed = plan("acme/slow", hub.url, tmp_path)
    assert run.returncode == 1
    assert "the Hugging Face hub did not answer within 1 s for acme/slow" in run.stderr
    assert "HF_HUB_OFFLINE" in run.stderr
    assert elapsed < SLOW_S


def test_an_unreachable_hub_is_a_clear_error_within_seconds(tmp_path):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run, elapsed = plan("acme/tiny", f"http://127.0.0.1:{port}", tmp_path, timeout_s="10")
    assert run.returncode == 1 and "the hub cannot be reached" in run.stderr and "HF_HUB_OFFLINE=1" in run.stderr
    assert elapsed < 5  # not huggingface_hub's retry loop (about 24 s)
