"""The class-splits study: every split's protocol, its distribution against chance, the plot."""

import json

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

import numpy as np
import pytest

from lsm.contrastive.zeroshot import ZeroShotConfig
from lsm.experiments.splits import (
    ClassSplitsConfig,
    class_splits,
    format_class_splits,
    run_class_splits,
)

FAST = ZeroShotConfig(epochs=6, n_class_folds=2)


@pytest.fixture(scope="module")
def twins(tmp_path_factory):
    from lsm.data.twin_nmnist import make_nmnist_twin
    from lsm.data.twin_ntidigits import make_ntidigits_twin

    base = tmp_path_factory.mktemp("split-twins")
    make_nmnist_twin(base / "nm", n_train=300, n_test=90, seed=0, progress=False)
    make_ntidigits_twin(base / "td.hdf5", n_speakers=12, takes=1, seed=0, progress=False,
                        workers=1)
    return base / "nm", base / "td.hdf5"


def test_all_pairs_and_random_splits():
    every = class_splits(ClassSplitsConfig(splits="all"))
    assert len(every) == 36 and len(set(every)) == 36
    assert all(len(s) == 2 and s[0] < s[1] and 1 <= s[0] and s[1] <= 9 for s in every)
    some = class_splits(ClassSplitsConfig(splits=7, split_seed=3))
    assert len(some) == 7 and len(set(some)) == 7 and set(some) <= set(every)
    assert some == class_splits(ClassSplitsConfig(splits=7, split_seed=3))
    assert some != class_splits(ClassSplitsConfig(splits=7, split_seed=4))
    triples = class_splits(ClassSplitsConfig(splits="all", n_unseen=3,
                                             protocol=ZeroShotConfig(n_class_folds=2)))
    assert len(triples) == 84
    cfg = ClassSplitsConfig(splits=1)
    p = cfg.protocol_for((2, 5))
    assert p.unseen == (2, 5) and p.seen == (1, 3, 4, 6, 7, 8, 9)


@pytest.mark.parametrize("change, message", [
    (dict(splits=37), "splits must be <= 36"),
    (dict(splits=0), "splits must be >= 1"),
    (dict(classes=(1, 1, 2, 3, 4, 5)), "distinct digits"),
    (dict(classes=(1, 2, 3, 4, 5, 10)), "distinct digits"),
    (dict(n_unseen=6), "n_unseen must be <= 5"),
    (dict(nmnist="x"), "give both nmnist and ntidigits"),
    (dict(features="binned"), "features must be one of"),
    (dict(n_unseen=4, protocol=ZeroShotConfig(n_class_folds=3)), "n_class_folds"),
])
def test_bad_settings_are_refused(change, message):
    with pytest.raises(ValueError, match=message):
        ClassSplitsConfig(**change)


@pytest.mark.slow
def test_the_study_runs_every_split_and_summarises_it(twins, tmp_path):
    nm, td = twins
    cfg = ClassSplitsConfig(nmnist=nm, ntidigits=td, splits=3, n_seeds=2, protocol=FAST,
                            runs_dir=tmp_path / "runs", cache=tmp_path / "cache")
    r = run_class_splits(cfg, progress=False)
    assert r["n_splits"] == 3 and len(r["per_split"]) == 6
    assert {tuple(x["unseen"]) for x in r["per_split"]} == set(class_splits(cfg))
    for key, s in r["summary"].items():
        block, direction = key.split("/")
        values = np.array([x[f"{key}/top1"] for x in r["per_split"]])
        assert s["mean"] == pytest.approx(values.mean())
        assert s["min"] == values.min() and s["max"] == values.max()
        assert s["share_above_chance"] == pytest.approx(np.mean(values > s["chance"]))
        assert s["chance"] == pytest.approx(0.5 if block == "unseen" else 1 / 7)
    # seen classes are learnt: far above chance on every split (the twins are easy)
    assert r["summary"]["seen/audio_to_image"]["min"] > 0.5
    run = tmp_path / "runs" / r["run_dir"].split("/")[-1]
    assert (run / "class_splits.png").stat().st_size > 10_000
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["n_splits"] == 3
    resolved = tomllib.loads((run / "config.toml").read_text())
    assert resolved["study"]["splits"] == 3 and resolved["seeds"] == [0, 1]
    assert "numpy" in resolved["versions"]
    again_cfg = ClassSplitsConfig.from_toml(run / "config.toml")
    assert again_cfg.protocol == FAST and again_cfg.nmnist == str(nm.resolve())
    text = format_class_splits(r)
    assert "unseen/audio -> image" in text and "worst split" in text
    # the same study again comes from the feature cache and gives the same numbers
    again = run_class_splits(cfg, progress=False)
    assert [x["unseen/audio_to_image/top1"] for x in again["per_split"]] == \
        [x["unseen/audio_to_image/top1"] for x in r["per_split"]]


@pytest.mark.parametrize("argv, message", [
    (["--splits", "37"], "splits must be <= 36"),
    (["--splits", "some"], "argument --splits"),
    (["--nmnist", "x"], "give --nmnist and --ntidigits together"),
    (["--n-unseen", "7"], "n_unseen must be <= 5"),
    (["--config", "nosuch.toml"], "nosuch.toml"),
])
def test_cli_user_errors(argv, message, capsys, tmp_path):
    from lsm.cli import main

    assert main(["study", "splits", "--runs", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_cli_refuses_an_unknown_key_in_the_config(tmp_path, capsys):
    from lsm.cli import main

    bad = tmp_path / "bad.toml"
    bad.write_text('[study]\nstudy = "splits"\nsplits = 3\n[study.protocol]\nepoch = 5\n')
    assert main(["study", "splits", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "protocol: unknown key(s) ['epoch']" in err and "bad.toml" in err


def test_the_shipped_config_loads():
    from pathlib import Path

    cfg = ClassSplitsConfig.from_toml(Path(__file__).parents[1] / "examples" / "configs"
                                      / "study_splits.toml")
    assert cfg.splits == "all" and len(class_splits(cfg)) == 36 and cfg.protocol.epochs == 100


@pytest.mark.slow
def test_cli_end_to_end(twins, tmp_path, capsys):
    from lsm.cli import main

    nm, td = twins
    assert main(["study", "splits", "--nmnist", str(nm), "--ntidigits", str(td), "--splits",
                 "2", "--epochs", "4", "--runs", str(tmp_path / "runs"), "--no-progress",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_splits"] == 2 and "per_split" not in out
    assert out["summary"]["unseen/audio_to_image"]["n"] == 2
