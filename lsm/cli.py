"""The ``lsm`` command line.

    lsm bench encode [--quick] [--json]       backend throughput, side by side
    lsm encode INPUT.npz --out FEATURES.npz   events -> reservoir features
    lsm config [--preset nmnist|ntidigits]    print a config as TOML
    lsm encode --dataset nmnist --root DIR    dataset -> preprocessing -> LSM -> features
    lsm data make-twin nmnist --out DIR       offline twins in the real on-disk formats
    lsm data info PATH                        counts, events, durations + a PNG of samples
    lsm data download nmnist --root DIR       fetch a real dataset (checksummed)
    lsm train --dataset nmnist --root DIR     supervised readout, test accuracy vs the paper's
    lsm zeroshot --nmnist DIR --ntidigits F   contrastive heads, zero-shot retrieval, seeds
    lsm demo                                  offline twins -> zero-shot and supervised results
    lsm emulator --port 5025                  the emulated macro on 127.0.0.1 (TCP, VISA socket)
    lsm hw idn|program-random|read-map|vmm|journal   drive the macro (default: the emulator)
    lsm crossbar sample [--json]              programmed conductance statistics + histogram
    lsm crossbar vmm-error [--json]           multiply error vs read noise and ADC bits
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

__all__ = ["main"]


class CLIError(Exception):
    """A user-facing error: printed without a traceback. Exit status 2 for bad input or a
    refused request; 3 when the instrument or its link failed (a lab job can be resumed)."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _print_result(result: dict, as_json: bool) -> None:
    """One JSON object, or one ``key: value`` line per entry."""
    if as_json:
        print(json.dumps(result))
        return
    width = max(map(len, result), default=0)
    for k, v in result.items():
        print(f"{k:>{width}}: {v}")


def _cmd_bench_encode(args: argparse.Namespace) -> int:
    from lsm.bench import bench_encode, format_table

    result = bench_encode(quick=args.quick, workloads=tuple(args.workload) or None)
    if args.json:
        print(json.dumps(result))
    else:
        print(format_table(result))
    return 0


def _load_config(args: argparse.Namespace):
    from lsm.config import LSMConfig

    if args.config:
        cfg = LSMConfig.load(args.config)  # its errors name the file and the key
    else:
        preset = args.preset or getattr(args, "dataset", None) or "nmnist"
        cfg = LSMConfig.ntidigits() if preset == "ntidigits" else LSMConfig.nmnist()
    if getattr(args, "seed", None) is not None:
        cfg = cfg.replace(seed=args.seed)
    return cfg


def _read_inputs(path: Path, cfg):
    """Events or a raster from an .npz: ``raster`` or ``offsets``/``bins``/``channels``, and
    optional ``labels`` (one per sample). Every member's declared shape and dtype is checked
    before it is read (:func:`lsm.io.load_npz`)."""
    from lsm.events import EventBatch
    from lsm.io import load_npz
    from lsm.validation import check_labels

    data = load_npz(path, what="input file")
    keys = set(data)
    try:
        if "raster" in keys:
            raster = data["raster"]
            if raster.ndim != 3 or raster.shape[1:] != (cfg.n_bins, cfg.n_inputs):
                raise ValueError(
                    f"raster has shape {raster.shape}, the config expects (n_samples, "
                    f"n_bins={cfg.n_bins}, n_inputs={cfg.n_inputs})"
                )
            events = EventBatch.from_raster(raster)
        elif {"offsets", "bins", "channels"} <= keys:
            events = EventBatch(data["offsets"], data["bins"], data["channels"], cfg.n_bins,
                                cfg.n_inputs)
        else:
            raise CLIError(
                f"{path}: expected an array 'raster' (n_samples, n_bins, n_inputs) or the "
                f"arrays 'offsets', 'bins', 'channels'; found {sorted(keys)}"
            )
    except ValueError as exc:
        raise CLIError(f"{path}: {exc}{_preset_hint(data, cfg)}") from None
    labels = check_labels(data["labels"], len(events), str(path)) if "labels" in keys else None
    return events, labels


def _preset_hint(data: dict, cfg) -> str:
    """When the inputs do not fit the config but fit another preset's shape, say which."""
    from lsm.config import LSMConfig

    exact = "raster" in data
    if exact and data["raster"].ndim == 3:
        n_bins, n_inputs = data["raster"].shape[1:]
    elif not exact and "bins" in data and "channels" in data and data["bins"].size and \
            data["bins"].dtype.kind in "iu" and data["channels"].dtype.kind in "iu":
        n_bins, n_inputs = int(data["bins"].max()) + 1, int(data["channels"].max()) + 1
    else:
        return ""
    for name, preset in (("nmnist", LSMConfig.nmnist()), ("ntidigits", LSMConfig.ntidigits())):
        fits = ((n_bins, n_inputs) == (preset.n_bins, preset.n_inputs) if exact else
                n_bins <= preset.n_bins and n_inputs <= preset.n_inputs)
        if fits and (preset.n_bins, preset.n_inputs) != (cfg.n_bins, cfg.n_inputs):
            return (f" (these inputs fit the {name} encoder, {preset.n_bins} bins x "
                    f"{preset.n_inputs} channels: try --preset {name})")
    return ""


def _cmd_encode(args: argparse.Namespace) -> int:
    from lsm.io import atomic_savez, check_output_file
    from lsm.reservoir import LSM

    if args.dataset:
        return _encode_dataset(args)
    if not args.input:
        raise CLIError("give an input .npz, or --dataset nmnist|ntidigits with --root")
    check_output_file(args.out, "--out")
    cfg = _load_config(args)
    events, labels = _read_inputs(Path(args.input), cfg)
    lsm = LSM(cfg, backend=args.backend)
    feats = lsm.encode(events, features=args.features, progress=not args.no_progress)
    out = {"features": feats, "config_toml": np.array(cfg.to_toml()),
           "provenance_json": np.array(json.dumps(lsm.provenance))}
    if labels is not None:
        out["labels"] = labels
    atomic_savez(args.out, **out)
    print(f"wrote {args.out}: features {feats.shape} {feats.dtype} "
          f"({len(events)} samples, {events.n_events} events, weights {lsm.provenance['source']})")
    return 0


def _encode_dataset(args: argparse.Namespace) -> int:
    from lsm.data import (
        FeatureCache,
        download_nmnist,
        download_ntidigits,
        encode_dataset,
        nmnist,
        nmnist_preprocessing,
        ntidigits,
        ntidigits_preprocessing,
    )
    from lsm.io import atomic_savez, check_output_file
    from lsm.reservoir import LSM

    if not args.root:
        raise CLIError("--dataset needs --root (N-MNIST folder, or N-TIDIGITS .hdf5 file)")
    if args.config is None and args.preset is None:
        args.preset = args.dataset
    # every path is checked before the work: a bad --out is not found after the encoding
    check_output_file(args.out, "--out")
    cache = FeatureCache(args.cache) if args.cache else None
    cfg = _load_config(args)
    root = Path(args.root)
    if args.dataset == "nmnist":
        if args.download and not (root / ("Train" if args.split == "train" else "Test")
                                  ).is_dir():
            download_nmnist(root, splits=(args.split,))
        ds = nmnist(root, args.split, on_bad_sample=args.on_bad_sample)
        pre = nmnist_preprocessing(n_bins=cfg.n_bins)
    else:
        if args.download and not root.exists():
            root = download_ntidigits(root.parent if root.suffix else root)
        ds = ntidigits(root, args.split, on_bad_sample=args.on_bad_sample)
        pre = ntidigits_preprocessing(n_bins=cfg.n_bins)
    lsm = LSM(cfg, backend=args.backend)
    enc = encode_dataset(ds, pre, lsm, features=args.features, cache=cache,
                         on_bad_sample=args.on_bad_sample, progress=not args.no_progress)
    atomic_savez(args.out, features=enc.features, labels=enc.labels,
                 sample_ids=np.array(enc.sample_ids, dtype=str),
                 config_toml=np.array(cfg.to_toml()),
                 provenance_json=np.array(json.dumps(lsm.provenance)),
                 preprocessing_json=np.array(json.dumps(pre.describe(), default=str)))
    print(f"wrote {args.out}: features {enc.features.shape} from {len(enc.labels)} samples of "
          f"{args.dataset} {args.split}"
          + (" (cache hit)" if enc.cache_hit else "")
          + (f"; skipped {len(enc.skipped)} bad samples" if enc.skipped else ""))
    for sid, reason in enc.skipped[:10]:
        print(f"  skipped {sid}: {reason}", file=sys.stderr)
    return 0


def _cmd_data_make_twin(args: argparse.Namespace) -> int:
    if args.kind == "nmnist":
        from lsm.data.twin_nmnist import make_nmnist_twin

        summary = make_nmnist_twin(args.out, n_train=args.train, n_test=args.test,
                                   seed=args.seed, progress=not args.no_progress)
    else:
        from lsm.data.twin_ntidigits import make_ntidigits_twin

        summary = make_ntidigits_twin(args.out, n_speakers=args.speakers, takes=args.takes,
                                      seed=args.seed, progress=not args.no_progress)
    print(json.dumps(summary))
    return 0


def _cmd_data_info(args: argparse.Namespace) -> int:
    from lsm.data.info import dataset_info, open_dataset, plot_samples
    from lsm.io import check_output_file

    out = args.out or f"{Path(args.path).stem or 'dataset'}_{args.split}_samples.png"
    check_output_file(out, "--out")
    ds = open_dataset(args.path, args.split, on_bad_sample="skip")
    info = dataset_info(ds, progress=not args.no_progress)
    info["png"] = str(plot_samples(ds, out))
    _print_result(info, args.json)
    return 0


def _cmd_data_download(args: argparse.Namespace) -> int:
    from lsm.data import download_nmnist, download_ntidigits

    where = (download_nmnist(args.root) if args.kind == "nmnist"
             else download_ntidigits(args.root))
    print(f"downloaded to {where}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from lsm.train import format_train, run_train

    r = run_train(args.dataset, args.root, args.readout, args.seeds, args.out, args.cache,
                  args.weights, progress=not args.no_progress)
    print(json.dumps({k: v for k, v in r.items() if k != "per_seed"}) if args.json
          else format_train(r))
    return 0


def _csv(text: str, kind: type, option: str) -> tuple:
    """A comma-separated option as a tuple of ``kind``, or CLIError naming the option."""
    try:
        return tuple(kind(v) for v in text.split(","))
    except ValueError:
        raise CLIError(f"{option} must be comma-separated {kind.__name__} values, got "
                       f"{text!r}") from None


def _zeroshot_config(args):
    from lsm.contrastive import ZeroShotConfig

    unseen = _csv(args.unseen, int, "--unseen")
    seen = tuple(c for c in range(1, 10) if c not in unseen) if args.seen is None else \
        _csv(args.seen, int, "--seen")
    return ZeroShotConfig(seen=seen, unseen=unseen, loss=args.loss, epochs=args.epochs,
                          embed_dims=_csv(args.embed_dims, int, "--embed-dims"),
                          temperatures=_csv(args.temperatures, float, "--temperatures"),
                          learnable_temperature=args.learnable_temperature,
                          selection=args.selection.replace("-", "_"),
                          n_class_folds=args.class_folds)


def _cmd_zeroshot(args: argparse.Namespace) -> int:
    from lsm.contrastive.run import format_zeroshot, run_zeroshot
    from lsm.train import weights_factory

    cfg = _zeroshot_config(args)
    r = run_zeroshot(args.nmnist, args.ntidigits, args.seeds, cfg, args.out, args.cache,
                     progress=not args.no_progress, weights_factory=weights_factory(args.weights))
    print(json.dumps({k: v for k, v in r.items() if k != "per_seed"}) if args.json
          else format_zeroshot(r))
    return 0


def _cmd_bench_train_cost(args: argparse.Namespace) -> int:
    from lsm.contrastive.train_cost import bench_train_cost, format_train_cost
    from lsm.data.demo import ensure_demo_twins
    from lsm.io import check_output_dir

    if (args.nmnist is None) != (args.ntidigits is None):
        raise CLIError("give both --nmnist and --ntidigits, or neither (demo twins)")
    if args.nmnist is None:
        check_output_dir(args.dir, "--dir")
        nm, td = ensure_demo_twins(Path(args.dir), not args.no_progress)
    else:
        nm, td = args.nmnist, args.ntidigits
    r = bench_train_cost(nm, td, max_srnn_epochs=args.max_epochs,
                         max_srnn_seconds=args.max_seconds, progress=not args.no_progress)
    from lsm.data.formats import data_kind

    r["data"] = {"nmnist": data_kind(nm), "ntidigits": data_kind(td)}
    print(json.dumps(r) if args.json else format_train_cost(r))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    """Offline twins (made once), then the zero-shot protocol and the supervised readouts."""
    from lsm.contrastive import ZeroShotConfig
    from lsm.contrastive.run import format_zeroshot, run_zeroshot
    from lsm.data.demo import ensure_demo_twins
    from lsm.io import check_output_dir
    from lsm.train import format_train, run_train

    base = check_output_dir(args.dir, "--dir")
    progress = not args.no_progress
    nm, td = ensure_demo_twins(base, progress)
    cache, runs = base / "features", base / "runs"
    for dataset, root in (("nmnist", nm), ("ntidigits", td)):
        print(format_train(run_train(dataset, root, "linear", args.seeds, runs, cache,
                                     progress=progress)))
    r = run_zeroshot(nm, td, args.seeds, ZeroShotConfig(), runs, cache, progress=progress)
    print(format_zeroshot(r))
    return 0


def _cmd_emulator(args: argparse.Namespace) -> int:
    # the lab packages are imported here, inside the subcommand: lsm itself never imports them
    from hw.emulator import FaultConfig, serve

    try:
        faults = FaultConfig(latency_s=args.latency_ms / 1000.0, drop_rate=args.drop_rate,
                        garble_rate=args.garble_rate, disconnect_rate=args.disconnect_rate,
                        error_rate=args.error_rate)
        serve(args.port, args.seed, faults, wall_clock=args.wall_clock, host=args.host,
              idle_timeout_s=args.idle_timeout_s, max_line_bytes=args.max_line_bytes,
              max_connections=args.max_connections)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    except OSError as exc:  # address in use, unknown host, no permission
        raise CLIError(f"cannot listen on {args.host}:{args.port}: {exc}") from None
    return 0


def _hw_region(text: str) -> tuple[int, int, int, int]:
    try:
        r0, r1, c0, c1 = (int(v) for v in text.split(","))
    except ValueError:
        raise CLIError(f"--region must be r0,r1,c0,c1 (half-open), got {text!r}") from None
    if not (0 <= r0 < r1 and 0 <= c0 < c1):
        raise CLIError(f"--region {text}: rows r0:r1 and columns c0:c1 need 0 <= r0 < r1 and "
                       "0 <= c0 < c1")
    return r0, r1, c0, c1


def _hw_out_path(path: str, suffixes: tuple[str, ...], option: str = "--out") -> Path:
    """Check an output path before any instrument time is spent on it."""
    from lsm.io import check_output_file

    out = check_output_file(path, option)
    if out.suffix.lower() not in suffixes:
        raise CLIError(f"{option} {out}: the file name must end in one of {list(suffixes)}")
    return out


def _hw_vmm_inputs(path: str, n_rows: int) -> np.ndarray:
    """The binary input vectors of ``lsm hw vmm``: array ``inputs`` of an .npz."""
    from hw.macro import check_spike_inputs
    from lsm.io import load_npz

    arrays = load_npz(path, what="inputs file")
    if "inputs" not in arrays:
        raise CLIError(f"{path}: no array 'inputs' (arrays: {sorted(arrays)})")
    try:
        x = check_spike_inputs(arrays["inputs"], n_rows)
    except ValueError as exc:
        raise CLIError(f"{path}: {exc}") from None
    if x.shape[0] == 0:
        raise CLIError(f"{path}: inputs hold no vectors")
    return x


def _cmd_hw(args: argparse.Namespace) -> int:
    import os
    import sqlite3

    from hw import DEFAULT_RESOURCE, InstrumentError, Journal, LimitError, LinkError, Macro
    from hw.jobs import JobIncomplete
    from hw.journal import JobBusy, JobMismatch

    args.resource = (getattr(args, "resource", None) or os.environ.get("LSM_HW_RESOURCE")
                     or DEFAULT_RESOURCE)
    if args.hw_command == "program-random" and not args.journal:
        raise CLIError("lsm hw program-random needs --journal FILE: the journal is what lets a "
                       "re-run resume without pulsing any cell twice")
    if getattr(args, "job", None) == "":
        raise CLIError("--job must not be empty")
    if getattr(args, "last", None) is not None and args.last < 1:
        raise CLIError(f"--last must be >= 1, got {args.last}")
    if args.hw_command == "journal":
        if not args.journal:
            raise CLIError("lsm hw journal needs --journal FILE")
        if not Path(args.journal).is_file():
            raise CLIError(f"--journal {args.journal}: no such journal file")
    # everything that can be refused is refused before connecting: not a byte goes out
    from hw import Limits

    limits = Limits.load(args.limits) if getattr(args, "limits", None) else Limits()
    region = _hw_region(args.region) if hasattr(args, "region") else None
    if region is not None:
        limits.check_region(*region)
    if hasattr(args, "v_read"):
        limits.check_read(args.v_read)
    pulse = None
    if args.hw_command == "program-random":
        from lsm.crossbar import Pulse

        pulse = Pulse.form(args.amplitude_v, args.width_ns, args.compliance_ua)
        limits.check_pulse(pulse.amplitude_v, pulse.width_ns, pulse.compliance_ua)
    out = None
    if args.hw_command == "read-map":
        out = _hw_out_path(args.out, (".npz", ".h5", ".hdf5"))
    elif args.hw_command == "vmm":
        out = _hw_out_path(args.out, (".npz",))
        inputs = _hw_vmm_inputs(args.inputs, region[1] - region[0])
    try:
        journal = Journal(args.journal) if args.journal else None
    except (OSError, ValueError) as exc:  # sqlite3.Error is not an OSError
        raise CLIError(f"--journal {args.journal}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - sqlite3.DatabaseError: not a database
        raise CLIError(f"--journal {args.journal}: not a usable SQLite journal ({exc})") \
            from None
    try:
        if args.hw_command == "journal":
            rows = journal.ops(job_id=args.job, limit=args.last)
            for r in rows:
                print(json.dumps(r))
            if args.job:
                job = journal.job(args.job)
                if job is None:
                    raise CLIError(f"no job {args.job!r} in {args.journal}")
                chunks = journal.chunk_status(args.job)
                counts = {st: sum(v == st for v in chunks.values()) for st in set(chunks.values())}
                print(json.dumps({"job": job, "chunks": counts}))
            return 0
        with Macro(args.resource, limits=limits, journal=journal,
                   timeout_ms=args.timeout_ms, retries=args.retries) as m:
            if args.hw_command == "idn":
                print(json.dumps({"idn": m.idn, "geometry": m.geometry, "status": m.status(),
                                  "pulse_counter": m.has_counter}))
            elif args.hw_command == "program-random":
                job = args.job or ("form-{}-{}-{}-{}-{}-{}-{}-{}".format(
                    m.idn["serial"], *region, pulse.amplitude_v, pulse.width_ns,
                    pulse.compliance_ua))
                job = m.program_random(region, pulse, job_id=job,
                                       progress=not args.no_progress)
                print(json.dumps({"job": job, "region": args.region, "status": "done",
                                  "journal": str(args.journal)}))
            elif args.hw_command == "read-map":
                from hw.journal import export_map
                from lsm.plots import conductance_histogram

                g = m.read_map(region, repeats=args.repeats, v_read=args.v_read)
                settings = {"instrument": m.idn, "region": region, "repeats": args.repeats,
                            "v_read": args.v_read, "resource": args.resource}
                export_map(out, g, settings)
                png = _map_png(g, out.with_suffix(".png"), settings)
                hist = conductance_histogram(g, out.with_suffix(".hist.png"),
                                             title=f"read map {region}")
                print(json.dumps({"out": str(out), "png": str(png), "hist_png": str(hist),
                                  "mean_us": float(g.mean()), "std_us": float(g.std())}))
            elif args.hw_command == "vmm":
                from lsm.io import atomic_savez

                r0, r1, c0, c1 = region
                codes = m.vmm((r0, r1), (c0, c1), inputs, v_read=args.v_read)
                atomic_savez(out, codes=codes)
                print(json.dumps({"out": str(out), "shape": list(codes.shape)}))
    except (LimitError, JobMismatch, ValueError) as exc:
        raise CLIError(str(exc)) from None
    except (JobIncomplete, InstrumentError, LinkError, JobBusy) as exc:
        message = str(exc)
        if "cannot connect" in message and args.resource == DEFAULT_RESOURCE:
            message += " (is the emulator running? `lsm emulator --port 5025 &`, or give " \
                       "--resource)"
        raise CLIError(message, exit_code=3) from None
    except sqlite3.Error as exc:  # locked by another process for longer than the timeout
        raise CLIError(f"--journal {args.journal}: {exc}", exit_code=3) from None
    finally:
        if journal is not None:
            journal.close()
    return 0


def _map_png(g, path, settings) -> Path:
    from matplotlib.figure import Figure

    from lsm.plots import save_figure

    fig = Figure(figsize=(5, 4.2))
    ax = fig.add_subplot()
    im = ax.imshow(g, cmap="viridis", interpolation="nearest")
    fig.colorbar(im, label="conductance (uS)")
    r0, r1, c0, c1 = settings["region"]
    ax.set_title(f"rows {r0}:{r1}, cols {c0}:{c1}, {settings['repeats']} read(s)", fontsize=9)
    ax.set_xlabel("column")
    ax.set_ylabel("row")
    return save_figure(fig, path)


def _cmd_config(args: argparse.Namespace) -> int:
    cfg = _load_config(args)
    sys.stdout.write(cfg.to_toml())
    return 0


def _cmd_crossbar_sample(args: argparse.Namespace) -> int:
    from lsm.crossbar import (
        CrossbarArray,
        DeviceParams,
        FaultParams,
        ProgrammingParams,
        Pulse,
        Region,
    )
    from lsm.crossbar.analysis import conductance_stats
    from lsm.io import check_output_file
    from lsm.plots import conductance_histogram

    check_output_file(args.out, "--out")
    dev = DeviceParams(programming=ProgrammingParams(distribution=args.distribution),
                       faults=FaultParams(p_stuck_hrs=args.p_stuck_hrs,
                                          p_stuck_lrs=args.p_stuck_lrs))
    pulse = Pulse.form(args.amplitude_v, args.width_ns, args.compliance_ua)
    arr = CrossbarArray(args.rows, args.cols, dev, seed=args.seed)
    region = Region(0, args.rows, 0, args.cols)
    arr.program_random(region, pulse)
    stats = conductance_stats(arr, region)
    mean, std = dev.programming.form_stats(pulse)
    stats.update({"configured_mean_us": mean, "configured_std_us": std,
                  "pulse": {"amplitude_v": pulse.amplitude_v, "width_ns": pulse.width_ns,
                            "compliance_ua": pulse.compliance_ua},
                  "distribution": args.distribution, "seed": args.seed})
    png = conductance_histogram(arr.conductance(*region.cells()), args.out,
                                title=f"{args.rows} x {args.cols} array after FORM "
                                      f"({args.distribution})", stats=stats)
    stats["png"] = str(png)
    _print_result(stats, args.json)
    return 0


def _cmd_crossbar_verify(args: argparse.Namespace) -> int:
    from lsm.crossbar import CrossbarArray, DeviceParams, FaultParams, Region

    dev = DeviceParams(faults=FaultParams(p_stuck_hrs=args.p_stuck_hrs,
                                          p_stuck_lrs=args.p_stuck_lrs))
    arr = CrossbarArray(args.rows, args.cols, dev, seed=args.seed)
    region = Region(0, args.rows, 0, args.cols)
    targets = np.random.default_rng(args.seed).uniform(args.low_us, args.high_us, region.shape)
    res = arr.program_verify(targets, region, tol_us=args.tol_us, max_iter=args.max_iter)
    out = res.summary()
    out["failed_cells_first"] = res.failed_cells[:10]
    _print_result(out, args.json)
    return 0


def _cmd_crossbar_vmm_error(args: argparse.Namespace) -> int:
    from lsm.crossbar.analysis import vmm_error_sweep
    from lsm.io import check_output_file
    from lsm.plots import vmm_error_plot

    check_output_file(args.out, "--out")
    result = vmm_error_sweep(n_vectors=args.vectors, seed=args.seed,
                             progress=not args.no_progress)
    result["png"] = str(vmm_error_plot(result, args.out))
    if args.json:
        print(json.dumps(result))
    else:
        noise = result["read_noise_rel"]
        print("relative RMS error of x @ (G+ - G-) in %, rows: ADC bits, columns: read noise")
        print(f"{'bits':>6} " + " ".join(f"{100 * n:>8.2f}%" for n in noise))
        for bits, errs in zip(result["adc_bits"], result["relative_rms_error"], strict=True):
            print(f"{bits:>6} " + " ".join(f"{100 * e:>9.4f}" for e in errs))
        print(f"plot: {result['png']}")
    return 0


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default when it has one worth showing (not None, not a flag's False)."""

    def _get_help_string(self, action) -> str:
        if action.default is None or action.default is False:
            return action.help or ""
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """No prefix matching (``--seed`` must never run as ``--seeds``); help shows defaults.
    Subcommand parsers are of the same class."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)


EXAMPLES = """examples:
  lsm demo                                      offline twins -> supervised and zero-shot results
  lsm data make-twin nmnist --out twins/nmnist  an offline N-MNIST twin in the real format
  lsm train --dataset nmnist --root twins/nmnist --seeds 3
  lsm emulator --port 5025 &                    the emulated macro; then: lsm hw idn
  lsm --debug encode events.npz --out f.npz     show the traceback of an error
"""


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="lsm", description="Liquid state machines on RRAM weights.",
                epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--debug", action="store_true",
                   help="on an error, show the Python traceback instead of one line")
    sub = p.add_subparsers(dest="command", required=True)

    bench = sub.add_parser("bench", help="benchmarks")
    bench_sub = bench.add_subparsers(dest="bench_command", required=True)
    be = bench_sub.add_parser("encode", help="reservoir throughput: numba vs torch vs snntorch")
    be.add_argument("--quick", action="store_true", help="fewer samples and repeats")
    be.add_argument("--json", action="store_true", help="print one JSON object")
    be.add_argument("--workload", action="append", default=[], choices=["paper", "large"],
                    help="run only this workload (repeatable)")
    be.set_defaults(func=_cmd_bench_encode)
    tc = bench_sub.add_parser("train-cost", help="LSM pipeline vs a trainable spiking RNN "
                                                 "(BPTT): MACs and time to the same accuracy")
    tc.add_argument("--nmnist", help="N-MNIST folder (default: the demo twin)")
    tc.add_argument("--ntidigits", help="N-TIDIGITS file (default: the demo twin)")
    tc.add_argument("--dir", default="lsm-demo", help="where the demo twins live")
    tc.add_argument("--max-epochs", type=int, default=40)
    tc.add_argument("--max-seconds", type=float, default=None,
                    help="optional wall-clock cap on the spiking RNN's training; off by "
                         "default, so the work (and the MAC ratio) is bounded by epochs alone, "
                         "not by machine load")
    tc.add_argument("--json", action="store_true")
    tc.add_argument("--no-progress", action="store_true")
    tc.set_defaults(func=_cmd_bench_train_cost)

    def config_args(sp):
        sp.add_argument("--config", help="LSMConfig TOML file (see `lsm config`)")
        sp.add_argument("--preset", choices=["nmnist", "ntidigits"], default=None,
                        help="paper settings to start from when no --config is given "
                             "(default: the dataset's, else nmnist)")
        sp.add_argument("--seed", type=int, help="override the config's seed")

    enc = sub.add_parser("encode", help="encode events (an .npz, or a dataset) into reservoir "
                                        "features")
    enc.add_argument("input", nargs="?", help=".npz with 'raster' or 'offsets','bins','channels'"
                                              " (and optional 'labels')")
    enc.add_argument("--dataset", choices=["nmnist", "ntidigits"],
                     help="encode a dataset split instead of an .npz")
    enc.add_argument("--root", help="N-MNIST folder (Train/, Test/) or N-TIDIGITS .hdf5 file")
    enc.add_argument("--split", choices=["train", "test"], default="train")
    enc.add_argument("--download", action="store_true",
                     help="fetch the real dataset into --root when it is not there")
    enc.add_argument("--cache", help="feature cache folder (keyed by data, preprocessing, "
                                     "config and weights)")
    enc.add_argument("--on-bad-sample", choices=["error", "skip"], default="error")
    enc.add_argument("--out", required=True, help="output .npz (written atomically)")
    enc.add_argument("--features", choices=["rates", "counts", "binned"], default="rates")
    enc.add_argument("--backend", choices=["numba", "torch"], default="numba")
    enc.add_argument("--no-progress", action="store_true")
    config_args(enc)
    enc.set_defaults(func=_cmd_encode)

    tr = sub.add_parser("train", help="supervised readout on LSM features; test accuracy")
    tr.add_argument("--dataset", choices=["nmnist", "ntidigits"], required=True)
    tr.add_argument("--root", required=True, help="N-MNIST folder or N-TIDIGITS .hdf5 file")
    tr.add_argument("--readout", choices=["linear", "mlp", "probe"], default="linear")
    tr.add_argument("--seeds", type=int, default=1, help="seeds = reservoir weight draws")
    tr.add_argument("--weights", choices=["gaussian", "crossbar"], default="gaussian")
    tr.add_argument("--out", default="runs", help="parent of the run directory")
    tr.add_argument("--cache", help="feature cache folder")
    tr.add_argument("--json", action="store_true")
    tr.add_argument("--no-progress", action="store_true")
    tr.set_defaults(func=_cmd_train)

    zs = sub.add_parser("zeroshot", help="contrastive heads; zero-shot cross-modal retrieval")
    zs.add_argument("--nmnist", required=True, help="N-MNIST folder (vision)")
    zs.add_argument("--ntidigits", required=True, help="N-TIDIGITS .hdf5 file (audio)")
    zs.add_argument("--seeds", type=int, default=3)
    zs.add_argument("--unseen", default="8,9", help="classes held out of training")
    zs.add_argument("--seen", default=None, help="training classes (default 1-9 minus unseen)")
    zs.add_argument("--loss", choices=["clip", "soft_clip", "cwcl", "supcon"], default="clip")
    zs.add_argument("--epochs", type=int, default=100)
    zs.add_argument("--embed-dims", default="64", help="candidates, chosen on validation")
    zs.add_argument("--temperatures", default="1.0", help="candidates, chosen on validation")
    zs.add_argument("--learnable-temperature", action="store_true")
    zs.add_argument("--selection", choices=["held-out-classes", "seen-samples"],
                    default="held-out-classes",
                    help="validation by held-out seen classes (zero-shot score, default) or by "
                         "held-out samples of every seen class")
    zs.add_argument("--class-folds", type=int, default=3,
                    help="folds of seen classes for --selection held-out-classes")
    zs.add_argument("--weights", choices=["gaussian", "crossbar"], default="gaussian")
    zs.add_argument("--out", default="runs")
    zs.add_argument("--cache", help="feature cache folder")
    zs.add_argument("--json", action="store_true")
    zs.add_argument("--no-progress", action="store_true")
    zs.set_defaults(func=_cmd_zeroshot)

    dm = sub.add_parser("demo", help="offline twins -> supervised and zero-shot results")
    dm.add_argument("--dir", default="lsm-demo", help="twins, feature cache and runs go here")
    dm.add_argument("--seeds", type=int, default=3)
    dm.add_argument("--no-progress", action="store_true")
    dm.set_defaults(func=_cmd_demo)

    em = sub.add_parser("emulator", help="serve the emulated macro over TCP (Ctrl-C stops)")
    em.add_argument("--host", default="127.0.0.1",
                    help="address to listen on (default 127.0.0.1: this machine only)")
    em.add_argument("--port", type=int, default=5025)
    em.add_argument("--idle-timeout-s", type=float, default=60.0,
                    help="close a connection with no complete command for this long")
    em.add_argument("--max-line-bytes", type=int, default=65536,
                    help="longest command line kept (longer: discarded, error -223)")
    em.add_argument("--max-connections", type=int, default=64,
                    help="simultaneous connections (more are closed at once)")
    em.add_argument("--seed", type=int, default=0)
    em.add_argument("--wall-clock", action="store_true", help="drift with real time")
    em.add_argument("--latency-ms", type=float, default=0.0, help="fault: reply latency")
    em.add_argument("--drop-rate", type=float, default=0.0, help="fault: dropped replies")
    em.add_argument("--garble-rate", type=float, default=0.0, help="fault: garbled replies")
    em.add_argument("--disconnect-rate", type=float, default=0.0, help="fault: disconnects")
    em.add_argument("--error-rate", type=float, default=0.0, help="fault: instrument errors")
    em.set_defaults(func=_cmd_emulator)

    hwp = sub.add_parser("hw", help="drive the macro over VISA (default: local emulator)")
    hw_sub = hwp.add_subparsers(dest="hw_command", required=True)

    region_help = "rows r0:r1 and columns c0:c1 of the array, half-open, as r0,r1,c0,c1"

    def hw_args(sp, instrument=True):
        sp.add_argument("--journal", help="SQLite lab journal (every pulse and read)")
        sp.set_defaults(func=_cmd_hw)
        if not instrument:
            return
        sp.add_argument("--resource", default=None,
                        help="VISA resource of the controller (default: $LSM_HW_RESOURCE, "
                             "else the local emulator TCPIP0::127.0.0.1::5025::SOCKET)")
        sp.add_argument("--limits", help="lab limits TOML (see hw/limits.example.toml; default: "
                                         "the built-in ones, the same values)")
        sp.add_argument("--timeout-ms", type=int, default=5000, help="reply timeout, ms")
        sp.add_argument("--retries", type=int, default=3,
                        help="extra attempts of a read-only query over a fresh connection")

    hw_args(hw_sub.add_parser("idn", help="identify the instrument"))
    pr = hw_sub.add_parser("program-random", help="form a region, verified and resumable: "
                                                  "re-run with the same --job to resume")
    pr.add_argument("--region", default="0,456,0,400", help=region_help)
    pr.add_argument("--job", help="job id (default: from the instrument, region and pulse)")
    pr.add_argument("--amplitude-v", type=float, default=3.0, help="FORM amplitude, V")
    pr.add_argument("--width-ns", type=float, default=1000.0, help="FORM pulse width, ns")
    pr.add_argument("--compliance-ua", type=float, default=100.0, help="compliance current, uA")
    pr.add_argument("--no-progress", action="store_true", help="no progress bar")
    hw_args(pr)
    rm = hw_sub.add_parser("read-map", help="read a conductance map; .npz/.h5 + PNGs")
    rm.add_argument("--region", default="0,456,0,400", help=region_help)
    rm.add_argument("--repeats", type=int, default=1, help="reads averaged per cell")
    rm.add_argument("--v-read", type=float, default=0.2, help="read voltage, V")
    rm.add_argument("--out", default="read_map.npz",
                    help="map file (.npz, .h5 or .hdf5); the PNGs are written beside it")
    hw_args(rm)
    vm = hw_sub.add_parser("vmm", help="multiply binary inputs in the array: ADC codes")
    vm.add_argument("inputs", help=".npz holding 'inputs': 0/1 spikes, (n_vectors, region rows)")
    vm.add_argument("--region", default="0,456,0,400", help=region_help)
    vm.add_argument("--v-read", type=float, default=0.2, help="read voltage of the inputs, V")
    vm.add_argument("--out", default="vmm_codes.npz", help=".npz receiving 'codes'")
    hw_args(vm)
    jn = hw_sub.add_parser("journal", help="print journal records (JSON lines), then a job's "
                                           "row counts")
    jn.add_argument("--job", help="only this job's records")
    jn.add_argument("--last", type=int, help="only the last N records")
    hw_args(jn, instrument=False)

    xb = sub.add_parser("crossbar", help="the simulated RRAM crossbar")
    xb_sub = xb.add_subparsers(dest="crossbar_command", required=True)
    smp = xb_sub.add_parser("sample", help="form an array; print conductance statistics; "
                                           "save a histogram PNG")
    smp.add_argument("--rows", type=int, default=512)
    smp.add_argument("--cols", type=int, default=512)
    smp.add_argument("--seed", type=int, default=0)
    smp.add_argument("--distribution", choices=["gaussian", "lognormal"], default="gaussian")
    smp.add_argument("--amplitude-v", type=float, default=3.0, help="FORM amplitude, V")
    smp.add_argument("--width-ns", type=float, default=1000.0, help="FORM width, ns")
    smp.add_argument("--compliance-ua", type=float, default=100.0, help="compliance, uA")
    smp.add_argument("--p-stuck-hrs", type=float, default=0.0)
    smp.add_argument("--p-stuck-lrs", type=float, default=0.0)
    smp.add_argument("--out", default="crossbar_conductance.png", help="histogram PNG")
    smp.add_argument("--json", action="store_true")
    smp.set_defaults(func=_cmd_crossbar_sample)
    vf = xb_sub.add_parser("verify", help="write-verify random targets; convergence statistics")
    vf.add_argument("--rows", type=int, default=128)
    vf.add_argument("--cols", type=int, default=128)
    vf.add_argument("--low-us", type=float, default=5.0, help="targets drawn uniformly from")
    vf.add_argument("--high-us", type=float, default=50.0, help="... up to this, uS")
    vf.add_argument("--tol-us", type=float, default=0.5)
    vf.add_argument("--max-iter", type=int, default=20)
    vf.add_argument("--p-stuck-hrs", type=float, default=0.0)
    vf.add_argument("--p-stuck-lrs", type=float, default=0.0)
    vf.add_argument("--seed", type=int, default=0)
    vf.add_argument("--json", action="store_true")
    vf.set_defaults(func=_cmd_crossbar_verify)
    ve = xb_sub.add_parser("vmm-error", help="sweep read noise and ADC bits; plot the multiply "
                                             "error against an ideal matmul")
    ve.add_argument("--vectors", type=int, default=200, help="random input vectors per point")
    ve.add_argument("--seed", type=int, default=0)
    ve.add_argument("--out", default="crossbar_vmm_error.png")
    ve.add_argument("--json", action="store_true")
    ve.add_argument("--no-progress", action="store_true")
    ve.set_defaults(func=_cmd_crossbar_vmm_error)

    data = sub.add_parser("data", help="datasets: offline twins, info, download")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    mt = data_sub.add_parser("make-twin", help="write an offline twin in the real format")
    mt.add_argument("kind", choices=["nmnist", "ntidigits"])
    mt.add_argument("--out", required=True, help="folder (nmnist) or .hdf5 file (ntidigits)")
    mt.add_argument("--train", type=int, default=600, help="nmnist: training digits")
    mt.add_argument("--test", type=int, default=200, help="nmnist: test digits")
    mt.add_argument("--speakers", type=int, default=40, help="ntidigits: synthetic speakers")
    mt.add_argument("--takes", type=int, default=1, help="ntidigits: repetitions per word")
    mt.add_argument("--seed", type=int, default=0)
    mt.add_argument("--no-progress", action="store_true")
    mt.set_defaults(func=_cmd_data_make_twin)
    di = data_sub.add_parser("info", help="per-class counts, events per sample, durations; "
                                          "PNG of a few samples")
    di.add_argument("path", help="N-MNIST folder or N-TIDIGITS .hdf5 file")
    di.add_argument("--split", choices=["train", "test"], default="train")
    di.add_argument("--out", help="PNG of a few samples (default: <dataset name>_<split>_"
                                  "samples.png in the current folder)")
    di.add_argument("--json", action="store_true")
    di.add_argument("--no-progress", action="store_true")
    di.set_defaults(func=_cmd_data_info)
    dl = data_sub.add_parser("download", help="fetch a real dataset (MD5-checked)")
    dl.add_argument("kind", choices=["nmnist", "ntidigits"])
    dl.add_argument("--root", required=True)
    dl.set_defaults(func=_cmd_data_download)

    cf = sub.add_parser("config", help="print an LSMConfig as TOML")
    config_args(cf)
    cf.set_defaults(func=_cmd_config)
    return p


def _user_error_types() -> tuple:
    """What bad input raises: reported as one line, exit 2. Anything else is a bug: traceback.

    ValueError covers the library's validation errors (BadSampleError, InvalidTypeError,
    MemoryBudgetError are ValueErrors); the OSErrors are those of a bad path given by the user.
    """
    from lsm.data.datasets import DownloadError

    return (CLIError, ValueError, FileNotFoundError, FileExistsError, IsADirectoryError,
            NotADirectoryError, PermissionError, DownloadError)


def _message(exc: BaseException) -> str:
    """One line for the user: an OSError raised by Python itself names its file."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    return str(exc) or type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    """Run ``lsm`` with ``argv``; bad input prints ``lsm: error: ...`` and returns 2 (with
    ``--debug``, its traceback instead). A genuine bug keeps its traceback."""
    args = build_parser().parse_args(argv)
    if args.debug:
        return args.func(args)
    try:
        return args.func(args)
    except _user_error_types() as exc:
        print(f"lsm: error: {_message(exc)}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
