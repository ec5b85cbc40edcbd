import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).parents[1]


def load_script(relpath: str):
    """Import a script of examples/ or benchmarks/ (not packages) as a module."""
    path = ROOT / relpath
    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    # registered under its name: numba's on-disk cache (cache=True) re-imports a function's
    # module by name when it loads a cached kernel, and an unregistered one is "<dynamic>"
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def random_raster(rng, n_samples, n_bins, n_inputs, activity):
    return (rng.random((n_samples, n_bins, n_inputs)) < activity).astype(np.uint8)


def integer_weights(rng, n_inputs, n_neurons, p_rec=1.0):
    """Small integer weights: every partial sum is exact in float32, so no summation order can
    flip a threshold crossing."""
    w_in = rng.integers(-3, 4, (n_inputs, n_neurons)).astype(np.float32)
    w_rec = rng.integers(-2, 3, (n_neurons, n_neurons)).astype(np.float32)
    if p_rec < 1:
        w_rec *= rng.random(w_rec.shape) < p_rec
    return w_in, w_rec


def pytest_addoption(parser):
    parser.addoption("--resource", default=None,
                     help="VISA resource of a real IMC40 macro; enables the tests marked chip")
    parser.addoption("--exhaustive", action="store_true",
                     help="also run the tests marked exhaustive (every combination of a grid "
                          "whose representatives run anyway)")


def pytest_collection_modifyitems(config, items):
    skip_chip = pytest.mark.skip(reason="needs a real chip: pass --resource")
    skip_grid = pytest.mark.skip(reason="the rest of a grid: pass --exhaustive")
    for item in items:
        if "chip" in item.keywords and not config.getoption("--resource"):
            item.add_marker(skip_chip)
        if "exhaustive" in item.keywords and not config.getoption("--exhaustive"):
            item.add_marker(skip_grid)


@pytest.fixture
def chip_resource(request):
    return request.config.getoption("--resource")
