"""Compiled inner loop of the local-entropy statistic (numba): a sliding 10 x 10 histogram."""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, parallel=True)
def mean_window_entropy(keys: np.ndarray, window: int) -> np.ndarray:
    """Mean over every window x window patch (stride 1, valid) of the Shannon entropy in bits of its values.

    keys : (B, H, W) int32, equal keys <=> equal grey levels. Values are ranked per image, then a histogram
    slides along each row of windows: 2 * window updates per step instead of a sort of window^2 values.
    H = log2 n - (1 / n) sum_c c log2 c over the counts c of the n = window^2 values.
    """
    b_count, h, w = keys.shape
    n = window * window
    clog = np.zeros(n + 1)
    for c in range(1, n + 1):
        clog[c] = c * np.log2(c)
    out = np.empty(b_count)
    for b in numba.prange(b_count):
        flat = keys[b].ravel()
        order = np.argsort(flat)
        ranks = np.empty(h * w, np.int64)
        r = -1
        prev = 0
        for k in range(h * w):
            v = flat[order[k]]
            if k == 0 or v != prev:
                r += 1
                prev = v
            ranks[order[k]] = r
        rk = ranks.reshape(h, w)
        counts = np.zeros(r + 1, np.int64)
        total = 0.0
        windows = 0
        for y in range(h - window + 1):
            s = 0.0  # sum of c log2 c over the window's histogram
            for yy in range(y, y + window):
                for xx in range(window):
                    v = rk[yy, xx]
                    c = counts[v]
                    s += clog[c + 1] - clog[c]
                    counts[v] = c + 1
            total += np.log2(n) - s / n
            windows += 1
            for x in range(1, w - window + 1):
                for yy in range(y, y + window):
                    v = rk[yy, x - 1]
                    c = counts[v]
                    s += clog[c - 1] - clog[c]
                    counts[v] = c - 1
                    v = rk[yy, x + window - 1]
                    c = counts[v]
                    s += clog[c + 1] - clog[c]
                    counts[v] = c + 1
                total += np.log2(n) - s / n
                windows += 1
            for yy in range(y, y + window):  # empty the histogram for the next row
                for xx in range(w - window, w):
                    counts[rk[yy, xx]] -= 1
        out[b] = total / windows
    return out
