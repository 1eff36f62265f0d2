"""Numbers checked once, where they enter (flags, profiles, stored records): type, finiteness and range. Each
check names the flag as the user wrote it."""

from __future__ import annotations

import json
import math
import numbers
import re

from estimator.errors import PlannerError


def positive_int(flag: str, value):
    """None, or a positive integer (True is not a number of anything)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise PlannerError(f"{flag} must be a positive integer, got {value!r}")
    if value <= 0:
        raise PlannerError(f"{flag} must be a positive integer, got {value}")
    return int(value)


def finite_number(flag: str, value):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise PlannerError(f"{flag} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise PlannerError(f"{flag} must be a finite number, got {value}")
    return float(value)


def positive_number(flag: str, value):
    value = finite_number(flag, value)
    if value is not None and value <= 0:
        raise PlannerError(f"{flag} must be positive, got {value:g}")
    return value


def fraction(flag: str, value):
    """None, or a number in (0, 1]."""
    value = finite_number(flag, value)
    if value is not None and not 0 < value <= 1:
        raise PlannerError(f"{flag} must be in (0, 1], got {value:g}")
    return value


# vLLM's human_readable_int (vllm/utils/argparse_utils.py): k/m/g/t are powers of 1000 and may carry decimals,
# K/M/G/T powers of 1024 and may not.
_DECIMAL = {"k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}
_BINARY = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def _readable_int(value) -> int | None:
    """vLLM's human_readable_int (utils/argparse_utils.py): "25.6k" is 25,600, "1K" 1,024, "2M" 2,097,152; no
    decimals with a binary suffix. None where the value is not one."""
    text = value.strip() if isinstance(value, str) else None
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([kKmMgGtT])", text or "")
    if match and match.group(2) in _DECIMAL:
        return int(float(match.group(1)) * _DECIMAL[match.group(2)])
    if match and "." not in match.group(1):
        return int(match.group(1)) * _BINARY[match.group(2)]
    if text is not None and re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    return None


def readable_count(flag: str, value, examples: str = "8192, 8k or 8K"):
    """None, or a positive integer given as vLLM takes --max-num-batched-tokens (8192, "8k", "8K") or as an
    integer."""
    if value is None or (isinstance(value, numbers.Integral) and not isinstance(value, bool)):
        return positive_int(flag, value)
    count = _readable_int(value)
    if count is None or count <= 0:
        raise PlannerError(f"{flag} must be a positive integer (e.g. {examples}, as vLLM takes it), got {value!r}")
    return count


def byte_count(flag: str, value):
    """None, or a positive number of bytes given as vLLM's --kv-cache-memory-bytes takes it ("64M", "25.6g",
    "1073741824") or as an integer."""
    if value is None or (isinstance(value, numbers.Integral) and not isinstance(value, bool)):
        return positive_int(flag, value)
    count = _readable_int(value)
    if count is None or count <= 0:
        raise PlannerError(f"{flag} must be a positive number of bytes (e.g. 1073741824, 64M or 25.6g), "
                           f"got {value!r}")
    return count


def json_object(flag: str, value, what: str) -> dict | None:
    """A flag that takes a JSON object (vLLM's --limit-mm-per-prompt, --eplb-config): None when left out, else the
    object, given as its JSON, a mapping, or (key, value) pairs; ``what`` says what belongs in it, with an
    example."""
    if value is None or value == ():
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise PlannerError(f"{flag} {value!r} is not JSON; give {what}") from None
    if isinstance(value, (tuple, list)) and all(isinstance(p, (tuple, list)) and len(p) == 2 for p in value):
        value = dict(value)
    if not isinstance(value, dict):
        raise PlannerError(f"{flag} {value!r} is not a JSON object; give {what}")
    return value
