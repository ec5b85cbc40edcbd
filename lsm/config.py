"""Model settings of the liquid state machine, validated, with a TOML round-trip.

The defaults reproduce the paper's N-MNIST encoder (256 inputs -> 200 neurons, decay 0.9,
threshold 5.0, weight const 0.07, 50 time bins); :meth:`LSMConfig.ntidigits` gives its N-TIDIGITS
encoder (64 cochlea channels, decay 0.97, threshold 5.3, const 0.08, 129 bins).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import tomli_w

from lsm.validation import InvalidTypeError, array_bytes, check_int, check_memory, check_number

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = ["LSMConfig", "RESET_MODES", "WEIGHT_FORMATS", "CODE_MAX", "MAX_CODE_ROWS_PER_BIN",
           "MAX_WEIGHT_CONST", "MAX_V_TH"]

#: Reset rules after a spike: ``"zero"`` (hard reset, the paper's), ``"subtract"`` (subtract the
#: threshold), ``"none"`` (no reset: pure leaky integration).
RESET_MODES = ("zero", "subtract", "none")
#: How the software kernel stores the weights: ``"float32"`` (the weights as drawn, the default)
#: or ``"int16"`` (16-bit integer codes with one scale per matrix; see :class:`LSMConfig`).
WEIGHT_FORMATS = ("float32", "int16")
#: Largest |code| of an int16 weight code, and the most rows of one matrix whose codes the kernel
#: may sum in one bin without leaving its int32 accumulator: 65538 x 32767 <= 2**31 - 1.
CODE_MAX = 32767
MAX_CODE_ROWS_PER_BIN = (2**31 - 1) // CODE_MAX


#: Largest weight const: the paper's are 0.07-0.3. A const of 1e308 is finite, but times a draw
#: of tens of uS it overflows float32 (the kernel's type) into inf weights; 1e6 leaves a margin
#: of more than 1e25 for the sums over inputs and time.
MAX_WEIGHT_CONST = 1e6
#: Largest threshold, in the weights' units (float32 must hold it, with sums of weights above it).
MAX_V_TH = 1e12
#: Sizes are int32 indices in the kernel, and the seed a 63-bit integer (TOML's range).
_MAX_SIZE = 2**31 - 1
_MAX_SEED = 2**63 - 1
#: Bytes per weight entry while a source draws it (float64 draw, then the float32 copy kept).
_WEIGHT_BYTES_PER_ENTRY = 8


def _check_int(name: str, value: Any, minimum: int, maximum: int) -> None:
    check_int("LSMConfig", name, value, minimum, maximum)


def _check_float(name: str, value: Any, low: float, high: float, *, low_open: bool = False,
                 high_open: bool = False) -> None:
    check_number("LSMConfig", name, value, low, high, low_open=low_open, high_open=high_open)


@dataclass(frozen=True)
class LSMConfig:
    """Every setting of the LIF reservoir.

    The reservoir is updated once per time bin ``t``::

        u_t = decay * u_{t-1} * (1 - s_{t-1}) + W_in^T x_t + W_rec^T s_{t-1}    (reset="zero")
        s_t = [u_t > v_th]

    with ``reset="subtract"`` the first term is ``decay * u_{t-1} + ... - v_th * s_{t-1}``, and with
    ``reset="none"`` it is ``decay * u_{t-1} + ...``. ``x_t`` is the input event count of bin ``t``
    per channel (binary for a raster), ``s_t`` the reservoir spikes.

    Parameters
    ----------
    n_inputs : int
        Input channels (256 = 16 x 16 cropped N-MNIST pixels of one polarity).
    n_neurons : int
        Reservoir neurons.
    n_bins : int
        Time bins per sample (the number of update steps).
    decay : float
        Membrane decay per step, in [0, 1] (snntorch's ``beta``).
    v_th : float
        Firing threshold, > 0, in the same units as the weights.
    reset : {"zero", "subtract", "none"}
        What a spike does to the membrane at the next step.
    w_in_const : float
        Scale of the input weights (the paper's "weight const"): ``w_in = w_in_const * draw``.
    w_rec_const : float
        Scale of the recurrent weights.
    p_in : float
        Input connection probability in (0, 1]; below 1 the weights are stored sparse (CSR).
    p_rec : float
        Recurrent connection probability in [0, 1]; 0 gives a feed-forward reservoir.
    seed : int
        Seed of the weight draw (and of anything else random that the config drives).
    weight_format : {"float32", "int16"}
        How the software kernel stores the weights (not how they are drawn: every weight source
        still makes float32 matrices, and the cache key covers this field). ``"float32"``: as
        drawn, float32 sums (the default). ``"int16"``: each matrix becomes 16-bit integer codes
        with one scale, ``w ~= scale * code``, ``scale = max|w| / 32767``, ``code =
        round(w / scale)``; each bin sums the input rows and the recurrent rows in two int32
        accumulators (exact in any order) and the current is ``I_t = scale_in * A_t +
        scale_rec * B_t`` in float32. Each row the kernel reads is half the bytes (memory
        bandwidth bounds the large reservoirs). The quantisation step is 1/32767 (0.003 %) of the
        largest weight, the rounding error at most half a step: for Gaussian weights (largest
        about 4.5-5 sigma) an rms error of about 4e-5 sigma per weight, over 100 times below the
        crossbar's read noise (0.15 % of each cell's ~27 uS: about 6e-3 sigma per differential
        weight). The reservoir is chaotic, so those small errors still flip a
        few spike decisions that then spread within a sample (``lsm bench encode`` prints the
        agreement with float32). Numba and torch backends only (refused with in-loop crossbar
        weights, which compute every multiply through the array model); a matrix may sum at
        most 65,538 rows in one bin (at most that many input events per bin; ``n_neurons``
        <= 65,538), so that no int32 sum can overflow.
    """

    n_inputs: int = 256
    n_neurons: int = 200
    n_bins: int = 50
    decay: float = 0.9
    v_th: float = 5.0
    reset: str = "zero"
    w_in_const: float = 0.07
    w_rec_const: float = 0.07
    p_in: float = 1.0
    p_rec: float = 1.0
    seed: int = 0
    weight_format: str = "float32"

    def __post_init__(self) -> None:
        _check_int("n_inputs", self.n_inputs, 1, _MAX_SIZE)
        _check_int("n_neurons", self.n_neurons, 1, _MAX_SIZE)
        _check_int("n_bins", self.n_bins, 1, _MAX_SIZE)
        _check_int("seed", self.seed, 0, _MAX_SEED)
        _check_float("decay", self.decay, 0.0, 1.0)
        _check_float("v_th", self.v_th, 0.0, MAX_V_TH, low_open=True)
        _check_float("w_in_const", self.w_in_const, 0.0, MAX_WEIGHT_CONST)
        _check_float("w_rec_const", self.w_rec_const, 0.0, MAX_WEIGHT_CONST)
        _check_float("p_in", self.p_in, 0.0, 1.0, low_open=True)
        _check_float("p_rec", self.p_rec, 0.0, 1.0)
        if not isinstance(self.reset, str):
            raise InvalidTypeError(f"LSMConfig.reset must be a string, one of {RESET_MODES}, "
                                   f"got {self.reset!r}")
        if self.reset not in RESET_MODES:
            raise ValueError(f"LSMConfig.reset must be one of {RESET_MODES}, got {self.reset!r}")
        if not isinstance(self.weight_format, str):
            raise InvalidTypeError(f"LSMConfig.weight_format must be a string, one of "
                                   f"{WEIGHT_FORMATS}, got {self.weight_format!r}")
        if self.weight_format not in WEIGHT_FORMATS:
            raise ValueError(f"LSMConfig.weight_format must be one of {WEIGHT_FORMATS}, got "
                             f"{self.weight_format!r}")
        if self.weight_format == "int16" and self.n_neurons > MAX_CODE_ROWS_PER_BIN:
            raise ValueError(
                f"LSMConfig.weight_format='int16' sums up to n_neurons recurrent rows of codes "
                f"(|code| <= {CODE_MAX}) per bin in an int32 accumulator: n_neurons="
                f"{self.n_neurons} could overflow it (at most {MAX_CODE_ROWS_PER_BIN}); use "
                f"weight_format='float32'")
        for name, shape in (("w_in", (self.n_inputs, self.n_neurons)),
                            ("w_rec", (self.n_neurons, self.n_neurons))):
            check_memory(f"LSMConfig: n_inputs={self.n_inputs}, n_neurons={self.n_neurons} "
                         f"make a {name} of {shape[0]} x {shape[1]}, which",
                         array_bytes(shape, np.float64))
        # Normalise numpy scalars to plain Python numbers so that equality, hashing and TOML
        # output do not depend on where a value came from.
        for f in fields(self):
            v = getattr(self, f.name)
            if f.type in ("int",) and not isinstance(v, int):
                object.__setattr__(self, f.name, int(v))
            elif f.type in ("float",):
                object.__setattr__(self, f.name, float(v))

    # ------------------------------------------------------------------ presets
    @classmethod
    def nmnist(cls, **overrides: Any) -> LSMConfig:
        """The paper's N-MNIST encoder (these are also the class defaults)."""
        return cls(**overrides)

    @classmethod
    def ntidigits(cls, **overrides: Any) -> LSMConfig:
        """The paper's N-TIDIGITS encoder: 64 channels, 129 bins, decay 0.97, v_th 5.3,
        const 0.08."""
        base = dict(n_inputs=64, n_neurons=200, n_bins=129, decay=0.97, v_th=5.3,
                    w_in_const=0.08, w_rec_const=0.08)
        base.update(overrides)
        return cls(**base)

    # ------------------------------------------------------------------ conversion
    def replace(self, **changes: Any) -> LSMConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "dict") -> LSMConfig:
        """Build from a mapping; unknown keys, wrong types and values out of range are errors
        that name the key and ``source`` (a TypeError that is also a ValueError, or a
        ValueError)."""
        if not isinstance(data, dict):
            raise InvalidTypeError(f"{source}: an LSMConfig must be a table of settings, got "
                                   f"{type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"{source}: unknown LSMConfig field(s) {unknown}; known fields: {sorted(known)}"
            )
        try:
            return cls(**data)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{source}: {exc}") from None

    def to_toml(self) -> str:
        """The config as a TOML document with one ``[lsm]`` table."""
        return tomli_w.dumps({"lsm": self.to_dict()})

    @classmethod
    def from_toml(cls, text: str, *, source: str = "<string>") -> LSMConfig:
        """Parse a TOML document written by :meth:`to_toml` (an ``[lsm]`` table, or bare keys)."""
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{source}: not valid TOML: {exc}") from None
        table = doc.get("lsm", doc)
        if not isinstance(table, dict):
            raise ValueError(f"{source}: [lsm] must be a table")
        return cls.from_dict(table, source=source)

    def save(self, path: str | os.PathLike) -> Path:
        """Write :meth:`to_toml` to ``path`` atomically (temporary file, then rename)."""
        from lsm.io import atomic_write_text

        return atomic_write_text(path, self.to_toml())

    @classmethod
    def load(cls, path: str | os.PathLike) -> LSMConfig:
        """Read a TOML file written by :meth:`save` (or by hand).

        Raises
        ------
        FileNotFoundError, IsADirectoryError
            No such file, or a folder.
        ValueError
            Not UTF-8 text, not TOML, an unknown key, or a value out of range (naming the key
            and the file); :class:`~lsm.validation.InvalidTypeError` (also a TypeError) for a
            value of the wrong type.
        """
        from lsm.io import read_text_file

        path = Path(path)
        return cls.from_toml(read_text_file(path, "config file"), source=str(path))
