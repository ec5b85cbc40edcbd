"""Every ```bash and ```python block of the README runs as written.

Each section's blocks run in order, in one bash script, in a fresh folder: python blocks through
``python - <<'PYTHON'``, ``lsm`` from this interpreter's environment. What the runner changes,
and why:

- the lab's emulator listens on a free port instead of 5025 (tests run side by side);
- scripts of ``examples/`` run from the repository, wherever the section runs;
- sections that use the offline twins without making them get small ones (made once here) at the
  README's paths; the Datasets section makes its own, as written;
- a command marked ``(needs a connection)`` may fail, but only as a clean user error (exit 2,
  ``lsm: error: ...``): this machine has no internet;
- Quick start: ``bash scripts/demo.sh`` runs with ``--workdir`` in a temporary folder and
  ``--n-seeds 1`` (the 3-seed demo is the README's figures, a few minutes), and
  ``bash scripts/test.sh`` with ``--collect-only -q`` (ruff, then every test collected: the suite
  cannot run itself).
"""

import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
BIN = Path(sys.executable).parent


def sections() -> dict[str, list[tuple[str, str]]]:
    """``{heading: [(language, body), ...]}`` of the bash and python blocks, in order."""
    out = {}
    for part in re.split(r"^## ", README, flags=re.M)[1:]:
        heading, body = part.split("\n", 1)
        blocks = re.findall(r"^```(bash|python)\n(.*?)^```", body, flags=re.S | re.M)
        if blocks:
            out[heading.strip()] = blocks
    return out


SECTIONS = sections()


def free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def allow_offline(line: str) -> str:
    """A command that needs the internet: done, or refused as a clean user error."""
    if "(needs a connection)" not in line:
        return line
    cmd = line.split("#", 1)[0].strip()
    return (f"{cmd} 2>offline.err || {{ rc=$?; test $rc -eq 2 && grep -q '^lsm: error: ' "
            "offline.err; }")


def script_of(blocks, port: str) -> str:
    lines = ["set -euo pipefail", "trap 'kill $(jobs -p) 2>/dev/null || true' EXIT",
             f'export PATH="{BIN}:$PATH"', "export MPLBACKEND=Agg",
             f"export LSM_HW_RESOURCE=TCPIP0::127.0.0.1::{port}::SOCKET"]
    for lang, body in blocks:
        body = body.replace("5025", port).replace(
            "hw/limits.example.toml", str(ROOT / "hw" / "limits.example.toml")).replace(
            "examples/devices/", str(ROOT / "examples" / "devices") + "/").replace(
            "python examples/", f"python {ROOT / 'examples'}/")
        if lang == "bash":
            lines += [allow_offline(line) for line in body.splitlines()]
        else:
            lines += ["python - <<'PYTHON'", body, "PYTHON"]
    return "\n".join(lines)


@pytest.fixture(scope="module")
def small_twins(tmp_path_factory):
    from lsm.data.twin_nmnist import make_nmnist_twin
    from lsm.data.twin_ntidigits import make_ntidigits_twin

    root = tmp_path_factory.mktemp("readme_twins")
    make_nmnist_twin(root / "nmnist", n_train=100, n_test=40, seed=0, progress=False)
    make_ntidigits_twin(root / "ntidigits.hdf5", n_speakers=8, seed=0, progress=False)
    return root


def run_section(heading: str, cwd: Path, twins: Path | None = None) -> subprocess.CompletedProcess:
    if twins is not None:
        (cwd / "twins").symlink_to(twins, target_is_directory=True)
    rng = np.random.default_rng(0)  # the Use section encodes an events file with the N-TIDIGITS
    np.savez(cwd / "events.npz", raster=(rng.random((4, 129, 64)) < 0.05).astype(np.uint8))
    script = script_of(SECTIONS[heading], free_port())
    run = subprocess.run(["bash", "-c", script], cwd=cwd, capture_output=True, text=True,
                         timeout=900)
    assert run.returncode == 0, (heading, run.stdout[-3000:], run.stderr[-4000:])
    assert "Traceback" not in run.stderr, run.stderr[-4000:]
    return run


def test_every_code_block_is_run_by_a_test():
    """A new section with code must be added below, or its blocks would go untested."""
    assert set(SECTIONS) == {"Quick start", "Use", "Datasets",
                             "Supervised readouts and zero-shot learning", "Studies and sweeps",
                             "The lab: driving the macro",
                             "Calibration: the chip you measured, on your laptop",
                             "Energy per inference", "The RRAM crossbar"}


def test_allow_offline_accepts_only_a_clean_user_error(tmp_path):
    line = allow_offline("lsm data download --nmnist N-MNIST/  # (needs a connection)")
    for cmd, ok in (("return 0", True), ("echo 'lsm: error: offline' >&2; return 2", True),
                    ("echo 'Traceback' >&2; return 2", False), ("return 1", False)):
        script = f"set -euo pipefail\nlsm() {{ {cmd}; }}\n{line}\n"
        rc = subprocess.run(["bash", "-c", script], cwd=tmp_path).returncode
        assert (rc == 0) is ok, cmd


@pytest.mark.slow
def test_use(tmp_path):
    run_section("Use", tmp_path)
    with np.load(tmp_path / "features.npz") as f:
        assert f["features"].shape == (4, 200)


@pytest.mark.slow
def test_datasets(tmp_path):
    run = run_section("Datasets", tmp_path)
    assert (tmp_path / "nmnist_train.npz").exists() and list((tmp_path / "runs").glob("info-*"))
    assert (tmp_path / "audio_test.npz").exists() and "chunks" in run.stdout  # streamed
    assert not list(tmp_path.glob("*.partial"))
    assert "(600, 200)" in run.stdout  # the Python block: 600 twin digits encoded


@pytest.mark.slow
def test_supervised_and_zeroshot(tmp_path, small_twins):
    run = run_section("Supervised readouts and zero-shot learning", tmp_path, small_twins)
    kinds = sorted(p.name.split("-2")[0] for p in (tmp_path / "runs").iterdir())
    assert kinds == ["train-cost", "train-nmnist", "train-nmnist", "train-ntidigits", "zeroshot",
                     "zeroshot"], kinds
    assert "ratio (RNN / LSM)" in run.stdout
    assert run.stdout.count("no reservoir  test accuracy") == 2


@pytest.mark.slow
def test_studies_and_sweeps(tmp_path, small_twins):
    """The studies and the sweep as written, on small twins at the demo's place; the splits
    study on 2 splits of few epochs and the sweep on 3 trials (options given later win)."""
    (tmp_path / "lsm-demo").mkdir()
    (tmp_path / "lsm-demo" / "twins").symlink_to(small_twins, target_is_directory=True)
    blocks = [(lang, body.replace("study_splits.toml", "study_splits.toml --splits 2 --epochs 4")
               .replace("--n-trials 30", "--n-trials 3"))
              for lang, body in SECTIONS["Studies and sweeps"]]
    script = script_of(blocks, free_port()).replace("examples/configs/",
                                                     str(ROOT / "examples" / "configs") + "/")
    run = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True,
                         timeout=900)
    assert run.returncode == 0, (run.stdout[-3000:], run.stderr[-4000:])
    assert "Traceback" not in run.stderr
    kinds = sorted(p.name.split("-2")[0] for p in (tmp_path / "runs").iterdir())
    assert kinds == ["study-features", "study-nonideality", "study-size", "study-splits",
                     "sweep-best-nmnist", "sweep-nmnist"], kinds
    for run_dir in (tmp_path / "runs").iterdir():
        assert list(run_dir.glob("*.png")) and (run_dir / "config.toml").exists(), run_dir
    assert "| windows(5) |" in run.stdout and "test accuracy" in run.stdout
    assert (tmp_path / "sweep.db").exists()


@pytest.mark.slow
def test_calibration_section(tmp_path, small_twins):
    run = run_section("Calibration: the chip you measured, on your laptop", tmp_path,
                      small_twins)
    assert (tmp_path / "cal.h5").exists() and len(list((tmp_path / "cal-report").glob("*.png")))
    assert "read noise   0.29" in run.stdout or "read noise   0.30" in run.stdout
    assert "the chip among the twin's draws" in run.stdout


@pytest.mark.slow
def test_energy_section(tmp_path, small_twins):
    run = run_section("Energy per inference", tmp_path, small_twins)
    kinds = sorted(p.name.split("-2")[0] for p in (tmp_path / "runs").iterdir()
                   if p.is_dir())
    assert kinds == ["energy-nmnist", "energy-ntidigits"], kinds
    assert (tmp_path / "runs" / "energy_sweep.png").exists()
    assert run.stdout.count("digital-40nm") >= 2 and "8 bits: " in run.stdout


@pytest.mark.slow
def test_lab(tmp_path):
    run = run_section("The lab: driving the macro", tmp_path)
    for name in ("limits.toml", "lab.sqlite", "map.h5", "map.png", "inputs.npz", "codes.npz"):
        assert (tmp_path / name).exists(), name
    last = [line for line in run.stdout.splitlines() if '"job"' in line][-1]
    assert '"status": "done"' in last and '"done": 456' in last


@pytest.mark.slow
def test_crossbar(tmp_path):
    run_section("The RRAM crossbar", tmp_path)
    assert (tmp_path / "crossbar_conductance.png").exists()
    assert (tmp_path / "crossbar_vmm_error.png").exists()


@pytest.mark.slow
def test_quick_start(tmp_path):
    ((lang, body),) = SECTIONS["Quick start"]
    assert lang == "bash" and "bash scripts/demo.sh" in body and "bash scripts/test.sh" in body
    body = body.replace("bash scripts/demo.sh",
                        f"bash scripts/demo.sh --workdir {tmp_path / 'demo'} --n-seeds 1")
    body = body.replace("bash scripts/test.sh", "bash scripts/test.sh --collect-only -q")
    run = subprocess.run(["bash", "-c", "set -euo pipefail\n" + body], cwd=ROOT,
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, (run.stdout[-3000:], run.stderr[-4000:])
    # the demo's one table: the chip's weights, LSM beside no reservoir, zero-shot vs chance
    assert "weights: emulated IMC40 macro" in run.stdout
    assert re.search(r"N-MNIST +[\d.]+ \+- +[\d.]+ % +[\d.]+ \+- +[\d.]+ % +[\d.]+ %",
                     run.stdout)
    assert re.search(r"audio -> image +[\d.]+ \+- +[\d.]+ % \[ *[\d.]+ %\]", run.stdout)
    assert "tests/test_readme.py: " in run.stdout  # --collect-only -q: per-file test counts
    runs = sorted(p.name.split("-2")[0] for p in (tmp_path / "demo" / "runs").iterdir())
    assert runs == ["demo", "train-nmnist", "train-ntidigits", "zeroshot"]
    (demo_run,) = (tmp_path / "demo" / "runs").glob("demo-*")
    assert {p.name for p in demo_run.iterdir()} == {"config.toml", "metrics.json", "summary.png"}
    assert f"{demo_run}/summary.png" in run.stdout  # listed with the plots
    # a log (not a terminal) gets step lines, not a wall of progress-bar redraws: a bar prints
    # only when its work outlasts 30 s (then every 30 s)
    assert "\r" not in run.stderr
    assert len(run.stderr.splitlines()) < 40, run.stderr[-3000:]
