"""Where the reservoir's fixed random weights come from.

A :class:`WeightSource` turns an :class:`~lsm.config.LSMConfig` into a :class:`WeightSet`: the input
matrix ``w_in`` (n_inputs, n_neurons), the recurrent matrix ``w_rec`` (n_neurons, n_neurons), both
float32, and a JSON-serialisable ``provenance`` that says how they were made (it keys the feature
cache, so two sources that could give different weights must describe themselves differently).

Sources here: :class:`GaussianWeights` (the paper's software baseline), :class:`ArrayWeights`
(explicit arrays), :class:`CrossbarWeights` (a simulated RRAM crossbar) and
:class:`MeasuredWeights` (a conductance map measured on a chip), :class:`TwinWeights` (the
digital twin of a calibrated chip: its map, or a fresh draw of its fitted statistics);
``hw.weights.MacroWeights`` (the chip itself) implements the same protocol. A source may also
return an in-loop encoder (:class:`lsm.inloop.InLoopEncoder`) that computes every multiply on its
array.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from lsm.config import LSMConfig
from lsm.inloop import InLoopCrossbar, InLoopEncoder, check_in_loop_encoder

__all__ = [
    "WeightSet",
    "WeightSource",
    "GaussianWeights",
    "ArrayWeights",
    "CrossbarWeights",
    "MeasuredWeights",
    "TwinWeights",
    "DIFFERENTIAL_SIGMA_US",
    "as_weight_source",
    "check_weights",
]

#: Standard deviation (uS) of a differential pair ``G+ - G-`` of two cells whose conductances
#: each spread by 6.75 uS, the middle of the 6.6-6.9 uS of the paper's macro. The Gaussian
#: baseline draws with this sigma so that software and RRAM weights have the same scale.
DIFFERENTIAL_SIGMA_US = 6.75 * math.sqrt(2.0)


@dataclass(frozen=True)
class WeightSet:
    """Reservoir weights plus how they were made.

    Attributes
    ----------
    w_in : ndarray of float32, shape (n_inputs, n_neurons), C-contiguous
        ``w_in[c, i]`` is the weight from input channel ``c`` to neuron ``i``.
    w_rec : ndarray of float32, shape (n_neurons, n_neurons), C-contiguous
        ``w_rec[j, i]`` is the weight from neuron ``j`` to neuron ``i``.
    provenance : dict
        JSON-serialisable description of the source and its settings.
    in_loop : InLoopEncoder or None
        When set, the LSM hands its batches to this encoder, which computes every bin's
        multiplies on its array (simulated or real) instead of with ``w_in`` / ``w_rec``.
    conductance_us : ndarray of float64, shape (n_inputs + n_neurons, 2 n_neurons), or None
        The block of cells the weights were read from, uS, laid out as
        :class:`~lsm.crossbar.DifferentialMapping` places it (sources on an array set it; the
        energy model prices cell reads with it).

    Raises
    ------
    TypeError
        ``in_loop`` is neither None nor an :class:`~lsm.inloop.InLoopEncoder`.
    """

    w_in: np.ndarray
    w_rec: np.ndarray
    provenance: dict = field(default_factory=dict)
    in_loop: InLoopEncoder | None = None
    conductance_us: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.in_loop is not None:
            check_in_loop_encoder(self.in_loop, "WeightSet.in_loop")
        if self.conductance_us is not None:
            g = np.asarray(self.conductance_us, dtype=np.float64)
            if g.ndim != 2 or not np.isfinite(g).all() or (g < 0).any():
                raise ValueError("WeightSet.conductance_us must be a 2-D array of finite "
                                 "conductances >= 0 (uS)")
            object.__setattr__(self, "conductance_us", g)

    def fingerprint(self) -> str:
        """SHA-256 of both matrices' bytes and shapes: equal iff the weights are bit-identical."""
        h = hashlib.sha256()
        for a in (self.w_in, self.w_rec):
            h.update(repr(a.shape).encode())
            h.update(np.ascontiguousarray(a, dtype=np.float32).tobytes())
        return h.hexdigest()


@runtime_checkable
class WeightSource(Protocol):
    """Anything that can make reservoir weights for a config."""

    def build(self, config: LSMConfig) -> WeightSet:  # pragma: no cover - protocol
        ...


def check_weights(w_in: Any, w_rec: Any, config: LSMConfig,
                  source: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate shapes and values and return float32 C-contiguous copies.

    Raises
    ------
    ValueError
        Naming ``source``, the matrix and the first offending entry.
    """
    out = []
    expected = {"w_in": (config.n_inputs, config.n_neurons),
                "w_rec": (config.n_neurons, config.n_neurons)}
    for name, arr in (("w_in", w_in), ("w_rec", w_rec)):
        a = np.asarray(arr)
        if a.shape != expected[name]:
            raise ValueError(
                f"{source}: {name} has shape {a.shape}, expected {expected[name]} "
                f"(n_inputs={config.n_inputs}, n_neurons={config.n_neurons})"
            )
        if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
            raise ValueError(f"{source}: {name} must be numeric, got dtype {a.dtype}")
        a = np.ascontiguousarray(a, dtype=np.float32)
        bad = ~np.isfinite(a)
        if bad.any():
            r, c = np.unravel_index(int(np.flatnonzero(bad)[0]), a.shape)
            raise ValueError(f"{source}: {name}[{r}, {c}] = {a[r, c]} is not finite")
        out.append(a)
    return out[0], out[1]


@dataclass(frozen=True)
class GaussianWeights:
    """The software baseline: ``w = const * N(0, sigma)``, optionally sparse.

    ``w_in = w_in_const * sigma * z * m_in`` and ``w_rec = w_rec_const * sigma * z * m_rec`` with
    ``z`` standard normal and ``m`` Bernoulli masks of probability ``config.p_in`` /
    ``config.p_rec``. Input and recurrent matrices use independent child streams of the seed, so
    changing ``p_rec`` does not change ``w_in``.

    Parameters
    ----------
    sigma : float
        Standard deviation of the draw before scaling by the weight const. The default,
        :data:`DIFFERENTIAL_SIGMA_US` (9.55, in uS), matches the spread of the RRAM differential
        pairs, so that the paper's const (0.07) and threshold (5.0) give an active reservoir.
    seed : int or None
        Seed of the draw; ``None`` uses ``config.seed``.
    """

    sigma: float = DIFFERENTIAL_SIGMA_US
    seed: int | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.sigma) and self.sigma > 0):
            raise ValueError(f"GaussianWeights.sigma must be finite and > 0, got {self.sigma}")
        if self.seed is not None and (not isinstance(self.seed, (int, np.integer))
                                      or self.seed < 0):
            raise ValueError(f"GaussianWeights.seed must be a non-negative int, got {self.seed!r}")

    def build(self, config: LSMConfig) -> WeightSet:
        seed = config.seed if self.seed is None else int(self.seed)
        g_in, g_rec, g_min, g_mrec = (np.random.default_rng(s)
                                      for s in np.random.SeedSequence(seed).spawn(4))
        w_in = g_in.standard_normal((config.n_inputs, config.n_neurons))
        w_rec = g_rec.standard_normal((config.n_neurons, config.n_neurons))
        w_in *= self.sigma * config.w_in_const
        w_rec *= self.sigma * config.w_rec_const
        if config.p_in < 1:
            w_in *= g_min.random(w_in.shape) < config.p_in
        if config.p_rec < 1:
            w_rec *= g_mrec.random(w_rec.shape) < config.p_rec
        w_in, w_rec = check_weights(w_in, w_rec, config, "GaussianWeights")
        provenance = {"source": "gaussian", "sigma": self.sigma, "seed": seed,
                      "w_in_const": config.w_in_const, "w_rec_const": config.w_rec_const,
                      "p_in": config.p_in, "p_rec": config.p_rec}
        return WeightSet(w_in, w_rec, provenance)


class ArrayWeights:
    """Explicit weight matrices, used as given (cast to float32).

    Parameters
    ----------
    w_in : array_like, shape (n_inputs, n_neurons)
    w_rec : array_like, shape (n_neurons, n_neurons)
    name : str
        A label kept in the provenance; the provenance also holds the arrays' SHA-256.
    """

    def __init__(self, w_in: Any, w_rec: Any, name: str = "arrays") -> None:
        self.w_in = np.asarray(w_in)
        self.w_rec = np.asarray(w_rec)
        self.name = name

    def build(self, config: LSMConfig) -> WeightSet:
        w_in, w_rec = check_weights(self.w_in, self.w_rec, config, f"ArrayWeights({self.name})")
        ws = WeightSet(w_in, w_rec)
        return WeightSet(w_in, w_rec, {"source": "arrays", "name": self.name,
                                       "sha256": ws.fingerprint()})

    def __repr__(self) -> str:
        return f"ArrayWeights(name={self.name!r}, w_in={self.w_in.shape}, w_rec={self.w_rec.shape})"


def as_weight_source(weights: Any) -> WeightSource:
    """Accept a WeightSource, a ``(w_in, w_rec)`` pair of arrays, or ``None`` (Gaussian)."""
    if weights is None:
        return GaussianWeights()
    if isinstance(weights, WeightSource):
        return weights
    if isinstance(weights, (tuple, list)) and len(weights) == 2:
        return ArrayWeights(*weights)
    raise TypeError(
        "weights must be a WeightSource (with a build(config) method), a (w_in, w_rec) pair of "
        f"arrays, or None; got {type(weights).__name__}"
    )


# ---------------------------------------------------------------------- RRAM crossbar
@dataclass(frozen=True)
class CrossbarWeights:
    """Weights from a simulated RRAM crossbar whose stochastic forming makes the randomness.

    ``build`` places ``W_in`` and ``W_rec`` on a fresh :class:`~lsm.crossbar.CrossbarArray` as
    differential pairs (:class:`~lsm.crossbar.DifferentialMapping`), forms the block with
    ``form_pulse`` (cells of pairs masked out by ``p_in`` / ``p_rec`` < 1 are left unformed),
    lets ``read_time_s`` pass (drift), reads the map once and converts it:
    ``w = const * (G+ - G-) / g_unit_us``. That static map is what the paper used.

    With ``in_loop=True`` the same programmed array also computes every bin's matrix-vector
    products during encoding (:class:`lsm.inloop.InLoopCrossbar`): fresh read noise on every
    multiply and ADC quantisation of every column (:mod:`lsm.crossbar.inloop`); the static
    weights are still returned for reference.

    Parameters
    ----------
    device : DeviceParams
        Cell physics (default: the paper's macro, 6.8 uS spread after forming).
    array_rows, array_cols : int
        Array size (default 512 x 512).
    form_pulse : Pulse
        Pulse that forms the random state (default 3 V, 1 us, 100 uA).
    v_read : float
        Read voltage, V (default 0.2).
    read_time_s : float
        Time between programming and reading, s (default 1).
    g_unit_us : float
        Conductance that maps to weight ``const`` (default 1 uS, so the paper's const 0.07
        multiplies microsiemens).
    seed : int or None
        Seed of the array (faults, drift, forming, reads); None uses ``config.seed``.
    in_loop : bool
        Compute the reservoir's multiplies through the crossbar (numba backend only).
    adc : ADC
        TIA and ADC used in the loop (default 14 bits, 400 uA full scale).
    ir_drop : IRDrop
        First-order IR drop in the loop (default off).
    """

    device: Any = None
    array_rows: int = 512
    array_cols: int = 512
    form_pulse: Any = None
    v_read: float = 0.2
    read_time_s: float = 1.0
    g_unit_us: float = 1.0
    seed: int | None = None
    in_loop: bool = False
    adc: Any = None
    ir_drop: Any = None

    def __post_init__(self) -> None:
        from lsm.crossbar import ADC, DeviceParams, IRDrop, Pulse

        defaults = {"device": DeviceParams(), "form_pulse": Pulse.form(), "adc": ADC(),
                    "ir_drop": IRDrop()}
        for name, value in defaults.items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        for name, typ in (("device", DeviceParams), ("form_pulse", Pulse),
                          ("adc", ADC), ("ir_drop", IRDrop)):
            if not isinstance(getattr(self, name), typ):
                raise TypeError(f"CrossbarWeights.{name} must be a {typ.__name__}")
        if self.form_pulse.kind != "form":
            raise ValueError("CrossbarWeights.form_pulse must be a FORM pulse")
        for name in ("v_read", "g_unit_us"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"CrossbarWeights.{name} must be finite and > 0, got {v}")
        if not (math.isfinite(self.read_time_s) and self.read_time_s >= 0):
            raise ValueError(f"CrossbarWeights.read_time_s must be >= 0, got {self.read_time_s}")

    def build(self, config: LSMConfig) -> WeightSet:
        from lsm.crossbar import CrossbarArray, DifferentialMapping

        seed = config.seed if self.seed is None else int(self.seed)
        mapping = DifferentialMapping(config.n_inputs, config.n_neurons, self.array_rows,
                                      self.array_cols)
        array = CrossbarArray(self.array_rows, self.array_cols, self.device, seed=seed)
        # which pairs exist (connection probability); independent of the array's own streams
        g_min, g_mrec = (np.random.default_rng(s) for s in
                         np.random.SeedSequence([seed, 1]).spawn(2))
        n_in, n = config.n_inputs, config.n_neurons
        keep_in = (g_min.random((n_in, n)) < config.p_in) if config.p_in < 1 else \
            np.ones((n_in, n), bool)
        keep_rec = (g_mrec.random((n, n)) < config.p_rec) if config.p_rec < 1 else \
            np.ones((n, n), bool)
        pairs = np.vstack([keep_in, keep_rec])
        rr, cc = np.nonzero(np.hstack([pairs, pairs]))
        region = mapping.region
        array.program(rr + region.row_start, cc + region.col_start, self.form_pulse)
        array.advance(self.read_time_s)
        # the map is a float32 measurement, as the instrument returns it
        g_map = array.read_region(region, self.v_read).astype(np.float32).astype(np.float64)
        w_in, w_rec = mapping.weights(g_map, config.w_in_const, config.w_rec_const,
                                      self.g_unit_us)
        w_in *= keep_in
        w_rec *= keep_rec
        w_in, w_rec = check_weights(w_in, w_rec, config, "CrossbarWeights")
        formed = array.conductance(region.rows[:, None], region.cols[None, :])[
            np.hstack([pairs, pairs])]
        provenance = {
            "source": "crossbar", "seed": seed, "device": self.device.to_dict(),
            "form_pulse": dataclasses.asdict(self.form_pulse), "v_read": self.v_read,
            "read_time_s": self.read_time_s, "g_unit_us": self.g_unit_us,
            "array": [self.array_rows, self.array_cols], "mapping": mapping.report(),
            "w_in_const": config.w_in_const, "w_rec_const": config.w_rec_const,
            "p_in": config.p_in, "p_rec": config.p_rec, "in_loop": self.in_loop,
            "conductance_us": {"mean": float(formed.mean()), "std": float(formed.std())},
        }
        in_loop = None
        if self.in_loop:
            provenance["adc"] = dataclasses.asdict(self.adc)
            provenance["ir_drop"] = dataclasses.asdict(self.ir_drop)
            in_loop = self._in_loop(array, mapping, config, seed)
        return WeightSet(w_in, w_rec, provenance, in_loop=in_loop, conductance_us=g_map)

    def _in_loop(self, array, mapping, config: LSMConfig, seed: int) -> InLoopCrossbar:
        from lsm.crossbar.inloop import InLoopPhysics

        physics = InLoopPhysics.from_array(array, mapping.region, config.n_inputs, self.v_read,
                                           self.adc, self.ir_drop)
        return InLoopCrossbar(
            physics=physics, gain_in_per_us=config.w_in_const / self.g_unit_us,
            gain_rec_per_us=config.w_rec_const / self.g_unit_us,
            seed=int(np.random.SeedSequence([seed, 2]).generate_state(1, np.uint64)[0]),
        )


# ---------------------------------------------------------------------- measured maps
@dataclass(frozen=True)
class MeasuredWeights:
    """Weights from a conductance map measured on a chip (``lsm hw read-map`` writes one).

    The file is a map of :mod:`lsm.crossbar.mapfile` (``.npz`` or ``.h5``: a ``g_us`` array in
    uS and the settings of its run). The map is either exactly the LSM's block of differential
    pairs ((n_inputs + n_neurons) x 2 n_neurons), or a larger map with the block at ``offset``;
    then ``w = const * (G+ - G-) / g_unit_us`` as for :class:`CrossbarWeights`.

    Parameters
    ----------
    path : str or Path
    offset : (row, col)
        Top-left cell of the block inside the map.
    g_unit_us : float
        Conductance that maps to weight ``const``, uS.
    """

    path: Any
    offset: tuple = (0, 0)
    g_unit_us: float = 1.0

    def load(self) -> tuple[np.ndarray, dict]:
        """The map (float64 uS) and its settings: :func:`lsm.crossbar.mapfile.read_map`, whose
        checks (declared size and dtype before reading, 2-D, every cell finite, format version)
        raise ValueError naming the file."""
        from lsm.crossbar.mapfile import read_map

        return read_map(self.path, what="measured map")

    def build(self, config: LSMConfig) -> WeightSet:
        from lsm.crossbar import DifferentialMapping

        g, settings = self.load()
        mapping = DifferentialMapping(config.n_inputs, config.n_neurons, g.shape[0], g.shape[1],
                                      int(self.offset[0]), int(self.offset[1]))
        r = mapping.region
        block = g[r.row_start:r.row_stop, r.col_start:r.col_stop]
        w_in, w_rec = mapping.weights(block, config.w_in_const, config.w_rec_const,
                                      self.g_unit_us)
        w_in, w_rec = check_weights(w_in, w_rec, config, f"MeasuredWeights({self.path})")
        ws = WeightSet(w_in, w_rec)
        return WeightSet(w_in, w_rec, {"source": "measured", "path": str(self.path),
                                       "offset": list(self.offset), "g_unit_us": self.g_unit_us,
                                       "sha256": ws.fingerprint(), "map_settings": settings},
                         conductance_us=block)


# ---------------------------------------------------------------------- a calibrated chip's twin
@dataclass(frozen=True)
class TwinWeights:
    """Weights from the digital twin of a calibrated macro (``lsm calibrate run`` writes the
    calibration file, :mod:`lsm.crossbar.calfile`).

    ``mode="map"``: the chip's own measured map (the block at ``offset`` of the calibrated
    region), optionally with fresh calibrated read noise (``read_noise=True``: each build is one
    more read of the same chip). ``mode="draw"``: a chip *like* this one, a fresh draw of the
    fitted statistics (forming family, stuck rates and levels, drift to ``read_time_s``, read
    noise): :func:`lsm.crossbar.twin.draw_block`, seeded by ``seed`` (default the config's).
    Either way ``w = const (G+ - G-) / g_unit_us`` as for the other sources, and the provenance
    holds the calibration file's SHA-256, so the feature cache keys on the file's content.

    Parameters
    ----------
    calibration : str or Path
        The calibration file (.h5).
    mode : {"map", "draw"}
    read_noise : bool
        ``map`` mode: add fresh read noise to the measured map.
    read_time_s : float or None
        ``draw`` mode: time between forming and reading, s (default: as calibrated).
    offset : (row, col)
        ``map`` mode: top-left cell of the LSM's block inside the calibrated region.
    seed : int or None
        Seed of the draw or of the read noise; None uses ``config.seed``.
    g_unit_us : float
        Conductance that maps to weight ``const``, uS.
    """

    calibration: Any
    mode: str = "map"
    read_noise: bool = False
    read_time_s: float | None = None
    offset: tuple = (0, 0)
    seed: int | None = None
    g_unit_us: float = 1.0

    def __post_init__(self) -> None:
        if self.mode not in ("map", "draw"):
            raise ValueError(f"TwinWeights.mode must be 'map' or 'draw', got {self.mode!r}")
        if not (math.isfinite(self.g_unit_us) and self.g_unit_us > 0):
            raise ValueError(f"TwinWeights.g_unit_us must be finite and > 0, got "
                             f"{self.g_unit_us}")

    def load(self):
        """The calibration (read and checked: :func:`lsm.crossbar.calfile.read_calibration`)."""
        from lsm.crossbar.calfile import read_calibration

        return read_calibration(self.calibration)

    def build(self, config: LSMConfig) -> WeightSet:
        from lsm.crossbar import DifferentialMapping
        from lsm.crossbar.twin import draw_block, map_block, twin_report

        cal = self.load()
        seed = config.seed if self.seed is None else int(self.seed)
        rng = np.random.default_rng(np.random.SeedSequence([seed, 31]))
        mapping = DifferentialMapping(config.n_inputs, config.n_neurons)
        rows, cols = mapping.region.shape
        if self.mode == "map":
            g = map_block(cal, rows, cols, self.offset, self.read_noise, rng)
        else:
            g = draw_block(cal, rows, cols, rng, self.read_time_s)
        w_in, w_rec = mapping.weights(g, config.w_in_const, config.w_rec_const, self.g_unit_us)
        w_in, w_rec = check_weights(w_in, w_rec, config, f"TwinWeights({self.calibration})")
        provenance = {"source": "twin", "mode": self.mode, "calibration": str(self.calibration),
                      "sha256": cal.sha256, "seed": seed, "read_noise": self.read_noise,
                      "read_time_s": self.read_time_s, "offset": list(self.offset),
                      "g_unit_us": self.g_unit_us, "w_in_const": config.w_in_const,
                      "w_rec_const": config.w_rec_const, "twin": twin_report(cal),
                      "conductance_us": {"mean": float(g.mean()), "std": float(g.std())}}
        return WeightSet(w_in, w_rec, provenance, conductance_us=g)
