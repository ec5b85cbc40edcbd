"""Energy and latency per inference: activity counts from real runs, priced by hardware cost
profiles (an RRAM macro, a digital accelerator, a GPU).

>>> from lsm.energy import shipped_profile
>>> shipped_profile("imc40").readout.adc_bits
14

- :mod:`lsm.energy.activity`: what an inference does (:class:`Activity`, counted by the
  kernels with ``LSM.encode(..., return_activity=True)`` or from rasters by
  :func:`count_activity`);
- :mod:`lsm.energy.profiles`: what each operation costs (:class:`MacroProfile`,
  :class:`DigitalProfile`, :class:`GPUProfile`; TOML files with units, three shipped);
- :mod:`lsm.energy.model`: the pricing (:class:`Workload`, :func:`estimate`,
  :class:`EnergyReport`).
"""

from lsm.energy.activity import ACTIVITY_FIELDS, Activity, count_activity, input_row_counts
from lsm.energy.model import (
    G_BASE_US,
    EnergyReport,
    PlatformCost,
    Workload,
    calibration_conductances,
    conductance_block,
    energy_per_inference,
    estimate,
)
from lsm.energy.profiles import (
    DEFAULT_PROFILES,
    SHIPPED,
    CellRead,
    DigitalCosts,
    DigitalProfile,
    GPUProfile,
    MacroProfile,
    Programming,
    Readout,
    RowDrivers,
    load_profile,
    override,
    profile_to_dict,
    shipped_profile,
)

__all__ = ["ACTIVITY_FIELDS", "Activity", "count_activity", "input_row_counts", "G_BASE_US",
           "EnergyReport", "PlatformCost", "Workload", "calibration_conductances",
           "conductance_block", "energy_per_inference", "estimate", "SHIPPED", "DEFAULT_PROFILES",
           "CellRead", "DigitalCosts", "DigitalProfile", "GPUProfile", "MacroProfile",
           "Programming", "Readout", "RowDrivers", "load_profile", "override", "profile_to_dict",
           "shipped_profile"]
