"""The lab: PyVISA driver, protocol, safety limits and journal of the IMC40 RRAM macro, and an
emulated macro over a real TCP socket. Depends on ``lsm`` (never the other way round)."""

from hw.journal import Journal
from hw.limits import LimitError, Limits
from hw.macro import DEFAULT_RESOURCE, InstrumentError, LinkError, Macro
from lsm.crossbar.mapfile import write_map as export_map  # the one map format, lab's name

__all__ = ["Macro", "Limits", "LimitError", "Journal", "export_map", "InstrumentError",
           "LinkError", "DEFAULT_RESOURCE"]
