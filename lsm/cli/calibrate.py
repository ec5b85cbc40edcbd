"""``lsm calibrate``: characterise a macro (the chip or the emulator), report it, and compare its
digital twin with it.

The lab packages are imported inside the handlers (``lsm`` never imports ``calibration`` or
``hw`` outside the CLI). Exit status 2: bad input (refused before any pulse); 3: the instrument
or its link failed, or a pulse is in doubt (run the command again: it resumes).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lsm.cli.common import (
    CLIError,
    comma_list,
    emit,
    json_parent,
    path_arg,
    positive_int,
    progress_parent,
    region,
    runs_parent,
    seed_parent,
)
from lsm.crossbar.calfile import SECTIONS

__all__ = ["register", "DEFAULT_CAL_REGION"]

#: the calibrated cells by default: a 128 x 128 corner (the compare's chip block lies below it)
DEFAULT_CAL_REGION = "0,128,0,128"
#: procedure names as the command line spells them (calibration.run.PROCEDURES; the sections of
#: the calibration file, without importing the lab packages to build the parser)
_PROCEDURE_NAMES = tuple(name.replace("_", "-") for name in SECTIONS)


def _read_calibration(path: str):
    from lsm.crossbar.calfile import read_calibration

    try:
        return read_calibration(path)
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        raise CLIError(str(exc)) from None  # names the calibration file already


def _config(args: argparse.Namespace):
    from calibration.run import PROCEDURES, CalibrationConfig
    from calibration.writeverify import IsppStep, ModelStep, WriteVerifyConfig
    from lsm.crossbar import Pulse

    unknown = [p for p in args.procedures if p not in PROCEDURES]
    if unknown:
        raise CLIError(f"--procedures: unknown {unknown}; choose from {list(PROCEDURES)}")
    step = ModelStep() if args.verify_step == "model" else IsppStep()
    return CalibrationConfig(
        region=args.region, procedures=tuple(PROCEDURES[p] for p in args.procedures),
        form_pulse=Pulse.form(args.amplitude_v, args.width_ns, args.compliance_ua),
        v_read=args.v_read, n_reads=args.n_reads, drift_ages_s=tuple(args.drift_ages_s),
        verify=WriteVerifyConfig(tol_us=args.verify_tol_us, max_iter=args.verify_max_iter,
                                 step=step),
        seed=args.seed)


def _cmd_run(args: argparse.Namespace) -> int:
    from calibration.procedures import StepIncomplete
    from calibration.run import format_plan, plan_calibration, run_calibration, work_folder_for
    from calibration.writeverify import VerifyIncomplete
    from lsm.cli.hw import _limits, _macro
    from lsm.io import check_output_file

    out = check_output_file(args.out, "--out")
    if out.suffix.lower() not in (".h5", ".hdf5"):
        raise CLIError(f"--out {out}: a calibration file is HDF5: end its name in .h5")
    if out.exists():
        try:
            _read_calibration(str(out))
        except (ValueError, CLIError):
            raise CLIError(f"--out {out} exists and is not a calibration file: it would be "
                           "replaced; choose another name") from None
    config = _config(args)
    limits = _limits(args)
    plan = plan_calibration(config, limits)  # every pulse and read checked: nothing goes out yet
    print(format_plan(plan), file=sys.stderr if args.json else sys.stdout, flush=True)
    if args.journal is None:
        args.journal = str(work_folder_for(out) / "journal.sqlite")
    try:
        with _macro(args, limits) as m:
            cal = run_calibration(m, config, out, job=args.job, progress=not args.no_progress)
    except (StepIncomplete, VerifyIncomplete) as exc:
        raise CLIError(str(exc), exit_code=3) from None
    summary = _summary(cal)
    summary.update(out=str(out), work_folder=str(work_folder_for(out)), journal=args.journal)
    emit(summary, args.json, _format_summary(summary))
    return 0


def _summary(cal) -> dict:
    """The headline numbers of a calibration."""
    s = cal.sections
    out = {"region": list(cal.region), "instrument": (cal.identity.get("instrument") or {})
           .get("serial"), "procedures": sorted(s)}
    if "forming" in s:
        f = s["forming"]
        fam = f["families"][f["chosen"]]
        out["forming"] = {"mean_us": f["mean_us"], "std_us": f["std_us"], "chosen": f["chosen"],
                          "ks": fam["ks"], "aic": {k: v["aic"] for k, v in f["families"].items()}}
    if "read_noise" in s:
        r = s["read_noise"]
        out["read_noise"] = {"rel": r["rel"], "rel_se": r["rel_se"], "clip_sigma": r["clip_sigma"]}
    if "drift" in s:
        d = s["drift"]
        out["drift"] = {"nu": d["nu"], "nu_se": d["nu_se"], "nu_std": d["nu_std"],
                        "t0_s": d["t0_s"]}
    if "stuck" in s:
        k = s["stuck"]
        out["stuck"] = {"rate": k["rate"], "ci": [k["ci_low"], k["ci_high"]],
                        "low": k["n_low"], "high": k["n_high"]}
    if "adc" in s:
        a = s["adc"]
        out["adc"] = {"bits": a["bits"], "gain_codes_per_ua": a["gain_codes_per_ua"],
                      "offset_codes": a["offset_codes"], "saturation_ua": a["saturation_ua"]}
    if "write_verify" in s:
        w = s["write_verify"]
        out["write_verify"] = {"converged_fraction": w["converged_fraction"],
                               "median_rounds": w.get("median_rounds"),
                               "mean_pulses": w["mean_pulses"], "tol_us": w["tol_us"]}
    return out


def _format_summary(s: dict) -> str:
    lines = [f"calibration of region {s['region']} ({s.get('instrument')})"]
    if "forming" in s:
        f = s["forming"]
        lines.append(f"  forming      mean {f['mean_us']:.2f} uS, std {f['std_us']:.2f} uS; best "
                     f"fit {f['chosen']} (KS {f['ks']:.3f}); AIC " + ", ".join(
                         f"{k} {v:.0f}" for k, v in f["aic"].items()))
    if "read_noise" in s:
        r = s["read_noise"]
        clip = "none" if r["clip_sigma"] == 0 else f"{r['clip_sigma']:.2f} sigma"
        lines.append(f"  read noise   {100 * r['rel']:.3f} % +- {100 * r['rel_se']:.3f} % "
                     f"(relative), clipped at {clip}")
    if "drift" in s:
        d = s["drift"]
        lines.append(f"  drift        nu {d['nu']:.4f} +- {d['nu_se']:.4f} (cell spread "
                     f"{d['nu_std']:.4f}), t0 {d['t0_s']:.3g} s")
    if "stuck" in s:
        k = s["stuck"]
        lines.append(f"  stuck        {100 * k['rate']:.2f} % (95 % CI {100 * k['ci'][0]:.2f}-"
                     f"{100 * k['ci'][1]:.2f} %): {k['low']} low, {k['high']} high")
    if "adc" in s:
        a = s["adc"]
        lines.append(f"  ADC          {a['bits']} bits, {a['gain_codes_per_ua']:.4f} codes/uA, "
                     f"offset {a['offset_codes']:.2f} codes, saturates at "
                     f"{a['saturation_ua']:.1f} uA")
    if "write_verify" in s:
        w = s["write_verify"]
        lines.append(f"  write-verify {100 * w['converged_fraction']:.1f} % within "
                     f"{w['tol_us']} uS, median {w['median_rounds']:g} rounds, "
                     f"{w['mean_pulses']:.1f} pulses per cell")
    for key in ("out", "report"):
        if key in s:
            lines.append(f"{key}: {s[key]}")
    return "\n".join(lines)


def _cmd_report(args: argparse.Namespace) -> int:
    from calibration.report import write_report

    cal = _read_calibration(args.calibration)
    out = Path(args.out) if args.out else Path(args.calibration).with_suffix("").with_name(
        Path(args.calibration).stem + "-report")
    pngs = write_report(cal, out)
    summary = _summary(cal)
    summary.update(report=str(out), pngs={k: str(v) for k, v in pngs.items()},
                   sha256=cal.sha256)
    emit(summary, args.json, _format_summary(summary) + "\n" + "\n".join(
        f"  {p}" for p in pngs.values()))
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from calibration.compare import CompareConfig, format_compare, run_compare
    from hw.weights import MacroWeights
    from lsm.cli.common import chosen_dataset
    from lsm.cli.hw import _lab_errors, _limits, _open_journal, _resource

    cal = _read_calibration(args.calibration)  # refused before any instrument time
    if len(args.chip_offset) != 2 or min(args.chip_offset) < 0:
        raise CLIError(f"--chip-offset takes ROW,COL (two integers >= 0), got "
                       f"{','.join(map(str, args.chip_offset))}")
    _check_chip_block(cal, args)
    name, path = chosen_dataset(args)
    if name is None:
        from lsm.data.demo import ensure_demo_twins

        name, path = "ntidigits", ensure_demo_twins(Path(args.workdir), not args.no_progress,
                                                    which=("ntidigits",))[1]
    limits = _limits(args)
    journal = args.journal or str(Path(args.calibration).with_name(
        Path(args.calibration).name + ".work") / "journal.sqlite")
    cfg = CompareConfig(calibration=Path(args.calibration), dataset=name, data_path=Path(path),
                        n_neurons=args.n_neurons, n_train=args.n_train, n_test=args.n_test,
                        chip_offset=tuple(args.chip_offset), seed=args.seed,
                        n_draws=args.n_draws,
                        runs_dir=Path(args.runs))
    resource = _resource(args)
    opened = _open_journal(journal)

    def chip(offset):
        return MacroWeights(resource, limits=limits, journal=opened, offset=offset)

    try:
        with _lab_errors(resource, journal):
            result = run_compare(cfg, chip, progress=not args.no_progress)
    finally:
        if opened is not None:
            opened.close()
    result["instrument_calibrated"] = (cal.identity.get("instrument") or {}).get("serial")
    emit(result, args.json, format_compare(result))
    return 0


def _check_chip_block(cal, args: argparse.Namespace) -> None:
    """The chip's fresh block must not overlap the calibrated cells (the stuck test and
    write-verify re-programmed them)."""
    from lsm.crossbar.mapping import DifferentialMapping
    from lsm.data.registry import dataset_spec

    name = _chosen_dataset_name(args)
    n_in = dataset_spec(name).lsm_config().n_inputs
    rows, cols = DifferentialMapping(n_in, args.n_neurons, 10**6, 10**6).region.shape
    r, c = args.chip_offset
    r0, r1, c0, c1 = cal.region
    if r < r1 and r0 < r + rows and c < c1 and c0 < c + cols:
        raise CLIError(f"--chip-offset {r},{c}: the chip's block ({rows} x {cols} cells) overlaps "
                       f"the calibrated region {list(cal.region)}, whose cells the calibration "
                       "re-programmed; choose an offset outside it")


def _chosen_dataset_name(args: argparse.Namespace) -> str:
    from lsm.cli.common import chosen_dataset

    return chosen_dataset(args)[0] or "ntidigits"


# ---------------------------------------------------------------------- parsers
def register(sub) -> None:
    from lsm.cli.common import dataset_options, form_pulse_parent
    from lsm.cli.hw import _instrument_parent

    cp = sub.add_parser("calibrate", help="characterise a macro, report it, compare its twin")
    cs = cp.add_subparsers(dest="calibrate_command", required=True)
    inst = _instrument_parent()
    run = cs.add_parser("run", help="measure a region (plan printed first; resumable: run the "
                                    "same command again) and write the calibration file",
                        parents=[inst, form_pulse_parent(), progress_parent(), json_parent(),
                                 seed_parent()])
    run.add_argument("--region", type=region, default=DEFAULT_CAL_REGION, metavar="R0,R1,C0,C1",
                     help="rows r0:r1 and columns c0:c1 to calibrate, half-open")
    run.add_argument("--out", default="calibration.h5", metavar="FILE", type=path_arg,
                     help="calibration file (.h5); its work folder FILE.work/ keeps the raw "
                          "measurements and, by default, the journal")
    run.add_argument("--procedures", type=comma_list(str, "procedure"),
                     default=_PROCEDURE_NAMES, metavar="LIST",
                     help=f"comma-separated subset of {', '.join(_PROCEDURE_NAMES)} (default: "
                          "all)")
    run.add_argument("--job", help="journal job-id prefix (default: from the serial and region)")
    run.add_argument("--v-read", type=float, default=0.2, help="read voltage, V")
    run.add_argument("--n-reads", type=positive_int, default=32, metavar="N",
                     help="reads of the region for the map and the read noise (>= 4)")
    run.add_argument("--drift-ages-s", type=comma_list(float, "age"),
                     default=(1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0, 10000.0),
                     metavar="LIST", help="ages after forming at which drift re-reads, s (on a "
                                          "chip, real waits)")
    run.add_argument("--verify-step", choices=["ispp", "model"], default="ispp",
                     help="write-verify amplitude rule: model-free incremental steps, or the "
                          "device model's")
    run.add_argument("--verify-tol-us", type=float, default=0.5, help="write-verify tolerance, uS")
    run.add_argument("--verify-max-iter", type=positive_int, default=60, metavar="N",
                     help="write-verify rounds at most")
    run.set_defaults(func=_cmd_run)
    rep = cs.add_parser("report", help="plots of a calibration file (histograms with fits, maps, "
                                       "noise, drift, ADC, write-verify) and its numbers",
                        parents=[json_parent()])
    rep.add_argument("calibration", type=path_arg, help="calibration file (.h5)")
    rep.add_argument("--out", type=path_arg, metavar="DIR",
                     help="folder of the PNGs (default: beside the file, NAME-report/)")
    rep.set_defaults(func=_cmd_report)
    cmp_ = cs.add_parser("compare", help="twin vs chip: the same LSM's features and readout "
                                         "accuracy on a small dataset, side by side",
                         parents=[inst, progress_parent(), json_parent(), seed_parent(),
                                  runs_parent()])
    cmp_.add_argument("calibration", type=path_arg, help="calibration file (.h5)")
    dataset_options(cmp_, required=False,
                    what=" (default: the demo's N-TIDIGITS twin in --workdir)")
    cmp_.add_argument("--workdir", default="lsm-demo", type=path_arg, metavar="DIR",
                      help="where the demo's twins are (made there if missing)")
    cmp_.add_argument("--n-neurons", type=positive_int, default=50, metavar="N",
                      help="reservoir size (block: inputs + N rows, 2 N columns)")
    cmp_.add_argument("--n-train", type=positive_int, default=400, metavar="N",
                      help="training samples used")
    cmp_.add_argument("--n-test", type=positive_int, default=200, metavar="N",
                      help="test samples used")
    cmp_.add_argument("--n-draws", type=positive_int, default=5, metavar="N",
                      help="twin draws (chips like this one) the chip is compared with")
    cmp_.add_argument("--chip-offset", type=comma_list(int, "offset"), default=(128, 0),
                      metavar="ROW,COL",
                      help="top-left cell of the chip's fresh LSM block (away from the "
                           "calibrated cells)")
    cmp_.set_defaults(func=_cmd_compare)
