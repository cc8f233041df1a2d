"""How reliable are a run's scores? Curves over ensemble size and over epochs, from the log it has.

Members. Accessibility is a mean over members, so an ensemble is a test whose items are members.
At ensemble size m, the members are split into two disjoint halves (floor(m/2) and ceil(m/2)); the
correlation of the halves' accessibilities is the split-half r at m. Several seeded draws of which
members (and which halves) give its mean and spread. The Spearman-Brown formula predicts the
split-half r of larger (or smaller) ensembles from the one measured at the run's full size M:
r(k) = k r / (1 + (k - 1) r), with k the ratio of ensemble sizes.

Epochs. Scores from epochs 1..e of the log (a prefix: what a user has if they stop early) against
the scores from every epoch 1..E: the Spearman rho of accessibility, and the fraction of instances
whose trivial / in-between / impossible split at epoch e is the split at E.

Every function is pure: arrays in, numbers out. Shapes: M members, E epochs, N instances.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from curate.scores import definitions as d


def spearman_brown(r: float, k: float) -> float:
    """Predicted correlation when the test is made k times as long: k r / (1 + (k - 1) r).

    r : the correlation measured at the current length; k : length ratio (> 0).
    Higher = more reliable. r = 1 stays 1; r = 0 stays 0.
    """
    if k <= 0:
        raise ValueError(f"k = {k}: the length ratio must be positive")
    den = 1 + (k - 1) * r
    return k * r / den if den > 0 else math.nan  # a negative r has no meaningful prediction


def size_for(r: float, m: int, target: float = 0.95) -> int | None:
    """The smallest ensemble size whose split-half r reaches `target`, by Spearman-Brown from the
    split-half r measured at size m. None when r <= 0 (no ensemble size helps)."""
    if r >= target:
        return m
    if r <= 0:
        return None
    k = target * (1 - r) / (r * (1 - target))
    return max(2, math.ceil(m * k - 1e-9))


def split_half(
    hits: np.ndarray, epochs: int, m: int, draws: int = 10, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Split-half correlations of accessibility at ensemble size m.

    hits : (M, N) epochs 1..E each member was right on each instance (sum over e of c[m, e, n]).
    Returns (pearson, spearman), each (draws,): per seeded draw of m members out of M, split into
    two disjoint halves at random. A draw where a half's accessibility is constant gives nan.
    """
    total = hits.shape[0]
    if not 2 <= m <= total:
        raise ValueError(f"m = {m}: choose 2 <= m <= {total} members")
    rng = np.random.default_rng([seed, m])
    pearson, spearman = np.full(draws, np.nan), np.full(draws, np.nan)
    for i in range(draws):
        chosen = rng.permutation(total)[:m]
        a, b = chosen[: m // 2], chosen[m // 2 :]
        acc_a = hits[a].sum(axis=0) / (len(a) * epochs)
        acc_b = hits[b].sum(axis=0) / (len(b) * epochs)
        if acc_a.std() > 0 and acc_b.std() > 0:
            pearson[i] = stats.pearsonr(acc_a, acc_b)[0]
            spearman[i] = stats.spearmanr(acc_a, acc_b)[0]
    return pearson, spearman


def member_curve(hits: np.ndarray, epochs: int, draws: int = 10, seed: int = 0) -> list[dict]:
    """Rows of the member curve: for m = 2..M the split-half r (mean and std over draws), and the
    Spearman-Brown prediction from the full size M for m = 2..max(4M, the size reaching 0.95)."""
    total = hits.shape[0]
    rows, at_full = [], None
    for m in range(2, total + 1):
        n_draws = 1 if total == 2 else draws
        p, s = split_half(hits, epochs, m, n_draws, seed)
        row = {
            "m": m,
            "pearson": _mean(p),
            "pearson_std": _std(p),
            "spearman": _mean(s),
            "draws": n_draws,
        }
        rows.append(row)
        at_full = row["pearson"]
    need = size_for(at_full, total) if at_full is not None and not math.isnan(at_full) else None
    top = max(4 * total, need or 0) if need is not None and need <= 64 * total else 4 * total
    for row in rows:
        row["predicted"] = _predict(at_full, row["m"], total)
        row["extrapolated"] = False
    for m in range(total + 1, top + 1):
        rows.append(
            {
                "m": m,
                "pearson": math.nan,
                "pearson_std": math.nan,
                "spearman": math.nan,
                "draws": 0,
                "predicted": _predict(at_full, m, total),
                "extrapolated": True,
            }
        )
    return rows


def epoch_curve(correct_by_epoch: np.ndarray, members: int, tol: int = 0) -> list[dict]:
    """Rows of the epoch curve: for e = 1..E, scores from epochs 1..e against those from 1..E.

    correct_by_epoch : (E + 1, N) members correct at epochs 0..E.
    Each row: e, the fraction e / E of the epochs, Spearman rho of accessibility, and the fraction
    of instances whose ddd split at e equals the split at E (1 = the same split).
    """
    counts = correct_by_epoch[1:].astype(np.float64)  # epochs 1..E
    e_total = counts.shape[0]
    prefix = np.cumsum(counts, axis=0) / (members * np.arange(1, e_total + 1)[:, None])
    final_access, final_ddd = prefix[-1], d.ddd(correct_by_epoch[-1], members, tol)
    rows = []
    for e in range(1, e_total + 1):
        access = prefix[e - 1]
        rho = (
            stats.spearmanr(access, final_access)[0]
            if access.std() > 0 and final_access.std() > 0
            else math.nan
        )
        same = float((d.ddd(correct_by_epoch[e], members, tol) == final_ddd).mean())
        rows.append({"e": e, "fraction": e / e_total, "spearman": float(rho), "ddd_same": same})
    return rows


def first_epoch_reaching(rows: list[dict], target: float = 0.9) -> int | None:
    """The first e whose accessibility rho with the full run is >= target (and stays so)."""
    hit = None
    for row in rows:
        ok = not math.isnan(row["spearman"]) and row["spearman"] >= target
        hit = (hit or row["e"]) if ok else None
    return hit


def _predict(r: float | None, m: int, total: int) -> float:
    if r is None or math.isnan(r):
        return math.nan
    return spearman_brown(r, m / total)


def _mean(x: np.ndarray) -> float:
    return float(np.nanmean(x)) if np.isfinite(x).any() else math.nan


def _std(x: np.ndarray) -> float:
    return float(np.nanstd(x)) if np.isfinite(x).any() else math.nan
