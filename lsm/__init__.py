"""rram-lsm: liquid state machines on resistive-memory random weights.

The simulator package: configuration, weight sources, the event-driven Numba reservoir and its
dense torch reference. ``lsm`` imports neither ``hw`` nor ``calibration``.
"""

from lsm.config import LSMConfig
from lsm.events import EventBatch
from lsm.reservoir import LSM
from lsm.weights import ArrayWeights, GaussianWeights, WeightSet, WeightSource

__version__ = "0.1.0"

__all__ = [
    "LSM",
    "LSMConfig",
    "EventBatch",
    "WeightSet",
    "WeightSource",
    "GaussianWeights",
    "ArrayWeights",
    "__version__",
]
