"""Compiled inner loops of scoring (numba): one pass per epoch of the log, one pass over member timelines."""

from __future__ import annotations

import numba
import numpy as np

BLOCK = 4096  # instances per parallel task


@numba.njit(cache=True, parallel=True)
def epoch_pass(
    pred,
    y,
    prev_pred,
    has_prev,
    p_true,
    add_p,
    members,
    sizes,
    cube_t,
    counts_t,
    agree_t,
    group_ok,
    group_hits,
    psum,
    psq,
    flips,
    changes,
):
    """One epoch of the log in one pass over its (M, N) predictions.

    Writes c into cube_t (M, N), the number of members correct into counts_t (N,), the size of the largest
    agreeing group into agree_t (N,), whether each group's majority vote is right into group_ok (G, N);
    adds p_true and its square to psum, psq (M, N) and each group's correct count to group_hits (G, N)
    when add_p; counts per block the (m, n) whose correctness (flips) and prediction (changes) differ
    from the previous epoch. Group 0 must be every member. Mode ties go to the smallest class.
    """
    m, n = pred.shape
    g_count = members.shape[0]
    for blk in numba.prange((n + BLOCK - 1) // BLOCK):
        j0, j1 = blk * BLOCK, min(n, (blk + 1) * BLOCK)
        buf = np.empty(m, pred.dtype)
        k = np.zeros(j1 - j0, np.int32)
        fl = 0
        ch = 0
        for i in range(m):  # row by row: every array streams through memory
            for j in range(j0, j1):
                p = pred[i, j]
                ok = p == y[j]
                cube_t[i, j] = ok
                k[j - j0] += ok
                if has_prev:
                    q = prev_pred[i, j]
                    if ok != (q == y[j]):
                        fl += 1
                    if p != q:
                        ch += 1
                if add_p:
                    v = np.float64(p_true[i, j])
                    psum[i, j] += v
                    psq[i, j] += v * v
        for j in range(j0, j1):
            yj = y[j]
            counts_t[j] = k[j - j0]
            for g in range(g_count):
                size = sizes[g]
                ky = 0
                for a in range(size):
                    if pred[members[g, a], j] == yj:
                        ky += 1
                if add_p:
                    group_hits[g, j] += ky
                if 2 * ky > size:  # the label is a strict majority: it is the mode
                    best_v = yj
                    best_c = ky
                else:
                    for a in range(size):  # insertion sort of the group's predictions
                        v2 = pred[members[g, a], j]
                        b = a - 1
                        while b >= 0 and buf[b] > v2:
                            buf[b + 1] = buf[b]
                            b -= 1
                        buf[b + 1] = v2
                    best_c = 1
                    best_v = buf[0]
                    run = 1
                    for a in range(1, size):
                        run = run + 1 if buf[a] == buf[a - 1] else 1
                        if run > best_c:
                            best_c = run
                            best_v = buf[a]
                if g == 0:
                    agree_t[j] = best_c
                group_ok[g, j] = best_v == yj
        flips[blk] = fl
        changes[blk] = ch


@numba.njit(cache=True, parallel=True)
def member_timelines(cube, learned, first, forget):
    """From c (M, T, N): per member and instance, the learned epoch (after the last mistake in 1..E, +inf if
    wrong at E), the first correct epoch in 1..E (+inf if never) and the forgetting events between
    epochs 1..E. Outputs learned, first (M, N) float64, forget (M, N) int32."""
    m, t_count, n = cube.shape
    for blk in numba.prange((n + BLOCK - 1) // BLOCK):
        for i in range(m):
            for j in range(blk * BLOCK, min(n, (blk + 1) * BLOCK)):
                last_wrong = 0
                first_ok = np.inf
                events = 0
                prev = False
                for t in range(1, t_count):
                    ok = cube[i, t, j]
                    if ok and first_ok == np.inf:
                        first_ok = t
                    if not ok:
                        last_wrong = t
                        if t >= 2 and prev:
                            events += 1
                    prev = ok
                learned[i, j] = np.inf if not cube[i, t_count - 1, j] else last_wrong + 1
                first[i, j] = first_ok
                forget[i, j] = events


@numba.njit(cache=True, parallel=True)
def vote_mode(votes, y):
    """Per instance, the most frequent class among votes (V, N) and its count: suggested (N,) int16,
    count (N,) int64. Ties go to the label y (N,) when it is among the most frequent, else to the
    smallest class."""
    v_count, n = votes.shape
    suggested = np.empty(n, votes.dtype)
    count = np.empty(n, np.int64)
    for blk in numba.prange((n + BLOCK - 1) // BLOCK):
        buf = np.empty(v_count, votes.dtype)
        for j in range(blk * BLOCK, min(n, (blk + 1) * BLOCK)):
            for a in range(v_count):
                buf[a] = votes[a, j]
            buf.sort()
            best_v, best_c, run = buf[0], 1, 1
            y_c = 1 if buf[0] == y[j] else 0
            for a in range(1, v_count):
                run = run + 1 if buf[a] == buf[a - 1] else 1
                if buf[a] == y[j]:
                    y_c = run
                if run > best_c:
                    best_c, best_v = run, buf[a]
            if y_c == best_c:
                best_v = y[j]
            suggested[j] = best_v
            count[j] = best_c
    return suggested, count
