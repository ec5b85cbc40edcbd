"""Streaming a dataset through the reservoir: chunked, written incrementally and atomically,
resumed after a kill, with the features of a one-shot encoding."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from lsm import LSM, LSMConfig
from lsm.cli import main
from lsm.data import FeatureCache, encode_dataset, nmnist, nmnist_preprocessing
from lsm.data.pipeline import encode_chunks
from lsm.data.stream import ChunkFolder, chunk_ranges
from lsm.io import load_npz


@pytest.fixture(scope="module")
def twin(tmp_path_factory):
    from lsm.data.twin_nmnist import make_nmnist_twin

    root = tmp_path_factory.mktemp("nmnist")
    make_nmnist_twin(root, n_train=150, n_test=10, seed=5, progress=False)
    return root


def reference(twin, features="windows"):
    lsm = LSM(LSMConfig.nmnist())
    ds = nmnist(twin, "train")
    return encode_dataset(ds, nmnist_preprocessing(), lsm, features=features, progress=False,
                          chunk_size=10_000, decoder="reference")


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 10_000])
def test_chunked_encoding_equals_one_call(twin, chunk_size):
    ref = reference(twin)
    got = encode_dataset(nmnist(twin, "train"), nmnist_preprocessing(), LSM(LSMConfig.nmnist()),
                         features="windows", progress=False, chunk_size=chunk_size)
    assert np.array_equal(got.features, ref.features)
    assert np.array_equal(got.labels, ref.labels) and got.sample_ids == ref.sample_ids


def test_encode_file_streams_and_matches(twin, tmp_path, capsys):
    out = tmp_path / "f.npz"
    assert main(["encode", "--nmnist", str(twin), "--out", str(out), "--features", "windows",
                 "--chunk-size", "32", "--no-progress"]) == 0
    line = capsys.readouterr().out
    assert "(5 chunks" in line and "samples/s" in line
    data = load_npz(out)
    ref = reference(twin)
    assert np.array_equal(data["features"], ref.features)
    assert np.array_equal(data["labels"], ref.labels)
    assert data["sample_ids"].tolist() == ref.sample_ids
    assert json.loads(str(data["features_json"]))["kind"] == "windows"
    assert not (tmp_path / "f.npz.partial").exists()  # the chunks go once the file is there
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.npz"]


def test_streamed_cache_entry_is_a_valid_entry(twin, tmp_path):
    cache = tmp_path / "cache"
    out = tmp_path / "f.npz"
    assert main(["encode", "--nmnist", str(twin), "--out", str(out), "--cache", str(cache),
                 "--chunk-size", "40", "--no-progress"]) == 0
    (entry,) = list(cache.glob("*.npz"))
    # the entry written chunk by chunk passes the cache's own key and checksum check, and a
    # library encoding of the same thing hits it
    lsm = LSM(LSMConfig.nmnist())
    got = encode_dataset(nmnist(twin, "train"), nmnist_preprocessing(), lsm,
                         cache=FeatureCache(cache), progress=False)
    assert got.cache_hit and got.key == entry.stem
    assert np.array_equal(got.features, load_npz(out)["features"])


def test_interrupted_encoding_resumes_from_its_last_chunk(twin, tmp_path, monkeypatch, capsys):
    """A fault after two chunks: the complete chunks stay, the next run reads them back and
    encodes only the rest; the output equals an uninterrupted run's."""
    out = tmp_path / "f.npz"
    args = ["encode", "--nmnist", str(twin), "--out", str(out), "--chunk-size", "40",
            "--no-progress", "--json"]
    saved = []
    real_save = ChunkFolder.save

    def failing_save(self, chunk):
        if len(saved) == 2:
            raise KeyboardInterrupt
        saved.append(chunk.index)
        return real_save(self, chunk)

    monkeypatch.setattr(ChunkFolder, "save", failing_save)
    assert main(args) == 130
    assert "kept 2 complete chunks; run the same command again" in capsys.readouterr().err
    assert not out.exists()
    assert sorted(p.name for p in (tmp_path / "f.npz.partial").iterdir()) == [
        "chunk-000000.npz", "chunk-000001.npz", "manifest.json"]
    monkeypatch.setattr(ChunkFolder, "save", real_save)
    encoded = []
    real_encode = LSM.encode

    def counting_encode(self, x, *a, **kw):
        encoded.append(kw.get("first_sample"))
        return real_encode(self, x, *a, **kw)

    monkeypatch.setattr(LSM, "encode", counting_encode)
    assert main(args) == 0
    assert "resuming after 2 complete chunks" in capsys.readouterr().err
    assert encoded == [80, 120]  # chunks 0 and 1 were read back, not encoded again
    ref = reference(twin, "rates")
    assert np.array_equal(load_npz(out)["features"], ref.features)


def test_another_config_starts_over(twin, tmp_path, capsys):
    out = tmp_path / "f.npz"
    key_folder = ChunkFolder(tmp_path / "f.npz.partial", "some-other-key", 40, 150)
    (key_folder.folder / "chunk-000000.npz").write_bytes(b"not this encoding's")
    key_folder.release()
    assert main(["encode", "--nmnist", str(twin), "--out", str(out), "--chunk-size", "40",
                 "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "resumed" not in captured.out and "discarded 1 chunks" in captured.err
    assert np.array_equal(load_npz(out)["features"], reference(twin, "rates").features)


def test_a_damaged_chunk_is_redone(twin, tmp_path):
    out = tmp_path / "f.npz"
    args = ["encode", "--nmnist", str(twin), "--out", str(out), "--chunk-size", "40",
            "--no-progress"]
    assert main(args) == 0
    first = load_npz(out)["features"]
    # leave a partial folder whose chunk 1 is damaged, as if the disk had lost it
    lsm = LSM(LSMConfig.nmnist())
    from lsm.data.pipeline import encoding_key

    ds = nmnist(twin, "train")
    key = encoding_key(ds, nmnist_preprocessing(), lsm, "rates", 1, "error")
    folder = ChunkFolder(tmp_path / "f.npz.partial", key, 40, len(ds))
    (folder.folder / "chunk-000001.npz").write_bytes(b"PK\x03\x04garbage")
    # and chunk 2 a well-formed chunk of another encoding (copied from elsewhere)
    other = ChunkFolder(tmp_path / "other.partial", "another-key", 40, len(ds))
    lsm_chunk = next(encode_chunks(ds, nmnist_preprocessing(), lsm, chunk_size=40,
                                   progress=False))
    lsm_chunk.index = 2
    os.replace(other.save(lsm_chunk), folder.path(2))
    other.clear()
    folder.release()
    out.unlink()
    assert main(args) == 0
    assert np.array_equal(load_npz(out)["features"], first)


def test_one_output_is_written_by_one_run_at_a_time(twin, tmp_path, capsys):
    out = tmp_path / "f.npz"
    holder = ChunkFolder(tmp_path / "f.npz.partial", "k", 40, 150)  # another run, at work
    assert main(["encode", "--nmnist", str(twin), "--out", str(out), "--no-progress"]) == 2
    assert "another run is writing these chunks" in capsys.readouterr().err
    assert not out.exists()
    holder.release()
    assert main(["encode", "--nmnist", str(twin), "--out", str(out), "--no-progress"]) == 0


def test_outputs_that_would_destroy_or_mislead_are_refused(twin, tmp_path, capsys):
    from lsm.data.formats import write_ntidigits_hdf5

    # the dataset file itself as --out
    path = tmp_path / "n.hdf5"
    write_ntidigits_hdf5(path, {"train": [("s1-a-1", [1, 2], [0.0, 0.1])]})
    before = path.read_bytes()
    assert main(["encode", "--ntidigits", str(path), "--out", str(path), "--no-progress"]) == 2
    assert "is the dataset itself" in capsys.readouterr().err
    assert path.read_bytes() == before
    # a split with nothing to encode (multi-digit utterances only)
    multi = tmp_path / "multi.hdf5"
    write_ntidigits_hdf5(multi, {"train": [("s1-a-12", [1, 2], [0.0, 0.1])]})
    assert main(["encode", "--ntidigits", str(multi), "--out", str(tmp_path / "m.npz"),
                 "--no-progress"]) == 2
    assert "has no samples to encode" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["multi.hdf5", "n.hdf5"]
    # a symbolic link where the chunks would go (they could be another run's)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "s.npz.partial").symlink_to(tmp_path / "elsewhere")
    assert main(["encode", "--nmnist", str(twin), "--out", str(tmp_path / "s.npz"),
                 "--no-progress"]) == 2
    assert "is not a folder" in capsys.readouterr().err


@pytest.mark.slow
def test_sigkill_then_resume(twin, tmp_path):
    """A real kill (SIGKILL, no cleanup at all) while chunks are being written."""
    cfg = tmp_path / "big.toml"
    cfg.write_text(LSMConfig.nmnist(n_neurons=3000, p_rec=0.5).to_toml())  # slow enough
    out = tmp_path / "f.npz"
    cmd = [sys.executable, "-c", "from lsm.cli import main; raise SystemExit(main())",
           "encode", "--nmnist", str(twin), "--out", str(out), "--config", str(cfg),
           "--chunk-size", "10", "--no-progress", "--json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    partial = tmp_path / "f.npz.partial"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and len(list(partial.glob("chunk-*.npz"))) < 3:
        assert proc.poll() is None, "finished before it could be killed"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(list(partial.glob("chunk-*.npz")))
    assert 3 <= done < len(chunk_ranges(150, 10)) and not out.exists()
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    r = json.loads(result.stdout)
    assert r["resumed_chunks"] >= done and r["chunks"] == 15
    lsm = LSM(LSMConfig.from_toml(cfg.read_text()))
    ref = encode_dataset(nmnist(twin, "train"), nmnist_preprocessing(), lsm, progress=False)
    assert np.array_equal(load_npz(out)["features"], ref.features)
    assert not partial.exists()


def test_bench_pipeline_json_reports_both_paths(tmp_path, capsys):
    """`lsm bench pipeline --json` on a small generated dataset: both paths timed, the same
    events and features, stages and peak memory at two sizes (speed itself is not asserted)."""
    assert main(["bench", "pipeline", "--files", "40", "--rounds", "2", "--json",
                 "--workdir", str(tmp_path), "--no-progress"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["n_files"] == 40 and r["same_events"] and r["same_features"]
    assert len(list((tmp_path / "nmnist-bench" / "Train").rglob("*.bin"))) == 40
    lo, mid, hi = r["fused_vs_tonic_rounds"]
    assert 0 < lo <= mid <= hi and r["spread"] >= 1.0
    assert set(r["stages_us_per_sample"]) == {"list", "tonic_read", "tonic_preprocess",
                                              "fused_read", "fused_decode", "encode"}
    sizes = {(m["mode"], m["n"]) for m in r["memory"]["sizes"]}
    assert sizes == {("stream", 10), ("stream", 40), ("in_memory", 10), ("in_memory", 40)}
    assert all(m["growth_mb"] >= 0 for m in r["memory"]["sizes"] + r["memory"]["paths"])
    o = r["overflow"]
    assert o["bytes"] == 320_000 and 30_000 < o["markers"] < 34_000 and o["fused_s"] > 0
    for v in r["verdicts"].values():
        assert v.startswith(("met", "missed", "too noisy", "inconclusive"))
