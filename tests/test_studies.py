"""``lsm study features|size|nonideality`` on small offline twins: run directories, consistency
of the numbers across rows, seeds and studies, the effect of a large non-ideality, configs in
TOML, and the command line's refusals."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from lsm.cli import main
from lsm.experiments.studies import (
    IN_LOOP_DEFAULT,
    NONIDEALITIES,
    NONIDEALITY_DEFAULTS,
    STUDY_CONFIGS,
    FeaturesStudyConfig,
    NonidealityStudyConfig,
    SizeStudyConfig,
    format_features_study,
    format_nonideality_study,
    format_size_study,
    nonideality_weights,
    run_features_study,
    run_nonideality_study,
    run_size_study,
)
from lsm.readout import ReadoutConfig

ROOT = Path(__file__).parents[1]
#: a quicker readout than the default (fewer epochs): every study of this file uses it, so the
#: same seed fits the same readout on the same features in each of them
FAST = ReadoutConfig(kind="linear", epochs=60, patience=10)


@pytest.fixture(scope="module")
def twins(tmp_path_factory):
    from lsm.data.twin_nmnist import make_nmnist_twin
    from lsm.data.twin_ntidigits import make_ntidigits_twin

    base = tmp_path_factory.mktemp("study-twins")
    make_nmnist_twin(base / "nmnist", n_train=300, n_test=100, seed=0, progress=False)
    make_ntidigits_twin(base / "td.hdf5", n_speakers=8, takes=1, seed=0, progress=False,
                        workers=2)
    return {"nmnist": base / "nmnist", "ntidigits": base / "td.hdf5", "base": base}


@pytest.fixture(scope="module")
def features_run(twins):
    cfg = FeaturesStudyConfig(datasets=("nmnist",), kinds=("counts", "windows"), windows=(1, 3),
                              n_seeds=2, nmnist=twins["nmnist"], readout=FAST,
                              runs_dir=twins["base"] / "runs", workdir=twins["base"] / "work")
    return cfg, run_features_study(cfg, progress=False)


@pytest.fixture(scope="module")
def size_run(twins):
    cfg = SizeStudyConfig(dataset="nmnist", n_neurons=(10, 40), n_seeds=1, n_windows=3,
                          nmnist=twins["nmnist"], readout=FAST, runs_dir=twins["base"] / "runs")
    return cfg, run_size_study(cfg, progress=False)


@pytest.fixture(scope="module")
def nonideality_run(twins):
    cfg = NonidealityStudyConfig(dataset="nmnist", panels=("adc_bits", "stuck_rate"),
                                 adc_bits=(14, 2), stuck_rate=(0.0, 0.9), n_seeds=2, n_windows=3,
                                 nmnist=twins["nmnist"], readout=FAST,
                                 runs_dir=twins["base"] / "runs")
    return cfg, run_nonideality_study(cfg, progress=False)


def _check_run_dir(cfg, r: dict, png: str) -> None:
    """config.toml (resolved: absolute paths; read back equal), metrics.json (the result),
    the PNG."""
    run = Path(r["run_dir"])
    assert run.parent == Path(cfg.runs_dir).resolve()
    assert run.name.startswith(f"study-{cfg.study}-")
    assert (run / png).stat().st_size > 10_000 and r["plot"] == str(run / png)
    back = type(cfg).from_toml(run / "config.toml")
    name = getattr(cfg, "dataset", None) or cfg.datasets[0]
    assert Path(getattr(back, name)).is_absolute() and Path(back.runs_dir).is_absolute()
    assert back == dataclasses.replace(
        cfg, **{name: str(Path(getattr(cfg, name)).resolve()),
                "workdir": str(Path(cfg.workdir).resolve()),
                "runs_dir": str(Path(cfg.runs_dir).resolve())})
    from lsm.config import tomllib

    doc = tomllib.loads((run / "config.toml").read_text())
    assert doc["seeds"] == list(range(cfg.n_seeds)) and "numpy" in doc["versions"]
    assert doc["study"]["study"] == cfg.study
    assert json.loads((run / "metrics.json").read_text()) == json.loads(json.dumps(r))


# ---------------------------------------------------------------------- features
def test_features_study_leaves_a_run_directory(features_run):
    cfg, r = features_run
    _check_run_dir(cfg, r, "features.png")
    assert r["rows"] == ["counts", "windows(1)", "windows(3)"]
    assert r["data"] == {"nmnist": "offline twin"}
    for row in r["rows"]:
        res = r["results"]["nmnist"][row]
        assert [p["seed"] for p in res["per_seed"]] == [0, 1]
        assert res["lsm"]["n"] == 2 and 0.3 < res["lsm"]["mean"] <= 1.0
        assert res["lsm"]["mean"] == pytest.approx(
            sum(p["lsm"] for p in res["per_seed"]) / 2)


def test_windows_of_one_are_the_counts(features_run):
    """One window is the whole sample: the same features as "counts", so the same readout with
    the same seed gets exactly the same accuracy, LSM and no reservoir alike."""
    _, r = features_run
    res = r["results"]["nmnist"]
    for key in ("lsm", "no_reservoir", "lsm_val", "spikes_per_neuron"):
        assert [p[key] for p in res["windows(1)"]["per_seed"]] == \
            [p[key] for p in res["counts"]["per_seed"]]
    # and the table is not one number repeated: windows(3) differs somewhere
    assert [p["lsm"] for p in res["windows(3)"]["per_seed"]] != \
        [p["lsm"] for p in res["counts"]["per_seed"]] or \
        [p["no_reservoir"] for p in res["windows(3)"]["per_seed"]] != \
        [p["no_reservoir"] for p in res["counts"]["per_seed"]]


def test_no_reservoir_and_gaussian_results_agree_across_studies(features_run, size_run,
                                                                  nonideality_run):
    """Seed 0's no-reservoir accuracy does not depend on the seed list (1 seed in the size
    study, 2 in the others) nor on the study; seed 0's 200-neuron Gaussian reservoir gets the
    same accuracy in the features and the non-ideality studies."""
    _, f = features_run
    _, s = size_run
    _, n = nonideality_run
    row = f["results"]["nmnist"]["windows(3)"]["per_seed"]
    assert s["no_reservoir"]["per_seed"][0]["test_accuracy"] == row[0]["no_reservoir"]
    assert [p["test_accuracy"] for p in n["no_reservoir"]["per_seed"]] == \
        [p["no_reservoir"] for p in row]
    assert [p["test_accuracy"] for p in n["gaussian"]["per_seed"]] == [p["lsm"] for p in row]


def test_features_table_plain_and_markdown(features_run):
    _, r = features_run
    md = format_features_study(r, markdown=True).splitlines()
    table = [line for line in md if line.startswith("|")]
    assert len(table) == 2 + len(r["rows"])
    assert table[0] == "| features | N-MNIST LSM | N-MNIST no reservoir |"
    assert {line.count("|") for line in table} == {4}
    v = r["results"]["nmnist"]["windows(3)"]
    assert table[-1] == (f"| windows(3) | {100 * v['lsm']['mean']:.1f} +- "
                         f"{100 * v['lsm']['std']:.1f} | {100 * v['no_reservoir']['mean']:.1f} "
                         f"+- {100 * v['no_reservoir']['std']:.1f} |")
    plain = format_features_study(r)
    assert "|" not in plain and "windows(3)" in plain and r["run_dir"] in plain


# ---------------------------------------------------------------------- size
def test_size_study(size_run):
    cfg, r = size_run
    _check_run_dir(cfg, r, "size.png")
    assert [p["n_neurons"] for p in r["points"]] == [10, 40]
    for p in r["points"]:
        assert p["test_accuracy"]["n"] == 1 and p["spikes_per_neuron"] > 0
    text = format_size_study(r)
    assert "no reservoir" in text and text.count("\n10 ") + text.count("\n40 ") == 2


# ---------------------------------------------------------------------- non-idealities
def test_nonideality_study(nonideality_run):
    cfg, r = nonideality_run
    _check_run_dir(cfg, r, "nonideality.png")
    assert list(r["panels"]) == ["adc_bits", "stuck_rate"]
    assert r["panels"]["adc_bits"]["mode"] == "in the loop"
    assert r["panels"]["stuck_rate"]["mode"] == "map read"
    assert set(r["encode_s"]) == {"in the loop", "map read"}
    text = format_nonideality_study(r, markdown=True)
    assert "| ADC resolution | 14 * | in the loop |" in text
    assert "| Gaussian weights |" in text and "| no reservoir |" in text


def test_a_2_bit_adc_in_the_loop_lowers_accuracy(nonideality_run):
    """On this twin the 14-bit crossbar reaches about 0.76 and a 2-bit ADC about 0.54 (each
    seed loses 0.18-0.26); asked: a drop of at least 0.1 on the mean, 0.05 on each seed."""
    _, r = nonideality_run
    p14, p2 = r["panels"]["adc_bits"]["points"]
    assert (p14["value"], p2["value"]) == (14, 2)
    assert p2["test_accuracy"]["mean"] <= p14["test_accuracy"]["mean"] - 0.1
    for a, b in zip(p14["per_seed"], p2["per_seed"], strict=True):
        assert b["test_accuracy"] <= a["test_accuracy"] - 0.05
    # the coarse ADC rounds most column currents to zero: far fewer spikes
    assert p2["spikes_per_neuron"] < 0.6 * p14["spikes_per_neuron"]


def test_stuck_cells_change_the_reservoir(nonideality_run):
    """90 % stuck cells (half of them at 100 uS) drive the reservoir much harder and cost
    accuracy: on this twin about 0.78 -> 0.69 (each seed loses 0.08-0.10); asked: at least
    0.03 on the mean."""
    _, r = nonideality_run
    p0, p9 = r["panels"]["stuck_rate"]["points"]
    assert p9["spikes_per_neuron"] > 1.5 * p0["spikes_per_neuron"]
    assert p9["test_accuracy"]["mean"] <= p0["test_accuracy"]["mean"] - 0.03


def test_each_point_changes_one_parameter():
    from lsm.config import LSMConfig
    from lsm.crossbar import ADC, DeviceParams
    from lsm.weights import CrossbarWeights

    cfg = LSMConfig(n_neurons=400)  # 256 + 400 rows: more than the default 512-row array
    default = CrossbarWeights()
    assert NONIDEALITY_DEFAULTS == {
        "read_noise_rel": DeviceParams().read.read_noise_rel, "adc_bits": ADC().bits,
        "stuck_rate": DeviceParams().faults.p_stuck_hrs + DeviceParams().faults.p_stuck_lrs,
        "read_time_s": default.read_time_s, "form_cv": DeviceParams().programming.form_cv}
    w = nonideality_weights(cfg, "stuck_rate", 0.4, False, "both")
    assert (w.device.faults.p_stuck_hrs, w.device.faults.p_stuck_lrs) == (0.2, 0.2)
    assert (w.array_rows, w.array_cols) == (656, 800) and not w.in_loop
    assert w.device.read == default.device.read and w.adc == default.adc
    assert nonideality_weights(cfg, "stuck_rate", 0.4, False, "lrs").device.faults.p_stuck_lrs \
        == 0.4
    w = nonideality_weights(cfg, "adc_bits", 3, True)
    assert w.adc.bits == 3 and w.in_loop and w.device == default.device
    w = nonideality_weights(cfg, "read_noise_rel", 0.1, True)
    assert w.device.read.read_noise_rel == 0.1
    assert w.device.programming == default.device.programming
    assert nonideality_weights(cfg, "read_time_s", 1e6, False).read_time_s == 1e6
    assert nonideality_weights(cfg, "form_cv", 0.5, False).device.programming.form_cv == 0.5
    assert set(IN_LOOP_DEFAULT) <= set(NONIDEALITIES)
    w = nonideality_weights(LSMConfig(), "form_cv", 0.25, False)
    assert (w.array_rows, w.array_cols) == (512, 512)


# ---------------------------------------------------------------------- configs
def test_example_configs_load():
    for name, cls in STUDY_CONFIGS.items():
        path = ROOT / "examples" / "configs" / f"study_{name}.toml"
        cfg = cls.from_toml(path)
        assert cfg.study == name and cfg.nmnist is None and cfg.ntidigits is None
        assert cfg.n_seeds >= 1
        assert cls.from_toml(path) == cls.from_dict(json.loads(json.dumps(cfg.to_dict())))


@pytest.mark.parametrize("cls, changes, named", [
    (FeaturesStudyConfig, {"kinds": ("binned",)}, "kinds[0]"),
    (FeaturesStudyConfig, {"windows": (0,)}, "windows[0]"),
    (FeaturesStudyConfig, {"windows": ()}, "windows"),
    (FeaturesStudyConfig, {"windows": (5, 5)}, "twice"),
    (FeaturesStudyConfig, {"windows": (51,)}, "windows on nmnist"),
    (FeaturesStudyConfig, {"windows": "5"}, "windows"),
    (FeaturesStudyConfig, {"datasets": ("mnist",)}, "datasets[0]"),
    (FeaturesStudyConfig, {"weights": "memristor"}, "weights"),
    (FeaturesStudyConfig, {"n_seeds": 0}, "n_seeds"),
    (FeaturesStudyConfig, {"readout": {"kindd": "linear"}}, "kindd"),
    (FeaturesStudyConfig, {"nmnist": ""}, "nmnist"),
    (FeaturesStudyConfig, {"lsm_overrides": {"v_th": -1.0}}, "v_th"),
    (SizeStudyConfig, {"n_neurons": (0, 10)}, "n_neurons[0]"),
    (SizeStudyConfig, {"n_neurons": (10.5,)}, "n_neurons[0]"),
    (SizeStudyConfig, {"lsm_overrides": {"n_neurons": 30}}, "n_neurons"),
    (SizeStudyConfig, {"weights": "chip"}, "weights"),
    (NonidealityStudyConfig, {"adc_bits": (0, 4)}, "adc_bits[0]"),
    (NonidealityStudyConfig, {"read_noise_rel": (-0.1,)}, "read_noise_rel[0]"),
    (NonidealityStudyConfig, {"stuck_rate": (1.5,)}, "stuck_rate[0]"),
    (NonidealityStudyConfig, {"read_time_s": (float("inf"),)}, "read_time_s[0]"),
    (NonidealityStudyConfig, {"panels": ("noise",)}, "panels[0]"),
    (NonidealityStudyConfig, {"in_loop": ("noise",)}, "in_loop[0]"),
    (NonidealityStudyConfig, {"stuck_state": "half"}, "stuck_state"),
])
def test_bad_settings_are_refused_by_name(cls, changes, named):
    with pytest.raises(ValueError, match=None) as info:
        cls(**changes)
    assert named in str(info.value)


def test_toml_refusals(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('[study]\nn_seeds = 1\nn_neuron = [10]\n')
    with pytest.raises(ValueError, match=r"c\.toml.*unknown key\(s\) \['n_neuron'\]"):
        SizeStudyConfig.from_toml(p)
    p.write_text('[study]\nn_seeds = 1\n[extra]\nx = 1\n')
    with pytest.raises(ValueError, match=r"c\.toml.*\['extra'\]"):
        SizeStudyConfig.from_toml(p)
    p.write_text('[study]\nstudy = "features"\n')
    with pytest.raises(ValueError, match="'features' study, not of the 'size'"):
        SizeStudyConfig.from_toml(p)
    p.write_text('n_seeds = 1\n')
    with pytest.raises(ValueError, match="n_seeds"):
        SizeStudyConfig.from_toml(p)
    p.write_text('[study]\nn_seeds = "2"\n')
    with pytest.raises(ValueError, match=r"c\.toml.*n_seeds"):
        SizeStudyConfig.from_toml(p)
    p.write_text('[study\n')
    with pytest.raises(ValueError, match="not valid TOML"):
        SizeStudyConfig.from_toml(p)
    p.write_text('[study]\nnmnist = "data/nm"\nworkdir = "w"\n[study.readout]\nepochs = 7\n')
    cfg = SizeStudyConfig.from_toml(p)
    assert cfg.nmnist == str(tmp_path / "data" / "nm") and cfg.workdir == "w"
    assert cfg.readout == ReadoutConfig(epochs=7)


# ---------------------------------------------------------------------- command line
def _lsm(capsys, *argv) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("argv, says", [
    (["nonideality", "--adc-bits", "0,4"], "adc_bits[0]"),
    (["size", "--n-neurons", "10,10"], "lists 10 twice"),
    (["features", "--windows", "5,0"], "windows[1]"),
    (["features", "--nmnist", "/nonexistent/nmnist"], "/nonexistent/nmnist"),
    (["size", "--ntidigits", "/nonexistent/td.hdf5"], "/nonexistent/td.hdf5"),
    (["size", "--config", "/nonexistent/c.toml"], "/nonexistent/c.toml"),
])
def test_cli_user_errors(capsys, tmp_path, argv, says):
    runs = tmp_path / "runs"
    rc, out, err = _lsm(capsys, "study", *argv, "--runs", str(runs), "--workdir",
                        str(tmp_path / "work"))
    assert rc == 2 and out == ""
    assert err.startswith("lsm: error: ") and says in err and "Traceback" not in err
    assert not runs.exists() or not any(runs.iterdir())
    assert not (tmp_path / "work").exists()  # refused before any twin was made


def test_cli_unknown_key_in_the_config(capsys, tmp_path):
    cfg = tmp_path / "study.toml"
    cfg.write_text('[study]\nstudy = "nonideality"\nadc_bit = [4]\n')
    rc, _, err = _lsm(capsys, "study", "nonideality", "--config", str(cfg))
    assert rc == 2 and err.startswith("lsm: error: ")
    assert str(cfg) in err and "'adc_bit'" in err and "Traceback" not in err


def test_cli_malformed_list_is_named_by_the_parser(capsys):
    rc, _, err = _lsm(capsys, "study", "nonideality", "--adc-bits", "4,x")
    assert rc == 2 and "argument --adc-bits" in err and "'4,x'" in err
    assert "Traceback" not in err


def test_cli_options_override_the_config(capsys, tmp_path, twins):
    cfg = tmp_path / "size.toml"
    cfg.write_text('[study]\nstudy = "size"\nn_seeds = 3\nn_neurons = [12]\nn_windows = 2\n'
                   f'runs_dir = "{tmp_path / "runs"}"\n'
                   '[study.readout]\nkind = "probe"\nepochs = 60\npatience = 10\n')
    rc, out, _ = _lsm(capsys, "study", "size", "--config", str(cfg), "--nmnist",
                      str(twins["nmnist"]), "--n-seeds", "1", "--readout", "linear", "--json",
                      "--no-progress")
    assert rc == 0
    r = json.loads(out)
    assert r["seeds"] == 1 and [p["n_neurons"] for p in r["points"]] == [12]
    assert r["features"] == "windows(2)" and r["readout"]["kind"] == "linear"
    assert r["readout"]["epochs"] == 60  # the rest of the config's readout table is kept
    assert Path(r["run_dir"]).parent == tmp_path / "runs"


def test_cli_dataset_option_without_a_path_uses_the_demo_twin(capsys, tmp_path, twins):
    work = tmp_path / "work"
    (work / "twins").mkdir(parents=True)
    shutil.copy(twins["ntidigits"], work / "twins" / "ntidigits.hdf5")
    rc, out, _ = _lsm(capsys, "study", "features", "--ntidigits", "--workdir", str(work),
                      "--features", "counts", "--n-seeds", "1", "--runs", str(tmp_path / "runs"),
                      "--markdown", "--no-progress")
    assert rc == 0
    assert "| features | N-TIDIGITS LSM | N-TIDIGITS no reservoir |" in out
    assert "| counts |" in out and "N-MNIST" not in out.split("\n\n")[1]
    assert not (work / "twins" / "nmnist").exists()  # only the dataset asked for
