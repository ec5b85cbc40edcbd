"""Contrastive losses, heads, metrics, the zero-shot protocol, readouts, train-cost bench."""

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import load_script

from lsm import LSM, LSMConfig
from lsm.contrastive import (
    ModalityData,
    ProjectionHead,
    Temperature,
    ZeroShotConfig,
    clip_loss,
    cwcl_loss,
    evaluate,
    fit,
    retrieval,
    retrieval_chance,
    soft_clip_loss,
    supcon_loss,
    zeroshot_protocol,
)
from lsm.contrastive.metrics import prototype_classification, versus_chance
from lsm.contrastive.zeroshot import SELECTIONS, class_folds, train_heads
from lsm.weights import ArrayWeights


# ---------------------------------------------------------------- slow references
def _log_softmax_row(row):
    m = max(row)
    lse = m + math.log(sum(math.exp(v - m) for v in row))
    return [v - lse for v in row]


def _dot(u, v):
    return sum(x * y for x, y in zip(u, v, strict=True))


def ref_clip(a, b, t):
    n = len(a)
    s = [[_dot(a[i], b[j]) / t for j in range(n)] for i in range(n)]
    st = [[s[j][i] for j in range(n)] for i in range(n)]
    la = -sum(_log_softmax_row(s[i])[i] for i in range(n)) / n
    lb = -sum(_log_softmax_row(st[i])[i] for i in range(n)) / n
    return (la + lb) / 2


def ref_soft_clip(a, b, t):
    n = len(a)
    s = [[_dot(a[i], b[j]) / t for j in range(n)] for i in range(n)]
    q_raw = [[(_dot(a[i], a[j]) + _dot(b[i], b[j])) / 2 * t for j in range(n)] for i in range(n)]
    q = [[math.exp(v) for v in _log_softmax_row(r)] for r in q_raw]
    lb = sum(-sum(q[i][j] * _log_softmax_row(s[i])[j] for j in range(n)) for i in range(n)) / n
    st = [[s[j][i] for j in range(n)] for i in range(n)]
    la = sum(-sum(q[j][i] * _log_softmax_row(st[i])[j] for j in range(n)) for i in range(n)) / n
    return (la + lb) / 2


def ref_cwcl(a, b, t):
    def one(x, y):
        n = len(x)
        tot = 0.0
        for i in range(n):
            nx = [v / math.sqrt(_dot(x[i], x[i])) for v in x[i]]
            w = [(1 + _dot(nx, [v / math.sqrt(_dot(x[j], x[j])) for v in x[j]])) / 2
                 for j in range(n)]
            lp = _log_softmax_row([_dot(x[i], y[j]) / t for j in range(n)])
            tot += -sum(w[j] * lp[j] for j in range(n)) / sum(w)
        return tot / n
    return (one(a, b) + one(b, a)) / 2


def ref_supcon(a, b, labels, t):
    def one(x, y):
        n = len(x)
        tot = 0.0
        for i in range(n):
            lp = _log_softmax_row([_dot(x[i], y[j]) / t for j in range(n)])
            pos = [j for j in range(n) if labels[j] == labels[i]]
            tot += -sum(lp[j] for j in pos) / len(pos)
        return tot / n
    return (one(a, b) + one(b, a)) / 2


@pytest.fixture
def emb():
    g = torch.Generator().manual_seed(0)
    a = F.normalize(torch.randn(7, 5, generator=g, dtype=torch.float64), dim=1)
    b = F.normalize(torch.randn(7, 5, generator=g, dtype=torch.float64), dim=1)
    labels = torch.tensor([0, 1, 0, 2, 1, 0, 2])
    return a, b, labels


@pytest.mark.parametrize("t", [0.1, 1.0, 3.0])
def test_losses_match_slow_references(emb, t):
    a, b, labels = emb
    al, bl = a.tolist(), b.tolist()
    assert float(clip_loss(a, b, t)) == pytest.approx(ref_clip(al, bl, t), rel=1e-10)
    assert float(soft_clip_loss(a, b, t)) == pytest.approx(ref_soft_clip(al, bl, t), rel=1e-10)
    assert float(cwcl_loss(a, b, t)) == pytest.approx(ref_cwcl(al, bl, t), rel=1e-10)
    assert float(supcon_loss(a, b, labels, t)) == pytest.approx(
        ref_supcon(al, bl, labels.tolist(), t), rel=1e-10)


def test_supcon_with_unique_labels_is_clip(emb):
    a, b, _ = emb
    assert float(supcon_loss(a, b, torch.arange(7), 0.5)) == pytest.approx(
        float(clip_loss(a, b, 0.5)), rel=1e-12)


def test_cwcl_gradient_treats_weights_as_constants(emb):
    """CWCL's weights are detached: its gradient is the gradient of the same formula with the
    weights frozen, which gradcheck verifies numerically."""
    a0, b0, _ = emb

    def weights(x):
        xn = F.normalize(x, dim=-1)
        return (1 + xn @ xn.T) / 2

    wa, wb = weights(a0), weights(b0)

    def frozen(x, y, t):
        def one(x, y, w):
            lp = F.log_softmax(x @ y.T / t, dim=-1)
            return (-(w * lp).sum(1) / w.sum(1)).mean()
        return 0.5 * (one(x, y, wa) + one(y, x, wb))

    a = a0.clone().requires_grad_(True)
    b = b0.clone().requires_grad_(True)
    t = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(frozen, (a, b, t), eps=1e-6, atol=1e-6)
    got = torch.autograd.grad(cwcl_loss(a, b, t), (a, b, t))
    want = torch.autograd.grad(frozen(a, b, t), (a, b, t))
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w)


@pytest.mark.parametrize("name", ["clip", "soft_clip", "supcon"])
def test_loss_gradients(emb, name):
    a, b, labels = emb
    a = a.clone().requires_grad_(True)
    b = b.clone().requires_grad_(True)
    t = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    fn = {"clip": lambda x, y, t: clip_loss(x, y, t),
          "soft_clip": lambda x, y, t: soft_clip_loss(x, y, t),
          "cwcl": lambda x, y, t: cwcl_loss(x, y, t),
          "supcon": lambda x, y, t: supcon_loss(x, y, labels, t)}[name]
    assert torch.autograd.gradcheck(fn, (a, b, t), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("t", [0.0, -1.0, float("nan"), float("inf")])
def test_temperature_must_be_positive(emb, t):
    a, b, _ = emb
    with pytest.raises(ValueError, match="temperature must be finite and > 0"):
        clip_loss(a, b, t)
    with pytest.raises(ValueError, match="temperature"):
        Temperature(t)
    with pytest.raises(ValueError, match="temperature"):
        ZeroShotConfig(temperatures=(t,))


def test_learnable_temperature_stays_positive():
    temp = Temperature(0.5, learnable=True)
    opt = torch.optim.SGD(temp.parameters(), lr=10.0)
    for _ in range(5):
        loss = temp() * 100
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(temp().detach()) == pytest.approx(Temperature.T_MIN)  # clamped, not 0
    temp = Temperature(0.5, learnable=True)
    opt = torch.optim.SGD(temp.parameters(), lr=0.01)
    (temp() * 1.0).backward()
    opt.step()
    assert 0.01 < float(temp().detach()) < 0.5
    assert len(list(Temperature(1.0).parameters())) == 0


def test_heads():
    x = torch.randn(4, 200)
    for n_layers in range(4):
        h = ProjectionHead(200, 64, n_layers=n_layers)
        z = h(x)
        assert z.shape == (4, 64)
        torch.testing.assert_close(z.norm(dim=1), torch.ones(4))
    assert ProjectionHead(200, 64, 1).macs_per_sample() == 200 * 64
    assert ProjectionHead(200, 64, 2, hidden_dim=32).macs_per_sample() == 200 * 32 + 32 * 64
    assert not torch.allclose(ProjectionHead(200, 8, normalize=False)(x).norm(dim=1),
                              torch.ones(4))
    with pytest.raises(ValueError, match="n_layers"):
        ProjectionHead(200, 64, n_layers=4)


# ---------------------------------------------------------------- metrics
def test_retrieval_and_chance():
    q = np.array([[1.0, 0.0], [0.0, 1.0]])
    g = np.array([[0.9, 0.1], [0.1, 0.9], [0.2, 0.8]])
    r = retrieval(q, np.array([0, 1]), g, np.array([0, 1, 1]), ks=(1,))
    assert r["top1"] == 1.0
    r = retrieval(q, np.array([1, 0]), g, np.array([0, 1, 1]), ks=(1, 2, 3))
    # query 0 (label 1) finds its class second; query 1 (label 0) only third
    assert (r["top1"], r["top2"], r["top3"]) == (0.0, 0.5, 1.0)
    # chance agrees with random rankings (fixed seed; 20,000 draws: SE ~ 0.0035)
    rng = np.random.default_rng(0)
    gl = np.array([0] * 5 + [1] * 15 + [2] * 30)
    ql = np.array([0, 1, 2, 2])
    ch = retrieval_chance(ql, gl, ks=(1, 5))
    sims = [retrieval(rng.normal(size=(4, 3)), ql, rng.normal(size=(50, 3)), gl, ks=(1, 5))
            for _ in range(5000)]
    for k in ("top1", "top5"):
        assert abs(np.mean([s[k] for s in sims]) - ch[k]) < 0.015


def test_prototype_classification():
    g = np.array([[1.0, 0.0], [0.8, 0.2], [0.0, 1.0]])
    p = prototype_classification(np.array([[1.0, 0.1], [0.1, 1.0]]), np.array([3, 5]), g,
                                 np.array([3, 3, 5]))
    assert p["accuracy"] == 1.0 and p["chance"] == 0.5 and p["confusion"] == [[1, 0], [0, 1]]


# ---------------------------------------------------------------- the protocol
def latent_modalities(seed=0, n_per_class=40, noise=0.05, dim=6, classes=range(10)):
    """Features generated from class vectors shared by both modalities through different
    random linear maps: zero-shot transfer is possible here, by construction."""
    rng = np.random.default_rng(seed)
    proto = {c: rng.normal(size=dim) for c in classes}
    mv, ma = rng.normal(size=(dim, 30)), rng.normal(size=(dim, 20))

    def make(m, split_seed, groups_per_class=None):
        r = np.random.default_rng(split_seed)
        labels = np.repeat(list(classes), n_per_class)
        lat = np.stack([proto[c] for c in labels]) + noise * r.normal(size=(len(labels), dim))
        feats = (lat @ m).astype(np.float32)
        groups = None if groups_per_class is None else \
            np.tile(np.arange(n_per_class) % groups_per_class, len(list(classes)))
        return feats, labels, groups

    def data(split_seed):
        fv, lv, _ = make(mv, split_seed)
        fa, la, ga = make(ma, split_seed + 100, groups_per_class=10)
        return ModalityData("vision", fv, lv), ModalityData("audio", fa, la, ga)
    return data(1), data(2)


FAST = ZeroShotConfig(epochs=40, embed_dims=(16,), temperatures=(0.1,), n_layers=0)


def test_versus_chance_matches_scipy_and_handles_edge_cases():
    from scipy import stats

    v = [0.7, 0.55, 0.62, 0.48]
    r = versus_chance(v, 0.5)
    ref = stats.ttest_1samp(v, 0.5, alternative="greater")
    assert r["p_above_chance"] == pytest.approx(ref.pvalue, rel=1e-9)
    ci = stats.t.interval(0.95, df=3, loc=np.mean(v), scale=stats.sem(v))
    assert r["ci95"] == pytest.approx(list(ci), rel=1e-9)
    assert r["n"] == 4 and r["above_chance"] == (ref.pvalue < 0.05)
    one = versus_chance([0.9], 0.5)
    assert one["p_above_chance"] is None and one["ci95"] is None and not one["above_chance"]
    assert versus_chance([1.0, 1.0, 1.0], 0.5)["above_chance"]
    assert versus_chance([0.5, 0.5], 0.5)["p_above_chance"] == 1.0
    top = versus_chance([0.99, 0.9, 1.0], 0.5)
    assert top["ci95"][1] == 1.0 and versus_chance([0.99, 0.9, 1.0], 0.5, bounds=None)[
        "ci95"][1] > 1.0
    for bad in ([], [0.5, float("nan")], [[0.5]]):
        with pytest.raises(ValueError, match="values"):
            versus_chance(bad, 0.5)
    with pytest.raises(ValueError, match="alpha"):
        versus_chance([0.5, 0.6], 0.5, alpha=0)


def test_versus_chance_error_rates():
    """Over 4,000 simulated 5-seed studies (fixed seed): at chance the test says "above" in
    5 % of them and the 95 % interval covers the true mean in 95 %, each within +-1.5 points
    (4.5 binomial standard errors); a 15-point effect with a 5-point spread is found almost
    always."""
    rng = np.random.default_rng(7)
    null = [versus_chance(rng.normal(0.5, 0.1, 5), 0.5) for _ in range(4000)]
    false_positive = np.mean([r["above_chance"] for r in null])
    coverage = np.mean([r["ci95"][0] <= 0.5 <= r["ci95"][1] for r in null])
    assert abs(false_positive - 0.05) < 0.015
    assert abs(coverage - 0.95) < 0.015
    power = np.mean([versus_chance(rng.normal(0.65, 0.05, 5), 0.5)["above_chance"]
                     for _ in range(500)])
    assert power > 0.98


@pytest.mark.parametrize("selection", SELECTIONS)
def test_protocol_detects_transfer_when_it_exists(selection):
    (tv, ta), (ev, ea) = latent_modalities()
    cfg = dataclasses.replace(FAST, selection=selection)
    res = zeroshot_protocol(tv, ta, ev, ea, cfg, seed=0)
    m = res["metrics"]
    for d in ("audio_to_image", "image_to_audio"):
        assert m["seen"][d]["top1"] > 0.9
        assert m["unseen"][d]["top1"] > m["unseen"][d]["top1_chance"] + 0.3
        assert m["unseen"][d]["top1_chance"] == pytest.approx(0.5)
    assert res["selected"]["embed_dim"] == 16 and res["model"].selection == selection
    if selection == "seen_samples":
        assert res["sizes"]["val_audio"] > 0
    else:
        folds = res["sizes"]["class_folds"]
        assert sorted(c for f in folds for c in f) == list(range(1, 8))
        assert len(folds) == FAST.n_class_folds and min(len(f) for f in folds) >= 2
        best = res["model"].candidates[0]
        assert res["selected"]["best_epoch"] == best["best_epoch"]
        assert best["val_score"] == max(best["val_curve"])


def test_zeroshot_cli_options_reach_the_config():
    from lsm.cli import build_parser
    from lsm.cli.experiments import zeroshot_protocol_config

    args = build_parser().parse_args(["zeroshot", "--nmnist", "a", "--ntidigits", "b",
                                      "--selection", "seen-samples", "--class-folds", "2",
                                      "--temperatures", "0.1,1", "--unseen", "0,8,9"])
    cfg = zeroshot_protocol_config(args)
    assert cfg.selection == "seen_samples" and cfg.n_class_folds == 2
    assert cfg.temperatures == (0.1, 1.0) and cfg.unseen == (0, 8, 9)
    assert cfg.seen == (1, 2, 3, 4, 5, 6, 7)
    default = zeroshot_protocol_config(build_parser().parse_args(
        ["zeroshot", "--nmnist", "a", "--ntidigits", "b"]))
    assert default.selection == "held_out_classes" and default.n_class_folds == 3


def test_held_out_class_selection_settings():
    with pytest.raises(ValueError, match=r"n_class_folds must be in \[2, 3\]"):
        ZeroShotConfig(n_class_folds=4)
    with pytest.raises(ValueError, match="selection must be one of"):
        ZeroShotConfig(selection="test")
    ZeroShotConfig(selection="seen_samples", n_class_folds=9)  # folds unused: accepted
    (tv, ta), _ = latent_modalities()
    with pytest.raises(ValueError, match="needs validation data"):
        train_heads(tv, ta, None, None, FAST, 16, 0.1, 0)
    with pytest.raises(ValueError, match=r"keep_epoch must be in \[0, 40\)"):
        train_heads(tv, ta, None, None, FAST, 16, 0.1, 0, keep_epoch=40)
    short = dataclasses.replace(FAST, epochs=3)
    m = train_heads(tv, ta, None, None, short, 16, 0.1, 0, keep_epoch=1)
    assert m.best_epoch == 1 and len(m.curves["loss"]) == 3 and m.curves["val"] == []
    folds = class_folds(range(1, 8), 3, np.random.default_rng(0))
    assert [len(f) for f in folds] == [3, 2, 2] and sorted(sum(folds, ())) == list(range(1, 8))


def test_validation_speakers_are_held_out_whole():
    from lsm.contrastive.zeroshot import split_validation

    (_, ta), _ = latent_modalities()
    tr, va = split_validation(ta.classes(range(1, 8)), 0.2, np.random.default_rng(0))
    for c in range(1, 8):
        assert not set(tr.groups[tr.labels == c]) & set(va.groups[va.labels == c])


@pytest.mark.parametrize("selection", SELECTIONS)
def test_test_split_is_not_read_before_the_final_evaluation(selection):
    """Poison the test features: training, selection and curves must not change."""
    (tv, ta), (ev, ea) = latent_modalities()
    cfg = dataclasses.replace(FAST, selection=selection)
    clean = zeroshot_protocol(tv, ta, ev, ea, cfg, seed=3)
    rng = np.random.default_rng(9)
    pv = ModalityData("vision", rng.normal(size=ev.features.shape) * 1e3, ev.labels)
    pa = ModalityData("audio", rng.normal(size=ea.features.shape) * 1e3, ea.labels, ea.groups)
    poisoned = zeroshot_protocol(tv, ta, pv, pa, cfg, seed=3)
    assert clean["model"].curves == poisoned["model"].curves
    assert clean["selected"] == poisoned["selected"]
    for k, v in clean["model"].vision.state_dict().items():
        torch.testing.assert_close(v, poisoned["model"].vision.state_dict()[k])
    assert clean["metrics"] != poisoned["metrics"]  # the test data itself was used at the end


def test_bad_inputs_are_refused_before_training():
    (tv, ta), (ev, ea) = latent_modalities()
    nan = tv.features.copy()
    nan[5, 2] = np.nan
    with pytest.raises(ValueError, match=r"vision features: row 5, column 2 is nan"):
        fit(ModalityData("vision", nan, tv.labels), ta, FAST)
    no3 = ta.subset(ta.labels != 3)
    with pytest.raises(ValueError, match=r"audio: no samples of class\(es\) \[3\]"):
        fit(tv, no3, FAST)
    other = ModalityData("audio", ta.features, ta.labels + 100, ta.groups)
    with pytest.raises(ValueError, match="share no class"):
        fit(tv, other, FAST)
    with pytest.raises(ValueError, match=r"unseen classes \[7\] also appear in training"):
        ZeroShotConfig(unseen=(7, 8))
    model, _ = fit(tv, ta, FAST)
    with pytest.raises(ValueError, match=r"no samples of class\(es\) \[9\]"):
        evaluate(model, ev.subset(ev.labels != 9), ea, FAST)


# ---------------------------------------------------------------- readouts
def test_readouts_early_stopping_and_test_isolation():
    from lsm.readout import ReadoutConfig, fit_readout, train_and_test

    (tv, _), (ev, _) = latent_modalities(noise=0.5)
    for kind in ("linear", "mlp", "probe"):
        cfg = ReadoutConfig(kind=kind, epochs=200, patience=15)
        res = train_and_test(tv.features, tv.labels, ev.features, ev.labels, cfg, seed=0)
        assert res["test_accuracy"] > 0.8, kind
        assert res["chance"] == pytest.approx(0.1)
    r = fit_readout(tv.features, tv.labels, ReadoutConfig(epochs=300, patience=10))
    assert len(r.curves["val"]) <= r.best_epoch + 11  # stopped after `patience` epochs
    assert r.val_accuracy == max(r.curves["val"])
    bad = ev.features.copy()
    bad[0, 0] = np.inf
    with pytest.raises(ValueError, match="test: features row 0, column 0 is inf"):
        train_and_test(tv.features, tv.labels, bad, ev.labels)


# ---------------------------------------------------------------- CLI on tiny twins
@pytest.fixture(scope="module")
def twins(tmp_path_factory):
    from lsm.data.twin_nmnist import make_nmnist_twin
    from lsm.data.twin_ntidigits import make_ntidigits_twin

    root = tmp_path_factory.mktemp("zs")
    make_nmnist_twin(root / "nm", n_train=160, n_test=60, seed=2, progress=False)
    make_ntidigits_twin(root / "td.hdf5", n_speakers=12, seed=2, progress=False)
    return root


def test_zeroshot_cli_writes_a_run_directory(twins, tmp_path, capsys):
    from lsm.cli import main

    assert main(["zeroshot", "--nmnist", str(twins / "nm"), "--ntidigits",
                 str(twins / "td.hdf5"), "--n-seeds", "2", "--epochs", "5", "--runs",
                 str(tmp_path), "--json", "--no-progress"]) == 0
    out = json.loads(capsys.readouterr().out)
    run = tmp_path / out["run_dir"].split("/")[-1]
    for f in ("metrics.json", "config.toml", "training_curves.png", "similarity_matrix.png",
              "confusion_matrix.png", "embedding_pca.png"):
        assert (run / f).exists(), f
    m = json.loads((run / "metrics.json").read_text())
    assert len(m["per_seed"]) == 2
    s = out["summary"]["unseen/audio_to_image/top1"]
    assert s["n"] == 2 and s["chance"] == pytest.approx(0.5, abs=0.1)
    assert s["ci95"][0] <= s["mean"] <= s["ci95"][1] and 0 <= s["p_above_chance"] <= 1


def test_train_cli(twins, tmp_path, capsys):
    from lsm.cli import main

    assert main(["train", "--ntidigits", str(twins / "td.hdf5"), "--runs", str(tmp_path),
                 "--json", "--no-progress"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["data"] == "offline twin" and r["paper_accuracy"] == pytest.approx(0.7079)
    assert r["test_accuracy"]["mean"] > r["chance"]


def test_train_cost_bench_small(twins):
    from lsm.bench.train_cost import bench_train_cost, format_train_cost

    cfg = ZeroShotConfig(epochs=5)
    r = bench_train_cost(twins / "nm", twins / "td.hdf5", cfg, max_srnn_epochs=2,
                         max_srnn_seconds=60, progress=False)
    lsm, srnn = r["lsm"], r["srnn"]
    # the documented counts with the paper's sizes written out, not the result's own sums:
    # vision 256 -> 200 over 50 bins, audio 64 -> 200 over 129 bins, two 200 -> 64 heads
    n_v, n_a = r["samples"]["vision"], r["samples"]["audio"]
    pairs = r["samples"]["pairs_per_epoch"]
    dense_v, dense_a = 50 * (256 * 200 + 200 * 200), 129 * (64 * 200 + 200 * 200)
    assert (dense_v, dense_a) == (4_560_000, 6_811_200)
    heads = 2 * 200 * 64
    assert lsm["encode_dense_equivalent_macs"] == n_v * dense_v + n_a * dense_a
    assert 0 < lsm["encode_macs"] < lsm["encode_dense_equivalent_macs"]  # sparse events
    lsm_train = 3 * heads * pairs * lsm["epochs_to_target"]  # forward + ~2x backward
    assert lsm["train_macs"] == lsm_train
    assert lsm["total_macs"] == lsm["encode_macs"] + lsm_train
    trained = pairs - (pairs % cfg.batch_size == 1)  # a last batch of one pair is skipped
    srnn_train = srnn["epochs"] * trained * 3 * (dense_v + dense_a + heads)
    assert srnn["train_macs"] == srnn_train
    assert r["ratio_macs"] == pytest.approx(srnn_train / (lsm["encode_macs"] + lsm_train))
    assert srnn["epochs"] >= 1 and len(srnn["val_curve"]) == srnn["epochs"]
    assert "ratio (RNN / LSM)" in format_train_cost(r)


def _tiny_reservoir():
    """2 inputs -> 3 neurons, no leak (decay 0), threshold 0.5: input c drives neuron c to 1.0,
    the recurrent synapses 0 -> 1, 0 -> 2 and 1 -> 2 carry 0.1 (never enough to fire a neuron),
    so the spikes can be read off the raster by hand. Fan-out: 2, 1, 0."""
    w_in = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    w_rec = np.array([[0.0, 0.1, 0.1], [0.0, 0.0, 0.1], [0.0, 0.0, 0.0]])
    cfg = LSMConfig(n_inputs=2, n_neurons=3, n_bins=4, decay=0.0, v_th=0.5)
    return LSM(cfg, weights=ArrayWeights(w_in, w_rec))


def _kernel_adds(lsm, raster):
    """Adds an event-driven LIF loop makes, counted one by one: at bin t, a row of w_in (N adds)
    per input event and a row of w_rec (its non-zero synapses) per spike of bin t - 1. The loop's
    own spike counts must be the LSM's, or the count is of another network."""
    c = lsm.config
    adds, counts = 0, []
    for sample in raster:
        u, fired = np.zeros(c.n_neurons), np.zeros(c.n_neurons, bool)
        spikes = np.zeros(c.n_neurons, int)
        for t in range(c.n_bins):
            current = np.zeros(c.n_neurons)
            for ch in np.flatnonzero(sample[t]):
                for i in range(c.n_neurons):
                    current[i] += lsm.w_in[ch, i]
                    adds += 1
            for j in np.flatnonzero(fired):
                for i in np.flatnonzero(lsm.w_rec[j]):
                    current[i] += lsm.w_rec[j, i]
                    adds += 1
            u = c.decay * u * ~fired + current
            fired = u > c.v_th
            spikes += fired
        counts.append(spikes)
    np.testing.assert_array_equal(lsm.encode(raster, features="counts", progress=False), counts)
    return adds


def test_event_driven_macs_counted_by_hand():
    from lsm.bench.train_cost import SpikingEncoder, _event_driven_macs

    lsm = _tiny_reservoir()
    raster = np.zeros((2, 4, 2), np.uint8)
    raster[0, 0, 0] = raster[0, 1, 0] = raster[0, 1, 1] = 1  # neuron 0 fires twice, 1 once
    raster[1, 0, 1] = raster[1, 2, 0] = raster[1, 2, 1] = 1  # neuron 0 once, 1 twice
    events = lsm.to_events(raster)
    counts = lsm.encode(events, features="counts", progress=False)
    np.testing.assert_array_equal(counts, [[2, 1, 0], [1, 2, 0]])
    # 6 events x 3 neurons + (3 spikes of neuron 0 x fan-out 2 + 3 of neuron 1 x 1)
    spikes = lsm.encode(events, features="binned", progress=False)
    assert _event_driven_macs(lsm, events, spikes) == 6 * 3 + 3 * 2 + 3 * 1 == 27
    assert _kernel_adds(lsm, raster) == 27
    # dense: every bin multiplies the whole input and recurrent matrices, 4 x (2x3 + 3x3)
    assert SpikingEncoder.macs_per_sample_for(lsm.config) == 60
    assert SpikingEncoder.macs_per_sample_for(LSMConfig()) == 4_560_000  # the paper's N-MNIST


def test_event_driven_macs_skip_the_last_bins_spikes():
    """A spike of the last bin has no next bin to add its recurrent row to (once overcounted)."""
    from lsm.bench.train_cost import _event_driven_macs

    lsm = _tiny_reservoir()
    raster = np.zeros((1, 4, 2), np.uint8)
    raster[0, 3, 0] = 1  # neuron 0 fires in the last bin: its 2 synapses are never added
    events = lsm.to_events(raster)
    spikes = lsm.encode(events, features="binned", progress=False)
    assert _kernel_adds(lsm, raster) == 3
    assert _event_driven_macs(lsm, events, spikes) == 3


def test_selection_bias_example(twins, tmp_path, capsys):
    """The test curve the spy records is the one the protocol's model walks along: its value at
    the validation-selected epoch is the honest number, its maximum the biased one."""
    mod = load_script("examples/selection_bias.py")
    r = mod.main(["--nmnist", str(twins / "nm"), "--ntidigits", str(twins / "td.hdf5"),
                  "--workdir", str(tmp_path), "--n-seeds", "2", "--epochs", "6",
                  "--no-progress"])
    for p in r["per_seed"]:
        assert len(p["test_curve"]) == 6
        assert p["honest"] == pytest.approx(p["test_curve"][p["honest_epoch"]])
        assert p["test_selected"] == pytest.approx(max(p["test_curve"]))
        assert p["test_selected"] >= p["honest"]
    assert r["test_selected"]["mean"] >= r["validation_selected"]["mean"]
    assert r["data"] == {"nmnist": "offline twin", "ntidigits": "offline twin"}
    assert (tmp_path / "runs" / "selection_bias.png").exists()
    assert "best epoch on the test set (biased)" in capsys.readouterr().out
    # several candidates (0.1 is not a float32 number): the spy follows the selected one
    cfg = ZeroShotConfig(epochs=4, temperatures=(0.1, 1.0), selection="seen_samples")
    r = mod.selection_bias(twins / "nm", twins / "td.hdf5", 1, cfg, progress=False)
    p = r["per_seed"][0]
    assert p["honest"] == pytest.approx(p["test_curve"][p["honest_epoch"]])
