"""Hardware walkthrough: the lab workflow end to end, against the emulated macro.

Start the emulator, identify the instrument, form the LSM's block of differential pairs as a
resumable journaled job, read the conductance map, export it, and encode with the chip's weights
(read mode) and with every multiply on the chip (in-loop mode). Then calibrate another region
(forming, read noise, drift, stuck cells, ADC, write-verify: ``lsm calibrate run`` does the same)
and encode on the chip's digital twin: a fresh draw of the fitted statistics, with no chip in
the loop. Point ``--resource`` at a real controller to run the same steps on the chip (with your
lab's ``--limits`` file; on a chip the drift ages are real waits, seconds here).

    python examples/hardware_walkthrough.py --out walkthrough/
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from calibration.run import CalibrationConfig, run_calibration
from hw import Journal, Macro, export_map
from hw.emulator import EmulatedMacro, EmulatorServer
from hw.weights import MacroWeights
from lsm import LSM, LSMConfig
from lsm.weights import TwinWeights


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--resource", help="VISA resource; default: start an emulator here")
    p.add_argument("--limits", help="lab limits TOML")
    p.add_argument("--out", default="walkthrough")
    p.add_argument("--samples", type=int, default=20)
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    server = None
    if args.resource is None:
        server = EmulatorServer(0, EmulatedMacro(seed=0)).start()
        args.resource = server.resource
    journal = Journal(out / "lab.sqlite")
    cfg = LSMConfig(n_inputs=64, n_neurons=50, n_bins=30, w_in_const=0.15)
    try:
        with Macro(args.resource, limits=args.limits, journal=journal) as m:
            print("instrument:", m.idn)
            job = m.program_random((0, 114, 0, 100), job_id="walkthrough-form", progress=False)
            g = m.read_map((0, 114, 0, 100), repeats=2)
            export_map(out / "map.h5", g, {"instrument": m.idn, "job": job, "repeats": 2})
            print(f"map: {g.mean():.2f} +- {g.std():.2f} uS -> {out / 'map.h5'}")
        x = (np.random.default_rng(0).random((args.samples, 30, 64)) < 0.1).astype(np.uint8)
        # the same job id: the journal knows the block is formed, so it is not formed again
        read = LSM(cfg, weights=MacroWeights(args.resource, journal=journal, job_id=job))
        loop = LSM(cfg, weights=MacroWeights(args.resource, mode="in_loop", journal=journal,
                                             job_id=job))
        a = read.encode(x, features="binned", progress=False)
        b = loop.encode(x, features="binned", progress=False)
        # calibration of a fresh region (resumable: re-running continues, never pulses twice)
        config = CalibrationConfig(region=(128, 192, 0, 64), n_reads=8,
                                   drift_ages_s=(1.0, 10.0, 100.0), verify_shape=(4, 8))
        with Macro(args.resource, limits=args.limits, journal=journal) as m:
            cal = run_calibration(m, config, out / "cal.h5", progress=False)
        sec = cal.sections
        print(f"calibration: {out / 'cal.h5'}, read noise {100 * sec['read_noise']['rel']:.3f} "
              f"%, drift nu {sec['drift']['nu']:.4f}, stuck {100 * sec['stuck']['rate']:.2f} %")
        # the LSM on the twin: a chip like this one, simulated
        twin = LSM(cfg, weights=TwinWeights(out / "cal.h5", mode="draw"))
        c = twin.encode(x, features="binned", progress=False)
        summary = {"map_mean_us": float(g.mean()), "map_std_us": float(g.std()),
                   "read_mode_rate": float(a.mean()), "in_loop_rate": float(b.mean()),
                   "spike_agreement": float((a == b).mean()),
                   "twin_rate": float(c.mean()),
                   "twin_mean_us": cal.sections["forming"]["mean_us"],
                   "calibration_sha256": cal.sha256,
                   "journal_ops": len(journal.ops())}
        print(json.dumps(summary))
        return summary
    finally:
        journal.close()
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
