"""The ``lsm`` command line: encode, config, bench (output shape, not speed)."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest
from conftest import random_raster

from lsm import LSM, LSMConfig
from lsm.cli import main


def test_encode_raster_file(tmp_path, rng):
    raster = random_raster(rng, 12, 50, 256, 0.05)
    labels = np.arange(12) % 10
    src = tmp_path / "in.npz"
    np.savez(src, raster=raster, labels=labels)
    out = tmp_path / "out" / "feats.npz"
    assert main(["encode", str(src), "--out", str(out), "--seed", "3", "--no-progress"]) == 0
    with np.load(out) as f:
        feats = f["features"]
        np.testing.assert_array_equal(f["labels"], labels)
        cfg = LSMConfig.from_toml(str(f["config_toml"]))
        prov = json.loads(str(f["provenance_json"]))
    assert cfg.seed == 3 and prov["source"] == "gaussian" and prov["seed"] == 3
    expected = LSM(LSMConfig(seed=3)).encode(raster, progress=False)
    np.testing.assert_array_equal(feats, expected)
    assert sorted(p.name for p in out.parent.iterdir()) == ["feats.npz"]


def test_encode_event_file_with_config(tmp_path, rng):
    cfg = LSMConfig.ntidigits(n_neurons=30)
    cfg_path = cfg.save(tmp_path / "lsm.toml")
    raster = random_raster(rng, 5, cfg.n_bins, cfg.n_inputs, 0.1)
    from lsm import EventBatch

    b = EventBatch.from_raster(raster)
    src = tmp_path / "events.npz"
    np.savez(src, offsets=b.offsets, bins=b.bins, channels=b.channels)
    out = tmp_path / "counts.npz"
    rc = main(["encode", str(src), "--out", str(out), "--config", str(cfg_path),
               "--features", "counts", "--no-progress"])
    assert rc == 0
    with np.load(out) as f:
        np.testing.assert_array_equal(f["features"],
                                      LSM(cfg).encode(raster, features="counts", progress=False))


@pytest.mark.parametrize("content, message", [
    ({"raster": np.zeros((2, 50, 255))}, r"raster has shape \(2, 50, 255\)"),
    ({"raster": np.full((2, 50, 256), 3)}, r"sample 0, bin 0, channel 0 holds 3"),
    ({"frames": np.zeros(3)}, r"expected an array 'raster'.*found \['frames'\]"),
    ({"offsets": np.array([0, 1]), "bins": np.array([0]), "channels": np.array([999])},
     r"sample 0: channels\[0\] = 999 is outside \[0, 256\)"),
])
def test_encode_bad_input_is_a_clear_error_and_writes_nothing(tmp_path, capsys, content,
                                                              message):
    src = tmp_path / "bad.npz"
    np.savez(src, **content)
    out = tmp_path / "out.npz"
    assert main(["encode", str(src), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "bad.npz" in err
    assert re.search(message, err), err
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["bad.npz"]


def test_encode_missing_file(tmp_path, capsys):
    assert main(["encode", str(tmp_path / "nope.npz"), "--out", str(tmp_path / "o.npz")]) == 2
    assert "input file not found" in capsys.readouterr().err


def test_config_prints_toml(capsys):
    assert main(["config", "--preset", "ntidigits", "--seed", "4"]) == 0
    assert LSMConfig.from_toml(capsys.readouterr().out) == LSMConfig.ntidigits(seed=4)


def test_console_script_bench_json():
    """`lsm bench encode --json` through the installed console script prints the documented
    object (speed itself is not asserted)."""
    proc = subprocess.run(
        [sys.executable, "-c", "from lsm.cli import main; raise SystemExit(main())",
         "bench", "encode", "--quick", "--json", "--workload", "paper"],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    (row,) = result["workloads"]
    for key in ("name", "numba_samples_per_s", "torch_samples_per_s", "snntorch_samples_per_s",
                "ratio_vs_torch", "ratio_vs_snntorch", "spike_agreement"):
        assert key in row
    assert row["name"] == "paper"
    # the best-rounds ratio max(a)/max(b) lies within the per-round ratios a_i/b_i
    lo, mid, hi = row["ratio_vs_torch_rounds"]
    assert 0 < lo <= mid <= hi and row["spread_vs_torch"] >= 1.0
    assert lo * (1 - 1e-9) <= row["ratio_vs_torch"] <= hi * (1 + 1e-9)
    assert row["spike_agreement"] >= 0.999
    lo, _, hi = row["in_loop_slowdown_rounds"]
    assert lo * (1 - 1e-9) <= row["in_loop_slowdown"] <= hi * (1 + 1e-9)


def test_crossbar_sample_json_and_png(tmp_path, capsys):
    png = tmp_path / "hist.png"
    assert main(["crossbar", "sample", "--rows", "128", "--cols", "128", "--json",
                 "--out", str(png)]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["cells"] == 128 * 128 and stats["fraction_stuck"] == 0
    assert abs(stats["std_us"] - stats["configured_std_us"]) < 0.2  # 16k cells: SE 0.04 uS
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["crossbar", "sample", "--rows", "128", "--cols", "128", "--json",
                 "--p-stuck-hrs", "0.01", "--out", str(png)]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert abs(stats["fraction_stuck"] - 0.01) < 5 * np.sqrt(0.01 * 0.99 / 128 ** 2)


def test_crossbar_sample_bad_pulse(tmp_path, capsys):
    assert main(["crossbar", "sample", "--width-ns", "-5", "--out",
                 str(tmp_path / "h.png")]) == 2
    assert "Pulse.width_ns" in capsys.readouterr().err
    assert not (tmp_path / "h.png").exists()


def test_crossbar_vmm_error_sweep(tmp_path, capsys):
    png = tmp_path / "err.png"
    assert main(["crossbar", "vmm-error", "--vectors", "20", "--json", "--no-progress",
                 "--out", str(png)]) == 0
    r = json.loads(capsys.readouterr().out)
    err = np.array(r["relative_rms_error"])  # [bits][noise]
    assert err.shape == (len(r["adc_bits"]), len(r["read_noise_rel"]))
    # more ADC bits never hurt much, more read noise never helps: the sweep is monotone
    assert err[0, 0] > 10 * err[-1, 0]
    assert np.all(np.diff(err[-1]) > 0)
    assert png.exists()


def test_crossbar_verify_cli(capsys):
    assert main(["crossbar", "verify", "--rows", "32", "--cols", "32", "--p-stuck-lrs", "0.01",
                 "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["cells"] == 1024 and r["converged_fraction"] >= 0.97
    # only stuck cells fail: 1 % of 1024 cells, binomial, within 5 sigma (3.2 cells)
    assert 0 <= r["failed"] <= 1024 * 0.01 + 5 * (1024 * 0.01 * 0.99) ** 0.5
    assert len(r["failed_cells_first"]) == min(10, r["failed"])


def test_inputs_of_the_other_dataset_suggest_its_preset(tmp_path, capsys):
    np.savez(tmp_path / "audio.npz", offsets=np.array([0, 3]), bins=np.array([0, 60, 128]),
             channels=np.array([1, 5, 63]))
    np.savez(tmp_path / "raster.npz", raster=np.zeros((2, 129, 64), np.uint8))
    np.savez(tmp_path / "odd.npz", raster=np.zeros((2, 40, 64), np.uint8))
    for name, hint in (("audio", True), ("raster", True), ("odd", False)):
        assert main(["encode", str(tmp_path / f"{name}.npz"), "--out",
                     str(tmp_path / "f.npz")]) == 2
        err = capsys.readouterr().err
        assert ("try --preset ntidigits" in err) is hint, err
    assert main(["encode", str(tmp_path / "audio.npz"), "--out", str(tmp_path / "f.npz"),
                 "--preset", "ntidigits", "--no-progress"]) == 0


def test_bench_verdicts_need_agreeing_rounds_on_a_steady_machine():
    from lsm.bench import verdict

    assert verdict([4.2, 4.5, 4.9], 1.05, 4.0) == "met in every round"
    assert verdict([3.1, 3.3, 3.6], 1.05, 4.0) == "missed in every round"
    assert verdict([3.8, 4.1, 4.4], 1.05, 4.0) == "inconclusive (rounds 3.80-4.40)"
    assert verdict([30.0, 36.2, 40.0], 1.9, 8.0).startswith("too noisy to conclude")
    assert verdict([2.1, 2.5, 2.8], 1.05, 3.0, higher_is_better=False) == "met in every round"
    assert verdict([3.1, 3.2, 3.3], 1.05, 3.0, higher_is_better=False) \
        == "missed in every round"
    # a steady load from other processes slows every round alike: no verdict either
    assert verdict([4.2, 4.5, 4.9], 1.05, 4.0, busy=0.35).startswith(
        "too noisy to conclude (other processes used 35 %")
    assert verdict([4.2, 4.5, 4.9], 1.05, 4.0, busy=0.02) == "met in every round"


def test_other_load_sees_another_process_busy():
    """A process spinning beside the measured block shows up as others' CPU share (half the
    machine on 2 cores, all of one core on any machine: over 1 / (2 x cores))."""
    import os
    import time

    from lsm.bench.encode import OtherLoad

    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        with OtherLoad() as load:
            time.sleep(1.5)
    finally:
        spinner.kill()
        spinner.wait()
    assert load.share is not None and load.share > 1 / (2 * (os.cpu_count() or 1))


def _subcommands(parser, prefix=()):
    """(command path, parser) of every leaf subcommand of ``lsm``."""
    import argparse

    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield prefix, parser
        return
    for name, sub in subs[0].choices.items():
        yield from _subcommands(sub, (*prefix, name))


def test_every_option_has_help_and_the_vocabulary_is_one():
    """Every option of every subcommand says what it is; the retired names (--root, --dir,
    --seeds, --dataset) appear nowhere; a dataset is only ever --nmnist / --ntidigits."""
    from lsm.cli import build_parser

    seen = set()
    for path, parser in _subcommands(build_parser()):
        for action in parser._actions:
            if action.dest == "help":
                continue
            name = "/".join(action.option_strings) or action.dest
            assert action.help, (" ".join(path), name)
            seen.update(action.option_strings)
    assert not seen & {"--root", "--dir", "--seeds", "--dataset"}, seen
    assert {"--nmnist", "--ntidigits", "--out", "--runs", "--workdir", "--seed", "--n-seeds",
            "--json", "--no-progress", "--cache"} <= seen


def test_options_are_never_abbreviated(capsys):
    assert main(["zeroshot", "--nmnist", "a", "--ntidigits", "b", "--n-seed", "3"]) == 2
    assert "unrecognized arguments: --n-seed" in capsys.readouterr().err
    assert main(["train", "--nmnist", "a", "--seed", "3"]) == 2  # a value, not a count
    assert "unrecognized arguments: --seed" in capsys.readouterr().err


def test_help_shows_defaults_and_examples(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "examples:" in out and "lsm hw emulator --port 5025 &" in out
    assert main(["zeroshot", "--help"]) == 0
    out = capsys.readouterr().out
    assert "(default: 8,9)" in out and "(default: 3)" in out


def test_an_option_of_an_earlier_version_names_its_replacement(capsys):
    assert main(["train", "--nmnist", "a", "--seeds", "3"]) == 2
    assert "--seeds is now --n-seeds" in capsys.readouterr().err
    assert main(["demo", "--dir", "x"]) == 2
    assert "--dir is now --workdir" in capsys.readouterr().err
    assert main(["train", "--nmnist", "a", "--bogus"]) == 2
    assert "unrecognized arguments: --bogus\n" in capsys.readouterr().err  # no hint invented
