"""From files on disk to reservoir features: the tonic-based path against the fused decoder.

``lsm bench pipeline`` writes an N-MNIST-format dataset (a few thousand ``.bin`` files of the
offline twin's digits, each with its own timing and position jitter), then times, in interleaved
rounds of one run, on the paper's N-MNIST settings (crop 16, polarity 1, 50 bins, the
``LSMConfig.nmnist()`` reservoir):

* **tonic path**: tonic's ``read_mnist_file`` (with the loaders' checks) -> tonic's
  ``CenterCrop`` -> polarity -> time bins -> the LSM (``decoder="reference"``);
* **fused path**: the same files through :mod:`lsm.data.fused` -> the same LSM.

End to end is what a user runs (:func:`lsm.data.encode_dataset`, listing the folder included);
the stages (list, read, decode/preprocess, encode) are timed one by one in the same rounds. Peak
memory is measured in a fresh process per path (peak resident set minus the resident set after
imports and JIT warm-up), and, for the streaming encoder (``lsm encode``, chunks on disk) against
an in-memory encoding, at two dataset sizes. The files are read from the page cache (written just
before): both paths see the same warm cache.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from lsm.bench.encode import BUSY_SHARE, NOISY_SPREAD, OtherLoad, verdict

__all__ = ["PIPELINE_TARGETS", "MIN_FILES", "write_bench_dataset", "write_overflow_file",
           "bench_pipeline", "format_pipeline"]

#: Goals of the issue on a 2-core machine, paper's N-MNIST settings.
PIPELINE_TARGETS = {"fused_vs_tonic": 4.0, "fused_samples_per_s": 5000.0}
#: Fewest files worth timing (and a quarter of them for the small memory run).
MIN_FILES = 16


def write_bench_dataset(root: str | os.PathLike, n_files: int, seed: int = 0,
                        n_digits: int = 300) -> Path:
    """``n_files`` N-MNIST ``.bin`` files under ``root/Train/<digit>/``: ``n_digits`` twin
    digits (the saccade camera model of :mod:`lsm.data.twin_nmnist`), each file one of them
    shifted by up to 1 pixel and up to 1 ms, so that no two files are alike."""
    from sklearn.datasets import load_digits

    from lsm.data.formats import write_nmnist_bin
    from lsm.data.twin_nmnist import DVSParams, digit_events

    root = Path(root)
    digits = load_digits()
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(digits.images), size=min(n_digits, n_files), replace=False)
    base = [(digit_events(digits.images[i], rng, DVSParams()), int(digits.target[i]))
            for i in pick]
    for k in range(n_files):
        ev, label = base[k % len(base)]
        ev = ev.copy()
        ev["x"] = np.clip(ev["x"] + rng.integers(-1, 2), 0, 33)
        ev["y"] = np.clip(ev["y"] + rng.integers(-1, 2), 0, 33)
        ev["t"] = ev["t"] + rng.integers(0, 1000)
        write_nmnist_bin(root / "Train" / str(label) / f"{k:06d}.bin", ev)
    return root


def write_overflow_file(path: str | os.PathLike, n_records: int, marker_fraction: float = 0.5,
                        seed: int = 0) -> int:
    """An N-MNIST ``.bin`` of ``n_records`` records, about ``marker_fraction`` of them overflow
    markers (y = 240), timestamps growing; returns the number of markers."""
    rng = np.random.default_rng(seed)
    marker = rng.random(n_records) < marker_fraction
    marker[0] = False
    raw = np.zeros((n_records, 5), np.uint8)
    raw[:, 0] = rng.integers(9, 25, n_records)
    raw[:, 1] = np.where(marker, 240, rng.integers(9, 25, n_records))
    ts = np.sort(rng.integers(0, 1 << 13, n_records))
    raw[:, 2] = (1 << 7) | ((ts >> 16) & 0x7F)
    raw[:, 3] = (ts >> 8) & 0xFF
    raw[:, 4] = ts & 0xFF
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    raw.tofile(path)
    return int(marker.sum())


def _overflow_timing(folder: Path, n_records: int) -> dict:
    """Seconds to decode one overflow-heavy file (half markers) with the fused decoder and with
    tonic's reader (quadratic in the markers: each one shifts every later timestamp)."""
    from tonic.io import read_mnist_file

    from lsm.data import nmnist_preprocessing
    from lsm.data.formats import NMNIST_DTYPE
    from lsm.data.fused import fused_plan, nmnist_streams

    path = folder / "overflow.bin"
    markers = write_overflow_file(path, n_records)
    plan = fused_plan(nmnist_preprocessing())
    nmnist_streams([path], plan)  # warm-up
    t0 = time.perf_counter()
    fused = nmnist_streams([path], plan)
    fused_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    read_mnist_file(str(path), dtype=NMNIST_DTYPE)
    tonic_s = time.perf_counter() - t0
    assert not fused.errors
    path.unlink()
    return {"bytes": 5 * n_records, "markers": markers, "fused_s": fused_s, "tonic_s": tonic_s}


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"no {field} in /proc/self/status")


def _reset_peak() -> None:
    """Start the peak resident set (VmHWM) again from the current one (Linux >= 4.0): the
    peak of JIT compilation and imports is not the run's."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def _memory_child(spec: dict) -> dict:
    """In a fresh process: run one path on the first ``n`` files; peak RSS over the RSS after
    imports and a warm-up on 8 files."""
    from lsm import LSM, LSMConfig
    from lsm.data import encode_dataset, nmnist, nmnist_preprocessing
    from lsm.data.datasets import NMNISTFolder

    full = nmnist(spec["root"], "train")
    n = spec["n"]
    ds = NMNISTFolder(full.root, "train", full.paths[:n], full.labels[:n])
    warm = NMNISTFolder(full.root, "train", full.paths[:8], full.labels[:8])
    pre, lsm = nmnist_preprocessing(), LSM(LSMConfig.nmnist())
    mode = spec["mode"]
    decoder = "reference" if mode == "tonic" else "fused"
    encode_dataset(warm, pre, lsm, progress=False, decoder=decoder)
    if mode == "stream":
        from lsm.experiments.encode import stream_to_file

        stream_to_file(warm, pre, lsm, spec["out"], "rates", 1, "error", spec["chunk_size"], {},
                       progress=False)
    _reset_peak()
    base = _status_kb("VmRSS") * 1024
    t0 = time.perf_counter()
    if mode == "stream":
        from lsm.experiments.encode import stream_to_file

        stream_to_file(ds, pre, lsm, spec["out"], "rates", 1, "error", spec["chunk_size"], {},
                       progress=False)
    elif mode == "in_memory":  # the whole split's events at once, then the reservoir
        encode_dataset(ds, pre, lsm, progress=False, chunk_size=max(1, n))
    else:
        encode_dataset(ds, pre, lsm, progress=False, decoder=decoder)
    elapsed = time.perf_counter() - t0
    peak = _status_kb("VmHWM") * 1024
    return {"mode": mode, "n": n, "base_mb": base / 2**20, "peak_mb": peak / 2**20,
            "growth_mb": max(0, peak - base) / 2**20, "seconds": elapsed}


def _measure_memory(spec: dict) -> dict:
    cmd = [sys.executable, "-c",
           "import json, sys; from lsm.bench.pipeline import _memory_child; "
           "print(json.dumps(_memory_child(json.loads(sys.argv[1]))))", json.dumps(spec)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"memory measurement ({spec['mode']}, {spec['n']} files) failed:\n"
                           f"{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _stages_tonic(ds, pre) -> tuple[float, float, object]:
    """Seconds reading (tonic + checks) and preprocessing (crop, polarity, bins), and the
    batch, one sample at a time as the reference path does."""
    from lsm.data.formats import read_nmnist_bin
    from lsm.events import EventBatch

    t_read = t_pre = 0.0
    streams = []
    for p in ds.paths:
        t0 = time.perf_counter()
        ev = read_nmnist_bin(p)
        t1 = time.perf_counter()
        streams.append(pre(ev))
        t_read += t1 - t0
        t_pre += time.perf_counter() - t1
    return t_read, t_pre, EventBatch.from_streams(streams, pre.n_bins, pre.n_channels)


def _stages_fused(ds, plan, workspace) -> tuple[float, float, object]:
    """Seconds reading the files into one buffer, and decoding + crop + bins (Numba), chunk by
    chunk as :func:`lsm.data.encode_dataset` does (one workspace, reused)."""
    from lsm.data.fused import decode_nmnist_buffer, read_files
    from lsm.data.stream import DEFAULT_CHUNK_SIZE, chunk_ranges
    from lsm.events import EventBatch

    t_read = t_decode = 0.0
    batches = []
    for r in chunk_ranges(len(ds), DEFAULT_CHUNK_SIZE):
        paths = ds.paths[r.start:r.stop]
        t0 = time.perf_counter()
        raw, starts, failed = read_files(paths, workspace)
        t1 = time.perf_counter()
        got = decode_nmnist_buffer(paths, raw, starts, failed, plan, None, workspace)
        batches.append(EventBatch(got.offsets, got.bins, got.channels, plan.n_bins,
                                  plan.n_channels))
        t_read += t1 - t0
        t_decode += time.perf_counter() - t1
    return t_read, t_decode, EventBatch.concatenate(batches, plan.n_bins, plan.n_channels)


def bench_pipeline(n_files: int = 4000, rounds: int = 3, memory: bool = True,
                   workdir: str | os.PathLike | None = None, seed: int = 0,
                   progress: bool = True) -> dict:
    """Run the pipeline benchmark; returns the figures as a dict (see :func:`format_pipeline`).

    Keys: ``tonic_samples_per_s`` / ``fused_samples_per_s`` (best round), ``fused_vs_tonic``
    (ratio of the best rounds), ``*_rounds`` ([min, median, max] over the rounds, as in
    ``lsm bench encode``), ``fused_vs_tonic_per_round``, ``spread`` (the larger max/min rate of
    a path), ``other_cpu_share`` (CPU time used by other processes during the rounds),
    ``stages_us_per_sample`` (best round of each stage), ``same_events`` / ``same_features``,
    ``overflow`` (one overflow-heavy file through both readers, seconds),
    ``memory`` (``paths``: each path's peak; ``sizes``: streaming vs in memory at two sizes;
    ``growth_mb`` is the peak resident set over the one after imports and warm-up),
    ``verdicts``.

    Parameters
    ----------
    n_files : int
        Files written and timed (the memory runs use a quarter of them, then all).
    rounds : int
        Interleaved rounds; the best is reported with the round-by-round ratio range.
    memory : bool
        Also measure peak memory (fresh processes; adds about the time of two rounds).
    workdir : path, optional
        Where the files are written (kept); default a temporary folder, removed after.
    """
    import numba

    from lsm import LSM, LSMConfig
    from lsm.data import encode_dataset, nmnist, nmnist_preprocessing
    from lsm.data.fused import fused_plan
    from lsm.progress import progress_bar

    if n_files < MIN_FILES:
        raise ValueError(f"n_files must be >= {MIN_FILES}, got {n_files}")
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    tmp = None
    if workdir is None:
        tmp = tempfile.mkdtemp(prefix="lsm-bench-pipeline-")
        workdir = tmp
    else:
        from lsm.io import check_output_dir

        workdir = check_output_dir(workdir, "--workdir")
        if any(p.name in ("Train", "Test") for p in (workdir, *workdir.parents)):
            raise ValueError(f"--workdir {workdir} is inside an N-MNIST dataset's Train/ or "
                             "Test/ folder: the benchmark's files would join that dataset")
    root = Path(workdir) / "nmnist-bench"
    try:
        if not (root / "Train").is_dir() or len(nmnist(root, "train")) != n_files:
            shutil.rmtree(root, ignore_errors=True)
            t0 = time.perf_counter()
            write_bench_dataset(root, n_files, seed)
            made_s = time.perf_counter() - t0
        else:
            made_s = 0.0
        ds = nmnist(root, "train")
        pre, lsm = nmnist_preprocessing(), LSM(LSMConfig.nmnist())
        plan = fused_plan(pre)
        # warm-up outside the clock: JIT (from Numba's cache), page cache, allocator
        for decoder in ("reference", "fused"):
            encode_dataset(ds, pre, lsm, progress=False, decoder=decoder)
        from lsm.data.fused import Workspace

        workspace = Workspace()
        e2e = {"tonic": [], "fused": []}
        stages = {k: [] for k in ("list", "tonic_read", "tonic_preprocess", "fused_read",
                                  "fused_decode", "encode")}
        agree = None
        with progress_bar(total=rounds, desc="pipeline rounds", unit="round",
                          disable=not progress) as bar, OtherLoad() as load:
            for _ in range(rounds):
                for name, decoder in (("tonic", "reference"), ("fused", "fused")):
                    t0 = time.perf_counter()
                    enc = encode_dataset(nmnist(root, "train"), pre, lsm, progress=False,
                                         decoder=decoder)
                    e2e[name].append(time.perf_counter() - t0)
                    if name == "tonic":
                        ref_features = enc.features
                    elif agree is None:
                        agree = bool(np.array_equal(enc.features, ref_features))
                t0 = time.perf_counter()
                nmnist(root, "train")
                stages["list"].append(time.perf_counter() - t0)
                r, p, batch_t = _stages_tonic(ds, pre)
                stages["tonic_read"].append(r)
                stages["tonic_preprocess"].append(p)
                r, d, batch_f = _stages_fused(ds, plan, workspace)
                stages["fused_read"].append(r)
                stages["fused_decode"].append(d)
                t0 = time.perf_counter()
                lsm.encode(batch_f, progress=False)
                stages["encode"].append(time.perf_counter() - t0)
                bar.update(1)
        same_events = (np.array_equal(batch_t.offsets, batch_f.offsets)
                       and np.array_equal(batch_t.bins, batch_f.bins)
                       and np.array_equal(batch_t.channels, batch_f.channels))
        tonic_rate = n_files / np.asarray(e2e["tonic"])
        fused_rate = n_files / np.asarray(e2e["fused"])
        per_round = fused_rate / tonic_rate
        spread = float(max(tonic_rate.max() / tonic_rate.min(),
                           fused_rate.max() / fused_rate.min()))
        result = {
            "n_files": n_files, "rounds": rounds, "dataset_written_s": made_s,
            "events_per_file": float(np.mean([p.stat().st_size for p in ds.paths[:200]]) / 5),
            "events_per_sample_after_preprocessing": batch_f.n_events / n_files,
            "tonic_samples_per_s": float(tonic_rate.max()),
            "fused_samples_per_s": float(fused_rate.max()),
            "fused_vs_tonic": float(fused_rate.max() / tonic_rate.max()),
            "fused_vs_tonic_rounds": [float(per_round.min()), float(np.median(per_round)),
                                      float(per_round.max())],
            "fused_samples_per_s_rounds": [float(fused_rate.min()),
                                           float(np.median(fused_rate)),
                                           float(fused_rate.max())],
            "spread": spread,
            "fused_vs_tonic_per_round": [float(v) for v in per_round],
            "other_cpu_share": load.share,
            "stages_us_per_sample": {k: 1e6 * min(v) / n_files for k, v in stages.items()},
            "same_events": bool(same_events), "same_features": bool(agree),
        }
        # a 3.2 MB file (0.32 MB for a small run): tonic's reader takes seconds on it
        result["overflow"] = _overflow_timing(Path(workdir),
                                              640_000 if n_files >= 1000 else 64_000)
        if memory:
            result["memory"] = _memory_runs(root, n_files, Path(workdir))
        result["machine"] = {"cpu_count": os.cpu_count(), "numba_threads": numba.get_num_threads(),
                             "numba": numba.__version__, "platform": platform.platform()}
        result["targets"] = PIPELINE_TARGETS
        result["verdicts"] = {
            "fused_vs_tonic": verdict(result["fused_vs_tonic_rounds"], spread,
                                      PIPELINE_TARGETS["fused_vs_tonic"], busy=load.share),
            "fused_samples_per_s": verdict(result["fused_samples_per_s_rounds"], spread,
                                           PIPELINE_TARGETS["fused_samples_per_s"],
                                           busy=load.share),
        }
        return result
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _memory_runs(root: Path, n_files: int, workdir: Path) -> dict:
    """Peak memory of each path on ``n_files`` files, and of streaming vs in-memory encoding on
    ``n_files // 4`` and ``n_files`` files (a 4x larger dataset)."""
    out = {"paths": [], "sizes": []}
    for mode in ("tonic", "fused"):
        out["paths"].append(_measure_memory({"root": str(root), "n": n_files, "mode": mode}))
    for n in (n_files // 4, n_files):
        for mode in ("stream", "in_memory"):
            spec = {"root": str(root), "n": n, "mode": mode, "chunk_size": 256,
                    "out": str(workdir / f"stream-{n}.npz")}
            out["sizes"].append(_measure_memory(spec))
            with_out = Path(spec["out"])
            if with_out.exists():
                with_out.unlink()
    return out


def format_pipeline(r: dict) -> str:
    """The table: end to end per path, stages per sample, peak memory, verdicts."""
    st = r["stages_us_per_sample"]
    lo, _, hi = r["fused_vs_tonic_rounds"]
    tonic_total = st["list"] + st["tonic_read"] + st["tonic_preprocess"] + st["encode"]
    fused_total = st["list"] + st["fused_read"] + st["fused_decode"] + st["encode"]
    lines = [
        f"N-MNIST format, {r['n_files']} files ({r['events_per_file']:.0f} events each, "
        f"{r['events_per_sample_after_preprocessing']:.0f} after crop 16 / polarity 1 / 50 bins)"
        f", paper's LSM; best of {r['rounds']} interleaved rounds",
        "",
        f"{'stage (us per sample)':<34} {'tonic path':>12} {'fused path':>12}",
        f"{'list the folder':<34} {st['list']:>12.1f} {st['list']:>12.1f}",
        f"{'read files':<34} {st['tonic_read']:>12.1f} {st['fused_read']:>12.1f}",
        f"{'decode + crop + polarity + bins':<34} {st['tonic_preprocess']:>12.1f} "
        f"{st['fused_decode']:>12.1f}",
        f"{'LSM encode':<34} {st['encode']:>12.1f} {st['encode']:>12.1f}",
        f"{'sum of stages':<34} {tonic_total:>12.1f} {fused_total:>12.1f}",
        "",
        f"end to end: tonic path {r['tonic_samples_per_s']:,.0f} samples/s, fused path "
        f"{r['fused_samples_per_s']:,.0f} samples/s: {r['fused_vs_tonic']:.2f}x "
        f"(rounds {lo:.2f}-{hi:.2f}; rates moved {r['spread']:.2f}x between rounds)",
        f"same events: {'yes' if r['same_events'] else 'NO'}; same features: "
        f"{'yes' if r['same_features'] else 'NO'}",
    ]
    o = r.get("overflow")
    if o:
        lines += ["", f"overflow markers: a {o['bytes'] / 1e6:.2f} MB file, {o['markers']:,} "
                      f"markers: fused {1e3 * o['fused_s']:.1f} ms, tonic's reader "
                      f"{o['tonic_s']:.2f} s"]
    if "memory" in r:
        m = r["memory"]
        lines += ["", "peak memory over the process after imports and warm-up (MiB):"]
        for row in m["paths"]:
            lines.append(f"  {row['mode']:<10} path, {row['n']} files: +{row['growth_mb']:.1f} "
                         f"(peak RSS {row['peak_mb']:.0f})")
        by = {(x["mode"], x["n"]): x for x in m["sizes"]}
        sizes = sorted({x["n"] for x in m["sizes"]})
        for mode, what in (("stream", "streaming (lsm encode, 256-sample chunks on disk)"),
                           ("in_memory", "in memory (all events at once)")):
            cells = ", ".join(f"{n} files +{by[(mode, n)]['growth_mb']:.1f}" for n in sizes)
            lines.append(f"  {what}: {cells}")
    t = r["targets"]
    lines += ["", f"targets: fused >= {t['fused_vs_tonic']:g}x tonic end to end: "
                  f"{r['verdicts']['fused_vs_tonic']}",
              f"targets: fused >= {t['fused_samples_per_s']:,.0f} samples/s: "
              f"{r['verdicts']['fused_samples_per_s']}"]
    m = r["machine"]
    busy = r.get("other_cpu_share")
    lines.append(f"({m['cpu_count']} CPUs, numba {m['numba']} x{m['numba_threads']} threads; "
                 f"files in the page cache; other processes used "
                 + ("an unknown share" if busy is None else f"{100 * busy:.0f} %")
                 + f" of the CPUs; a spread over {NOISY_SPREAD}x, or others over "
                 f"{100 * BUSY_SHARE:.0f} %, is too noisy to conclude)")
    return "\n".join(lines)
