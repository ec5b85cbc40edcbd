"""Conductance-map files: one format (lsm.crossbar.mapfile), written by the lab, read by
MeasuredWeights; round trips in both containers, versions, and bad files named."""

import json

import h5py
import numpy as np
import pytest

import hw
from lsm import LSM, LSMConfig
from lsm.crossbar import MAP_FORMAT_VERSION, DifferentialMapping, read_map, write_map
from lsm.weights import MeasuredWeights

SETTINGS = {"instrument": {"serial": "EMU-0"}, "region": [0, 30, 0, 20], "repeats": 2,
            "v_read": 0.2}
SUFFIXES = ["m.npz", "m.h5", "m.hdf5", "m.H5", "m.map"]


@pytest.fixture
def g_us():
    return np.random.default_rng(0).normal(25.0, 6.8, (30, 20))


@pytest.mark.parametrize("name", SUFFIXES)
def test_round_trip(tmp_path, g_us, name):
    path = write_map(tmp_path / name, g_us, SETTINGS)
    assert path == tmp_path / name and sorted(p.name for p in tmp_path.iterdir()) == [name]
    g, settings = read_map(path)
    assert g.dtype == np.float64 and g.shape == (30, 20)
    np.testing.assert_array_equal(g, g_us.astype(np.float32))  # stored at float32
    assert settings == SETTINGS
    hdf5 = name.lower().endswith((".h5", ".hdf5"))
    assert h5py.is_hdf5(path) == hdf5
    if hdf5:
        with h5py.File(path) as f:
            assert f.attrs["format_version"] == MAP_FORMAT_VERSION
            assert json.loads(f.attrs["settings"]) == SETTINGS
    else:
        with np.load(path) as f:
            assert int(f["format_version"]) == MAP_FORMAT_VERSION
            assert json.loads(str(f["settings"])) == SETTINGS


def test_the_lab_writes_the_same_format():
    assert hw.export_map is write_map


def test_settings_json_cannot_hold_are_written_as_text(tmp_path, g_us):
    path = write_map(tmp_path / "m.npz", g_us, {"path": tmp_path, "n": np.int64(3)})
    assert read_map(path)[1] == {"path": str(tmp_path), "n": "3"}
    assert read_map(write_map(tmp_path / "e.h5", g_us, {}))[1] == {}


def test_maps_from_before_the_version_read_as_version_1(tmp_path, g_us):
    np.savez(tmp_path / "old.npz", g_us=g_us.astype(np.float32),
             settings=np.array(json.dumps(SETTINGS)))
    with h5py.File(tmp_path / "old.h5", "w") as f:
        f.create_dataset("g_us", data=g_us.astype(np.float32))
        f.attrs["settings"] = json.dumps(SETTINGS)
    np.savez(tmp_path / "bare.npz", g_us=g_us)  # no settings at all
    for name in ("old.npz", "old.h5"):
        g, settings = read_map(tmp_path / name)
        np.testing.assert_array_equal(g, g_us.astype(np.float32))
        assert settings == SETTINGS
    g, settings = read_map(tmp_path / "bare.npz")
    np.testing.assert_array_equal(g, g_us)
    assert settings == {}


def test_write_is_atomic(tmp_path, g_us, monkeypatch):
    for name in ("m.npz", "m.h5"):
        write_map(tmp_path / name, g_us, SETTINGS)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez_compressed", boom)
    monkeypatch.setattr(h5py.Group, "create_dataset", boom)
    for name in ("m.npz", "m.h5"):
        with pytest.raises(KeyboardInterrupt):
            write_map(tmp_path / name, g_us * 2, SETTINGS)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # no temporaries


@pytest.mark.parametrize("g, settings, error, message", [
    (np.zeros(5), {}, ValueError, r"g_us must be 2-D .* got shape \(5,\)"),
    (np.array([["a", "b"]]), {}, ValueError, "g_us must hold real numbers"),
    (np.zeros((2, 2)), "v_read=0.2", TypeError, "settings must be a mapping, got str"),
])
def test_write_refuses_what_is_not_a_map(tmp_path, g, settings, error, message):
    with pytest.raises(error, match=message):
        write_map(tmp_path / "m.npz", g, settings)
    assert not list(tmp_path.iterdir())


def _npz(**arrays):
    return lambda p: np.savez(p, **arrays)


def _h5(make):
    def write(p):
        with h5py.File(p, "w") as f:
            make(f)
    return write


def _h5_map(g, **attrs):
    def make(f):
        f.create_dataset("g_us", data=g)
        f.attrs.update(attrs)
    return _h5(make)


GOOD = np.full((4, 4), 20.0, np.float32)
NAN = GOOD.copy()
NAN[2, 3] = np.nan

BAD_FILES = {
    "future.npz": (_npz(g_us=GOOD, format_version=np.array(MAP_FORMAT_VERSION + 1)),
                   f"map format version {MAP_FORMAT_VERSION + 1} is newer than this reader's"),
    "future.h5": (_h5_map(GOOD, format_version=MAP_FORMAT_VERSION + 1),
                  f"map format version {MAP_FORMAT_VERSION + 1} is newer"),
    "version_text.npz": (_npz(g_us=GOOD, format_version=np.array("one")),
                         "format_version must be a positive integer"),
    "version_zero.h5": (_h5_map(GOOD, format_version=0),
                        "format_version must be a positive integer"),
    "nan.npz": (_npz(g_us=NAN), r"1 cell\(s\) that are not finite \(first \[2, 3\] = nan\)"),
    "inf.h5": (_h5_map(np.where(NAN == NAN, GOOD, np.inf)), r"first \[2, 3\] = inf"),
    "cube.npz": (_npz(g_us=np.zeros((2, 3, 4))), r"g_us must be 2-D .* got shape \(2, 3, 4\)"),
    "cube.h5": (_h5_map(np.zeros((2, 3, 4))), r"g_us must be 2-D .* got shape \(2, 3, 4\)"),
    "settings_junk.npz": (_npz(g_us=GOOD, settings=np.array("v_read=0.2")),
                          "settings are not valid JSON"),
    "settings_list.h5": (_h5_map(GOOD, settings="[1, 2]"), "settings must be a JSON object"),
    "settings_array.npz": (_npz(g_us=GOOD, settings=np.zeros(3)), "settings must be JSON text"),
    "bools.npz": (_npz(g_us=GOOD > 0), "g_us must hold real numbers"),
    "no_map.h5": (_h5(lambda f: f.create_dataset("other", data=GOOD)), "no 'g_us' dataset"),
    "not_zip.npz": (lambda p: p.write_bytes(b"junk"), "not an .npz file"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_files_are_refused_naming_the_file(tmp_path, case):
    make, message = BAD_FILES[case]
    path = tmp_path / case
    make(path)
    with pytest.raises(ValueError, match=message) as exc:
        read_map(path)
    assert str(path) in str(exc.value)


def test_size_is_checked_before_reading(tmp_path):
    write_map(tmp_path / "m.h5", np.zeros((64, 64)), {})
    write_map(tmp_path / "m.npz", np.zeros((64, 64)), {})
    for name in ("m.h5", "m.npz"):
        with pytest.raises(ValueError, match="over the memory budget") as exc:
            read_map(tmp_path / name, max_bytes=64 * 64 * 8 - 1)
        assert str(tmp_path / name) in str(exc.value)
        read_map(tmp_path / name, max_bytes=64 * 64 * 8)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="conductance map not found"):
        read_map(tmp_path / "none.h5")
    with pytest.raises(IsADirectoryError):
        read_map(tmp_path)


@pytest.mark.parametrize("name", ["m.npz", "m.h5"])
def test_measured_weights_read_the_format(tmp_path, g_us, name):
    cfg = LSMConfig(n_inputs=20, n_neurons=5, n_bins=5)
    write_map(tmp_path / name, g_us, SETTINGS)
    lsm = LSM(cfg, weights=MeasuredWeights(tmp_path / name, offset=(3, 4)))
    block = g_us.astype(np.float32).astype(np.float64)[3:28, 4:14]
    w_in, w_rec = DifferentialMapping(20, 5).weights(block, 0.07, 0.07)
    np.testing.assert_array_equal(lsm.w_in, w_in)
    np.testing.assert_array_equal(lsm.w_rec, w_rec)
    assert lsm.provenance["map_settings"] == SETTINGS
    json.dumps(lsm.provenance)  # it keys the feature cache
    nan = g_us.copy()
    nan[0, 0] = np.nan  # outside the block, but a map must be whole
    write_map(tmp_path / name, nan, SETTINGS)
    with pytest.raises(ValueError, match="not finite"):
        LSM(cfg, weights=MeasuredWeights(tmp_path / name, offset=(3, 4)))
