"""Numbers checked once, where they enter (flags, profiles, stored records): type, finiteness and range. Each
check names the flag as the user wrote it."""

from __future__ import annotations

import math
import numbers

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
