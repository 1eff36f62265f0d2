"""Elementwise math for plain numbers and numpy arrays alike.

`estimator plan` prices one configuration and must start fast (importing numpy costs about 0.15 s on a small
machine); the search and calibration pass numpy arrays through the very same model functions. Each helper uses
numpy only when one of its arguments is a numpy value, so the plan path never imports it.
"""

from __future__ import annotations

import functools
import math


def is_array(*values) -> bool:
    return any(type(v).__module__ == "numpy" for v in values)


def _np():
    import numpy

    return numpy


def minimum(a, b):
    return _np().minimum(a, b) if is_array(a, b) else min(a, b)


def maximum(a, b):
    return _np().maximum(a, b) if is_array(a, b) else max(a, b)


def where(cond, a, b):
    return _np().where(cond, a, b) if is_array(cond, a, b) else (a if cond else b)


def clip(x, lo, hi):
    return _np().clip(x, lo, hi) if is_array(x, lo, hi) else min(max(x, lo), hi)


def ceil(x):
    return _np().ceil(x) if is_array(x) else float(math.ceil(x))


def next_power_of_two(x):
    """The smallest power of two >= x (x >= 1), as triton.next_power_of_2 computes it."""
    if is_array(x):
        np = _np()
        return np.exp2(np.ceil(np.log2(np.maximum(x, 1))))
    return 1 << max(int(math.ceil(x)) - 1, 0).bit_length()


def lcm(a, b):
    """Least common multiple of whole numbers (numpy integer arrays, or floats holding whole numbers)."""
    if is_array(a, b):
        np = _np()
        return np.lcm(np.asarray(a).astype(np.int64), np.asarray(b).astype(np.int64))
    return math.lcm(int(a), int(b))


def as_float(x):
    return _np().asarray(x, dtype=float) if is_array(x) else float(x)


def smallest(values):
    """Elementwise minimum over a list."""
    return functools.reduce(minimum, values)


def all_true(values):
    """Elementwise logical and over a list."""
    return functools.reduce(lambda a, b: a & b, values)
