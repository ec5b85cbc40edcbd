"""What 16-bit weight codes (``LSMConfig.weight_format = "int16"``) do to accuracy.

For each seed (a fresh reservoir weight draw) the same preprocessed event streams are encoded
twice, with float32 weights and with their int16 codes, and the same readout (same seed, same
validation split) is fitted on each; the test split is scored once per format. Printed: test
accuracy per format (mean +- std over seeds), the paired difference int16 - float32 per seed,
and how many spike-count features the two formats share.

    python benchmarks/weight_codes_accuracy.py --nmnist DIR [--n-seeds 5] [--features windows]
        [--readout linear] [--n-neurons 200] [--p-rec 1.0] [--json]

``DIR`` is an N-MNIST folder (the real one, or an offline twin: ``lsm data make-twin --nmnist
DIR``); ``--ntidigits FILE`` works the same way.
"""

import argparse
import json

import numpy as np

from lsm import LSM
from lsm.data.registry import dataset_spec, load_split
from lsm.features import counts_to_features
from lsm.readout import ReadoutConfig, train_and_test
from lsm.runs import mean_std
from lsm.torch_backend import torch_threads


def main(dataset: str, path: str, n_seeds: int = 5, features: str = "windows",
         readout: str = "linear", n_windows: int = 5, overrides: dict | None = None,
         progress: bool = False) -> dict:
    spec = dataset_spec(dataset)
    base = spec.lsm_config(**(overrides or {}))
    train, test = (load_split(dataset, path, split, n_bins=base.n_bins, progress=progress)
                   for split in ("train", "test"))
    rcfg = ReadoutConfig(kind=readout)
    acc = {"float32": [], "int16": []}
    counts_equal, samples_equal = [], []
    for seed in range(n_seeds):
        windows = {}
        for fmt in acc:
            lsm = LSM(base.replace(seed=seed, weight_format=fmt))
            x = {split: lsm.encode(s.events, features="windows", n_windows=n_windows,
                                   progress=progress)
                 for split, s in (("train", train), ("test", test))}
            windows[fmt] = x
            feats = {k: (v if features == "windows" else
                         counts_to_features(v.reshape(len(v), n_windows, -1).sum(1)[:, None],
                                            features, base.n_bins))
                     for k, v in x.items()}
            with torch_threads(1):
                r = train_and_test(feats["train"], train.labels, feats["test"], test.labels,
                                   rcfg, seed, train.groups)
            acc[fmt].append(r["test_accuracy"])
        a, b = windows["float32"]["test"], windows["int16"]["test"]
        counts_equal.append(float((a == b).mean()))
        samples_equal.append(float((a == b).all(axis=1).mean()))
    diff = np.subtract(acc["int16"], acc["float32"])
    return {"dataset": dataset, "n_train": len(train.labels), "n_test": len(test.labels),
            "features": features, "n_windows": n_windows, "readout": readout,
            "overrides": overrides or {}, "n_seeds": n_seeds,
            "test_accuracy": {k: mean_std(v) for k, v in acc.items()},
            "per_seed": {k: [float(x) for x in v] for k, v in acc.items()},
            "int16_minus_float32": {"mean": float(diff.mean()),
                                    "std": float(diff.std(ddof=1)) if n_seeds > 1 else 0.0,
                                    "per_seed": diff.tolist()},
            "test_window_counts_equal": float(np.mean(counts_equal)),
            "test_samples_identical": float(np.mean(samples_equal))}


def _format(r: dict) -> str:
    lines = [f"{r['dataset']}: {r['n_train']} train / {r['n_test']} test, {r['readout']} readout "
             f"on {r['features']} features, {r['n_seeds']} seeds, overrides {r['overrides']}"]
    for fmt, ms in r["test_accuracy"].items():
        per = ", ".join(f"{x:.3f}" for x in r["per_seed"][fmt])
        lines.append(f"  {fmt:<8} test accuracy {ms['mean']:.4f} +- {ms['std']:.4f}  ({per})")
    d = r["int16_minus_float32"]
    lines.append(f"  int16 - float32, paired by seed: {d['mean']:+.4f} +- {d['std']:.4f}")
    lines.append(f"  test features (window counts) equal: {r['test_window_counts_equal']:.4f}; "
                 f"samples with all features equal: {r['test_samples_identical']:.3f}")
    return "\n".join(lines)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--nmnist", metavar="DIR")
    g.add_argument("--ntidigits", metavar="FILE")
    p.add_argument("--n-seeds", type=int, default=5)
    p.add_argument("--features", choices=["windows", "rates", "counts"], default="windows")
    p.add_argument("--readout", choices=["linear", "mlp", "probe"], default="linear")
    p.add_argument("--n-neurons", type=int, default=None)
    p.add_argument("--p-rec", type=float, default=None)
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    over = {k: v for k, v in (("n_neurons", a.n_neurons), ("p_rec", a.p_rec)) if v is not None}
    res = main("nmnist" if a.nmnist else "ntidigits", a.nmnist or a.ntidigits, a.n_seeds,
               a.features, a.readout, overrides=over)
    print(json.dumps(res) if a.json else _format(res))
