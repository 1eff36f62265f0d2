"""Where vllm-planner keeps its data on this machine (XDG data directory)."""

import contextlib
import os
import tempfile
from pathlib import Path


def data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "vllm-planner"


def coefficients_dir() -> Path:
    """Fitted coefficient sets that `calibrate fit` writes and `estimator plan` reads."""
    return data_dir() / "coefficients"


def write_atomically(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write to a temporary file beside ``path`` and rename it into place: a reader sees the old file or the new
    one, never half of one, and a failure (a full disk, a kill) leaves the old file as it was."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
