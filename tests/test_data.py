"""Datasets: real on-disk formats through tonic, preprocessing, twins, cache, bad files."""

import dataclasses
import json
import os
import re
import shutil

import h5py
import numpy as np
import pytest

from lsm import LSM, LSMConfig
from lsm.cli import main
from lsm.data import (
    BadSampleError,
    DownloadError,
    FeatureCache,
    encode_dataset,
    load_streams,
    nmnist,
    nmnist_preprocessing,
    ntidigits,
    ntidigits_preprocessing,
    write_nmnist_bin,
)
from lsm.data.datasets import _fetch
from lsm.data.formats import NMNIST_DTYPE, write_ntidigits_hdf5
from lsm.data.transforms import Preprocessing, ToEventStream
from lsm.weights import WeightSet


def random_nmnist_events(rng, n=500, t_max=300_000):
    ev = np.zeros(n, dtype=NMNIST_DTYPE)
    ev["x"] = rng.integers(0, 34, n)
    ev["y"] = rng.integers(0, 34, n)
    ev["t"] = np.sort(rng.integers(0, t_max, n))
    ev["p"] = rng.integers(0, 2, n)
    return ev


def write_folder(root, rng, per_class=2, classes=range(10), split="Train"):
    written = {}
    for d in classes:
        for k in range(per_class):
            ev = random_nmnist_events(rng, n=int(rng.integers(50, 400)))
            path = root / split / str(d) / f"{k:05d}.bin"
            write_nmnist_bin(path, ev)
            written[path] = (ev, d)
    return written


# ---------------------------------------------------------------- real formats, exactly
def test_nmnist_bin_round_trip_through_tonic(tmp_path, rng):
    import tonic

    written = write_folder(tmp_path, rng)
    ds = nmnist(tmp_path, "train")
    assert len(ds) == 20
    for i, path in enumerate(ds.paths):
        ev, label = ds[i]
        ref, ref_label = written[path]
        assert label == ref_label
        for f in ("x", "y", "t", "p"):
            np.testing.assert_array_equal(ev[f], ref[f])
        # and tonic's own reader agrees with ours on the raw file
        raw = tonic.io.read_mnist_file(str(path), dtype=tonic.datasets.NMNIST.dtype)
        np.testing.assert_array_equal(raw["t"], ref["t"])


def test_ntidigits_hdf5_round_trip(tmp_path, rng):
    samples = []
    for k, lab in enumerate(["o", "3", "z", "12", "9"]):
        n = int(rng.integers(20, 200))
        samples.append((f"spk{k % 2}-0-{lab}", rng.integers(0, 64, n),
                        np.sort(rng.uniform(0, 0.8, n))))
    path = tmp_path / "n-tidigits.hdf5"
    write_ntidigits_hdf5(path, {"train": samples, "test": samples[:1]})
    ds = ntidigits(path, "train")  # single digits only
    assert ds.sample_ids == ["spk0-0-o", "spk1-0-3", "spk0-0-z", "spk0-0-9"]
    assert ds.labels.tolist() == [0, 3, 0, 9]
    assert ntidigits(path, "train", labels="class").labels.tolist() == [0, 3, 10, 9]
    multi = ntidigits(path, "train", single_digits=False)
    assert multi.labels.tolist() == [0, 3, 0, -1, 9]
    for i, sid in enumerate(ds.sample_ids):
        ev, _ = ds[i]
        ref = next(s for s in samples if s[0] == sid)
        np.testing.assert_array_equal(ev["x"], ref[1])
        np.testing.assert_array_equal(ev["t"], np.round(ref[2] * 1e6).astype(np.int64))
    # tonic's own class reads the same layout
    from tonic.datasets import NTIDIGITS18

    with h5py.File(path) as f:
        assert NTIDIGITS18.class_map["z"] == 10 and "train_addresses" in f


# ---------------------------------------------------------------- preprocessing
def test_nmnist_preprocessing_crop_polarity_bins(rng):
    ev = random_nmnist_events(rng, n=3000)
    pre = nmnist_preprocessing()
    bins, ch = pre(ev)
    assert pre.n_channels == 256 and pre.n_bins == 50
    assert bins.min() >= 0 and bins.max() <= 49 and ch.max() < 256
    assert np.all(np.diff(bins) >= 0)
    # reference: keep ON events inside the central 16 x 16, bin the time span in 50 slices
    keep = (ev["p"] == 1) & (ev["x"] >= 9) & (ev["x"] < 25) & (ev["y"] >= 9) & (ev["y"] < 25)
    k = ev[keep]
    t = k["t"] - k["t"].min()
    ref_bins = t * 50 // (t.max() + 1)
    ref = {(int(b), int(x - 9 + 16 * (y - 9))) for b, x, y in zip(ref_bins, k["x"], k["y"],
                                                                  strict=True)}
    assert set(zip(bins.tolist(), ch.tolist(), strict=True)) == ref
    both = nmnist_preprocessing(polarity=None)
    assert both.n_channels == 512 and both(ev)[1].max() >= 256


def test_ntidigits_preprocessing_squeezes_1ms_bins():
    ev = np.zeros(5, dtype=[("t", int), ("x", int), ("p", int)])
    ev["t"] = [0, 400, 1500, 257_999, 258_000]  # us
    ev["x"] = [3, 3, 3, 10, 63]
    pre = ntidigits_preprocessing()
    bins, ch = pre(ev)
    # 1 ms ticks 0, 0, 1, 257, 258: 259 ticks squeezed into 129 bins (tick * 129 // 259) gives
    # bins 0, 0, 0, 128, 128; binarising keeps channel 3 once in bin 0
    assert bins.tolist() == [0, 128, 128] and ch.tolist() == [3, 10, 63]


def test_to_event_stream_counts_without_binarize():
    ev = np.zeros(3, dtype=[("t", int), ("x", int), ("p", int)])
    ev["t"] = [0, 10, 20]
    ev["x"] = [1, 1, 1]
    s = ToEventStream((4, 1, 1), n_bins=1, binarize=False)
    assert s(ev)[1].tolist() == [1, 1, 1]
    assert ToEventStream((4, 1, 1), n_bins=1)(ev)[1].tolist() == [1]


# ---------------------------------------------------------------- bad files
def test_bad_nmnist_files_error_or_skip(tmp_path, rng):
    write_folder(tmp_path, rng, per_class=1, classes=range(3))
    d = tmp_path / "Train"
    (d / "1" / "truncated.bin").write_bytes(b"\x01\x02\x03\x04\x05\x06\x07")
    (d / "1" / "empty.bin").write_bytes(b"")
    outside = random_nmnist_events(rng, 10)
    outside["x"][4] = 40
    write_nmnist_bin(d / "2" / "outside.bin", outside)
    back = random_nmnist_events(rng, 10)
    back["t"][6] = back["t"][5] - 1 if back["t"][5] > 0 else 0
    back["t"][5] += 5
    write_nmnist_bin(d / "2" / "backwards.bin", back)
    (d / "cat").mkdir()
    with pytest.raises(BadSampleError, match=r"unknown label 'cat'"):
        nmnist(tmp_path, "train")
    ds = nmnist(tmp_path, "train", on_bad_sample="skip")
    assert len(ds.skipped) == 1
    pre = nmnist_preprocessing()
    with pytest.raises(BadSampleError) as exc:
        load_streams(ds, pre, on_bad_sample="error", progress=False)
    assert ".bin" in str(exc.value)
    got = load_streams(ds, pre, on_bad_sample="skip", progress=False)
    reasons = " | ".join(r for _, r in got.skipped)
    for pattern in (r"truncated.bin: truncated: 7 bytes", r"empty.bin: empty file",
                    r"outside.bin: event 4: x = 40 is outside", r"backwards.bin: event \d+: "
                    r"timestamp .* goes backwards", r"unknown label 'cat'"):
        assert re.search(pattern, reasons), pattern
    assert len(got.labels) == 3 and len(got.skipped) == 5


def test_bad_ntidigits_files(tmp_path, rng):
    path = tmp_path / "bad.hdf5"
    good = ("a-0-1", rng.integers(0, 64, 30), np.sort(rng.uniform(0, 1, 30)))
    wild = ("a-0-2", np.array([1, 99]), np.array([0.1, 0.2]))
    back = ("a-0-3", np.array([1, 2]), np.array([0.3, 0.2]))
    unknown = ("a-0-q", np.array([1]), np.array([0.1]))
    write_ntidigits_hdf5(path, {"train": [good, wild, back, unknown]})
    with pytest.raises(BadSampleError, match=r"sample 'a-0-q': unknown label 'q'"):
        ntidigits(path, "train")
    ds = ntidigits(path, "train", on_bad_sample="skip")
    got = load_streams(ds, ntidigits_preprocessing(), on_bad_sample="skip", progress=False)
    assert got.sample_ids == ["a-0-1"] and len(got.skipped) == 3
    text = " ".join(r for _, r in got.skipped)
    assert "channel 99 is outside [0, 64)" in text and "goes backwards" in text
    with pytest.raises(ValueError, match=r"missing \['test_labels', 'test_addresses', "):
        ntidigits(path, "test")
    with pytest.raises(FileNotFoundError, match="make-twin --ntidigits"):
        ntidigits(tmp_path / "nope.hdf5")
    (tmp_path / "junk.hdf5").write_text("not hdf5")
    with pytest.raises(ValueError, match="not a readable HDF5 file"):
        ntidigits(tmp_path / "junk.hdf5")


def test_missing_split_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"Test/<digit>/\*.bin"):
        nmnist(tmp_path, "test")


# ---------------------------------------------------------------- downloads (real code path)
def test_download_checksum_and_offline_message(tmp_path):
    import hashlib

    src = tmp_path / "src.bin"
    src.write_bytes(b"event data" * 100)
    md5 = hashlib.md5(src.read_bytes()).hexdigest()
    got = _fetch(src.as_uri(), tmp_path / "dl" / "file.bin", md5)
    assert got.read_bytes() == src.read_bytes()
    with pytest.raises(DownloadError, match="checksum mismatch"):
        _fetch(src.as_uri(), tmp_path / "dl" / "bad.bin", "0" * 32)
    assert not (tmp_path / "dl" / "bad.bin").exists()
    assert sorted(p.name for p in (tmp_path / "dl").iterdir()) == ["file.bin"]
    with pytest.raises(DownloadError, match="looks offline"):
        _fetch("http://127.0.0.1:9/n-mnist.zip", tmp_path / "new" / "dir" / "x.zip", md5,
               timeout_s=5)
    assert not (tmp_path / "new").exists()  # a failed download leaves no empty folders


# ---------------------------------------------------------------- twins
@pytest.fixture(scope="module")
def tiny_twins(tmp_path_factory):
    from lsm.data.twin_nmnist import make_nmnist_twin
    from lsm.data.twin_ntidigits import make_ntidigits_twin

    root = tmp_path_factory.mktemp("twins")
    make_nmnist_twin(root / "nmnist", n_train=30, n_test=10, seed=1, progress=False)
    make_ntidigits_twin(root / "ntidigits.hdf5", n_speakers=4, seed=1, progress=False)
    return root


def test_twins_load_with_the_real_loaders(tiny_twins):
    tr, te = nmnist(tiny_twins / "nmnist", "train"), nmnist(tiny_twins / "nmnist", "test")
    assert (len(tr), len(te)) == (30, 10)
    ev, _ = tr[0]
    assert 1000 < len(ev) < 10000 and ev["t"].max() < 310_000
    assert set(np.unique(ev["p"])) == {0, 1}
    a, b = (ntidigits(tiny_twins / "ntidigits.hdf5", s) for s in ("train", "test"))
    assert len(a) + len(b) == 44 and set(a.speakers).isdisjoint(b.speakers)
    assert sorted(set(a.labels.tolist())) == list(range(10))


def test_twins_are_deterministic(tiny_twins, tmp_path):
    from lsm.data.twin_nmnist import make_nmnist_twin
    from lsm.data.twin_ntidigits import make_ntidigits_twin

    make_nmnist_twin(tmp_path / "again", n_train=30, n_test=10, seed=1, progress=False)
    for p in sorted((tiny_twins / "nmnist").rglob("*.bin")):
        q = tmp_path / "again" / p.relative_to(tiny_twins / "nmnist")
        assert p.read_bytes() == q.read_bytes()
    make_ntidigits_twin(tmp_path / "again.hdf5", n_speakers=4, seed=1, progress=False)
    for split in ("train", "test"):
        a = ntidigits(tiny_twins / "ntidigits.hdf5", split)
        b = ntidigits(tmp_path / "again.hdf5", split)
        assert a.sample_ids == b.sample_ids
        # seed 1 draws breathy "+f3" voices, whose noise espeak-ng would seed from the clock
        assert any("_f3_" in sid for sid in a.sample_ids + b.sample_ids) or split == "test"
        for i in range(len(a)):
            np.testing.assert_array_equal(a[i][0]["t"], b[i][0]["t"], err_msg=a.sample_ids[i])
            np.testing.assert_array_equal(a[i][0]["x"], b[i][0]["x"])


def test_cochlea_is_a_public_function_on_wav_files(tmp_path):
    from scipy.io import wavfile

    from lsm.data.twin_ntidigits import CochleaParams, wav_to_cochlea_events

    fs = 16000
    t = np.arange(int(0.3 * fs)) / fs
    for f0 in (300.0, 3000.0):
        wavfile.write(tmp_path / "tone.wav", fs, (0.5 * np.sin(2 * np.pi * f0 * t) * 32767)
                      .astype(np.int16))
        ch, ts = wav_to_cochlea_events(tmp_path / "tone.wav")
        centres = np.geomspace(100, min(8000, 0.45 * fs), CochleaParams().n_channels)
        peak = np.bincount(ch, minlength=64).argmax()
        assert abs(np.log(centres[peak] / f0)) < 0.25, (f0, centres[peak])
        assert np.all(np.diff(ts) >= 0) and ts.max() <= 0.3


# ---------------------------------------------------------------- cache
def test_cache_hit_miss_and_corruption(tiny_twins, tmp_path):
    ds = nmnist(tiny_twins / "nmnist", "train")
    pre = nmnist_preprocessing()
    lsm = LSM(LSMConfig())
    first = encode_dataset(ds, pre, lsm, cache=tmp_path, progress=False)
    again = encode_dataset(ds, pre, lsm, cache=tmp_path, progress=False)
    assert not first.cache_hit and again.cache_hit
    np.testing.assert_array_equal(first.features, again.features)
    entry = FeatureCache(tmp_path).path(first.key)
    data = bytearray(entry.read_bytes())
    data[len(data) // 2] ^= 0xFF
    entry.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="recomputing"):
        third = encode_dataset(ds, pre, lsm, cache=tmp_path, progress=False)
    assert not third.cache_hit
    np.testing.assert_array_equal(third.features, first.features)
    assert encode_dataset(ds, pre, lsm, cache=tmp_path, progress=False).cache_hit


# ---------------------------------------------------------------- the cache key
class FixedWeights:
    """Weights that ignore the config: a change of an LSMConfig field reaches the key only
    through the config, a change of the values only through the fingerprint, a change of the
    label only through the provenance."""

    def __init__(self, n_inputs, n_neurons, label="fixed", nudge=False):
        g = np.random.default_rng(7)
        self.w_in = g.normal(0, 1, (n_inputs, n_neurons)).astype(np.float32)
        self.w_rec = g.normal(0, 0.3, (n_neurons, n_neurons)).astype(np.float32)
        if nudge:  # the smallest change there is: one entry, one float32 step
            self.w_rec[0, 0] = np.nextafter(self.w_rec[0, 0], np.float32(np.inf))
        self.label = label

    def build(self, config):
        return WeightSet(self.w_in, self.w_rec, {"source": "fixed", "label": self.label})


@pytest.fixture(scope="module")
def key_twins(tmp_path_factory):
    from lsm.data.twin_nmnist import make_nmnist_twin
    from lsm.data.twin_ntidigits import make_ntidigits_twin

    root = tmp_path_factory.mktemp("keys")
    make_nmnist_twin(root / "nm", n_train=3, n_test=1, seed=3, progress=False)
    make_ntidigits_twin(root / "td.hdf5", n_speakers=2, seed=3, progress=False)
    return root


def _copy(src, dst):
    (shutil.copytree if src.is_dir() else shutil.copy2)(src, dst)  # both keep mtimes
    return dst


# every field of LSMConfig that changes neither the weights' shapes nor the preprocessing's
# (n_inputs, n_bins and n_neurons do, and would reach the key through those too)
_SHAPE_FIELDS = {"n_inputs", "n_neurons", "n_bins"}
_OTHER_VALUE = {"decay": 0.8, "v_th": 4.0, "reset": "subtract", "w_in_const": 0.08,
                "w_rec_const": 0.06, "p_in": 0.5, "p_rec": 0.5, "seed": 1,
                "weight_format": "int16"}


def test_the_key_table_covers_every_lsm_config_field():
    names = {f.name for f in dataclasses.fields(LSMConfig)}
    assert names - _SHAPE_FIELDS == set(_OTHER_VALUE), "a new LSMConfig field: add it above"
    assert all(getattr(LSMConfig(), k) != v for k, v in _OTHER_VALUE.items())


def _nmnist_key(root, split="train", pre=None, cfg=None, weights=None, features="rates",
                on_bad_sample="error", cache=None, n_windows=5):
    """The real key: what encode_dataset computes (and caches under), from fresh objects."""
    pre = pre or nmnist_preprocessing(crop=4, n_bins=10)
    cfg = cfg or LSMConfig(n_inputs=16, n_neurons=6, n_bins=10)
    weights = weights or FixedWeights(16, 6)
    return encode_dataset(nmnist(root, split), pre, LSM(cfg, weights=weights),
                          features=features, cache=cache, on_bad_sample=on_bad_sample,
                          progress=False, n_windows=n_windows).key


def _change_a_file(how):
    def change(root):
        f = sorted((root / "Train").rglob("*.bin"))[0]
        if how == "shorter":  # one event (5 bytes) fewer
            f.write_bytes(f.read_bytes()[:-5])
        elif how == "touched":  # same bytes, a later mtime
            st_ = f.stat()
            os.utime(f, ns=(st_.st_atime_ns, st_.st_mtime_ns + 1_000_000_000))
        elif how == "renamed":  # same bytes and mtime, same class, another name
            f.rename(f.with_name("99999.bin"))
        elif how == "added":
            _copy(f, f.with_name("99999.bin"))
        elif how == "removed":
            f.unlink()
    return change


@pytest.mark.parametrize("how", ["shorter", "touched", "renamed", "added", "removed"])
def test_a_changed_dataset_file_changes_the_key(key_twins, tmp_path, how):
    root = _copy(key_twins / "nm", tmp_path / "nm")
    k0 = _nmnist_key(root)
    assert _nmnist_key(root) == k0  # nothing changed: the same key
    _change_a_file(how)(root)
    assert _nmnist_key(root) != k0


def test_the_key_follows_the_hdf5_file_and_the_split(key_twins, tmp_path):
    path = _copy(key_twins / "td.hdf5", tmp_path / "td.hdf5")
    pre = ntidigits_preprocessing(n_bins=12)
    cfg = LSMConfig.ntidigits(n_bins=12, n_neurons=6)

    def key(split="train"):
        return encode_dataset(ntidigits(path, split), pre, LSM(cfg, weights=FixedWeights(64, 6)),
                              progress=False).key

    k0 = key()
    assert key() == k0 and key("test") != k0
    st_ = path.stat()
    os.utime(path, ns=(st_.st_atime_ns, st_.st_mtime_ns + 1_000_000_000))
    assert key() != k0


def _variants():
    """(name, keyword arguments of _nmnist_key): each differs from the base in one part only."""
    base = nmnist_preprocessing(crop=4, n_bins=10)
    cfg = LSMConfig(n_inputs=16, n_neurons=6, n_bins=10)
    yield "split", dict(split="test")
    yield "preprocessing polarity", dict(pre=nmnist_preprocessing(crop=4, n_bins=10, polarity=0))
    yield "preprocessing binarize", dict(pre=nmnist_preprocessing(crop=4, n_bins=10,
                                                                  binarize=False))
    yield "preprocessing resolution", dict(pre=Preprocessing(
        base.steps, dataclasses.replace(base.stream, resolution_us=2)))
    for name, value in _OTHER_VALUE.items():
        yield f"config {name}", dict(cfg=cfg.replace(**{name: value}))
    yield "weights provenance", dict(weights=FixedWeights(16, 6, label="other"))
    yield "weights values", dict(weights=FixedWeights(16, 6, nudge=True))
    yield "features counts", dict(features="counts")
    yield "features binned", dict(features="binned")
    yield "features windows", dict(features="windows")
    yield "features windows, other number", dict(features="windows", n_windows=3)
    yield "on_bad_sample", dict(on_bad_sample="skip")


def test_every_part_of_the_key_changes_it_alone(key_twins, tmp_path):
    """Each variant changes one input of the encoding, and nothing it reaches the key through
    but that input: a key that left the input out would not change."""
    root = key_twins / "nm"
    k0 = _nmnist_key(root)
    assert re.fullmatch(r"[0-9a-f]{64}", k0)
    # the same inputs, from new objects, with or without a cache: the same key
    assert _nmnist_key(root) == k0 == _nmnist_key(root, cache=tmp_path / "cache")
    # a number of windows is part of the "windows" features only
    assert _nmnist_key(root, n_windows=3) == k0
    keys = {"base": k0}
    for name, kwargs in _variants():
        keys[name] = _nmnist_key(root, **kwargs)
        assert keys[name] != k0, name
    assert len(set(keys.values())) == len(keys)  # and no two variants collide


# ---------------------------------------------------------------- CLI end to end
def test_cli_twin_info_encode(tmp_path, capsys):
    out = tmp_path / "nm"
    assert main(["data", "make-twin", "--nmnist", str(out), "--n-train", "20", "--n-test",
                 "5", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["data", "info", "--nmnist", str(out), "--json", "--no-progress", "--runs",
                 str(tmp_path / "runs")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["samples"] == 20 and sum(info["per_class"].values()) == 20
    run = tmp_path / "runs" / info["run_dir"].split("/")[-1]
    assert info["events_per_sample"]["min"] > 0 and (run / "samples.png").exists()
    assert json.loads((run / "metrics.json").read_text())["samples"] == 20
    feats = tmp_path / "f.npz"
    assert main(["encode", "--nmnist", str(out), "--out", str(feats),
                 "--no-progress", "--cache", str(tmp_path / "cache")]) == 0
    with np.load(feats) as f:
        assert f["features"].shape == (20, 200) and f["labels"].shape == (20,)
    assert main(["encode", "--ntidigits", str(tmp_path / "none.hdf5"),
                 "--out", str(feats), "--no-progress"]) == 2
    assert "make-twin --ntidigits" in capsys.readouterr().err


def test_twin_settings_are_validated():
    from lsm.data.twin_nmnist import DVSParams
    from lsm.data.twin_ntidigits import CochleaParams

    with pytest.raises(ValueError, match=r"DVSParams.contrast_threshold must be in \(0.0"):
        DVSParams(contrast_threshold=0.0)
    with pytest.raises(ValueError, match=r"CochleaParams.f_high must be in \(100.0"):
        CochleaParams(f_high=50.0)
    with pytest.raises(TypeError, match="CochleaParams.n_channels must be an integer"):
        CochleaParams(n_channels=6.4)
