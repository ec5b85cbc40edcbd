"""The fused decoder gives exactly the reference path's events (tonic reader + transforms),
sample by sample, on real-format files: twins, edge cases, broken files."""

import os

import h5py
import numpy as np
import pytest

from lsm.data import (
    BadSampleError,
    nmnist,
    nmnist_preprocessing,
    ntidigits,
    ntidigits_preprocessing,
    write_nmnist_bin,
)
from lsm.data.formats import NMNIST_DTYPE, write_ntidigits_hdf5
from lsm.data.fused import fused_plan, nmnist_streams
from lsm.data.pipeline import choose_decoder, read_streams
from lsm.data.transforms import Preprocessing, SelectPolarity, ToEventStream

NMNIST_SETTINGS = [
    {},                                             # the paper's: crop 16, polarity 1, 50 bins
    {"polarity": None},                             # both polarities as channels
    {"polarity": 0, "n_bins": 7},
    {"crop": 34, "binarize": False},                # no crop, every event kept
    {"crop": 1, "n_bins": 1},
    {"crop": 15, "polarity": None, "binarize": False, "n_bins": 300},   # odd crop
    {"crop": 34, "binarize": False, "n_bins": 1_000_000},   # bins finer than 1 us ticks
]


def records(x, y, t, p, overflow_before=()):
    """Raw 40-bit records; ``overflow_before`` lists event indices that an overflow marker
    (y = 240) precedes."""
    out = bytearray()
    marks = set(overflow_before)
    for j, (xi, yi, ti, pi) in enumerate(zip(x, y, t, p, strict=True)):
        if j in marks:
            out += bytes([7, 240, 0, 0, 0])
        out += bytes([xi, yi, (pi << 7) | ((ti >> 16) & 0x7F), (ti >> 8) & 0xFF, ti & 0xFF])
    return bytes(out)


def same(a, b):
    assert a.sample_ids == b.sample_ids
    assert np.array_equal(a.labels, b.labels)
    assert np.array_equal(a.events.offsets, b.events.offsets)
    assert np.array_equal(a.events.bins, b.events.bins)
    assert np.array_equal(a.events.channels, b.events.channels)
    assert a.skipped == b.skipped


def both(ds, pre, on_bad_sample="skip", indices=None):
    assert choose_decoder(ds, pre) == "fused"
    fused = read_streams(ds, pre, indices, on_bad_sample, decoder="fused")
    ref = read_streams(ds, pre, indices, on_bad_sample, decoder="reference")
    same(fused, ref)
    return fused


@pytest.fixture(scope="module")
def nmnist_twin(tmp_path_factory):
    from lsm.data.twin_nmnist import make_nmnist_twin

    root = tmp_path_factory.mktemp("nmnist")
    make_nmnist_twin(root, n_train=120, n_test=20, seed=3, progress=False)
    return root


@pytest.mark.parametrize("kw", NMNIST_SETTINGS)
def test_nmnist_twin_sample_by_sample(nmnist_twin, kw):
    ds = nmnist(nmnist_twin, "train")
    got = both(ds, nmnist_preprocessing(**kw))
    assert got.events.n_events > 0 and not got.skipped


def test_nmnist_edge_cases(tmp_path):
    """Crop borders (8, 9, 24, 25 for a 16-pixel crop), identical timestamps, overflow
    markers, a sample empty after the crop, the last tick alone in the last bin."""
    cases = {
        # on and just outside the crop's borders, both polarities, identical timestamps
        "border": records([8, 9, 24, 25, 9, 24, 16, 16], [9, 8, 24, 25, 24, 9, 16, 16],
                          [0, 0, 5, 5, 5, 9, 9, 9], [1, 1, 1, 1, 0, 1, 1, 1]),
        # overflow markers: what follows is 2**13 us later (twice for the last events)
        "overflow": records([10, 11, 12, 13, 14], [10, 11, 12, 13, 14],
                            [8000, 8100, 50, 60, 70], [1] * 5, overflow_before=(2, 4)),
        # nothing inside the crop: an empty stream, kept
        "outside": records([0, 33, 2], [0, 33, 30], [0, 10, 20], [1, 1, 1]),
        # one polarity only: empty for polarity 1
        "off_only": records([12, 13], [12, 13], [0, 1], [0, 0]),
        # a single event, and a sample spanning one tick
        "single": records([12], [12], [123], [1]),
        "one_tick": records([12, 13, 12], [12, 13, 12], [7, 7, 7], [1, 1, 1]),
        # many events in one pixel and bin (binarised away), then the last tick alone
        "repeats": records([12] * 30 + [20], [12] * 30 + [20], list(range(30)) + [100000],
                           [1] * 31),
    }
    for name, raw in cases.items():
        p = tmp_path / "Train" / "3" / f"{name}.bin"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(raw)
    ds = nmnist(tmp_path, "train")
    for kw in NMNIST_SETTINGS:
        got = both(ds, nmnist_preprocessing(**kw))
        assert not got.skipped
    got = both(ds, nmnist_preprocessing())
    counts = dict(zip(got.sample_ids, np.diff(got.events.offsets), strict=True))
    assert counts["Train/3/outside.bin"] == 0 and counts["Train/3/off_only.bin"] == 0
    assert counts["Train/3/repeats.bin"] == 2  # 30 repeats binarised to one, plus the last


def test_overflow_markers_are_linear_and_exact(tmp_path):
    """A 3.2 MB file, half of it overflow markers (tonic's reader is quadratic in them):
    the fused decoder agrees with a direct vectorised decoding."""
    rng = np.random.default_rng(0)
    n = 640_000
    # 288k markers (2.4e9 us, below the 2**32 us wrap), all in the first half: a wrong
    # increment would move the second half's events against the bin edges
    is_marker = (rng.random(n) < 0.9) & (np.arange(n) < n // 2)
    is_marker[0] = False
    raw = np.zeros((n, 5), np.uint8)
    raw[:, 0] = rng.integers(9, 25, n)
    raw[:, 1] = np.where(is_marker, 240, rng.integers(9, 25, n))
    ts = np.sort(rng.integers(0, 1 << 13, n))  # within each overflow period, increasing
    raw[:, 2] = (1 << 7) | ((ts >> 16) & 0x7F)
    raw[:, 3] = (ts >> 8) & 0xFF
    raw[:, 4] = ts & 0xFF
    # timestamps only grow: ts within a period is below 2**13, each marker adds 2**13
    ts_full = ts + (np.cumsum(is_marker) << 13)
    path = tmp_path / "Train" / "1" / "overflow.bin"
    path.parent.mkdir(parents=True)
    raw.tofile(path)
    assert path.stat().st_size == 3_200_000
    plan = fused_plan(nmnist_preprocessing(crop=34, binarize=False, n_bins=1_000_000))
    assert is_marker.sum() > 280_000
    got = nmnist_streams([path], plan)
    assert not got.errors
    keep = ~is_marker
    t = ts_full[keep]
    expected_bins = ((t - t[0]) * 1_000_000) // (t[-1] - t[0] + 1)
    expected_ch = raw[keep, 0].astype(np.int64) + 34 * raw[keep, 1].astype(np.int64)
    assert np.array_equal(got.bins, expected_bins)
    assert np.array_equal(got.channels, expected_ch)


BROKEN = {
    "empty": b"",
    "truncated": records([1, 2], [1, 2], [0, 1], [1, 1])[:-2],
    "markers_only": bytes([0, 240, 0, 0, 0]) * 3,
    "x_out": records([3, 34, 200], [3, 3, 3], [0, 1, 2], [1, 1, 1]),
    "y_out": records([3, 3, 3], [3, 3, 241], [0, 1, 2], [1, 1, 1]),
    "x_and_y_out": records([3, 3, 40], [3, 50, 3], [0, 1, 2], [1, 1, 1]),
    "backwards": records([3, 3, 3, 3], [3, 3, 3, 3], [10, 20, 15, 30], [1, 1, 1, 1]),
    "backwards_after_marker": records([3, 3, 3], [3, 3, 3], [100, 8000, 8100],
                                      [1, 1, 1], overflow_before=(1,))[:5]
    + records([3], [3], [50], [1]) + records([3], [3], [10], [1]),
}


def test_broken_nmnist_files_are_refused_alike(tmp_path):
    good = records([12], [12], [5], [1])
    (tmp_path / "Train" / "0").mkdir(parents=True)
    for name, raw in BROKEN.items():
        (tmp_path / "Train" / "0" / f"{name}.bin").write_bytes(raw)
    (tmp_path / "Train" / "0" / "good.bin").write_bytes(good)
    ds = nmnist(tmp_path, "train")
    got = both(ds, nmnist_preprocessing())
    assert got.sample_ids == ["Train/0/good.bin"]
    reasons = dict(got.skipped)
    assert len(reasons) == len(BROKEN)
    assert "event 1: x = 34 is outside the 34 x 34 sensor" in reasons["Train/0/x_out.bin"]
    assert "event 1: y = 50 is outside" in reasons["Train/0/x_and_y_out.bin"] or \
        "event 2: x = 40" in reasons["Train/0/x_and_y_out.bin"]
    assert "goes backwards" in reasons["Train/0/backwards.bin"]
    assert "truncated: 8 bytes" in reasons["Train/0/truncated.bin"]
    # under "error", the same first message from both decoders
    messages = []
    for decoder in ("fused", "reference"):
        with pytest.raises(BadSampleError) as exc:
            read_streams(ds, nmnist_preprocessing(), decoder=decoder)
        messages.append(str(exc.value))
    assert messages[0] == messages[1] and str(tmp_path) in messages[0]


def test_files_gone_or_replaced_after_listing_are_named(tmp_path):
    for k in range(5):
        write_nmnist_bin(tmp_path / "Train" / "2" / f"{k}.bin",
                         np.array([(12, 12, k, 1)], dtype=NMNIST_DTYPE))
    ds = nmnist(tmp_path, "train")
    os.unlink(ds.paths[1])
    os.unlink(ds.paths[2])
    os.mkfifo(ds.paths[2])  # would block a plain open() forever
    os.unlink(ds.paths[3])
    ds.paths[3].mkdir()
    fused = read_streams(ds, nmnist_preprocessing(), on_bad_sample="skip", decoder="fused")
    ref = read_streams(ds, nmnist_preprocessing(), on_bad_sample="skip", decoder="reference")
    assert fused.sample_ids == ref.sample_ids == ["Train/2/0.bin", "Train/2/4.bin"]
    assert "1.bin: cannot read" in fused.skipped[0][1]
    assert "1.bin: cannot read" in ref.skipped[0][1]
    assert [m for _, m in fused.skipped[1:]] == [m for _, m in ref.skipped[1:]]
    assert fused.skipped[1][1].endswith("2.bin: not a regular file")


def test_unknown_chains_use_the_reference(tmp_path):
    write_nmnist_bin(tmp_path / "Train" / "2" / "a.bin",
                     np.array([(12, 12, 3, 1)], dtype=NMNIST_DTYPE))
    ds = nmnist(tmp_path, "train")
    custom = Preprocessing((SelectPolarity(1),), ToEventStream((34, 34, 1), 10))
    assert fused_plan(custom) is None
    assert choose_decoder(ds, custom) == "reference"
    with pytest.raises(ValueError, match="fused decoder does not know"):
        choose_decoder(ds, custom, "fused")
    with pytest.raises(ValueError, match="decoder"):
        choose_decoder(ds, custom, "fast")
    # a known chain on the wrong dataset kind
    assert choose_decoder(ds, ntidigits_preprocessing()) == "reference"


# ---------------------------------------------------------------------- N-TIDIGITS
@pytest.fixture(scope="module")
def ntidigits_twin(tmp_path_factory):
    from lsm.data.twin_ntidigits import make_ntidigits_twin

    path = tmp_path_factory.mktemp("ntidigits") / "n-tidigits.hdf5"
    make_ntidigits_twin(path, n_speakers=8, seed=2, progress=False)
    return path


@pytest.mark.parametrize("kw", [{}, {"n_bins": 7}, {"binarize": False},
                                {"resolution_us": 1, "n_bins": 400}])
def test_ntidigits_twin_sample_by_sample(ntidigits_twin, kw):
    for split in ("train", "test"):
        got = both(ntidigits(ntidigits_twin, split), ntidigits_preprocessing(**kw))
        assert got.events.n_events > 0 and not got.skipped


def test_ntidigits_edge_cases_and_broken_samples(tmp_path):
    path = tmp_path / "n.hdf5"
    ok_t = np.array([0.0, 0.0005, 0.0005, 0.0015, 0.2])
    samples = [
        ("s1-a-1", [0, 63, 63, 5, 5], ok_t),                      # identical timestamps
        ("s1-a-2", np.array([1.0, 2.0, 3.0]), np.array([-0.5, -0.5, 0.25])),  # whole floats
        ("s1-a-3", [7], [1.0]),                                   # one event
        ("s2-a-1", [64, 1], [0.0, 0.1]),                          # channel out of range
        ("s2-a-3", [1, 2], [0.2, 0.1]),                           # backwards
        ("s2-a-4", [1, 2], [0.0, np.nan]),                        # NaN timestamp
        ("s2-a-5", [], []),                                       # no events
        ("s3-a-1", [1, 2], [0.0, 1e17]),                          # beyond +-2**53 us
        ("s3-a-2", [1, 2, 3], [0.0, 0.1]),                        # lengths differ
    ]
    write_ntidigits_hdf5(path, {"train": samples})
    with h5py.File(path, "a") as f:  # a sample whose timestamps are booleans (accepted)
        f["train_addresses"].create_dataset("s3-a-3", data=np.array([4, 5]))
        f["train_timestamps"].create_dataset("s3-a-3", data=np.array([False, True]))
        # a fractional channel (the writer would cast it to an integer)
        f["train_addresses"].create_dataset("s2-a-2", data=np.array([1.5, 2.0]))
        f["train_timestamps"].create_dataset("s2-a-2", data=np.array([0.0, 0.1]))
        del f["train_labels"]
        f["train_labels"] = np.array([s[0].encode() for s in samples]
                                     + [b"s3-a-3", b"s2-a-2"])
    ds = ntidigits(path, "train")
    for kw in [{}, {"binarize": False, "n_bins": 3}]:
        got = both(ds, ntidigits_preprocessing(**kw))
        assert got.sample_ids == ["s1-a-1", "s1-a-2", "s1-a-3", "s3-a-3"]
        assert len(got.skipped) == 7
    messages = []
    for decoder in ("fused", "reference"):
        with pytest.raises(BadSampleError) as exc:
            read_streams(ds, ntidigits_preprocessing(), decoder=decoder)
        messages.append(str(exc.value))
    assert messages[0] == messages[1]
    assert "s2-a-1" in messages[0] and "channel 64" in messages[0]


def test_chunked_reading_equals_one_read(nmnist_twin):
    from lsm.data import load_streams

    ds = nmnist(nmnist_twin, "train")
    pre = nmnist_preprocessing()
    whole = read_streams(ds, pre)
    for chunk_size in (1, 7, 1000):
        same(load_streams(ds, pre, progress=False, chunk_size=chunk_size), whole)


def test_a_span_too_long_for_the_bins_is_refused_alike(tmp_path):
    """Spans whose ticks x n_bins leave int64: the same message from both decoders."""
    write_nmnist_bin(tmp_path / "Train" / "2" / "a.bin",
                     np.array([(12, 12, 0, 1), (13, 12, 40, 1)], dtype=NMNIST_DTYPE))
    write_nmnist_bin(tmp_path / "Train" / "2" / "b.bin",
                     np.array([(12, 12, 7, 1)], dtype=NMNIST_DTYPE))
    ds = nmnist(tmp_path, "train")
    pre = Preprocessing(nmnist_preprocessing().steps, ToEventStream((16, 16, 1), 2**62))
    got = both(ds, pre)
    assert got.sample_ids == ["Train/2/b.bin"]
    assert got.skipped[0][1] == ("sample Train/2/a.bin: preprocessing failed: events span 41 "
                                 "ticks of 1 us: too long to divide into 4611686018427387904 "
                                 "bins in int64")
