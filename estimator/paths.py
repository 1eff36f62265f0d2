"""Where vllm-planner keeps its data on this machine (XDG data directory)."""

import os
from pathlib import Path


def data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "vllm-planner"


def coefficients_dir() -> Path:
    """Fitted coefficient sets that `calibrate fit` writes and `estimator plan` reads."""
    return data_dir() / "coefficients"
