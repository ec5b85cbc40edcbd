"""Simulated resistive-memory crossbar: device physics, array, periphery, weight mapping, the
physics of computing in the loop, conductance-map and calibration files, and the digital twin
of a calibrated chip (:mod:`lsm.crossbar.twin`).

Independent of the LSM (it imports nothing from the reservoir), so that the lab emulator can run
on it too.
"""

from lsm.crossbar.array import (
    STUCK_HRS,
    STUCK_LRS,
    STUCK_NONE,
    CrossbarArray,
    Region,
)
from lsm.crossbar.calfile import (
    CALIBRATION_FORMAT_VERSION,
    Calibration,
    read_calibration,
    write_calibration,
)
from lsm.crossbar.device import (
    DeviceParams,
    DriftParams,
    FaultParams,
    ProgrammingParams,
    Pulse,
    ReadParams,
)
from lsm.crossbar.inloop import InLoopPhysics, clipped_normal_variance
from lsm.crossbar.mapfile import MAP_FORMAT_VERSION, read_map, write_map
from lsm.crossbar.mapping import DifferentialMapping
from lsm.crossbar.peripherals import ADC, InputDAC, IRDrop

__all__ = [
    "CrossbarArray", "Region", "STUCK_NONE", "STUCK_HRS", "STUCK_LRS",
    "DeviceParams", "ProgrammingParams", "ReadParams", "DriftParams", "FaultParams", "Pulse",
    "DifferentialMapping", "InputDAC", "ADC", "IRDrop", "InLoopPhysics", "clipped_normal_variance",
    "MAP_FORMAT_VERSION", "read_map", "write_map", "Calibration", "read_calibration",
    "write_calibration", "CALIBRATION_FORMAT_VERSION",
]
