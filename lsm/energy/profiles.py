"""Hardware cost profiles: what each operation costs, in physical units, loaded from TOML.

Three kinds of platform run one inference (an LSM encoding plus its digital head):

- ``macro``: the RRAM in-memory-computing macro. Its multiplies are analogue: each active row
  is driven at ``v_read`` for ``t_read`` and every cell of the row conducts (cell read energy
  ``G V^2 t`` from the actual conductances), each multiply converts every used column through
  a TIA and an ADC (energy per conversion from the ADC's Walden figure of merit and its
  resolution: ``FOM x 2**bits``). Neurons and heads run on the digital side next to it.
- ``digital``: a digital accelerator at a chosen node: each synaptic operation is an add (or,
  dense, a MAC) plus the read of its weight from on-chip SRAM.
- ``gpu``: the dense reference on a GPU: board power x time, the time from the dense FLOPs of
  an inference, the GPU's peak and a utilisation.

A profile file::

    kind = "macro"
    name = "imc40"
    description = "..."
    [array]
    v_read = "0.2 V"
    ...

Every physical parameter is written with its unit (:mod:`lsm.energy.units`); a missing, unknown,
negative, unit-less or wrongly-dimensioned parameter is refused with an error naming the file,
the table and the key. The dataclasses store SI values; their field names end in the unit
(``t_read_s``), the file's keys do not (``t_read``). :data:`SHIPPED` profiles live beside this
module (``lsm/energy/profiles/*.toml``), each default with its source in a comment.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

from lsm.energy.units import format_quantity, parse_quantity, unit_of_field

__all__ = ["CellRead", "RowDrivers", "Readout", "Programming", "DigitalCosts", "MacroProfile",
           "DigitalProfile", "GPUProfile", "Profile", "load_profile", "shipped_profile",
           "SHIPPED", "DEFAULT_PROFILES", "PROFILE_DIR", "profile_to_dict", "override"]

#: Folder of the profiles that ship with the package.
PROFILE_DIR = Path(__file__).with_name("profiles")
#: Shipped profile names -> file (``shipped_profile(name)``).
SHIPPED = {"imc40": "imc40.toml", "digital-40nm": "digital-40nm.toml", "gpu-a100": "gpu-a100.toml"}
#: The platforms compared by default (``lsm energy``, :func:`lsm.energy.energy_per_inference`).
DEFAULT_PROFILES = ("imc40", "digital-40nm", "gpu-a100")


def _q(default: float, positive: bool = False, doc: str = "") -> Any:
    """A physical parameter: >= 0 (``positive``: > 0), its unit from the field name's suffix."""
    return field(default=default, metadata={"positive": positive, "doc": doc})


def _check(obj) -> None:
    """Validate every field of a profile section: finite, >= 0 (> 0 where positive), integers
    where the default is one."""
    owner = type(obj).__name__
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if dataclasses.is_dataclass(v) or f.name in ("name", "description", "event_driven"):
            continue
        key, unit = unit_of_field(f.name)
        where = f"{owner}.{key}" + (f" ({unit})" if unit else "")
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise TypeError(f"{where} must be a number, got {v!r}")
        if not math.isfinite(v):
            raise ValueError(f"{where} must be finite, got {v}")
        if isinstance(f.default, int) and not isinstance(f.default, bool):
            if int(v) != v:
                raise ValueError(f"{where} must be a whole number, got {v}")
            object.__setattr__(obj, f.name, int(v))
        if f.metadata.get("positive") and v <= 0:
            raise ValueError(f"{where} must be > 0, got {v}")
        if v < 0:
            raise ValueError(f"{where} must be >= 0, got {v}")


@dataclass(frozen=True)
class CellRead:
    """``[array]``: how a multiply reads the cells."""

    v_read_v: float = _q(0.2, True, "read voltage on an active row")
    t_read_s: float = _q(50e-9, True, "read pulse width: how long the cells conduct")

    def __post_init__(self) -> None:
        _check(self)


@dataclass(frozen=True)
class RowDrivers:
    """``[drivers]``: the word-line driver / input DAC of one active row, per multiply."""

    e_row_j: float = _q(0.25e-12, doc="energy to drive one row for one multiply")

    def __post_init__(self) -> None:
        _check(self)


@dataclass(frozen=True)
class Readout:
    """``[readout]``: transimpedance amplifier and ADC, per conversion.

    ``e_conversion_j = e_tia_j + adc_fom_j_per_step * 2**enob`` with ``enob = adc_bits -
    adc_enob_loss`` (the Walden figure of merit is defined per effective step).
    ``conversions_per_pair``: 2 when each column of a differential pair has its own TIA and
    ADC conversion (the difference taken digitally, as the crossbar model does), 1 when the
    pair is sensed differentially. ``n_adcs`` ADCs share the conversions (the columns are held,
    sample-and-hold, while they wait); a SAR conversion takes one cycle ``t_bit`` per bit: a
    multiply takes ``t_read + ceil(conversions / n_adcs) * adc_bits * t_bit``.
    ``p_column_static`` prices readout circuits kept biased for that whole time: ``conversions
    x p_column_static x t_multiply`` per multiply (0 in the shipped profile: each TIA is
    charged ``e_tia`` per conversion only).
    """

    adc_bits: int = _q(14, True, "ADC resolution")
    adc_enob_loss: float = _q(1.5, doc="bits lost to noise and distortion (ENOB = bits - loss)")
    adc_fom_j_per_step: float = _q(20e-15, doc="ADC Walden figure of merit, J per step")
    e_tia_j: float = _q(1e-12, doc="TIA energy per conversion")
    conversions_per_pair: int = _q(2, True, "conversions per differential pair (1 or 2)")
    n_adcs: int = _q(32, True, "ADCs shared by the conversions")
    t_bit_s: float = _q(70e-9, True, "one SAR bit cycle")
    p_column_static_w: float = _q(0.0, doc="power of each converted column's readout while a "
                                           "multiply is converted (TIA bias; 0: off)")

    def __post_init__(self) -> None:
        _check(self)
        if self.adc_bits > 24:
            raise ValueError(f"Readout.adc_bits must be <= 24, got {self.adc_bits}")
        if self.adc_enob_loss >= self.adc_bits:
            raise ValueError(f"Readout.adc_enob_loss ({self.adc_enob_loss}) must be below "
                             f"adc_bits ({self.adc_bits})")
        if self.conversions_per_pair not in (1, 2):
            raise ValueError(f"Readout.conversions_per_pair must be 1 or 2, got "
                             f"{self.conversions_per_pair}")

    @property
    def enob(self) -> float:
        return self.adc_bits - self.adc_enob_loss

    @property
    def t_conversion_s(self) -> float:
        return self.adc_bits * self.t_bit_s

    @property
    def e_adc_j(self) -> float:
        return self.adc_fom_j_per_step * 2.0 ** self.enob

    @property
    def e_conversion_j(self) -> float:
        return self.e_tia_j + self.e_adc_j


@dataclass(frozen=True)
class Programming:
    """``[programming]``: writing the random weights, once (not per inference)."""

    e_pulse_j: float = _q(300e-12, doc="energy of one programming (forming) pulse")
    pulses_per_cell: float = _q(1.0, doc="pulses per programmed cell")

    def __post_init__(self) -> None:
        _check(self)


@dataclass(frozen=True)
class DigitalCosts:
    """``[digital]``: digital logic at one node: arithmetic, on-chip weight reads, neurons.

    A synaptic operation costs ``e_add + weight_bits * e_sram`` (event-driven: an accumulate
    per nonzero weight of an active row) or ``e_mac + weight_bits * e_sram`` (dense: a MAC
    array multiplies every weight every step); a head weight the same with ``e_mac``; a neuron
    update (leak, add, compare, reset) ``e_neuron_update``. ``e_input_event`` is moving one
    input event on chip (off-chip data movement; 0 = not counted).
    """

    e_add_j: float = _q(0.1e-12, doc="one accumulate (integer, into a 32-bit sum)")
    e_mac_j: float = _q(1.5e-12, doc="one multiply-accumulate")
    e_sram_j_per_bit: float = _q(0.5e-12, doc="reading one weight bit from on-chip SRAM")
    weight_bits: int = _q(16, True, "bits per stored weight")
    e_neuron_update_j: float = _q(1.5e-12, doc="one LIF neuron update")
    e_input_event_j: float = _q(0.0, doc="bringing one input event on chip (0: not counted)")
    clock_hz: float = _q(500e6, True, "clock of the synaptic pipeline")
    lanes: int = _q(16, True, "synaptic operations per clock")
    t_step_s: float = _q(10e-9, doc="one time step's neuron updates (all neurons in parallel)")

    def __post_init__(self) -> None:
        _check(self)


@dataclass(frozen=True)
class MacroProfile:
    """An RRAM in-memory-computing macro plus the digital logic beside it."""

    name: str = "macro"
    description: str = ""
    array: CellRead = field(default_factory=CellRead)
    drivers: RowDrivers = field(default_factory=RowDrivers)
    readout: Readout = field(default_factory=Readout)
    programming: Programming = field(default_factory=Programming)
    digital: DigitalCosts = field(default_factory=DigitalCosts)
    kind = "macro"


@dataclass(frozen=True)
class DigitalProfile:
    """A digital accelerator: event-driven (one accumulate per nonzero weight of an active row)
    or dense (every weight every step)."""

    name: str = "digital"
    description: str = ""
    event_driven: bool = True
    digital: DigitalCosts = field(default_factory=DigitalCosts)
    kind = "digital"

    def __post_init__(self) -> None:
        if not isinstance(self.event_driven, bool):
            raise TypeError(f"DigitalProfile.event_driven must be true or false, got "
                            f"{self.event_driven!r}")


@dataclass(frozen=True)
class GPUProfile:
    """A GPU running the dense reference: ``energy = board_power * FLOPs / (peak *
    utilisation)``; at batch 1 an inference takes ``n_bins * t_step``."""

    name: str = "gpu"
    description: str = ""
    board_power_w: float = _q(400.0, True, "board power while computing")
    peak_flop_per_s: float = _q(19.5e12, True, "peak FP32 throughput")
    utilisation: float = _q(0.3, True, "fraction of the peak reached (0-1]")
    t_step_s: float = _q(10e-6, doc="one time step at batch 1 (kernel launches)")
    kind = "gpu"

    def __post_init__(self) -> None:
        _check(self)
        if self.utilisation > 1:
            raise ValueError(f"GPUProfile.utilisation must be in (0, 1], got {self.utilisation}")


Profile = MacroProfile | DigitalProfile | GPUProfile
_KINDS = {"macro": MacroProfile, "digital": DigitalProfile, "gpu": GPUProfile}
_PLAIN_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_TEXT = ("name", "description")


def _from_table(cls, table: dict, where: str, top: bool = True):
    """Build ``cls`` from a TOML table: every field given, in its unit; nothing unknown."""
    if not isinstance(table, dict):
        raise ValueError(f"{where} must be a table, got {table!r}")
    kwargs, known = {}, set()
    for f in dataclasses.fields(cls):
        key, unit = unit_of_field(f.name)
        known.add(key)
        at = f"{where}{key}"
        if dataclasses.is_dataclass(f.default_factory() if f.default_factory
                                    is not dataclasses.MISSING else None):
            if key not in table:
                raise ValueError(f"{at}: table [{key}] is missing")
            kwargs[f.name] = _from_table(f.default_factory().__class__, table[key],
                                         f"{where}[{key}] ", top=False)
            continue
        if key not in table:
            if key in _TEXT:
                continue
            what = f"a quantity in {unit}" if unit else "a number"
            raise ValueError(f"{at} is missing ({what}: {f.metadata.get('doc', key)})")
        value = table[key]
        if key in _TEXT:
            if not isinstance(value, str) or (key == "name" and not value.strip()):
                raise ValueError(f"{at} must be {'a non-empty name' if key == 'name' else 'text'}"
                                 f", got {value!r}")
            kwargs[f.name] = value
        elif f.name == "event_driven":
            if not isinstance(value, bool):
                raise ValueError(f"{at} must be true or false, got {value!r}")
            kwargs[f.name] = value
        elif unit is None:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{at} must be a plain number (dimensionless), got {value!r}")
            kwargs[f.name] = value
        else:
            kwargs[f.name] = parse_quantity(value, unit, at)
    unknown = sorted(set(table) - known - ({"kind"} if top else set()))
    if unknown:
        raise ValueError(f"{where}unknown key(s) {unknown}; known: {sorted(known)}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where.strip().rstrip(':') or cls.__name__}: {exc}") from None


def load_profile(path: str | os.PathLike) -> Profile:
    """Read a profile TOML file.

    Raises
    ------
    ValueError
        Naming the file and the key: not TOML, no or an unknown ``kind``, a missing, unknown,
        negative, unit-less or wrongly-dimensioned parameter.
    OSError
        The file cannot be read.
    """
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8-sig"))
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{p}: not a valid TOML profile: {exc}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{p}: not a text (TOML) file") from None
    kind = data.get("kind")
    if not isinstance(kind, str) or kind not in _KINDS:
        raise ValueError(f"{p}: kind must be one of {sorted(_KINDS)}, got {kind!r}")
    return _from_table(_KINDS[kind], data, f"{p}: ")


def shipped_profile(name: str) -> Profile:
    """One of the :data:`SHIPPED` profiles by name."""
    if name not in SHIPPED:
        raise ValueError(f"unknown profile {name!r}; shipped: {sorted(SHIPPED)}")
    return load_profile(PROFILE_DIR / SHIPPED[name])


def profile_to_dict(profile) -> dict:
    """A profile as a JSON/TOML-ready dict in the file's own form (quantities with units)."""
    out = {"kind": profile.kind} if hasattr(profile, "kind") else {}
    for f in dataclasses.fields(profile):
        v = getattr(profile, f.name)
        key, unit = unit_of_field(f.name)
        if dataclasses.is_dataclass(v):
            out[key] = profile_to_dict(v)
            out[key].pop("kind", None)
        elif unit:
            out[key] = format_quantity(v, unit, digits=15)
        else:
            out[key] = v
    return out


def override(profile, setting: str):
    """A copy of ``profile`` with one parameter changed: ``setting`` is ``"table.key=value"``
    (or ``"key=value"`` at the top), the value as the file writes it (``"readout.adc_bits=8"``,
    ``"array.t_read=20 ns"``). For sweeps and ``lsm energy --set``.

    Raises
    ------
    ValueError
        An unknown table or key, or a value the file would refuse; naming ``setting``.
    """
    if "=" not in setting:
        raise ValueError(f"--set {setting!r}: expected table.key=value, e.g. "
                         "readout.adc_bits=8")
    path, _, text = setting.partition("=")
    keys = path.strip().split(".")
    table = profile_to_dict(profile)
    node = table
    for k in keys[:-1]:
        if not isinstance(node.get(k), dict):
            raise ValueError(f"--set {setting!r}: {profile.kind} profiles have no table {k!r}")
        node = node[k]
    if keys[-1] not in node or isinstance(node[keys[-1]], dict):
        elsewhere = [f"{t}.{keys[-1]}" for t, v in table.items()
                     if isinstance(v, dict) and keys[-1] in v]
        hint = (f"did you mean {' or '.join(elsewhere)}?" if elsewhere else "known: " + str(
            sorted(k for k, v in node.items() if not isinstance(v, dict)
                   and k not in ("kind",))))
        raise ValueError(f"--set {setting!r}: no parameter {keys[-1]!r} there; {hint}")
    if keys[-1] in ("kind",):
        raise ValueError(f"--set {setting!r}: the kind of a profile cannot be changed")
    text = text.strip()
    old = node[keys[-1]]
    if isinstance(old, bool):
        if text not in ("true", "false"):
            raise ValueError(f"--set {setting!r}: expected true or false")
        node[keys[-1]] = text == "true"
    elif isinstance(old, str) and keys[-1] not in _TEXT:
        node[keys[-1]] = text  # a quantity: parsed (and checked) with its unit below
    elif isinstance(old, str):
        node[keys[-1]] = text
    else:
        if not _PLAIN_NUMBER.fullmatch(text):
            raise ValueError(f"--set {setting!r}: expected a plain (dimensionless, finite) "
                             "number such as 8 or 0.5")
        # a whole number stays an int, a fraction is a float: the field's own check says
        # whether it takes one
        node[keys[-1]] = int(text) if re.fullmatch(r"[+-]?\d+", text) else float(text)
    return _from_table(type(profile), table, f"--set {setting!r}: ")
