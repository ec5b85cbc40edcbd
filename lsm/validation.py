"""Validation at the library's boundaries: clear errors that name the field, the file or the
sample, raised before anything is cast or allocated."""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

__all__ = ["InvalidTypeError", "MemoryBudgetError", "check_number", "check_int", "check_choice",
           "check_memory", "array_bytes", "format_bytes", "check_labels"]


class InvalidTypeError(TypeError, ValueError):
    """A value of the wrong type where a setting or an input is validated.

    A :class:`TypeError` for Python callers, and also a :class:`ValueError`: it is bad input,
    which the command line reports as ``lsm: error: ...`` rather than as a crash.
    """


class MemoryBudgetError(ValueError):
    """A declared size (of a file's array, of weight matrices, of an output) over the memory
    budget, refused before anything is allocated."""


def check_choice(name: str, value: Any, choices) -> None:
    """Raise ValueError naming ``name`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(str, choices))}; got {value!r}")


def check_number(owner: str, name: str, value: Any, low: float = -math.inf,
                 high: float = math.inf, *, low_open: bool = False,
                 high_open: bool = False) -> float:
    """``value`` as a float, or InvalidTypeError (not a real number) / ValueError (not finite, or
    outside the range) naming ``owner.name`` and the allowed range."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidTypeError(f"{owner}.{name} must be a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{owner}.{name} must be a finite number, got {value!r}")
    ok_low = v > low if low_open else v >= low
    ok_high = v < high if high_open else v <= high
    if not (ok_low and ok_high):
        lb = "(" if low_open else "["
        hb = ")" if high_open else "]"
        raise ValueError(f"{owner}.{name} must be in {lb}{low}, {high}{hb}, got {v}")
    return v


def check_int(owner: str, name: str, value: Any, minimum: int,
              maximum: int | None = None) -> int:
    """``value`` as an int in ``[minimum, maximum]``, or InvalidTypeError (not an integer: a
    float such as 256.0 or a bool is refused too) / ValueError naming ``owner.name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InvalidTypeError(f"{owner}.{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{owner}.{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{owner}.{name} must be <= {maximum}, got {value}")
    return int(value)


def array_bytes(shape, dtype) -> int:
    """Bytes an array of ``shape`` and ``dtype`` takes, computed exactly (no overflow)."""
    n = 1
    for d in shape:
        n *= int(d)
    return n * np.dtype(dtype).itemsize


def format_bytes(n: int) -> str:
    """``n`` bytes for a message: "3.7 GiB", "512.0 MiB", "12 bytes"."""
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


def check_memory(what: str, n_bytes: int, budget: int | None = None) -> int:
    """Refuse ``n_bytes`` over ``budget`` (default :data:`lsm.io.MAX_ARRAY_BYTES`) with a
    :class:`MemoryBudgetError` naming ``what``; return ``n_bytes``."""
    if budget is None:
        from lsm.io import MAX_ARRAY_BYTES as budget
    if n_bytes > budget:
        raise MemoryBudgetError(f"{what} would take {format_bytes(n_bytes)}, over the memory "
                                f"budget of {format_bytes(budget)} per array")
    return n_bytes


def check_labels(labels: Any, n_samples: int, where: str) -> np.ndarray:
    """Labels passed through beside features: 1-D, one per sample, integers or strings (floats
    only when they are whole numbers).

    Raises
    ------
    ValueError
        Naming ``where`` (the file), the shape or dtype, or the first bad label.
    """
    a = np.asarray(labels)
    if a.ndim != 1 or len(a) != n_samples:
        raise ValueError(f"{where}: labels must be 1-D with one label per sample ({n_samples}), "
                         f"got shape {a.shape}")
    if a.dtype.kind == "f":
        bad = ~np.isfinite(a) | (a != np.round(a))
        if bad.any():
            j = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{where}: labels[{j}] = {a[j].item()!r} is not a whole number")
    elif a.dtype.kind not in "biuUS":
        raise ValueError(f"{where}: labels must be integers or strings, got dtype {a.dtype}")
    return a
