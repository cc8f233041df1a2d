"""The inner loops of scoring (`curate.scores.kernels`) in plain numpy, for an install without numba
(`pip install curate`, the core). Same signatures, same outputs, bit for bit: the engine imports
these when `curate.scores.kernels` cannot be imported. Each loops over members or epochs (small)
and works on whole rows of instances (large), so it stays within a few times the compiled speed.
"""

from __future__ import annotations

import numpy as np

BLOCK = 4096  # instances per parallel task of the compiled kernels (the size of flips, changes)


def _mode(ordered: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column of `ordered` (S, N), sorted along axis 0: the most frequent value (ties to the
    smallest) and its count (N,) int64."""
    best_v = ordered[0].copy()
    best_c = np.ones(ordered.shape[1], np.int64)
    run = best_c.copy()
    for a in range(1, len(ordered)):
        run = np.where(ordered[a] == ordered[a - 1], run + 1, 1)
        better = run > best_c
        best_c = np.where(better, run, best_c)
        best_v = np.where(better, ordered[a], best_v)
    return best_v, best_c


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
    """`curate.scores.kernels.epoch_pass` in numpy: one epoch of the log, (M, N) predictions.

    The flips and changes of the epoch are written to the first block (the engine sums the blocks).
    """
    ok = pred == y  # (M, N)
    cube_t[...] = ok
    counts_t[...] = np.count_nonzero(ok, axis=0)
    flips[:] = 0
    changes[:] = 0
    if has_prev and len(flips):
        flips[0] = np.count_nonzero(ok != (prev_pred == y))
        changes[0] = np.count_nonzero(pred != prev_pred)
    if add_p:
        v = p_true.astype(np.float64)
        psum += v
        psq += v * v
    for g in range(len(sizes)):
        cols = members[g, : sizes[g]]
        if add_p:
            group_hits[g] += np.count_nonzero(ok[cols], axis=0)
        if len(cols) == 0:
            group_ok[g] = False
            continue
        best_v, best_c = _mode(np.sort(pred[cols], axis=0))
        if g == 0:
            agree_t[...] = best_c
        group_ok[g] = best_v == y


def member_timelines(cube, learned, first, forget):
    """`curate.scores.kernels.member_timelines` in numpy: from c (M, T, N), the learned epoch,
    the first correct epoch and the forgetting events of every member and instance."""
    m, t_count, n = cube.shape
    last_wrong = np.zeros((m, n), np.int64)
    first_ok = np.full((m, n), np.inf)
    events = np.zeros((m, n), np.int32)
    prev = np.zeros((m, n), bool)
    for t in range(1, t_count):
        ok = cube[:, t]
        first_ok = np.where(ok & np.isinf(first_ok), t, first_ok)
        last_wrong = np.where(ok, last_wrong, t)
        if t >= 2:
            events += ~ok & prev
        prev = ok
    learned[...] = np.where(cube[:, t_count - 1], last_wrong + 1, np.inf)
    first[...] = first_ok
    forget[...] = events


def vote_mode(votes, y):
    """`curate.scores.kernels.vote_mode` in numpy: per instance the most frequent class among votes
    (V, N) and its count; ties to the label y when it is among the most frequent, else to the
    smallest class."""
    v_count, n = votes.shape
    if v_count == 0:
        return np.zeros(n, votes.dtype), np.zeros(n, np.int64)
    ordered = np.sort(votes, axis=0)
    best_v = ordered[0].copy()
    best_c = np.ones(n, np.int64)
    run = best_c.copy()
    y_c = (ordered[0] == y).astype(np.int64)
    for a in range(1, v_count):
        run = np.where(ordered[a] == ordered[a - 1], run + 1, 1)
        y_c = np.where(ordered[a] == y, run, y_c)
        better = run > best_c
        best_c = np.where(better, run, best_c)
        best_v = np.where(better, ordered[a], best_v)
    best_v = np.where(y_c == best_c, y, best_v)
    return best_v.astype(votes.dtype), best_c
