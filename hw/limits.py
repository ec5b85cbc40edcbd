"""Lab-local safety limits, kept in a TOML file and checked before anything is sent."""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["Limits", "LimitError", "MAX_VECTORS"]

#: The protocol's own maximum of input vectors per VMM? call (hw/PROTOCOL.md).
MAX_VECTORS = 4096


class LimitError(ValueError):
    """An operation outside the lab's limits; raised before any byte goes out."""


@dataclass(frozen=True)
class Limits:
    """Safety limits (see hw/limits.example.toml for the file format and meanings)."""

    max_abs_v: float = 3.5
    max_width_ns: float = 10000.0
    max_compliance_ua: float = 300.0
    max_v_read: float = 0.3
    max_vectors: int = 4096
    allowed_regions: tuple = ((0, 512, 0, 512),)
    formed_threshold_us: float = 0.2
    source: str = field(default="built-in defaults", compare=False)

    def __post_init__(self) -> None:
        src = self.source
        for name in ("max_abs_v", "max_width_ns", "max_compliance_ua", "max_v_read",
                     "formed_threshold_us"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                    or v <= 0:
                raise LimitError(f"{src}: {name} must be a positive number, got {v!r}")
            object.__setattr__(self, name, float(v))
        v = self.max_vectors
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_VECTORS:
            raise LimitError(f"{src}: max_vectors must be an integer in [1, {MAX_VECTORS}] "
                             f"(the protocol's maximum), got {v!r}")
        regions = self.allowed_regions
        if not isinstance(regions, (list, tuple)) or not regions:
            raise LimitError(f"{src}: allowed_regions must be a non-empty list of "
                             f"[r0, r1, c0, c1] lists, got {regions!r}")
        for r in regions:
            if not isinstance(r, (list, tuple)) or len(r) != 4 \
                    or any(isinstance(x, bool) or not isinstance(x, int) for x in r) \
                    or not (0 <= r[0] < r[1] and 0 <= r[2] < r[3]):
                raise LimitError(f"{src}: allowed region {r!r} must be [r0, r1, c0, c1] of "
                                 "integers with 0 <= r0 < r1 and 0 <= c0 < c1")
        object.__setattr__(self, "allowed_regions", tuple(tuple(r) for r in regions))

    @classmethod
    def load(cls, path: str | os.PathLike) -> Limits:
        """Read the ``[limits]`` table of a TOML file; every value is checked (type, sign,
        range) and unknown keys are refused, naming the file and the key."""
        path = Path(path)
        try:
            doc = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise LimitError(f"limits file not found: {path}") from None
        except IsADirectoryError:
            raise LimitError(f"limits file {path} is a directory") from None
        except UnicodeDecodeError as exc:
            raise LimitError(f"{path}: not UTF-8 text ({exc})") from None
        except OSError as exc:
            raise LimitError(f"limits file {path}: {exc.strerror or exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise LimitError(f"{path}: not valid TOML: {exc}") from None
        table = doc.get("limits")
        if not isinstance(table, dict):
            raise LimitError(f"{path}: needs a [limits] table")
        known = {f for f in cls.__dataclass_fields__ if f != "source"}
        unknown = sorted(set(table) - known)
        if unknown:
            raise LimitError(f"{path}: unknown limit(s) {unknown}; known: {sorted(known)}")
        return cls(**table, source=str(path))

    # ------------------------------------------------------------------ checks
    def _fail(self, what: str) -> None:
        raise LimitError(f"refused by the lab limits ({self.source}): {what}")

    def check_region(self, r0: int, r1: int, c0: int, c1: int) -> None:
        if not any(a[0] <= r0 and r1 <= a[1] and a[2] <= c0 and c1 <= a[3]
                   for a in self.allowed_regions):
            self._fail(f"region rows {r0}:{r1}, cols {c0}:{c1} is outside the allowed regions "
                       f"{[list(a) for a in self.allowed_regions]}")

    def check_pulse(self, amplitude_v: float, width_ns: float, compliance_ua: float) -> None:
        for name, v in (("amplitude_v", amplitude_v), ("width_ns", width_ns),
                        ("compliance_ua", compliance_ua)):
            if not _is_real(v) or not math.isfinite(v):
                self._fail(f"{name} = {v!r} is not a finite number")
        if abs(amplitude_v) > self.max_abs_v:
            self._fail(f"|amplitude_v| = {abs(amplitude_v)} V exceeds max_abs_v = "
                       f"{self.max_abs_v} V")
        if not 0 < width_ns <= self.max_width_ns:
            self._fail(f"width_ns = {width_ns} ns is outside (0, {self.max_width_ns}]")
        if not 0 < compliance_ua <= self.max_compliance_ua:
            self._fail(f"compliance_ua = {compliance_ua} uA is outside (0, "
                       f"{self.max_compliance_ua}]")

    def check_read(self, v_read: float) -> None:
        if not (_is_real(v_read) and math.isfinite(v_read) and 0 < v_read <= self.max_v_read):
            self._fail(f"v_read = {v_read} V is outside (0, {self.max_v_read}]")

    def check_vectors(self, n: int) -> None:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) \
                or not 1 <= n <= self.max_vectors:
            self._fail(f"{n} input vectors per call is outside [1, {self.max_vectors}]")


def _is_real(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
