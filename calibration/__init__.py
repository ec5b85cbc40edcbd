"""Characterise a macro (real or emulated) and fit its digital twin.

Empty for now; it will depend on ``hw`` and ``lsm`` (never the other way round).
"""
