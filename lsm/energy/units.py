"""Physical quantities as profiles write them: ``"0.2 V"``, ``"50 ns"``, ``"20 fJ/step"``.

A profile's value is a string: a number, a space, an SI prefix and the unit its parameter takes
(:data:`UNITS`). A bare number is refused for a physical parameter (is ``0.2`` volts or
millivolts?), as is a quantity in another unit; :func:`parse_quantity` returns the value in the
unit without prefix (V, s, J, W, Hz, J/bit, J/step, FLOP/s).
"""

from __future__ import annotations

import math
import re
from decimal import Decimal

__all__ = ["UNITS", "PREFIXES", "parse_quantity", "format_quantity", "unit_of_field"]

#: SI prefixes a quantity may carry, as powers of ten ("u" and "µ" both micro).
PREFIXES = {"f": -15, "p": -12, "n": -9, "u": -6, "µ": -6, "m": -3, "": 0, "k": 3, "M": 6,
            "G": 9, "T": 12}

#: Field-name suffix -> unit: a dataclass field ``t_read_s`` is the profile key ``t_read``, a
#: time in seconds written with its unit (``"50 ns"``). Longest suffixes first.
UNITS = {"_j_per_bit": "J/bit", "_j_per_step": "J/step", "_flop_per_s": "FLOP/s",
         "_hz": "Hz", "_v": "V", "_s": "s", "_j": "J", "_w": "W"}

_QUANTITY = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(\S+)\s*$")


def unit_of_field(name: str) -> tuple[str, str | None]:
    """(profile key, unit) of a dataclass field: ``"t_read_s"`` -> ``("t_read", "s")``;
    ``(name, None)`` for a dimensionless field."""
    for suffix, unit in UNITS.items():
        if name.endswith(suffix):
            return name[: -len(suffix)], unit
    return name, None


def parse_quantity(text, unit: str, where: str) -> float:
    """The value of ``text`` (``"<number> <prefix><unit>"``) in ``unit`` without prefix.

    Raises
    ------
    ValueError
        Naming ``where``: a bare number (no unit), another unit, an unknown prefix, text that
        is not a quantity, or a value that is not finite.
    """
    if isinstance(text, bool) or not isinstance(text, (str, int, float)):
        raise ValueError(f"{where}: expected a quantity in {unit} such as "
                         f"\"{_example(unit)}\", got {text!r}")
    if not isinstance(text, str):
        raise ValueError(f"{where} = {text!r} has no unit: write it as a string with its unit "
                         f"in {unit}, e.g. \"{text} {_example(unit).split()[1]}\"")
    try:
        float(text)
    except ValueError:
        pass
    else:
        raise ValueError(f"{where} = {text!r} has no unit: write it with its unit in {unit}, "
                         f"e.g. \"{text.strip()} {_example(unit).split()[1]}\"")
    m = _QUANTITY.match(text)
    if not m:
        raise ValueError(f"{where} = {text!r} is not a quantity: expected \"<number> <unit>\" "
                         f"in {unit}, e.g. \"{_example(unit)}\"")
    number, written = m.groups()
    if not written.endswith(unit) or written[: -len(unit)] not in PREFIXES:
        raise ValueError(f"{where} = {text!r}: expected a quantity in {unit} (prefixes "
                         f"{', '.join(p for p in PREFIXES if p)}), e.g. \"{_example(unit)}\"")
    # decimal scaling: "50 ns" is exactly the float nearest 5e-8
    try:
        value = float(Decimal(number).scaleb(PREFIXES[written[: -len(unit)]]))
    except ArithmeticError:  # an exponent beyond what Decimal holds
        raise ValueError(f"{where} = {text!r} is out of range") from None
    if not math.isfinite(value):
        raise ValueError(f"{where} = {text!r} is not finite")
    return value


def format_quantity(value: float, unit: str, digits: int = 4) -> str:
    """``value`` (in ``unit``) with the SI prefix that puts it in [1, 1000): ``"50 ns"``;
    ``digits`` significant digits (15 for a value written back to a profile: it reads back as
    the same float)."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g} {unit}"
    for prefix in ("T", "G", "M", "k", "", "m", "u", "n", "p", "f"):
        scaled = value / 10.0 ** PREFIXES[prefix]
        if abs(scaled) >= 1 or prefix == "f":
            return f"{scaled:.{digits}g} {prefix}{unit}"
    return f"{value:g} {unit}"  # pragma: no cover - the loop always returns


def _example(unit: str) -> str:
    return {"V": "0.2 V", "s": "50 ns", "J": "0.25 pJ", "W": "400 W", "Hz": "500 MHz",
            "J/bit": "0.5 pJ/bit", "J/step": "20 fJ/step",
            "FLOP/s": "19.5 TFLOP/s"}.get(unit, f"1 {unit}")
