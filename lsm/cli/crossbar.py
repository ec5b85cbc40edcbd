"""``lsm crossbar``: the simulated RRAM crossbar (forming statistics, write-verify, multiply
error)."""

from __future__ import annotations

import argparse
import json

from lsm.cli.common import (
    CLIError,
    form_pulse_parent,
    json_parent,
    positive_int,
    print_result,
    progress_parent,
    seed_parent,
)

__all__ = ["register"]


def _cmd_sample(args: argparse.Namespace) -> int:
    from lsm.crossbar import DeviceParams, FaultParams, ProgrammingParams, Pulse
    from lsm.crossbar.analysis import sample_formed
    from lsm.plots import conductance_histogram

    _png_out(args.out)
    dev = DeviceParams(programming=ProgrammingParams(distribution=args.distribution),
                       faults=FaultParams(p_stuck_hrs=args.p_stuck_hrs,
                                          p_stuck_lrs=args.p_stuck_lrs))
    pulse = Pulse.form(args.amplitude_v, args.width_ns, args.compliance_ua)
    g, stats = sample_formed(args.rows, args.cols, dev, pulse, args.seed)
    stats["png"] = str(conductance_histogram(
        g, args.out, title=f"{args.rows} x {args.cols} array after FORM ({args.distribution})",
        stats=stats))
    print_result(stats, args.json)
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from calibration.writeverify import (
        IsppStep,
        ModelStep,
        WriteVerifyConfig,
        verify_random_targets,
    )
    from lsm.crossbar import DeviceParams, FaultParams

    if not 0 < args.low_us < args.high_us:
        raise CLIError(f"--low-us {args.low_us} and --high-us {args.high_us}: targets need "
                       "0 < low < high")
    dev = DeviceParams(faults=FaultParams(p_stuck_hrs=args.p_stuck_hrs,
                                          p_stuck_lrs=args.p_stuck_lrs))
    if not args.tol_us > 0:
        raise CLIError(f"--tol-us must be > 0, got {args.tol_us}")
    step = ModelStep(dev.programming) if args.step == "model" else IsppStep()
    config = WriteVerifyConfig(tol_us=args.tol_us, max_iter=args.max_iter, step=step)
    print_result(verify_random_targets(args.rows, args.cols, dev, args.low_us, args.high_us,
                                       config, args.seed), args.json)
    return 0


def _cmd_vmm_error(args: argparse.Namespace) -> int:
    from lsm.crossbar.analysis import format_vmm_error, vmm_error_sweep
    from lsm.plots import vmm_error_plot

    _png_out(args.out)
    result = vmm_error_sweep(n_vectors=args.vectors, seed=args.seed,
                             progress=not args.no_progress)
    result["png"] = str(vmm_error_plot(result, args.out))
    print(json.dumps(result) if args.json else f"{format_vmm_error(result)}\nplot: {result['png']}")
    return 0


def _png_out(path: str) -> None:
    """A figure's output: checked before the work, and named .png (it is one)."""
    from lsm.io import check_output_file

    if not str(path).lower().endswith(".png"):
        raise CLIError(f"--out {path}: the figure is a PNG; name it *.png")
    check_output_file(path, "--out")


def _stuck_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--p-stuck-hrs", type=float, default=0.0,
                   help="fraction of cells stuck at the high-resistance state")
    p.add_argument("--p-stuck-lrs", type=float, default=0.0,
                   help="fraction of cells stuck at the low-resistance state")


def register(sub) -> None:
    xb = sub.add_parser("crossbar", help="the simulated RRAM crossbar")
    xb_sub = xb.add_subparsers(dest="crossbar_command", required=True)
    seed = seed_parent(0, "the array")
    smp = xb_sub.add_parser("sample", help="form an array; print conductance statistics; save a "
                                           "histogram PNG",
                           parents=[seed, form_pulse_parent(), json_parent()])
    smp.add_argument("--rows", type=positive_int, default=512, help="array rows")
    smp.add_argument("--cols", type=positive_int, default=512, help="array columns")
    smp.add_argument("--distribution", choices=["gaussian", "lognormal"], default="gaussian",
                     help="law of the formed conductance")
    _stuck_options(smp)
    smp.add_argument("--out", default="crossbar_conductance.png", help="histogram PNG")
    smp.set_defaults(func=_cmd_sample)
    vf = xb_sub.add_parser("verify", help="write-verify random targets; convergence statistics",
                           parents=[seed, json_parent()])
    vf.add_argument("--rows", type=positive_int, default=128, help="array rows")
    vf.add_argument("--cols", type=positive_int, default=128, help="array columns")
    vf.add_argument("--low-us", type=float, default=5.0, help="targets drawn uniformly from, uS")
    vf.add_argument("--high-us", type=float, default=50.0, help="... up to this, uS")
    vf.add_argument("--tol-us", type=float, default=0.5, help="accepted error, uS")
    vf.add_argument("--max-iter", type=positive_int, default=20,
                    help="read-verify-pulse rounds at most")
    vf.add_argument("--step", choices=["model", "ispp"], default="model",
                    help="amplitude rule: invert the device model's pulse efficiency, or "
                         "model-free incremental steps (ISPP, the chip's default)")
    _stuck_options(vf)
    vf.set_defaults(func=_cmd_verify)
    ve = xb_sub.add_parser("vmm-error", help="sweep read noise and ADC bits; plot the multiply "
                                             "error against an ideal matmul",
                           parents=[seed, json_parent(), progress_parent()])
    ve.add_argument("--vectors", type=positive_int, default=200,
                    help="random input vectors per point")
    ve.add_argument("--out", default="crossbar_vmm_error.png", help="plot PNG")
    ve.set_defaults(func=_cmd_vmm_error)
