"""Parameter validation shared by the settings dataclasses: clear errors that name the field."""

from __future__ import annotations

import math
import numbers
from typing import Any

__all__ = ["check_number", "check_int"]


def check_number(owner: str, name: str, value: Any, low: float = -math.inf,
                 high: float = math.inf, *, low_open: bool = False,
                 high_open: bool = False) -> float:
    """``value`` as a float, or TypeError (not a real number) / ValueError (not finite, or
    outside the range) naming ``owner.name`` and the allowed range."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{owner}.{name} must be a number, got {value!r}")
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


def check_int(owner: str, name: str, value: Any, minimum: int) -> int:
    """``value`` as an int >= ``minimum``, or TypeError / ValueError naming ``owner.name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{owner}.{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{owner}.{name} must be >= {minimum}, got {value}")
    return int(value)
