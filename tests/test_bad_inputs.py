"""Bad inputs are errors, not tracebacks (issue 10, items 7-10).

A corpus of broken files and settings, each made by a fixture in the real on-disk format
(np.savez / zip members, h5py, N-MNIST .bin through tonic, TOML), run through the Python API
(the specific exception, a message naming the file, sample or key) and through every ``lsm``
subcommand that takes it: exit status 2, ``lsm: error:`` and the culprit's name on stderr, no
traceback, nothing left on disk. Under ``--on-bad-sample skip`` broken samples are counted and
named, and the run goes on.
"""

import os
import re
import subprocess
import sys
import time
import warnings
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from lsm import LSM, LSMConfig
from lsm.cli import main
from lsm.data import (
    BadSampleError,
    FeatureCache,
    encode_dataset,
    load_streams,
    nmnist,
    ntidigits,
    ntidigits_preprocessing,
)
from lsm.data.formats import NMNIST_DTYPE, write_nmnist_bin
from lsm.events import EventBatch
from lsm.io import load_npz, remove_stale_temporaries
from lsm.validation import InvalidTypeError, MemoryBudgetError

TINY = LSMConfig(n_inputs=8, n_neurons=10, n_bins=5)
TINY_TIDIGITS = LSMConfig(n_inputs=64, n_neurons=10, n_bins=5)
TINY_NMNIST = LSMConfig(n_inputs=256, n_neurons=10, n_bins=5)
U64_MAX = 2**64 - 1


# ---------------------------------------------------------------------- helpers
def snapshot(root: Path) -> list:
    """Every path under ``root``: what a failed command must leave as it was."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def cli(capsys, *argv) -> tuple[int, str, str]:
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse refused the option itself
        rc = exc.code
    out, err = capsys.readouterr()
    return rc, out, err


def assert_user_error(rc: int, err: str, *names) -> None:
    """Exit 2 and one error line: ours (``lsm: error: ...``) or argparse's usage and
    ``lsm <command>: error: argument --option: ...``."""
    assert rc == 2, err
    assert err.startswith("lsm: error: ") or (
        err.startswith("usage: lsm") and "error: " in err), err
    assert "Traceback" not in err
    for name in names:
        assert str(name) in err, (name, err)


def npy_header_member(shape, dtype="<f8") -> bytes:
    """A .npy member that declares ``shape`` but holds only its header (and 8 bytes): what a
    compression bomb looks like before inflation."""
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False,
                                               "shape": shape})
    return buf.getvalue() + b"\0" * 8


def zip_file(path: Path, members: dict) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def good_events(n_samples=3):
    """A tiny event file's arrays for TINY (5 bins x 8 channels)."""
    raster = np.zeros((n_samples, TINY.n_bins, TINY.n_inputs), np.uint8)
    raster[:, 0, 1] = 1
    raster[:, 3, 5] = 1
    b = EventBatch.from_raster(raster)
    return {"offsets": b.offsets, "bins": b.bins, "channels": b.channels}


@pytest.fixture
def tiny_toml(tmp_path):
    return TINY.save(tmp_path / "tiny.toml")


# ---------------------------------------------------------------------- item 7: inputs
@pytest.mark.parametrize("stream, message", [
    ((np.array([2**32 + 3]), np.array([1])), r"sample 0: bins\[0\] = 4294967299 is outside"),
    ((np.array([1]), np.array([2**32 + 5])), r"sample 0: channels\[0\] = 4294967301 is outside"),
    ((np.array([U64_MAX], np.uint64), np.array([1])), rf"bins\[0\] = {U64_MAX} is outside"),
    ((np.array([0, 1]), np.array([3, -1])), r"channels\[1\] = -1 is outside"),
    ((np.array([0.5]), np.array([1])), "bins must hold integers, got dtype float64"),
    ((np.array([np.nan]), np.array([1])), "bins must hold integers"),
    ((np.array(["0"]), np.array([1])), "bins must hold integers"),
    ((np.array([True]), np.array([1])), "bins must hold integers, got dtype bool"),
    ((np.array([0, 1]), np.array([1])), "bins and channels differ in length"),
])
def test_streams_are_checked_before_any_cast(stream, message):
    lsm = LSM(TINY)
    with pytest.raises(ValueError, match=message):
        lsm.encode([(np.array([0]), np.array([0])), stream][1:], progress=False)


def test_empty_float_streams_encode_as_no_events():
    """np.array([]) is float64: an empty sample, not a numba TypingError."""
    lsm = LSM(TINY)
    counts = lsm.encode([(np.array([]), np.array([]))], features="counts", progress=False)
    assert counts.shape == (1, TINY.n_neurons) and not counts.any()
    batch = EventBatch(np.array([0, 0]), np.array([]), np.array([]), TINY.n_bins, TINY.n_inputs)
    assert batch.bins.dtype == np.int32 and batch.offsets.dtype == np.int64
    assert not lsm.encode(batch, features="counts", progress=False).any()


@pytest.mark.parametrize("offsets, bins, message", [
    (np.array([0, 5, 3], np.uint64), np.array([0, 1, 2]), "offsets must start at 0 and end"),
    (np.array([0, 2, 1, 3]), np.array([0, 1, 2]), r"offsets must be non-decreasing"),
    (np.array([0.0, 3.0]), np.array([0, 1, 2]), "offsets must be a 1-D integer array"),
    (np.array([0, 1], np.uint64), np.array([U64_MAX], np.uint64), str(U64_MAX)),
])
def test_event_batch_checks_offsets_and_values_in_their_own_dtype(offsets, bins, message):
    with pytest.raises(ValueError, match=message):
        EventBatch(offsets, bins, np.ones(len(bins), np.int64), TINY.n_bins, TINY.n_inputs)


@pytest.mark.parametrize("raster, message", [
    (np.full((1, 5, 8), 1 + 1j), "boolean or numeric"),
    (np.full((1, 5, 8), np.nan), "sample 0, bin 0, channel 0 holds nan"),
    (np.full((1, 5, 8), U64_MAX, np.uint64), f"holds {U64_MAX}"),
])
def test_raster_values(raster, message):
    with pytest.raises(ValueError, match=message):
        LSM(TINY).encode(raster, progress=False)


def test_binned_output_over_the_memory_budget_is_refused_before_allocating():
    cfg = LSMConfig(n_inputs=8, n_neurons=1000, n_bins=10_000_000)
    with pytest.raises(MemoryBudgetError, match="binned spikes of 300 samples"):
        LSM(cfg).encode([(np.array([], int), np.array([], int))] * 300, features="binned",
                        progress=False)


# bad .npz files: name -> (writer, message); every one is refused by load_npz and lsm encode
def _npy_named_npz(p):
    np.save(p.with_suffix(".npy"), np.zeros(3))
    p.with_suffix(".npy").rename(p)


BAD_NPZ = {
    "npy_named_npz": (_npy_named_npz, "a single .npy array, not an .npz"),
    "text": (lambda p: p.write_text("hello"), r"not an .npz file \(not a zip archive\)"),
    "foreign_member": (lambda p: zip_file(p, {"raster.npy": npy_header_member((1,)),
                                              "notes.txt": b"hi"}),
                       "member 'notes.txt' is not a .npy array"),
    "object_labels": (lambda p: np.savez(p, **good_events(), labels=np.array([1, "a", None],
                                                                             dtype=object)),
                      r"array 'labels': object arrays are not accepted"),
    "bomb": (lambda p: zip_file(p, {"raster.npy": npy_header_member((100_000, 100, 256))}),
             r"array 'raster': declares shape \(100000, 100, 256\) float64 = 19.1 GiB"),
    "truncated": (lambda p: p.write_bytes(_savez_bytes(p, **good_events())[:60]),
                  "not an .npz file|damaged"),
    "damaged_member": (lambda p: zip_file(p, {"raster.npy": npy_header_member((3, 5, 8), "|u1")}),
                       "array 'raster' is damaged"),
    "bad_header": (lambda p: zip_file(p, {"raster.npy": b"\x93NUMPY\x01\x00garbage"}),
                   "array 'raster': not a valid .npy array"),
}


def _savez_bytes(p, **arrays) -> bytes:
    np.savez(p, **arrays)
    return p.read_bytes()


@pytest.mark.parametrize("case", sorted(BAD_NPZ))
def test_bad_npz_python_api(tmp_path, case):
    write, message = BAD_NPZ[case]
    path = tmp_path / f"{case}.npz"
    write(path)
    with pytest.raises(ValueError, match=message) as exc:
        load_npz(path)
    assert str(path) in str(exc.value)


@pytest.mark.parametrize("case", sorted(BAD_NPZ))
def test_bad_npz_lsm_encode(tmp_path, capsys, tiny_toml, case):
    write, message = BAD_NPZ[case]
    path = tmp_path / f"{case}.npz"
    write(path)
    before = snapshot(tmp_path)
    rc, _, err = cli(capsys, "encode", path, "--out", tmp_path / "o" / "f.npz", "--config",
                     tiny_toml, "--no-progress")
    assert_user_error(rc, err, path)
    assert re.search(message, err), err
    assert snapshot(tmp_path) == before


def test_compressed_zeros_over_a_budget_are_refused_from_the_header(tmp_path):
    """A real np.savez_compressed of zeros: 8 MB declared in a few kB; refused unread."""
    path = tmp_path / "zeros.npz"
    np.savez_compressed(path, raster=np.zeros((1000, 1000), np.float64))
    assert path.stat().st_size < 100_000
    with pytest.raises(ValueError, match=r"'raster': declares shape \(1000, 1000\) float64"):
        load_npz(path, max_bytes=1_000_000)
    np.savez_compressed(path, a=np.zeros(100_000, np.uint8), b=np.zeros(100_000, np.uint8))
    with pytest.raises(ValueError, match="arrays declare .* together"):
        load_npz(path, max_bytes=150_000)
    assert set(load_npz(path)) == {"a", "b"}


# bad contents of a well-formed .npz, for lsm encode with the tiny config
BAD_CONTENT = {
    "labels_short": ({**good_events(3), "labels": np.arange(2)},
                     r"labels must be 1-D with one label per sample \(3\), got shape \(2,\)"),
    "labels_2d": ({**good_events(3), "labels": np.zeros((3, 2), int)},
                  r"got shape \(3, 2\)"),
    "labels_fraction": ({**good_events(3), "labels": np.array([0, 1.5, 2])},
                        r"labels\[1\] = 1.5 is not a whole number"),
    "labels_complex": ({**good_events(3), "labels": np.zeros(3, complex)},
                       "labels must be integers or strings, got dtype complex128"),
    "bins_u64": ({"offsets": np.array([0, 1]), "bins": np.array([U64_MAX], np.uint64),
                  "channels": np.array([1])}, rf"bins\[0\] = {U64_MAX} is outside \[0, 5\)"),
    "bins_wrap": ({"offsets": np.array([0, 1]), "bins": np.array([2**32 + 3]),
                   "channels": np.array([2**32 + 5])}, r"bins\[0\] = 4294967299 is outside"),
    "bins_float": ({"offsets": np.array([0, 1]), "bins": np.array([0.5]),
                    "channels": np.array([1])}, "bins must hold integers, got dtype float64"),
    "offsets_u64": ({"offsets": np.array([0, U64_MAX], np.uint64), "bins": np.array([0]),
                     "channels": np.array([1])}, f"offsets\\[-1\\] = {U64_MAX}"),
    "raster_shape": ({"raster": np.zeros((2, 5, 7))}, r"raster has shape \(2, 5, 7\)"),
    "raster_complex": ({"raster": np.zeros((2, 5, 8), complex)}, "boolean or numeric"),
    "raster_nan": ({"raster": np.full((2, 5, 8), np.nan)}, "holds nan"),
    "no_known_arrays": ({"frames": np.zeros(3)}, r"expected an array 'raster'"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONTENT))
def test_bad_npz_content_lsm_encode(tmp_path, capsys, tiny_toml, case):
    arrays, message = BAD_CONTENT[case]
    path = tmp_path / f"{case}.npz"
    np.savez(path, **arrays)
    before = snapshot(tmp_path)
    rc, _, err = cli(capsys, "encode", path, "--out", tmp_path / "f.npz", "--config", tiny_toml,
                     "--no-progress")
    assert_user_error(rc, err, path)
    assert re.search(message, err), err
    assert snapshot(tmp_path) == before


def test_empty_float_bins_file_encodes(tmp_path, capsys, tiny_toml):
    path = tmp_path / "empty.npz"
    np.savez(path, offsets=np.array([0, 0]), bins=np.array([]), channels=np.array([]),
             labels=np.array(["a"]))
    rc, _, err = cli(capsys, "encode", path, "--out", tmp_path / "f.npz", "--config", tiny_toml,
                     "--no-progress")
    assert rc == 0, err
    with np.load(tmp_path / "f.npz") as f:
        assert f["features"].shape == (1, TINY.n_neurons) and f["labels"].tolist() == ["a"]


# bad paths of lsm encode (input, --out, --config): name -> (make(tmp) -> argv, culprit)
def _paths(tmp, inp=None, out=None, config=None):
    good = tmp / "good.npz"
    np.savez(good, **good_events())
    return ["encode", inp or good, "--out", out or tmp / "f.npz", "--config",
            config or TINY.save(tmp / "tiny.toml"), "--no-progress"]


def _dangling(tmp):
    (tmp / "gone.npz").symlink_to(tmp / "nowhere.npz")
    return tmp / "gone.npz"


def _dir(tmp, name):
    (tmp / name).mkdir()
    return tmp / name


def _file(tmp, name, text="x"):
    (tmp / name).write_text(text)
    return tmp / name


BAD_PATHS = {
    "input_missing": (lambda t: _paths(t, inp=t / "nope.npz"), "input file not found"),
    "input_dir": (lambda t: _paths(t, inp=_dir(t, "d.npz")), "is a directory"),
    "input_dangling": (lambda t: _paths(t, inp=_dangling(t)), "dangling symbolic link"),
    "out_is_dir": (lambda t: _paths(t, out=_dir(t, "outdir")), "--out"),
    "out_under_file": (lambda t: _paths(t, out=_file(t, "plain") / "f.npz"), "is a file"),
    "config_dir": (lambda t: _paths(t, config=_dir(t, "cfg.toml")), "is a directory"),
    "config_missing": (lambda t: _paths(t, config=t / "none.toml"), "config file not found"),
    "config_binary": (lambda t: _paths(t, config=t / "bin.toml"), "not UTF-8 text"),
}


@pytest.mark.parametrize("case", sorted(BAD_PATHS))
def test_bad_paths_lsm_encode(tmp_path, capsys, case):
    make, message = BAD_PATHS[case]
    argv = make(tmp_path)
    if case == "config_binary":
        (tmp_path / "bin.toml").write_bytes(b"n_bins = 5\n\xff\xfe")
    before = snapshot(tmp_path)
    rc, _, err = cli(capsys, *argv)
    assert_user_error(rc, err, message)
    assert snapshot(tmp_path) == before


def _map_h5(p, make):
    with h5py.File(p, "w") as f:
        make(f)


BAD_MAPS = {
    "object.npz": (lambda p: np.savez(p, g_us=np.array([[1, None]], dtype=object)),
                   "object arrays are not accepted"),
    "strings.npz": (lambda p: np.savez(p, g_us=np.array([["a", "b"]])),
                    "g_us must hold real numbers"),
    "bomb.npz": (lambda p: zip_file(p, {"g_us.npy": npy_header_member((50_000, 50_000))}),
                 "over the 2.0 GiB budget"),
    "no_map.npz": (lambda p: np.savez(p, other=np.zeros(3)), r"no 'g_us' array"),
    "group.h5": (lambda p: _map_h5(p, lambda f: f.create_group("g_us")), "no 'g_us' dataset"),
    "strings.h5": (lambda p: _map_h5(p, lambda f: f.create_dataset("g_us", data=[b"a"])),
                   "g_us must hold real numbers"),
    "junk.h5": (lambda p: p.write_bytes(b"junk"), "not a readable HDF5 file"),
}


@pytest.mark.parametrize("case", sorted(BAD_MAPS))
def test_bad_measured_map(tmp_path, case):
    from lsm.weights import MeasuredWeights

    make, message = BAD_MAPS[case]
    path = tmp_path / case
    make(path)
    with pytest.raises(ValueError, match=message) as exc:
        LSM(TINY, weights=MeasuredWeights(path))
    assert str(path) in str(exc.value)


# ---------------------------------------------------------------------- item 10: config
BAD_TOML = {
    "decay_string": ('decay = "0.9"', InvalidTypeError, "decay must be a number"),
    "n_inputs_float": ("n_inputs = 256.0", InvalidTypeError, "n_inputs must be an integer"),
    "n_inputs_fraction": ("n_inputs = 256.5", InvalidTypeError, "n_inputs must be an integer"),
    "v_th_bool": ("v_th = true", InvalidTypeError, "v_th must be a number"),
    "seed_bool": ("seed = false", InvalidTypeError, "seed must be an integer"),
    "reset_int": ("reset = 3", InvalidTypeError, "reset must be a string"),
    "decay_table": ("decay = {a = 1}", InvalidTypeError, "decay must be a number"),
    "n_neurons_1e8": ("n_neurons = 1e8", InvalidTypeError, "n_neurons must be an integer"),
    "n_neurons_huge": ("n_neurons = 100000000", MemoryBudgetError,
                       "n_neurons=100000000 make a w_in"),
    "n_inputs_huge": ("n_inputs = 2000000000", MemoryBudgetError,
                      "n_inputs=2000000000, n_neurons=200 make a w_in"),
    "n_bins_int32": ("n_bins = 3000000000", ValueError, r"n_bins must be <= 2147483647"),
    "w_in_const_1e308": ("w_in_const = 1e308", ValueError, r"w_in_const must be in \[0.0, "),
    "w_rec_const_1e37": ("w_rec_const = 1e37", ValueError, "w_rec_const must be in"),
    "v_th_1e300": ("v_th = 1e300", ValueError, "v_th must be in"),
    "decay_nan": ("decay = nan", ValueError, "decay must be a finite number"),
    "unknown_key": ("n_neuron = 10", ValueError, r"unknown LSMConfig field\(s\) \['n_neuron'\]"),
    "not_toml": ("n_bins = = 5", ValueError, "not valid TOML"),
    "lsm_not_table": ("lsm = 3", ValueError, r"\[lsm\] must be a table"),
}


@pytest.mark.parametrize("case", sorted(BAD_TOML))
def test_bad_config_python_api(tmp_path, case):
    line, error, message = BAD_TOML[case]
    path = tmp_path / f"{case}.toml"
    path.write_text(f"[lsm]\n{line}\n" if not line.startswith("lsm =") else line + "\n")
    with pytest.raises(error, match=message) as exc:
        LSMConfig.load(path)
    assert str(path) in str(exc.value)
    assert isinstance(exc.value, ValueError)  # the CLI's user errors, also for TypeErrors


@pytest.mark.parametrize("case", ["decay_string", "n_inputs_fraction", "n_neurons_huge",
                                  "w_in_const_1e308", "unknown_key"])
@pytest.mark.parametrize("command", ["config", "encode"])
def test_bad_config_cli(tmp_path, capsys, case, command):
    line, _, message = BAD_TOML[case]
    path = tmp_path / f"{case}.toml"
    path.write_text(f"[lsm]\n{line}\n")
    argv = ["config", "--config", path] if command == "config" else _paths(tmp_path, config=path)
    before = snapshot(tmp_path)
    rc, out, err = cli(capsys, *argv)
    assert_user_error(rc, err, path)
    assert re.search(message, err) and out == ""
    assert snapshot(tmp_path) == before


def test_const_whose_product_overflows_float32_is_refused():
    """1e38 is a finite float32, 1e38 x a draw of ~10 uS is inf: refused at the config."""
    with np.errstate(over="ignore"):
        assert np.isinf(np.float32(1e38) * np.float32(9.5))
    with pytest.raises(ValueError, match="w_in_const"):
        LSMConfig(w_in_const=1e38)
    LSMConfig(w_in_const=1e6)  # the largest allowed: finite weights, finite sums


# ---------------------------------------------------------------------- item 8: N-TIDIGITS
def tidigits_file(path: Path, samples: list, split="train", labels=None) -> Path:
    """An N-TIDIGITS-layout file written with h5py, samples given as raw (id, addresses,
    timestamps) arrays of any dtype; ``labels`` replaces the id dataset."""
    with h5py.File(path, "w") as f:
        ids = [s[0] for s in samples]
        if labels is None:
            f.create_dataset(f"{split}_labels", data=np.array(
                [i if isinstance(i, bytes) else i.encode() for i in ids]))
        else:
            labels(f, split, ids)
        ga, gt = f.create_group(f"{split}_addresses"), f.create_group(f"{split}_timestamps")
        for sid, x, t in samples:
            name = sid.decode("latin-1") if isinstance(sid, bytes) else sid
            if name in ga:
                continue
            ga.create_dataset(name, data=x)
            gt.create_dataset(name, data=t)
    return path


def good_sample(sid="s1-0-3"):
    return (sid, np.array([1, 5, 9, 63]), np.array([0.0, 0.01, 0.2, 0.5]))


BAD_TIDIGITS_SAMPLE = {
    "string_addresses": (np.array([b"1", b"2"]), np.array([0.0, 0.1]),
                         "addresses must be real numbers, got dtype"),
    "string_timestamps": (np.array([1, 2]), np.array([b"0.0", b"0.1"]),
                          "timestamps must be real numbers"),
    "complex_timestamps": (np.array([1, 2]), np.array([0.0, 0.1 + 1j]),
                           "timestamps must be real numbers, got dtype complex"),
    "overflow_timestamp": (np.array([1, 2]), np.array([0.0, 1e16]),
                           "timestamp 1e[+]16 s is not finite or beyond"),
    "nan_address": (np.array([1.0, np.nan]), np.array([0.0, 0.1]),
                    "address nan is not an integer channel"),
    "fractional_address": (np.array([1.0, 2.5]), np.array([0.0, 0.1]),
                           "address 2.5 is not an integer channel"),
    "bool_addresses": (np.array([True, False]), np.array([0.0, 0.1]),
                       "addresses must be integers, got dtype bool"),
    "channel_u64": (np.array([1, U64_MAX], np.uint64), np.array([0.0, 0.1]),
                    f"channel {U64_MAX} is outside"),
    "nan_timestamp": (np.array([1, 2]), np.array([0.0, np.nan]), "timestamp nan s"),
    "backwards": (np.array([1, 2]), np.array([0.2, 0.1]), "goes backwards"),
    "lengths": (np.array([1, 2, 3]), np.array([0.0, 0.1]), "differ"),
    "empty": (np.array([], int), np.array([]), "no events"),
}


@pytest.mark.parametrize("case", sorted(BAD_TIDIGITS_SAMPLE))
def test_bad_tidigits_sample_error_or_skip(tmp_path, case):
    x, t, message = BAD_TIDIGITS_SAMPLE[case]
    path = tidigits_file(tmp_path / "td.hdf5", [good_sample(), ("bad-0-4", x, t)])
    ds = ntidigits(path)
    with pytest.raises(BadSampleError, match=re.escape(f"{path}: sample 'bad-0-4'")) as exc:
        load_streams(ds, ntidigits_preprocessing(), progress=False)
    assert re.search(message, str(exc.value)), exc.value
    got = load_streams(ds, ntidigits_preprocessing(), on_bad_sample="skip", progress=False)
    assert got.sample_ids == ["s1-0-3"] and [s[0] for s in got.skipped] == ["bad-0-4"]


def test_sample_dataset_that_is_a_group(tmp_path):
    path = tidigits_file(tmp_path / "td.hdf5", [good_sample()])
    with h5py.File(path, "a") as f:
        del f["train_labels"]
        f["train_labels"] = np.array([b"s1-0-3", b"g-0-5"])
        f["train_addresses"].create_group("g-0-5")
        f["train_timestamps"].create_dataset("g-0-5", data=np.array([0.0]))
    ds = ntidigits(path)
    with pytest.raises(BadSampleError, match="train_addresses/g-0-5 is a Group"):
        load_streams(ds, ntidigits_preprocessing(), progress=False)


def _labels_group(f, split, ids):
    g = f.create_group(f"{split}_labels")
    for i in ids:
        g.create_dataset(i, data=0)


BAD_TIDIGITS_FILE = {
    "labels_group": (lambda p: tidigits_file(p, [good_sample()], labels=_labels_group),
                     "train_labels is a Group; it must be a dataset of sample ids"),
    "labels_numeric": (lambda p: tidigits_file(
        p, [good_sample()], labels=lambda f, s, ids: f.create_dataset(f"{s}_labels",
                                                                      data=np.arange(2))),
        "train_labels must be a 1-D dataset of sample ids"),
    "addresses_dataset": (lambda p: _addresses_dataset(p),
                          "train_addresses is a Dataset; it must be a group"),
    "not_hdf5": (lambda p: p.write_bytes(b"not hdf5 at all"), "not a readable HDF5 file"),
    "missing_split": (lambda p: tidigits_file(p, [good_sample()], split="test"),
                      r"missing \['train_labels'"),
}


def _addresses_dataset(p):
    with h5py.File(p, "w") as f:
        f["train_labels"] = np.array([b"s1-0-3"])
        f["train_addresses"] = np.arange(3)
        f.create_group("train_timestamps")


@pytest.mark.parametrize("case", sorted(BAD_TIDIGITS_FILE))
def test_bad_tidigits_file_python_api(tmp_path, case):
    make, message = BAD_TIDIGITS_FILE[case]
    path = tmp_path / f"{case}.hdf5"
    make(path)
    with pytest.raises(ValueError, match=message) as exc:
        ntidigits(path, on_bad_sample="skip")
    assert str(path) in str(exc.value)


@pytest.mark.parametrize("case", sorted(BAD_TIDIGITS_FILE))
@pytest.mark.parametrize("command", ["encode", "info"])
def test_bad_tidigits_file_cli(tmp_path, capsys, case, command):
    make, message = BAD_TIDIGITS_FILE[case]
    path = tmp_path / f"{case}.hdf5"
    make(path)
    cfg = TINY_TIDIGITS.save(tmp_path / "td.toml")
    argv = (["encode", "--ntidigits", path, "--out", tmp_path / "f.npz",
             "--config", cfg, "--on-bad-sample", "skip", "--no-progress"]
            if command == "encode" else
            ["data", "info", "--ntidigits", path, "--runs", tmp_path / "runs", "--no-progress"])
    before = snapshot(tmp_path)
    rc, _, err = cli(capsys, *argv)
    assert_user_error(rc, err, path)
    assert re.search(message, err), err
    assert snapshot(tmp_path) == before


def test_tidigits_dir_as_root(tmp_path, capsys):
    rc, _, err = cli(capsys, "encode", "--ntidigits", tmp_path, "--out",
                     tmp_path / "f.npz", "--no-progress")
    assert_user_error(rc, err, tmp_path, "is a folder; N-TIDIGITS is one .hdf5 file")


def _broken_tidigits(path: Path) -> Path:
    """Two good samples and, named in skip runs: every broken-sample kind of the issue, a
    duplicated id and a label that is not UTF-8."""
    samples = [good_sample("s1-0-3"), good_sample("s2-0-z")]
    samples += [(f"{case}-0-1", x, t) for case, (x, t, _) in
                sorted(BAD_TIDIGITS_SAMPLE.items())]
    samples += [good_sample("s1-0-3"), (b"s\xff-0-2", np.array([1]), np.array([0.0]))]
    return tidigits_file(path, samples)


def test_tidigits_skip_run_counts_and_names_every_bad_sample(tmp_path, capsys):
    path = _broken_tidigits(tmp_path / "td.hdf5")
    with pytest.raises(BadSampleError, match=f"{path}: sample 's1-0-3' is listed twice"):
        ntidigits(path)
    ds = ntidigits(path, on_bad_sample="skip")
    assert ds.sample_ids[:2] == ["s1-0-3", "s2-0-z"]
    cfg = TINY_TIDIGITS.save(tmp_path / "td.toml")
    out = tmp_path / "f.npz"
    rc, stdout, err = cli(capsys, "encode", "--ntidigits", path, "--out",
                          out, "--config", cfg, "--on-bad-sample", "skip", "--no-progress")
    assert rc == 0, err
    n_bad = len(BAD_TIDIGITS_SAMPLE) + 2
    assert f"skipped {n_bad} bad samples" in stdout
    with np.load(out) as f:
        assert f["sample_ids"].tolist() == ["s1-0-3", "s2-0-z"]  # the duplicate encoded once
        assert f["features"].shape == (2, TINY_TIDIGITS.n_neurons)
    assert "skipped 'bad-" not in err and "s1-0-3: " in err  # the duplicate, named
    rc, stdout, err = cli(capsys, "data", "info", "--ntidigits", path, "--runs", tmp_path / "r",
                          "--json", "--no-progress")
    assert rc == 0 and f'"bad_samples": {n_bad}' in stdout
    assert "not UTF-8" in stdout and "1e+16 s" in stdout


def test_non_utf8_label_is_named_with_the_file(tmp_path):
    path = tidigits_file(tmp_path / "td.hdf5", [good_sample(),
                                                (b"s\xff-0-2", np.array([1]), np.array([0.0]))])
    with pytest.raises(BadSampleError, match=re.escape(rf"{path}: sample id b's\xff-0-2'")):
        ntidigits(path)


def test_long_span_is_a_bad_sample_not_an_overflow(tmp_path):
    """Timestamps that the reader accepts but whose span x n_bins leaves int64."""
    path = tidigits_file(tmp_path / "td.hdf5", [good_sample(), (
        "long-0-4", np.array([1, 2]), np.array([0.0, 9e9]))])
    from lsm.data.transforms import Preprocessing, ToEventStream

    pre = Preprocessing((), ToEventStream((64, 1, 1), 2000, 1, True))
    got = load_streams(ntidigits(path), pre, on_bad_sample="skip", progress=False)
    assert got.sample_ids == ["s1-0-3"]
    assert "preprocessing failed: events span" in got.skipped[0][1]


# ---------------------------------------------------------------------- N-MNIST
def nmnist_folder(root: Path, n=2) -> Path:
    rng = np.random.default_rng(0)
    for k in range(n):
        ev = np.zeros(50, NMNIST_DTYPE)
        ev["x"], ev["y"] = rng.integers(0, 34, 50), rng.integers(0, 34, 50)
        ev["t"], ev["p"] = np.sort(rng.integers(0, 100_000, 50)), rng.integers(0, 2, 50)
        write_nmnist_bin(root / "Train" / str(k % 10) / f"{k:05d}.bin", ev)
    return root


BROKEN_NMNIST = {
    "dangling": (lambda d: (d / "dangling.bin").symlink_to(d / "gone.bin"),
                 "dangling.bin: a dangling symbolic link"),
    "folder": (lambda d: (d / "folder.bin").mkdir(), "folder.bin: not a regular file"),
    "truncated": (lambda d: (d / "trunc.bin").write_bytes(b"\0" * 7), "truncated: 7 bytes"),
    "empty": (lambda d: (d / "empty.bin").write_bytes(b""), "empty file"),
    "label": (lambda d: (d.parent / "x").mkdir(), "unknown label 'x'"),
}


@pytest.mark.parametrize("case", sorted(BROKEN_NMNIST))
def test_broken_nmnist_file_error_or_skip(tmp_path, capsys, case):
    make, message = BROKEN_NMNIST[case]
    root = nmnist_folder(tmp_path / "nm")
    make(root / "Train" / "1")
    with pytest.raises(BadSampleError, match=message):
        load_streams(nmnist(root), _nm_pre(), progress=False)
    cfg = TINY_NMNIST.save(tmp_path / "nm.toml")
    base = ["encode", "--nmnist", root, "--out", tmp_path / "f.npz",
            "--config", cfg, "--no-progress"]
    before = snapshot(tmp_path)
    rc, _, err = cli(capsys, *base)
    assert_user_error(rc, err, message)
    assert snapshot(tmp_path) == before
    rc, stdout, err = cli(capsys, *base, "--on-bad-sample", "skip")
    assert rc == 0, err
    assert "skipped 1 bad samples" in stdout and message in err
    with np.load(tmp_path / "f.npz") as f:
        assert len(f["labels"]) == 2


def _nm_pre():
    from lsm.data import nmnist_preprocessing

    return nmnist_preprocessing(n_bins=TINY_NMNIST.n_bins)


def test_nmnist_root_problems(tmp_path, capsys):
    _file(tmp_path, "afile")
    for root, message in ((tmp_path / "nope", "no Train folder"),
                          (tmp_path / "afile", "is a file; N-MNIST is a folder")):
        rc, _, err = cli(capsys, "data", "info", "--nmnist", root, "--runs", tmp_path / "runs")
        assert_user_error(rc, err, root, message)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


# ---------------------------------------------------------------------- item 9: cache
@pytest.fixture
def tidigits_and_lsm(tmp_path):
    path = tidigits_file(tmp_path / "td.hdf5", [good_sample("a-0-1"), good_sample("b-0-2")])
    return ntidigits(path), ntidigits_preprocessing(n_bins=5), LSM(TINY_TIDIGITS)


def _encode(ds_pre_lsm, cache):
    ds, pre, lsm = ds_pre_lsm
    return encode_dataset(ds, pre, lsm, cache=cache, progress=False)


def test_cache_entry_without_an_array_is_recomputed(tmp_path, tidigits_and_lsm):
    from lsm.data.cache import _arrays_digest

    cache = FeatureCache(tmp_path / "cache")
    first = _encode(tidigits_and_lsm, cache)
    p = cache.path(first.key)
    with np.load(p) as f:
        arrays = {k: f[k] for k in f.files if not k.startswith("__") and k != "labels"}
    # a valid key and checksum over what is there, but no 'labels'
    np.savez(p, __key__=np.array(first.key), __sha256__=np.array(_arrays_digest(arrays)),
             **arrays)
    with pytest.warns(UserWarning, match=r"corrupt \(no array \['labels'\]\)"):
        again = _encode(tidigits_and_lsm, cache)
    assert not again.cache_hit
    np.testing.assert_array_equal(again.features, first.features)
    assert _encode(tidigits_and_lsm, cache).cache_hit  # rewritten whole


def test_cache_entry_that_is_a_directory_is_named_before_the_work(tmp_path, tidigits_and_lsm):
    cache = FeatureCache(tmp_path / "cache")
    key = _encode(tidigits_and_lsm, None).key
    cache.path(key).mkdir(parents=True)
    with pytest.raises(IsADirectoryError, match=f"entry {cache.path(key)} is a directory"):
        _encode(tidigits_and_lsm, cache)


def test_cache_entry_that_is_a_fifo_is_refused_not_read(tmp_path, tidigits_and_lsm):
    cache = FeatureCache(tmp_path / "cache")
    key = _encode(tidigits_and_lsm, None).key
    cache.folder.mkdir(parents=True, exist_ok=True)
    os.mkfifo(cache.path(key))  # reading it would block forever
    with pytest.raises(ValueError, match=f"entry {cache.path(key)} is not a regular file"):
        _encode(tidigits_and_lsm, cache)


def test_cache_folder_that_is_a_file(tmp_path, capsys):
    path = tidigits_file(tmp_path / "td.hdf5", [good_sample()])
    _file(tmp_path, "cachefile")
    with pytest.raises(NotADirectoryError, match="cachefile is a file, not a folder"):
        FeatureCache(tmp_path / "cachefile")
    cfg = TINY_TIDIGITS.save(tmp_path / "td.toml")
    before = snapshot(tmp_path)
    rc, _, err = cli(capsys, "encode", "--ntidigits", path, "--out",
                     tmp_path / "f.npz", "--cache", tmp_path / "cachefile", "--config", cfg,
                     "--no-progress")
    assert_user_error(rc, err, "cachefile")
    assert snapshot(tmp_path) == before


def test_stale_temporaries_are_cleaned(tmp_path, tidigits_and_lsm):
    folder = tmp_path / "cache"
    folder.mkdir()
    stale, young = folder / ".abc.npz.x1.tmp", folder / ".abc.npz.x2.tmp"
    stale.write_bytes(b"half")
    young.write_bytes(b"half")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    assert remove_stale_temporaries(folder) == [stale]
    os.utime(young, (old, old))
    enc = _encode(tidigits_and_lsm, FeatureCache(folder))  # a store cleans too
    assert not young.exists() and [p.name for p in folder.iterdir()] == [f"{enc.key}.npz"]
    # a corrupt entry is recomputed, and the stale temporaries of a killed writer go with it
    FeatureCache(folder).path(enc.key).write_bytes(b"garbage")
    stale.write_bytes(b"half")
    os.utime(stale, (old, old))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert FeatureCache(folder).load(enc.key) is None
    assert not stale.exists()


# ---------------------------------------------------------------------- other commands' paths
def _twin_pair(tmp):
    nm = nmnist_folder(tmp / "nm")
    td = tidigits_file(tmp / "td.hdf5", [good_sample()])
    return nm, td


OTHER_COMMANDS = {
    "info_runs_file": (lambda t: ["data", "info", "--ntidigits", _twin_pair(t)[1], "--runs",
                                  _file(t, "runsfile")], "runsfile is a file, not a folder"),
    "info_two_datasets": (lambda t: ["data", "info", "--ntidigits", _twin_pair(t)[1],
                                     "--nmnist", t / "nm"], "not allowed with argument"),
    "train_runs_file": (lambda t: ["train", "--ntidigits", _twin_pair(t)[1], "--runs",
                                   _file(t, "runsfile")], "runsfile is a file, not a folder"),
    "train_cache_file": (lambda t: ["train", "--ntidigits", _twin_pair(t)[1], "--runs",
                                    t / "runs", "--cache", _file(t, "cachefile")],
                         "cachefile is a file"),
    "train_bad_root": (lambda t: ["train", "--ntidigits", _file(t, "x.hdf5"), "--runs",
                                  t / "runs"], "not a readable HDF5 file"),
    "train_no_dataset": (lambda t: ["train", "--runs", t / "runs"],
                         "one of the arguments --nmnist --ntidigits is required"),
    "train_no_test_split": (lambda t: ["train", "--ntidigits", _twin_pair(t)[1], "--runs",
                                       t / "runs", "--no-progress"], r"missing \['test_labels'"),
    "train_seeds_0": (lambda t: ["train", "--nmnist", t, "--n-seeds", "0"],
                      "argument --n-seeds: expected an integer >= 1, got 0"),
    "train_old_seeds_option": (lambda t: ["train", "--nmnist", t, "--seeds", "2"],
                               "unrecognized arguments: --seeds"),
    "zeroshot_runs_file": (lambda t: ["zeroshot", "--nmnist", _twin_pair(t)[0], "--ntidigits",
                                      t / "td.hdf5", "--runs", _file(t, "runsfile")],
                           "runsfile is a file"),
    "zeroshot_missing": (lambda t: ["zeroshot", "--nmnist", t / "nope", "--ntidigits",
                                    t / "td.hdf5", "--runs", t / "runs"], "no Train folder"),
    "zeroshot_unseen": (lambda t: ["zeroshot", "--nmnist", t, "--ntidigits", t,
                                   "--unseen", "8,x"],
                        "argument --unseen: expected comma-separated class values, got '8,x'"),
    "zeroshot_seed_is_not_n_seeds": (lambda t: ["zeroshot", "--nmnist", t, "--ntidigits", t,
                                                "--seed", "3"],
                                     "unrecognized arguments: --seed 3"),
    "twin_nmnist_out_file": (lambda t: ["data", "make-twin", "--nmnist",
                                        _file(t, "twinfile"), "--n-train", "1", "--n-test", "1"],
                             "twinfile is a file, not a folder"),
    "twin_tidigits_out_dir": (lambda t: ["data", "make-twin", "--ntidigits",
                                         _dir(t, "td_dir")], "td_dir is a directory"),
    "demo_workdir_file": (lambda t: ["demo", "--workdir", _file(t, "demofile")],
                          "demofile is a file, not a folder"),
    "crossbar_sample_out_dir": (lambda t: ["crossbar", "sample", "--rows", "8", "--cols", "8",
                                           "--out", _dir(t, "h.png")], "--out"),
    "crossbar_sample_huge": (lambda t: ["crossbar", "sample", "--rows", "100000", "--cols",
                                        "100000", "--out", t / "h.png"],
                             "100000 x 100000 cells"),
    "crossbar_verify_rows": (lambda t: ["crossbar", "verify", "--rows", "0"],
                             "argument --rows: expected an integer >= 1, got 0"),
    "crossbar_verify_targets": (lambda t: ["crossbar", "verify", "--low-us", "50", "--high-us",
                                           "5"], "--low-us 50.0 and --high-us 5.0"),
    "crossbar_vmm_no_vectors": (lambda t: ["crossbar", "vmm-error", "--vectors", "0"],
                                "argument --vectors: expected an integer >= 1"),
    "crossbar_sample_not_png": (lambda t: ["crossbar", "sample", "--out", t / "h.txt"],
                                "the figure is a PNG"),
    "twin_zero_digits": (lambda t: ["data", "make-twin", "--nmnist", t / "tw", "--n-train", "0"],
                         "argument --n-train: expected an integer >= 1, got 0"),
    "twin_over_a_twin": (lambda t: ["data", "make-twin", "--nmnist", _twin_pair(t)[0]],
                         "is not empty: a twin written over another would mix"),
    "twin_over_a_tidigits_file": (lambda t: ["data", "make-twin", "--ntidigits",
                                             _twin_pair(t)[1]], "td.hdf5 exists: a twin never"),
    "info_empty_path": (lambda t: ["data", "info", "--nmnist", ""],
                        "argument --nmnist: expected a path, got an empty string"),
    "train_empty_runs": (lambda t: ["train", "--nmnist", t, "--runs", ""],
                         "argument --runs: expected a path"),
    "zeroshot_unseen_twice": (lambda t: ["zeroshot", "--nmnist", t, "--ntidigits", t,
                                         "--unseen", "8,8"], "a class is listed twice"),
    "zeroshot_unseen_not_a_digit": (lambda t: ["zeroshot", "--nmnist", t, "--ntidigits", t,
                                               "--unseen", "10"], "classes are digits 0-9"),
    "zeroshot_epochs_0": (lambda t: ["zeroshot", "--nmnist", t, "--ntidigits", t, "--epochs",
                                     "0"], "argument --epochs: expected an integer >= 1"),
    "crossbar_vmm_out_dir": (lambda t: ["crossbar", "vmm-error", "--out", _dir(t, "e.png")],
                             "--out"),
    "bench_train_cost_workdir": (lambda t: ["bench", "train-cost", "--workdir",
                                            _file(t, "benchfile")], "benchfile is a file"),
    "bench_train_cost_one_dataset": (lambda t: ["bench", "train-cost", "--nmnist", t],
                                     "give both nmnist and ntidigits, or neither"),
}


@pytest.mark.parametrize("case", sorted(OTHER_COMMANDS))
def test_other_commands_bad_paths(tmp_path, capsys, monkeypatch, case):
    monkeypatch.chdir(tmp_path)
    make, message = OTHER_COMMANDS[case]
    argv = make(tmp_path)
    before = snapshot(tmp_path)
    rc, _, err = cli(capsys, *argv)
    assert_user_error(rc, err)
    assert re.search(message, err), err
    assert snapshot(tmp_path) == before


# ---------------------------------------------------------------------- --debug, subprocesses
def test_debug_shows_the_traceback_in_process(tmp_path, tiny_toml):
    path = tmp_path / "bad.npz"
    path.write_text("not an npz")
    with pytest.raises(ValueError, match="not a zip archive"):
        main(["--debug", "encode", str(path), "--out", str(tmp_path / "f.npz"), "--config",
              str(tiny_toml)])


def test_real_processes(tmp_path):
    """The installed entry point, as a user runs it: several bad inputs at once (in parallel),
    and --debug."""
    bomb = zip_file(tmp_path / "bomb.npz", {"raster.npy": npy_header_member((10**6, 50, 256))})
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[lsm]\ndecay = "0.9"\n')
    td = tidigits_file(tmp_path / "td.hdf5", [good_sample()], labels=_labels_group)
    out = tmp_path / "o" / "f.npz"
    cases = [
        (["encode", bomb, "--out", out], "bomb.npz"),
        (["config", "--config", cfg], "bad.toml: LSMConfig.decay must be a number"),
        (["encode", "--ntidigits", td, "--out", out], "train_labels"),
        (["encode", bomb, "--out", tmp_path], "is a directory"),
        (["--debug", "encode", bomb, "--out", out], "Traceback"),
    ]
    before = snapshot(tmp_path)
    procs = [subprocess.Popen([sys.executable, "-m", "lsm.cli", *map(str, argv)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for argv, _ in cases]
    for (argv, culprit), proc in zip(cases, procs, strict=True):
        stdout, stderr = proc.communicate(timeout=120)
        assert culprit in stderr, (argv, stderr)
        if argv[0] == "--debug":
            assert proc.returncode == 1 and "ValueError" in stderr
        else:
            assert proc.returncode == 2, (argv, stderr)
            assert stderr.startswith("lsm: error: ") and "Traceback" not in stderr
            assert stdout == ""
    assert snapshot(tmp_path) == before


def test_a_genuine_bug_keeps_its_traceback(monkeypatch, tmp_path, tiny_toml):
    """Only bad input is turned into one line: anything else propagates (how tests find
    bugs)."""
    import lsm.cli.encode

    def broken(args):
        raise KeyError("a bug")

    monkeypatch.setattr(lsm.cli.encode, "load_config", broken)
    with pytest.raises(KeyError, match="a bug"):
        main(["config"])


def test_encode_refuses_to_overwrite_its_input(tmp_path, capsys, tiny_toml):
    src = tmp_path / "x.npz"
    np.savez(src, raster=np.zeros((2, TINY.n_bins, TINY.n_inputs), np.uint8))
    before = src.read_bytes()
    rc, _, err = cli(capsys, "encode", src, "--out", src, "--config", tiny_toml)
    assert_user_error(rc, err, "is the input file")
    assert src.read_bytes() == before


@pytest.mark.slow
def test_sigterm_unwinds_like_ctrl_c(tmp_path):
    """SIGTERM mid-job (inside numba code, here) exits 143 with one line and leaves nothing:
    the twin is written in a hidden folder that is removed, never half a dataset."""
    import signal
    import time

    proc = subprocess.Popen([sys.executable, "-m", "lsm.cli", "data", "make-twin", "--nmnist",
                             str(tmp_path / "nm"), "--n-train", "1200", "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".nm.partial-*/Train")) and time.monotonic() < deadline:
        time.sleep(0.1)  # the twin is being written
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1] == "lsm: terminated" and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []
