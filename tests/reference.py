"""A slow, obviously-correct NumPy reference of the reservoir equations, for tests only.

It follows the documented arithmetic order of :mod:`lsm.kernels` (float32; input rows in event
order, then recurrent rows in increasing neuron order), so it must agree bit for bit.
"""

import numpy as np


def reference_spikes(bins, channels, n_bins, w_in, w_rec, decay, v_th, reset="zero"):
    n = w_rec.shape[0]
    decay = np.float32(decay)
    v_th = np.float32(v_th)
    u = np.zeros(n, np.float32)
    s = np.zeros(n, bool)
    out = np.zeros((n_bins, n), np.uint8)
    for t in range(n_bins):
        current = np.zeros(n, np.float32)
        for b, c in zip(bins, channels, strict=True):
            if b == t:
                current = current + w_in[c]
        for j in np.flatnonzero(s):
            current = current + w_rec[j]
        if reset == "zero":
            u = decay * np.where(s, np.float32(0), u) + current
        elif reset == "subtract":
            u = decay * u + current - np.where(s, v_th, np.float32(0))
        else:
            u = decay * u + current
        s = u > v_th
        out[t] = s
    return out
