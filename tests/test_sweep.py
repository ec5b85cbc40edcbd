"""``lsm sweep``: searches over reservoir settings on Optuna's relational storage.

Real parts throughout: an N-TIDIGITS twin in the real HDF5 layout (8 speakers, 88 utterances),
the Numba reservoir, the logistic readout, SQLite files, a PostgreSQL server started from the
pgserver wheel in a temporary folder, worker processes that are spawned and one that is killed
with SIGKILL. The search space is small and the trials few; the multi-process tests are slow.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import h5py
import optuna
import pytest
from optuna.trial import TrialState

from lsm.cli import main
from lsm.config import LSMConfig
from lsm.experiments.sweep import (
    SweepConfig,
    SweepError,
    create_study,
    default_config,
    evaluate_best,
    rerun_trial,
    run_sweep,
    run_worker,
    storage_url,
)

ROOT = Path(__file__).parents[1]

#: two fields, each of which moves the validation accuracy of the twin
SPACE = {"v_th": {"low": 2.0, "high": 10.0},
         "w_in_const": {"low": 0.03, "high": 0.3, "log": True}}


@pytest.fixture(scope="module")
def twin(tmp_path_factory):
    """(full twin, a copy holding only its training split): a sweep on the copy works only if
    nothing but the training split is ever read."""
    from lsm.data.twin_ntidigits import make_ntidigits_twin

    folder = tmp_path_factory.mktemp("sweep-data")
    full = folder / "ntidigits.hdf5"
    make_ntidigits_twin(full, n_speakers=8, takes=1, seed=0, progress=False, workers=2)
    train_only = folder / "train-only.hdf5"
    with h5py.File(full, "r") as src, h5py.File(train_only, "w") as dst:
        for key in src:
            if key.startswith("train_"):
                src.copy(key, dst)
        assert any(k.startswith("test_") for k in src)
    with h5py.File(train_only, "r") as f:
        assert not any(k.startswith("test_") for k in f)
    return full, train_only


def sweep_config(path, tmp_path, **changes) -> SweepConfig:
    base = dict(dataset="ntidigits", path=str(path), n_trials=4, space=SPACE, heartbeat_s=1,
                grace_s=3, max_retry=2, runs_dir=str(tmp_path / "runs"))
    return SweepConfig(**(base | changes))


def trials_of(url: str, name: str, states=None) -> list:
    storage = optuna.storages.RDBStorage(url)
    return optuna.load_study(study_name=name, storage=storage).get_trials(states=states)


def check_finished_study(url, name, n_trials, min_workers=1):
    trials = trials_of(url, name)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == n_trials, [(t.number, t.state) for t in trials]
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    pids = {t.user_attrs["worker_pid"] for t in complete}
    assert len(pids) >= min_workers, pids
    for t in complete:  # each trial keeps its full reservoir config, features and timing
        lsm = LSMConfig.from_dict(t.user_attrs["lsm"])
        assert lsm == LSMConfig.ntidigits(**t.params)
        assert t.user_attrs["features"] == "windows" and t.user_attrs["elapsed_s"] > 0
    return complete


# ---------------------------------------------------------------------- configuration
def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="unknown LSMConfig field 'v_thresh'"):
        SweepConfig("ntidigits", space={"v_thresh": {"low": 1.0, "high": 2.0}})
    with pytest.raises(ValueError, match="n_bins.*dataset's"):
        SweepConfig("ntidigits", space={"n_bins": {"low": 10, "high": 20}})
    with pytest.raises(ValueError, match=r"space\.v_th: low must be below high"):
        SweepConfig("ntidigits", space={"v_th": {"low": 3.0, "high": 2.0}})
    with pytest.raises(ValueError, match=r"space\.decay\.high: .*decay must be in"):
        SweepConfig("ntidigits", space={"decay": {"low": 0.5, "high": 1.5}})
    with pytest.raises(ValueError, match=r"space\.n_neurons\.low must be an integer"):
        SweepConfig("ntidigits", space={"n_neurons": {"low": 100.5, "high": 200}})
    with pytest.raises(ValueError, match=r"space\.w_in_const: a log scale needs low > 0"):
        SweepConfig("ntidigits", space={"w_in_const": {"low": 0.0, "high": 2.0, "log": True}})
    with pytest.raises(ValueError, match=r"space\.v_th: unknown key\(s\) \['hi'\]"):
        SweepConfig("ntidigits", space={"v_th": {"low": 1.0, "hi": 2.0}})
    with pytest.raises(ValueError, match=r"space\.reset\.choices: .*reset must be one of"):
        SweepConfig("ntidigits", space={"reset": {"choices": ["zero", "bogus"]}})
    with pytest.raises(ValueError, match="space is empty"):
        SweepConfig("ntidigits")
    with pytest.raises(ValueError, match="SweepConfig.dataset must be one of"):
        SweepConfig("mnist", space=SPACE)
    with pytest.raises(ValueError, match="SweepConfig.n_trials must be >= 1"):
        SweepConfig("ntidigits", space=SPACE, n_trials=0)
    with pytest.raises(ValueError, match="SweepConfig.features must be one of"):
        SweepConfig("ntidigits", space=SPACE, features="spikes")
    with pytest.raises(ValueError, match="SweepConfig.n_windows must be <= 129"):
        SweepConfig("ntidigits", space=SPACE, features="windows", n_windows=500)
    with pytest.raises(ValueError, match="grace_s .* must exceed heartbeat_s"):
        SweepConfig("ntidigits", space=SPACE, heartbeat_s=10, grace_s=5)
    cfg = SweepConfig("ntidigits", space=SPACE | {"reset": {"choices": ["zero", "subtract"]},
                                                  "n_neurons": {"low": 100, "high": 300,
                                                                "step": 50}})
    assert cfg.study == "ntidigits-sweep"
    assert SweepConfig.from_dict(cfg.to_dict()) == cfg
    assert SweepConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_toml_files_load_and_unknown_keys_are_named(tmp_path):
    for name, preset in (("nmnist", LSMConfig.nmnist()), ("ntidigits", LSMConfig.ntidigits())):
        path = ROOT / "examples" / "configs" / f"sweep_{name}.toml"
        cfg = SweepConfig.from_toml(path)
        assert cfg.dataset == name and cfg.features == "windows" and cfg.readout == "probe"
        assert cfg == default_config(name, **{k: v for k, v in cfg.to_dict().items()
                                              if k not in ("dataset", "space")})
        for p in cfg.space:  # the ranges hold the paper's encoder
            assert p.low <= getattr(preset, p.name) <= p.high, p
    bad = tmp_path / "bad.toml"
    bad.write_text('[sweep]\ndataset = "nmnist"\nn_trails = 5\n[sweep.space]\n'
                   "v_th = { low = 1.0, high = 2.0 }\n")
    with pytest.raises(ValueError, match=r"bad.toml: unknown key\(s\) \['n_trails'\]"):
        SweepConfig.from_toml(bad)
    bad.write_text('[sweep]\ndataset = "nmnist"\n[sweep.space]\nvth = { low = 1.0, high = 2.0 }\n')
    with pytest.raises(ValueError, match="bad.toml: .*unknown LSMConfig field 'vth'"):
        SweepConfig.from_toml(bad)
    bad.write_text('[sweep]\ndataset = "nmnist"\n[sweep.space]\nv_th = { low = 1.0, high = 2.0 }\n'
                   "[lsm]\nv_th = 3\n")
    with pytest.raises(ValueError, match=r"bad.toml: unknown table\(s\) or key\(s\) \['lsm'\]"):
        SweepConfig.from_toml(bad)
    bad.write_text('[sweep]\ndataset = "nmnist"\npath = "data/n"\n[sweep.space]\n'
                   "v_th = { low = 1.0, high = 2.0 }\n")
    assert SweepConfig.from_toml(bad).path == str(tmp_path / "data" / "n")  # beside the file


def test_storage_urls(tmp_path):
    assert storage_url("postgresql://u:pw@host/db") == "postgresql+psycopg://u:pw@host/db"
    assert storage_url("postgres://u@host/db") == "postgresql+psycopg://u@host/db"
    (tmp_path / "study.db").write_bytes(b"")
    assert storage_url(tmp_path) == f"sqlite:///{(tmp_path / 'study.db').resolve()}"
    with pytest.raises(SweepError, match="expected sqlite:///FILE or a PostgreSQL URL"):
        storage_url("mysql://u:pw@host/db")
    with pytest.raises(FileNotFoundError, match="no such study database"):
        storage_url(tmp_path / "nothing")


# ---------------------------------------------------------------------- one process
def test_sweep_rerun_and_one_test_evaluation(twin, tmp_path, capsys):
    """One worker in this process, on a file without a test split: the search, a rerun by id,
    the test split read once for the best trial (from the full file), refused a second time."""
    full, train_only = twin
    config = tmp_path / "sweep.toml"
    config.write_text('[sweep]\ndataset = "ntidigits"\nn_trials = 9\nstudy = "cli"\n'
                      "heartbeat_s = 1\ngrace_s = 3\n[sweep.space]\n"
                      'v_th = { low = 2.0, high = 10.0 }\n'
                      "w_in_const = { low = 0.03, high = 0.3, log = true }\n")
    cfg = SweepConfig.from_toml(config)
    assert cfg.space == sweep_config(train_only, tmp_path).space
    assert main(["sweep", "run", "--config", str(config), "--ntidigits", str(train_only),
                 "--n-trials", "4", "--runs", str(tmp_path / "runs"), "--json",
                 "--no-progress"]) == 0
    r = json.loads(capsys.readouterr().out)
    run = Path(r["run_dir"])
    assert {p.name for p in run.iterdir()} >= {"study.db", "config.toml", "metrics.json",
                                               "sweep.png"}
    url = storage_url(run)
    complete = check_finished_study(url, cfg.study, 4)
    assert r["complete"] == 4 and r["fail"] == r["pruned"] == 0
    assert r["best"]["value"] == max(t.value for t in complete)
    assert r["best"]["value"] > r["chance"] + 0.3, r  # chance: the largest class, 2/11
    assert json.loads((run / "metrics.json").read_text())["best"] == r["best"]

    # a rerun by id gives the stored value, bit for bit (also on a trial that is not the best)
    for t in complete[:2]:
        again = rerun_trial(url, cfg.study, t.number)
        assert again["reproduced"] and again["rerun"] == t.value
    assert main(["sweep", "rerun", "--storage", str(run), "--trial", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["reproduced"] is True

    # resume: more trials in the same study.db
    r2 = run_sweep(None, resume=run, n_trials=5, progress=False)
    assert r2["complete"] == 5 and r2["run_dir"] == str(run)
    # the resumed worker draws with a seed of its own: it does not replay the first settings
    params = [tuple(sorted(t.params.items())) for t in check_finished_study(url, cfg.study, 5)]
    assert len(set(params)) == 5, params

    cfg = cfg.replace(n_trials=5)  # as resumed
    # the file has no test split: best says so and records no look at the test split
    runs = tmp_path / "best"
    assert main(["sweep", "best", "--storage", str(run), "--runs", str(runs),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lsm: error: ") and "test_labels" in err, err
    assert not trials_of_attrs(url, cfg.study).get("test_evaluations")
    # the same training data at another path (this machine's full file): scored once
    b = evaluate_best(url, cfg.study, runs, path=full, progress=False)
    assert b["trial"] == r2["best"]["trial"] and b["val_accuracy"] == r2["best"]["value"]
    assert b["val_accuracy_refit"] == b["val_accuracy"]
    assert 0 <= b["test_accuracy"] <= 1 and b["n_test"] == 22
    assert {p.name for p in Path(b["run_dir"]).iterdir()} == {
        "config.toml", "metrics.json", "sweep.png", "confusion_matrix.png"}
    looks = trials_of_attrs(url, cfg.study)["test_evaluations"]
    assert [e["test_accuracy"] for e in looks] == [b["test_accuracy"]]
    # a second look is refused, saying why; forced, it is recorded
    assert main(["sweep", "best", "--storage", str(run), "--ntidigits", str(full),
                 "--runs", str(runs), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "already evaluated" in err and "selection on the test set" in err
    assert "Traceback" not in err
    b2 = evaluate_best(url, cfg.study, runs, path=full, force=True, progress=False)
    assert b2["test_evaluation"] == 2 and b2["forced"]
    assert b2["test_accuracy"] == b["test_accuracy"]
    assert len(trials_of_attrs(url, cfg.study)["test_evaluations"]) == 2


def trials_of_attrs(url: str, name: str) -> dict:
    return optuna.load_study(study_name=name, storage=url).user_attrs


def test_other_training_data_cannot_join_a_study(twin, tmp_path):
    full, train_only = twin
    cfg = sweep_config(train_only, tmp_path, n_trials=1)
    r = run_sweep(cfg, progress=False)
    other = tmp_path / "fewer.hdf5"
    with h5py.File(train_only, "r") as src, h5py.File(other, "w") as dst:
        labels = src["train_labels"][:-11]  # one speaker fewer
        dst["train_labels"] = labels
        for g in ("train_addresses", "train_timestamps"):
            for sid in labels:
                key = sid.decode() if isinstance(sid, bytes) else sid
                dst[f"{g}/{key}"] = src[f"{g}/{key}"][()]
    with pytest.raises(SweepError, match="differ from those of study"):
        run_worker(r["run_dir"], None, path=other, progress=False)


# ---------------------------------------------------------------------- command-line errors
def test_a_file_that_is_not_a_database_is_a_user_error(tmp_path, capsys):
    (tmp_path / "study.db").write_text("garbage")
    assert main(["sweep", "best", "--storage", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "file is not a database" in err and "Traceback" not in err


def test_cli_user_errors_are_one_line(twin, tmp_path, capsys):
    _, train_only = twin

    def fails(argv, *needles):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("lsm: error: ") and "Traceback" not in err, err
        for n in needles:
            assert n in err, (n, err)
        return err

    bad = tmp_path / "bad.toml"
    bad.write_text("[sweep\n")
    fails(["sweep", "run", "--config", str(bad)], "bad.toml: not valid TOML")
    bad.write_text('[sweep]\ndataset = "ntidigits"\nworkers = 3\n[sweep.space]\n'
                   "v_th = { low = 1.0, high = 2.0 }\n")
    fails(["sweep", "run", "--config", str(bad)], "bad.toml", "'workers'")
    fails(["sweep", "run", "--config", str(tmp_path / "none.toml")], "none.toml")
    fails(["sweep", "run", "--config", str(ROOT / "examples/configs/sweep_nmnist.toml"),
           "--ntidigits", str(train_only)], "searches nmnist", "--ntidigits")
    runs = tmp_path / "runs"
    fails(["sweep", "run", "--ntidigits", str(tmp_path / "missing.hdf5"), "--runs", str(runs)],
          "missing.hdf5: no such N-TIDIGITS file")
    assert not runs.exists() or not any(runs.iterdir())  # no run directory left behind
    fails(["sweep", "run"], "needs --config")
    fails(["sweep", "run", "--resume", str(tmp_path)], "not a sweep's run directory")
    fails(["sweep", "worker", "--storage", "mysql://u:pw@h/db"], "PostgreSQL URL")
    err = fails(["sweep", "worker", "--storage",
                 "postgresql://me:s3cret@/db?host=/nonexistent-sweep-socket"],
                "cannot use the study storage", "nonexistent-sweep-socket")
    assert "s3cret" not in err  # the password is never printed
    fails(["sweep", "best", "--storage", str(tmp_path / "nothing.db")], "no such study database")
    fails(["sweep", "best", "--storage", f"sqlite:///{tmp_path / 'nothing.db'}"],
          "nothing.db: no such study database")
    assert not (tmp_path / "nothing.db").exists()  # no empty database made on the way
    db = tmp_path / "other.db"
    optuna.create_study(storage=f"sqlite:///{db}", study_name="foreign")
    fails(["sweep", "worker", "--storage", str(db), "--study", "nope"],
          "no study named 'nope'", "studies there: foreign")
    fails(["sweep", "rerun", "--storage", str(db), "--trial", "0"], "not made by `lsm sweep`")
    r = run_sweep(sweep_config(train_only, tmp_path, n_trials=1), progress=False)
    fails(["sweep", "rerun", "--storage", r["run_dir"], "--trial", "7"], "has no trial 7")
    fails(["sweep", "worker", "--storage", r["run_dir"], "--ntidigits",
           str(tmp_path / "gone.hdf5")], "gone.hdf5")


def test_a_subprocess_error_has_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "lsm.cli", "sweep", "worker", "--storage",
                           "postgresql://postgres@/postgres?host=/nonexistent-sweep-socket",
                           "--study", "x"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("lsm: error: cannot use the study storage")
    assert "Traceback" not in proc.stderr


# ---------------------------------------------------------------------- several processes
@pytest.mark.slow
def test_two_worker_processes_on_sqlite(twin, tmp_path):
    _, train_only = twin
    cfg = sweep_config(train_only, tmp_path, n_trials=8)
    r = run_sweep(cfg, n_workers=2, progress=False)
    complete = check_finished_study(storage_url(r["run_dir"]), cfg.study, 8, min_workers=2)
    assert [w["error"] for w in r["workers"]] == [None, None]
    assert sum(w["ran"] for w in r["workers"]) == 8
    assert {w["pid"] for w in r["workers"]} == {t.user_attrs["worker_pid"] for t in complete}
    assert r["best"]["value"] > r["chance"] + 0.3


@pytest.fixture(scope="module")
def postgres(tmp_path_factory):
    """A private PostgreSQL server (binaries from the pgserver wheel) for this module."""
    with warnings.catch_warnings():  # platformdirs: XDG_RUNTIME_DIR is not set
        warnings.simplefilter("ignore")
        try:
            import pgserver
        except ImportError:
            pytest.skip("pgserver cannot be imported (pip install -e '.[test]' installs it)")
        server = pgserver.get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="stop")
    try:
        yield server.get_uri()
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            server.cleanup()


@pytest.mark.slow
def test_two_worker_processes_on_postgresql(twin, postgres, tmp_path, capsys):
    full, train_only = twin
    assert postgres.startswith("postgresql://")
    cfg = sweep_config(train_only, tmp_path, n_trials=8, study="pg-sweep")
    r = run_sweep(cfg, n_workers=2, storage=postgres, progress=False)
    url = storage_url(postgres)
    assert url.startswith("postgresql+psycopg://")
    complete = check_finished_study(url, "pg-sweep", 8, min_workers=2)
    assert not (Path(r["run_dir"]) / "study.db").exists()  # the study lives in PostgreSQL
    assert r["best"]["value"] > r["chance"] + 0.3
    # a worker joining from "another machine" with nothing but the URL: nothing left to do
    assert main(["sweep", "worker", "--storage", postgres, "--study", "pg-sweep", "--json",
                 "--no-progress"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ran"] == 0 and out["complete"] == 8
    # rerun by id through the shared storage
    best = max(complete, key=lambda t: t.value)
    assert rerun_trial(postgres, "pg-sweep", best.number)["rerun"] == best.value
    # the same name with other settings is refused, naming what differs
    other = cfg.replace(space={"v_th": {"low": 1.0, "high": 3.0}})
    with pytest.raises(SweepError, match=r"exists with other settings \(space\)"):
        create_study(other, postgres, progress=False)
    assert main(["sweep", "best", "--storage", postgres, "--study", "nope"]) == 2
    assert "no study named 'nope'" in capsys.readouterr().err


def worker_process(sweep, timeout_s: float = 120) -> dict:
    """``lsm sweep worker`` in a process (killed and failed after ``timeout_s``: a worker that
    waits for ever on a trial nobody will finish is a failure, not a hung test)."""
    proc = subprocess.run([sys.executable, "-m", "lsm.cli", "sweep", "worker", "--storage",
                           sweep.storage, "--study", sweep.study, "--json", "--no-progress"],
                          capture_output=True, text=True, timeout=timeout_s)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def running_with_params(sweep) -> list:
    return [t for t in trials_of(sweep.storage, sweep.study, states=(TrialState.RUNNING,))
            if "lsm" in t.user_attrs]


def kill_a_worker_in_a_trial(sweep) -> optuna.trial.FrozenTrial:
    """Start ``lsm sweep worker`` in a process, SIGKILL it while one of its trials is RUNNING
    with its parameters drawn (its first trial: the reservoir's compiled kernel and the readout
    load in it); that trial."""
    proc = subprocess.Popen([sys.executable, "-m", "lsm.cli", "sweep", "worker", "--storage",
                             sweep.storage, "--study", sweep.study, "--no-progress"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not running_with_params(sweep):
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    running = running_with_params(sweep)
    assert len(running) <= 1
    return running[0] if running else None


@pytest.mark.slow
def test_a_killed_worker_s_trial_is_failed_and_retried(twin, tmp_path):
    """SIGKILL a worker in the middle of a trial: the trial stays RUNNING without heartbeats,
    the next worker fails it after the grace period and runs its parameters again; the study
    still ends with exactly n_trials COMPLETE trials."""
    _, train_only = twin
    cfg = sweep_config(train_only, tmp_path, n_trials=5)
    sweep = create_study(cfg, progress=False)
    for _attempt in range(3):  # the kill can land between two trials (rarely): kill again
        dead = kill_a_worker_in_a_trial(sweep)
        if dead is not None:
            break
    assert dead is not None, "the killed worker's trial is left RUNNING"
    assert len(trials_of(sweep.storage, sweep.study, states=(TrialState.COMPLETE,))) < 5

    r = worker_process(sweep)
    trials = {t.number: t for t in trials_of(sweep.storage, sweep.study)}
    assert r["complete"] == 5
    check_finished_study(sweep.storage, sweep.study, 5)
    assert trials[dead.number].state == TrialState.FAIL
    retried = [t for t in trials.values() if t.system_attrs.get("failed_trial") == dead.number]
    assert len(retried) == 1 and retried[0].state == TrialState.COMPLETE
    assert retried[0].params == dead.params
    assert retried[0].user_attrs["worker_pid"] == r["pid"]


@pytest.mark.slow
def test_a_trial_orphaned_before_its_first_heartbeat_is_failed_and_retried(twin, tmp_path):
    """A worker that dies between creating a trial and its first heartbeat leaves a RUNNING
    trial that Optuna's stale-trial check never fails (it has no heartbeat to be stale). The
    same database state, made by asking for a trial on a storage without heartbeats and never
    answering: the next worker fails it after grace_s and the study completes."""
    _, train_only = twin
    cfg = sweep_config(train_only, tmp_path, n_trials=2, grace_s=2)
    sweep = create_study(cfg, progress=False)
    orphan = optuna.load_study(study_name=sweep.study, storage=sweep.storage).ask()
    assert orphan.number == 0
    t0 = time.monotonic()
    r = worker_process(sweep, timeout_s=60)
    assert time.monotonic() - t0 > cfg.grace_s  # it waited for the orphan, then failed it
    trials = trials_of(sweep.storage, sweep.study)
    assert r["complete"] == 2 and trials[0].state == TrialState.FAIL
    check_finished_study(sweep.storage, sweep.study, 2)
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == 0]
    assert len(retried) == 1 and retried[0].state == TrialState.COMPLETE
