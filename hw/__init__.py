"""The lab: driver, protocol, safety limits and journal of the RRAM in-memory computing macro.

Empty for now; it will depend on ``lsm`` (never the other way round).
"""
