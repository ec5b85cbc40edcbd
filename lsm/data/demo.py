"""The demo's offline twins (made once, reused by `lsm demo`, the benches and the examples)."""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["ensure_demo_twins"]


def ensure_demo_twins(base: Path, progress: bool = True,
                      which: tuple = ("nmnist", "ntidigits")) -> tuple[Path, Path]:
    """The demo's offline twins under ``base/twins`` (made on first use, about 30 s); only
    those named in ``which`` are made (both paths are returned either way)."""
    from lsm.data.twin_nmnist import make_nmnist_twin
    from lsm.data.twin_ntidigits import make_ntidigits_twin

    nm, td = base / "twins" / "nmnist", base / "twins" / "ntidigits.hdf5"
    if "nmnist" in which and not (nm / "lsm_twin.json").exists():
        print(f"making the N-MNIST twin in {nm} ...", file=sys.stderr)
        make_nmnist_twin(nm, n_train=1497, n_test=300, seed=0, progress=progress)
    if "ntidigits" in which and not td.exists():
        print(f"making the N-TIDIGITS twin in {td} ...", file=sys.stderr)
        make_ntidigits_twin(td, n_speakers=60, takes=2, seed=0, progress=progress)
    return nm, td
