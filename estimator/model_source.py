"""Where a model's config.json comes from: a local directory, the bundled catalog, or the Hugging Face hub.

The hub goes through huggingface_hub, so its cache, HF_HOME/HF_HUB_CACHE and HF_HUB_OFFLINE=1 are honoured;
it is imported only when a model is neither local nor in the catalog. Safetensors headers, when at hand,
give exact per-dtype parameter counts of the checkpoint.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

from estimator.errors import PlannerError

MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024  # the format's own limit on the JSON header


@dataclass(frozen=True)
class ModelSource:
    id: str  # what `vllm serve` is given: the hub id or the local path
    kind: str  # catalog | local | hub
    config: dict
    checkpoint_params: dict[str, int] | None = None  # dtype -> parameters, from safetensors headers
    tokenizer_max_length: int | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)
    generation_config: dict | None = None  # the checkpoint's sampling defaults, when it publishes them
    # The repo ships a sentence-transformers modules.json, which makes vLLM's `--runner auto` pick pooling
    # (ModelConfig._get_default_runner_type, get_pooling_config).
    sentence_transformers: bool = False
    # The processor's preprocessor_config.json and video_preprocessor_config.json, where the model ships them:
    # {"image": {...}, "video": {...}} (a Qwen-VL tower's profiled item depends on their pixel limits).
    preprocessor: dict | None = None


@lru_cache(maxsize=1)
def _catalog_file() -> dict:
    return json.loads(resources.files("estimator").joinpath("data/models.json").read_text())


def _catalog() -> dict[str, dict]:
    return _catalog_file()["models"]


def _catalog_sentence_transformers() -> frozenset[str]:
    return frozenset(_catalog_file().get("sentence_transformers", ()))


def _catalog_preprocessor(model_id: str) -> dict | None:
    return _catalog_file().get("preprocessor_configs", {}).get(model_id)


def _catalog_notes(model_id: str) -> tuple[str, ...]:
    """What the plan says about a catalog entry whose config.json is not the published file (written from the
    model card where no published config.json could be read), so nobody takes its sizes for the checkpoint's."""
    why = _catalog_file().get("reconstructed", {}).get(model_id)
    return (f"the catalog's config of {model_id} is reconstructed: {why}",) if why else ()


# The processor configs read beside config.json: {role: file name}
PROCESSOR_FILES = {"image": "preprocessor_config.json", "video": "video_preprocessor_config.json"}
# Where ModelOpt 0.29 and before wrote a checkpoint's quantization config, instead of config.json
MODELOPT_QUANT_FILE = "hf_quant_config.json"


def _read_processor_files(paths: dict[str, Path], model_id: str) -> dict | None:
    found = {role: read_config(path, f"{PROCESSOR_FILES[role]} of {model_id}") for role, path in paths.items()
             if path.is_file()}
    return found or None


def catalog_configs() -> dict[str, dict]:
    """Every bundled model's config.json, by id (shared: do not modify)."""
    return _catalog()


def catalog_ids() -> list[str]:
    return sorted(_catalog())


def _catalog_lookup(model: str) -> tuple[str, dict] | None:
    models = _catalog()
    if model in models:
        return model, models[model]
    lowered = {k.lower(): k for k in models}
    key = lowered.get(model.lower())
    return (key, models[key]) if key else None


def catalog_config(model: str) -> dict | None:
    """The bundled config.json of a catalog model (a copy), or None."""
    hit = _catalog_lookup(model)
    return json.loads(json.dumps(hit[1])) if hit else None


def read_config(path: Path, label: str) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise PlannerError(f"{label} is not UTF-8 text; re-download or fix it") from None
    except OSError as err:
        raise PlannerError(f"cannot read {label}: {err.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise PlannerError(f"{label} is not valid JSON ({err.msg} at line {err.lineno}, column {err.colno}); "
                           "re-download or fix it") from None
    if not isinstance(data, dict):
        raise PlannerError(f"{label} does not hold a JSON object; re-download or fix it")
    return data


def safetensors_param_counts(files: list[Path]) -> dict[str, int] | None:
    """Parameters per dtype from the headers of .safetensors files (8-byte length, then JSON), or None."""
    counts: dict[str, int] = {}
    for f in files:
        try:
            with f.open("rb") as fh:
                (n,) = struct.unpack("<Q", fh.read(8))
                if n > MAX_SAFETENSORS_HEADER:
                    return None
                header = json.loads(fh.read(n))
        except (OSError, struct.error, json.JSONDecodeError, UnicodeDecodeError):
            return None
        for name, info in header.items():
            if name == "__metadata__" or not isinstance(info, dict):
                continue
            numel = 1
            for d in info.get("shape", []):
                numel *= int(d)
            counts[info.get("dtype", "?")] = counts.get(info.get("dtype", "?"), 0) + numel
    return counts or None


def _mixed_layers_from_file(quant: object, legacy: dict) -> None:
    """A ModelOpt MIXED_PRECISION config.json without its per-layer map: vLLM reads quantized_layers from
    hf_quant_config.json instead (model_loader/weight_utils.py get_quant_config)."""
    if not isinstance(quant, dict):
        return
    settings = quant.get("quantization") if isinstance(quant.get("quantization"), dict) else quant
    if str(settings.get("quant_algo", "")).upper() != "MIXED_PRECISION" or settings.get("quantized_layers"):
        return
    source = legacy.get("quantization") if isinstance(legacy.get("quantization"), dict) else legacy
    if isinstance(source.get("quantized_layers"), dict):
        settings["quantized_layers"] = source["quantized_layers"]


def _tokenizer_max_length(directory: Path) -> int | None:
    path = directory / "tokenizer_config.json"
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text(encoding="utf-8")).get("model_max_length")
    except (OSError, ValueError, AttributeError):
        return None
    return int(value) if isinstance(value, (int, float)) and 0 < value < 10**9 else None


def _from_directory(directory: Path, model_id: str, kind: str, notes: tuple[str, ...] = ()) -> ModelSource:
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise PlannerError(f"{directory} has no config.json; point --model at a model directory or a hub id")
    config = read_config(config_path, f"{config_path}")
    legacy_quant = directory / MODELOPT_QUANT_FILE
    if config.get("quantization_config") is None and legacy_quant.is_file():
        # as vLLM does (transformers_utils/config.py): ModelOpt 0.29 and before kept it beside config.json
        config["quantization_config"] = read_config(legacy_quant, f"{legacy_quant}")
    elif legacy_quant.is_file():
        _mixed_layers_from_file(config["quantization_config"], read_config(legacy_quant, f"{legacy_quant}"))
    counts = safetensors_param_counts(sorted(directory.glob("*.safetensors")))
    preprocessor = _read_processor_files({role: directory / name for role, name in PROCESSOR_FILES.items()},
                                         model_id)
    return ModelSource(model_id, kind, config, counts, _tokenizer_max_length(directory), notes,
                       sentence_transformers=(directory / "modules.json").is_file(), preprocessor=preprocessor)


# How long to wait for the hub before saying it cannot be reached: huggingface_hub's own etag timeout when the user
# lowered it (HF_HUB_ETAG_TIMEOUT), at most this. Its default retry loop (about 24 s on a refused connection) is
# not used: one probe answers whether the hub is there.
MAX_HUB_WAIT_S = 4.0


def _hub_error(repo_id: str, revision: str | None, err: Exception, wait: float) -> PlannerError:
    """One line for what went wrong between us and the hub, naming what to do."""
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HFValidationError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    offline = "download it once online, or set HF_HUB_OFFLINE=1 to use the local cache only, or pass a local " \
              "directory with its config.json (see `estimator models` for the catalog)"
    if isinstance(err, HFValidationError):
        return PlannerError(f"{repo_id!r} is neither a directory, a catalog model nor a valid Hugging Face repo id; "
                            "see `estimator models` for the catalog")
    if isinstance(err, GatedRepoError):
        return PlannerError(f"{repo_id} is gated on the hub: accept its license on huggingface.co, then set HF_TOKEN "
                            "or run `huggingface-cli login` (or pass a local directory)")
    if isinstance(err, RevisionNotFoundError):
        return PlannerError(f"{repo_id} has no revision {revision!r} on the hub; check --revision")
    if isinstance(err, RepositoryNotFoundError):
        return PlannerError(f"{repo_id} was not found on the Hugging Face hub (or it is private: set HF_TOKEN or run "
                            "`huggingface-cli login`); check the id, or see `estimator models` for the catalog")
    if isinstance(err, EntryNotFoundError) and not isinstance(err, LocalEntryNotFoundError):
        return PlannerError(f"{repo_id} has no config.json on the hub; the planner needs a transformers-style "
                            "checkpoint")
    # huggingface_hub's HTTP client (httpx, or httpx2 in newer releases) is told apart by its exception names
    kinds = {c.__name__ for c in type(err).__mro__}
    if "TimeoutException" in kinds:
        return PlannerError(f"the Hugging Face hub did not answer within {wait:g} s for {repo_id}; {offline}")
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE or isinstance(err, OfflineModeIsEnabled):
        return PlannerError(f"{repo_id} is not in the bundled catalog or the local Hugging Face cache and "
                            "HF_HUB_OFFLINE is set; unset it to fetch the config once, or pass a local directory with "
                            "its config.json (see `estimator models` for the catalog)")
    if kinds & {"TransportError", "NetworkError", "RemoteProtocolError"} or \
            isinstance(err, (LocalEntryNotFoundError, OSError)):
        return PlannerError(f"{repo_id} is not in the bundled catalog or the local Hugging Face cache and the hub "
                            f"cannot be reached ({type(err).__name__}); {offline}")
    return PlannerError(f"could not fetch config.json of {repo_id} from the hub ({type(err).__name__}: {err}); "
                        f"{offline}")


def _from_hub(repo_id: str, revision: str | None) -> ModelSource:
    """config.json (and generation_config.json) through huggingface_hub: the local cache first, then the hub
    with one bounded probe; safetensors metadata for exact parameter counts where the hub has them."""
    # huggingface_hub's telemetry fetches an "agent harness" registry from the hub while building its request
    # headers (3 s more when the hub is slow); a planner that only reads configs does without, unless told.
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    try:
        from huggingface_hub import constants, get_hf_file_metadata, hf_hub_download, hf_hub_url
    except ImportError:  # pragma: no cover - huggingface_hub is a dependency
        raise PlannerError(f"{repo_id} is not in the bundled catalog and huggingface_hub is not installed") from None
    from huggingface_hub.errors import LocalEntryNotFoundError

    wait = min(float(constants.HF_HUB_ETAG_TIMEOUT), MAX_HUB_WAIT_S)
    online = False
    try:
        try:  # the cache first: instant, and the only place to look when offline
            config_path = Path(hf_hub_download(repo_id, "config.json", revision=revision, local_files_only=True))
        except LocalEntryNotFoundError:
            if constants.HF_HUB_OFFLINE:
                raise
            # One HEAD, no retries: is the hub there, and does it have the file?
            get_hf_file_metadata(hf_hub_url(repo_id, "config.json", revision=revision), timeout=wait)
            config_path = Path(hf_hub_download(repo_id, "config.json", revision=revision, etag_timeout=wait))
            online = True
    except Exception as err:
        raise _hub_error(repo_id, revision, err, wait) from None
    # into the snapshot beside config.json, where _from_directory reads them
    for name in (*PROCESSOR_FILES.values(), MODELOPT_QUANT_FILE):
        try:
            hf_hub_download(repo_id, name, revision=revision, local_files_only=not online, etag_timeout=wait)
        except Exception:
            pass
    source = _from_directory(config_path.parent, repo_id, "hub")
    generation = None
    try:
        generation_path = Path(hf_hub_download(repo_id, "generation_config.json", revision=revision,
                                               local_files_only=not online, etag_timeout=wait))
        generation = read_config(generation_path, f"generation_config.json of {repo_id}")
    except Exception:
        pass
    sentence_transformers = source.sentence_transformers
    try:
        hf_hub_download(repo_id, "modules.json", revision=revision, local_files_only=not online, etag_timeout=wait)
        sentence_transformers = True
    except Exception:
        pass
    counts, notes = source.checkpoint_params, ()
    if counts is None and online:
        try:
            from huggingface_hub import HfApi

            meta = HfApi().get_safetensors_metadata(repo_id, revision=revision, timeout=wait)
            counts = {str(k): int(v) for k, v in meta.parameter_count.items()}
        except Exception as err:
            notes = (f"safetensors metadata of {repo_id} unavailable ({type(err).__name__}); counts are from "
                     "config.json",)
    return ModelSource(repo_id, "hub", source.config, counts, source.tokenizer_max_length, notes, generation,
                       sentence_transformers, source.preprocessor)


def resolve(model: str, revision: str | None = None) -> ModelSource:
    """A local directory, then the catalog (case-insensitive), then the Hugging Face hub; for a catalog entry
    that is reconstructed, the cache or the hub first and the entry only where neither has the config.json."""
    if not model or not model.strip():
        raise PlannerError("--model is empty; give a hub id, a local directory or a catalog name")
    path = Path(os.path.expanduser(model))
    if path.is_dir():
        return _from_directory(path, model, "local")
    if path.exists():
        raise PlannerError(f"{model} is a file, not a model directory; point --model at the directory holding "
                           "config.json")
    if model.startswith(("/", "./", "../", "~")) or model.endswith("/"):
        raise PlannerError(f"no such directory: {model}; give an existing model directory or a hub id")
    hit = _catalog_lookup(model)
    if hit and _catalog_notes(hit[0]):
        # A reconstructed entry stands in for a config.json nobody here could read: the checkpoint's own file,
        # from the local cache or the hub (one bounded probe), wins wherever either has it.
        try:
            return _from_hub(hit[0], revision)
        except PlannerError:
            pass
    if hit:
        return ModelSource(hit[0], "catalog", hit[1], notes=_catalog_notes(hit[0]),
                           sentence_transformers=hit[0] in _catalog_sentence_transformers(),
                           preprocessor=_catalog_preprocessor(hit[0]))
    return _from_hub(model, revision)
