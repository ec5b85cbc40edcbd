"""``lsm bench train-cost``: training cost of the LSM pipeline against a trainable spiking RNN.

Both pipelines learn the same thing from the same data: contrastive vision/audio embeddings on the
seen classes, selected on the same validation split. The LSM pipeline encodes every training
sample once with the fixed reservoirs and then trains only the two projection heads; the baseline
is a recurrent spiking encoder of the same size per modality (n_inputs -> n_neurons LIF with
recurrence, snntorch Leaky neurons, initialised like the LSM), trained end to end with the heads by
backpropagation through time with a surrogate gradient. The baseline trains until its validation
score reaches the best score of the LSM pipeline (or its budget runs out, which is reported).

How the cost is counted (multiply-accumulates, MACs):

* LSM encoding, once per training sample: one add per input event per neuron plus one per
  recurrent synapse of each spike (the event-driven kernel's work; counted from the data), and,
  for reference, the dense equivalent ``T * (n_in * N + N * N)``;
* training a network on one pair: forward MACs of every dense layer it runs, times 3 (forward,
  and about twice that for the backward pass: gradients with respect to inputs and weights);
  for the SRNN the forward MACs per sample are ``T * (n_in * N + N * N)`` per encoder, for both
  pipelines plus the heads' ``in * out``;
* validation passes are not counted (both pipelines run the same validation).

Wall-clock time is measured around the same phases, in one run, on the same machine.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from lsm.config import LSMConfig
from lsm.contrastive.heads import ProjectionHead
from lsm.contrastive.losses import LOSSES
from lsm.contrastive.metrics import retrieval_top1_both_ways
from lsm.contrastive.zeroshot import (
    ModalityData,
    ZeroShotConfig,
    epoch_pairs,
    train_heads,
    validation_mask,
)

__all__ = ["SpikingEncoder", "bench_train_cost", "format_train_cost"]


class SpikingEncoder(nn.Module):
    """A trainable recurrent LIF encoder: ``I_t = x_t W_in + s_{t-1} W_rec``, snntorch Leaky
    neurons (zero reset), surrogate-gradient spikes; output: firing rates."""

    def __init__(self, cfg: LSMConfig, w_in: np.ndarray, w_rec: np.ndarray) -> None:
        super().__init__()
        import snntorch
        from snntorch import surrogate

        self.w_in = nn.Parameter(torch.from_numpy(np.array(w_in, dtype=np.float32)))
        self.w_rec = nn.Parameter(torch.from_numpy(np.array(w_rec, dtype=np.float32)))
        self.lif = snntorch.Leaky(beta=cfg.decay, threshold=cfg.v_th, reset_mechanism="zero",
                                  spike_grad=surrogate.fast_sigmoid(slope=5))
        self.cfg = cfg

    def forward(self, raster: torch.Tensor) -> torch.Tensor:
        b, t_bins, _ = raster.shape
        drive = raster @ self.w_in
        mem = torch.zeros(b, self.cfg.n_neurons)
        spk = torch.zeros(b, self.cfg.n_neurons)
        total = torch.zeros(b, self.cfg.n_neurons)
        for t in range(t_bins):
            spk, mem = self.lif(drive[:, t] + spk @ self.w_rec, mem)
            total = total + spk
        return total / t_bins

    @staticmethod
    def macs_per_sample_for(c: LSMConfig) -> int:
        """Forward MACs of one sample: ``T * (n_in * N + N * N)``."""
        return c.n_bins * (c.n_inputs * c.n_neurons + c.n_neurons * c.n_neurons)

    def macs_per_sample(self) -> int:
        return self.macs_per_sample_for(self.cfg)


def _event_driven_macs(lsm, events, spikes: np.ndarray) -> int:
    """Adds done by the event-driven kernel: N per input event (a row of ``W_in``), plus the
    fan-out of every spike of bins 0 .. T-2 (a row of ``W_rec``, added in the next bin; a spike
    of the last bin has no next bin). ``spikes``: (samples, bins, neurons), binned features."""
    n = lsm.config.n_neurons
    fan_out = (lsm.w_rec != 0).sum(1)
    return int(events.n_events) * n + int((spikes[:, :-1].sum((0, 1)) * fan_out).sum())


def bench_train_cost(nmnist_root, ntidigits_path, cfg: ZeroShotConfig | None = None,
                     seed: int = 0, max_srnn_epochs: int = 40,
                     max_srnn_seconds: float | None = None, max_samples: int | None = None,
                     progress: bool = True) -> dict:
    """Train both pipelines on the same data; return costs and ratios.

    The spiking RNN trains until it reaches the LSM pipeline's validation score or for
    ``max_srnn_epochs`` epochs: its work is bounded by epochs, so the MAC ratio does not depend
    on machine load. ``max_srnn_seconds`` optionally caps its wall-clock time too.
    """
    from lsm.data import dataset_spec, load_split
    from lsm.progress import progress_bar
    from lsm.reservoir import LSM

    cfg = cfg or ZeroShotConfig()
    cfg_v = dataset_spec("nmnist").lsm_config(seed=seed)
    cfg_a = dataset_spec("ntidigits").lsm_config(seed=seed)
    sv = load_split("nmnist", nmnist_root, "train", progress=progress)
    sa = load_split("ntidigits", ntidigits_path, "train", progress=progress)
    keep_v = np.flatnonzero(np.isin(sv.labels, cfg.seen))
    keep_a = np.flatnonzero(np.isin(sa.labels, cfg.seen))
    if max_samples is not None:
        keep_v, keep_a = keep_v[:max_samples], keep_a[:max_samples]
    ev_v, ev_a = sv.events.select(keep_v), sa.events.select(keep_a)
    lab_v, lab_a, spk_a = sv.labels[keep_v], sa.labels[keep_a], sa.groups[keep_a]

    # ---- LSM pipeline: encode once, then train the heads
    lsm_v, lsm_a = LSM(cfg_v), LSM(cfg_a)
    t0 = time.perf_counter()
    spikes_v = lsm_v.encode(ev_v, features="binned", progress=False)
    spikes_a = lsm_a.encode(ev_a, features="binned", progress=False)
    t_encode = time.perf_counter() - t0
    counts_v, counts_a = spikes_v.sum(1, dtype=np.int32), spikes_a.sum(1, dtype=np.int32)
    enc_macs = _event_driven_macs(lsm_v, ev_v, spikes_v) + _event_driven_macs(lsm_a, ev_a,
                                                                             spikes_a)
    enc_dense_macs = (len(lab_v) * SpikingEncoder.macs_per_sample_for(cfg_v)
                      + len(lab_a) * SpikingEncoder.macs_per_sample_for(cfg_a))
    vis = ModalityData("vision", counts_v / cfg_v.n_bins, lab_v)
    aud = ModalityData("audio", counts_a / cfg_a.n_bins, lab_a, spk_a)
    rng = np.random.default_rng(seed)
    val_v = validation_mask(vis, cfg.val_fraction, rng)
    val_a = validation_mask(aud, cfg.val_fraction, rng)
    tv, va, ta, aa = vis.subset(~val_v), vis.subset(val_v), aud.subset(~val_a), aud.subset(val_a)
    t0 = time.perf_counter()
    model = train_heads(tv, ta, va, aa, cfg, cfg.embed_dims[0], cfg.temperatures[0], seed)
    t_heads_all = time.perf_counter() - t0
    target = model.val_score
    epochs_to_target = model.best_epoch + 1
    head_macs = model.vision.macs_per_sample() + model.audio.macs_per_sample()
    pairs_per_epoch = len(epoch_pairs(tv.labels, ta.labels, np.random.default_rng(0))[0])
    lsm_train_macs = 3 * head_macs * pairs_per_epoch * epochs_to_target
    t_heads = t_heads_all * epochs_to_target / cfg.epochs

    # ---- baseline: trainable spiking RNN encoders + the same heads, end to end (BPTT)
    torch.manual_seed(seed)
    enc_v = SpikingEncoder(cfg_v, lsm_v.w_in, lsm_v.w_rec)
    enc_a = SpikingEncoder(cfg_a, lsm_a.w_in, lsm_a.w_rec)
    head_v = ProjectionHead(cfg_v.n_neurons, cfg.embed_dims[0], cfg.n_layers)
    head_a = ProjectionHead(cfg_a.n_neurons, cfg.embed_dims[0], cfg.n_layers)
    params = [*enc_v.parameters(), *enc_a.parameters(), *head_v.parameters(),
              *head_a.parameters()]
    opt = torch.optim.Adam(params, lr=cfg.lr)
    loss_fn = LOSSES[cfg.loss]
    idx_tv, idx_va = np.flatnonzero(~val_v), np.flatnonzero(val_v)
    idx_ta, idx_aa = np.flatnonzero(~val_a), np.flatnonzero(val_a)
    rast_v = torch.from_numpy(ev_v.to_raster(np.float32))
    rast_a = torch.from_numpy(ev_a.to_raster(np.float32))
    srnn_pair_macs = 3 * (enc_v.macs_per_sample() + enc_a.macs_per_sample() + head_macs)
    t_srnn, srnn_macs, best_srnn, reached, epochs = 0.0, 0, -1.0, False, 0
    curve = []
    bar = progress_bar(range(max_srnn_epochs), desc="spiking RNN (BPTT)", disable=not progress)
    for epoch in bar:
        t0 = time.perf_counter()
        vi, ai = epoch_pairs(lab_v[idx_tv], lab_a[idx_ta], rng)
        for lo in range(0, len(vi), cfg.batch_size):
            bv, ba = idx_tv[vi[lo:lo + cfg.batch_size]], idx_ta[ai[lo:lo + cfg.batch_size]]
            if len(bv) < 2:
                continue
            zv, za = head_v(enc_v(rast_v[bv])), head_a(enc_a(rast_a[ba]))
            loss = (loss_fn(za, zv, torch.from_numpy(lab_v[bv]), cfg.temperatures[0])
                    if cfg.loss == "supcon" else loss_fn(za, zv, cfg.temperatures[0]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            srnn_macs += srnn_pair_macs * len(bv)
        t_srnn += time.perf_counter() - t0
        epochs = epoch + 1
        with torch.no_grad():
            score = retrieval_top1_both_ways(head_v(enc_v(rast_v[idx_va])).numpy(),
                                             lab_v[idx_va], head_a(enc_a(rast_a[idx_aa])).numpy(),
                                             lab_a[idx_aa])
        curve.append(score)
        best_srnn = max(best_srnn, score)
        bar.set_postfix(val=f"{score:.3f}", target=f"{target:.3f}")
        if score >= target:
            reached = True
            break
        if max_srnn_seconds is not None and t_srnn > max_srnn_seconds:
            break
    bar.close()
    lsm_macs = enc_macs + lsm_train_macs
    lsm_time = t_encode + t_heads
    return {
        "target_val_score": target, "seen": list(cfg.seen),
        "samples": {"vision": int(len(lab_v)), "audio": int(len(lab_a)),
                    "pairs_per_epoch": int(pairs_per_epoch)},
        "lsm": {"encode_s": t_encode, "heads_s_to_target": t_heads,
                "epochs_to_target": int(epochs_to_target), "encode_macs": enc_macs,
                "encode_dense_equivalent_macs": int(enc_dense_macs),
                "train_macs": int(lsm_train_macs), "total_macs": int(lsm_macs),
                "total_s": lsm_time},
        "srnn": {"reached_target": reached, "epochs": epochs, "best_val_score": best_srnn,
                 "val_curve": curve, "train_s": t_srnn, "train_macs": int(srnn_macs)},
        "ratio_macs": srnn_macs / lsm_macs,
        "ratio_macs_dense_encoding": srnn_macs / (enc_dense_macs + lsm_train_macs),
        "ratio_time": t_srnn / lsm_time,
        "lower_bound": not reached,
    }


def format_train_cost(r: dict) -> str:
    lb = ">= " if r["lower_bound"] else ""
    s, lsm = r["srnn"], r["lsm"]
    lines = [
        f"target: validation retrieval {r['target_val_score']:.3f} (best of the LSM pipeline, "
        f"seen classes {r['seen']})",
        f"LSM pipeline: encode {lsm['encode_s']:.2f} s + heads {lsm['heads_s_to_target']:.2f} s"
        f" ({lsm['epochs_to_target']} epochs); {lsm['total_macs'] / 1e9:.3f} GMAC "
        f"(event-driven encoding {lsm['encode_macs'] / 1e9:.3f}, heads "
        f"{lsm['train_macs'] / 1e9:.3f})",
        f"spiking RNN (BPTT): {s['train_s']:.1f} s, {s['epochs']} epochs, "
        f"{s['train_macs'] / 1e9:.1f} GMAC; best validation {s['best_val_score']:.3f}"
        + ("" if s["reached_target"] else " -- target NOT reached within the budget"),
        f"ratio (RNN / LSM): MACs {lb}{r['ratio_macs']:.1f}x, MACs with dense-equivalent "
        f"encoding {lb}{r['ratio_macs_dense_encoding']:.1f}x, wall-clock {lb}"
        f"{r['ratio_time']:.1f}x",
    ]
    if "run_dir" in r:
        lines.append(f"run directory: {r['run_dir']}")
    return "\n".join(lines)
