"""The lab: PyVISA driver, protocol, safety limits and journal of the IMC40 RRAM macro, and an
emulated macro over a real TCP socket. Depends on ``lsm`` (never the other way round)."""

from hw.journal import Journal, export_map
from hw.limits import LimitError, Limits
from hw.macro import DEFAULT_RESOURCE, InstrumentError, LinkError, Macro

__all__ = ["Macro", "Limits", "LimitError", "Journal", "export_map", "InstrumentError",
           "LinkError", "DEFAULT_RESOURCE"]
