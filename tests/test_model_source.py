import json
import os
import struct
import subprocess
import sys

import pytest

from estimator.errors import PlannerError
from estimator.model_source import catalog_configs, resolve, safetensors_param_counts
from tests.conftest import ROOT, write_config

LLAMA = catalog_configs()["meta-llama/Llama-3.1-8B-Instruct"]


def write_safetensors(path, tensors):
    header, offset = {}, 0
    for name, (dtype, shape) in tensors.items():
        n = 1
        for d in shape:
            n *= d
        size = n * {"BF16": 2, "F32": 4, "I32": 4}[dtype]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    header["__metadata__"] = {"format": "pt"}
    blob = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + b"\0" * offset)


def test_catalog_ids_resolve_case_insensitively_without_network():
    src = resolve("META-LLAMA/llama-3.1-8b-instruct")
    assert src.kind == "catalog" and src.id == "meta-llama/Llama-3.1-8B-Instruct"


def test_local_directory_with_safetensors_headers(tmp_path):
    d = write_config(tmp_path / "m", LLAMA)
    write_safetensors(d / "model-00001.safetensors", {"a": ("BF16", [4, 8]), "b": ("F32", [3])})
    write_safetensors(d / "model-00002.safetensors", {"c": ("BF16", [2, 2])})
    (d / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 8192}))
    src = resolve(str(d))
    assert src.kind == "local" and src.config["hidden_size"] == 4096
    assert src.checkpoint_params == {"BF16": 36, "F32": 3}
    assert src.tokenizer_max_length == 8192


def test_broken_safetensors_header_is_ignored_not_fatal(tmp_path):
    f = tmp_path / "x.safetensors"
    f.write_bytes(b"\x10\x00")
    assert safetensors_param_counts([f]) is None


@pytest.mark.parametrize("content,message", [
    ('{"architectures": ["LlamaForCausalLM"], "hidden_size": 40', "is not valid JSON (Expecting"),
    ("", "is not valid JSON (Expecting value at line 1, column 1)"),
    ("[1, 2]", "does not hold a JSON object"),
])
def test_malformed_config_json(tmp_path, content, message):
    (tmp_path / "config.json").write_text(content)
    with pytest.raises(PlannerError) as err:
        resolve(str(tmp_path))
    assert str(err.value).startswith(f"{tmp_path / 'config.json'} ") and message in str(err.value)


def test_non_utf8_config(tmp_path):
    (tmp_path / "config.json").write_bytes(b'{"a": "\xff\xfe"}')
    with pytest.raises(PlannerError, match="is not UTF-8 text"):
        resolve(str(tmp_path))


def test_missing_directory_and_missing_config(tmp_path):
    with pytest.raises(PlannerError, match="^no such directory: ./nowhere; "):
        resolve("./nowhere")
    with pytest.raises(PlannerError, match="has no config.json"):
        resolve(str(tmp_path))


def test_unknown_hub_id_offline_is_one_clear_error():
    with pytest.raises(PlannerError) as err:
        resolve("someone/not-a-model")
    assert str(err.value).startswith("someone/not-a-model is not in the bundled catalog or the local Hugging Face "
                                     "cache and HF_HUB_OFFLINE is set")


def test_hub_model_from_the_local_cache_offline(tmp_path):
    """The real huggingface_hub path: a cached repo is found with HF_HUB_OFFLINE=1 (in a fresh process, since
    huggingface_hub reads HF_HUB_CACHE when imported)."""
    repo = tmp_path / "hub" / "models--acme--tiny-llama"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abcd")
    snap = write_config(repo / "snapshots" / "0123abcd", dict(LLAMA, num_hidden_layers=2))
    write_safetensors(snap / "model.safetensors", {"w": ("BF16", [10, 10])})
    env = dict(os.environ, HF_HUB_CACHE=str(tmp_path / "hub"), HF_HUB_OFFLINE="1")
    out = subprocess.run([sys.executable, "-m", "estimator", "plan", "--model", "acme/tiny-llama", "--gpu", "L4",
                          "--json"], capture_output=True, text=True, env=env, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    plan = json.loads(out.stdout)
    assert plan["model"]["source"] == "hub" and plan["model"]["id"] == "acme/tiny-llama"
    assert plan["model"]["num_layers"] == 2 and plan["model"]["checkpoint_params"] == {"BF16": 100}
    assert any("the checkpoint holds 100 parameters" in w for w in plan["warnings"])
