"""Every score of docs/concepts.md as a small pure function over arrays.

Shapes: M members, T = E + 1 recorded epochs (index 0 is the untrained model), N instances,
K classes. `c` is bool (M, T, N): member m correct on instance n after epoch e. `pred` is int
(M, T, N). `p_true` is float (M, T, N). Scores use epochs 1..E unless a docstring says otherwise.
Direction is stated on every function ("higher = easier" or the like).
"""

from __future__ import annotations

import numpy as np
from scipy import stats

# ----------------------------------------------------------------------------- per instance, per epoch


def correct_counts(c: np.ndarray) -> np.ndarray:
    """Number of members correct, (T, N) from c (M, T, N). Higher = easier."""
    return c.sum(axis=0, dtype=np.int32)


def tpa(c: np.ndarray) -> np.ndarray:
    """TP-agreement (Hacohen et al.): mean over members of c, (T, N) in [0, 1]. Higher = easier."""
    return correct_counts(c) / c.shape[0]


def strict(c: np.ndarray) -> np.ndarray:
    """Strict agreement per instance (Pliushch et al.): every member correct, bool (T, N)."""
    return c.all(axis=0)


def mode_and_count(pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Most frequent value along the member axis (ties: the smallest) and its count.

    pred (M, ...) -> (mode (...), count (...)).
    """
    s = np.sort(pred, axis=0)
    run = np.ones(s.shape[1:], np.int32)
    best = run.copy()
    mode = s[0].copy()
    for i in range(1, s.shape[0]):  # longest run of equal values along the sorted member axis
        run = np.where(s[i] == s[i - 1], run + 1, 1)
        longer = run > best
        best = np.where(longer, run, best)
        mode = np.where(longer, s[i], mode)
    return mode, best


def agreement_counts(pred: np.ndarray) -> np.ndarray:
    """Size of the largest group of members predicting the same class, (T, N) from pred (M, T, N)."""
    return mode_and_count(pred)[1]


def agreement(pred: np.ndarray) -> np.ndarray:
    """Agreement (Hacohen et al.): max over k of the fraction of members predicting k, label-agnostic,
    (T, N) in [1/M, 1]. Higher = members agree more (right or wrong)."""
    return agreement_counts(pred) / pred.shape[0]


# ----------------------------------------------------------------------------- per instance


def accessibility(c: np.ndarray) -> np.ndarray:
    """Mean over epochs 1..E of TP-agreement, (N,) in [0, 1] (Hacohen et al.). Higher = easier."""
    return tpa(c[:, 1:]).mean(axis=0)


def member_learned_epoch(c: np.ndarray) -> np.ndarray:
    """Per member, the smallest epoch e in 1..E with c = 1 at every epoch from e to E; +inf when wrong at E.

    (M, N) float. Lower = learned earlier (easier).
    """
    cc = c[:, 1:]
    e_max = cc.shape[1]
    wrong = ~cc
    any_wrong = wrong.any(axis=1)
    last_wrong = e_max - 1 - np.argmax(wrong[:, ::-1], axis=1)  # 0-based position among epochs 1..E
    learned = np.where(any_wrong, last_wrong + 2, 1).astype(
        np.float64
    )  # epoch after the last mistake
    learned[~cc[:, -1]] = np.inf
    return learned


def _median_or_nan(per_member: np.ndarray) -> np.ndarray:
    """Median over members (numpy's: mean of the two middle values for even M), +inf -> NaN (NULL)."""
    med = np.median(per_member, axis=0)
    med[np.isinf(med)] = np.nan
    return med


def learned_epoch(c: np.ndarray) -> np.ndarray:
    """Median over members of member_learned_epoch, never-learned members counting as +inf; NaN when the
    median is infinite. (N,) float. Lower = easier (Hacohen et al. Fig. 6)."""
    return _median_or_nan(member_learned_epoch(c))


def first_learned(c: np.ndarray) -> np.ndarray:
    """Median over members of the first epoch in 1..E with c = 1 (+inf if never); NaN when infinite.
    (N,) float. Lower = easier (Toneva et al.)."""
    cc = c[:, 1:]
    first = np.where(cc.any(axis=1), np.argmax(cc, axis=1) + 1, np.inf).astype(np.float64)
    return _median_or_nan(first)


def never_learned(c: np.ndarray) -> np.ndarray:
    """True where no member is correct at any epoch 1..E, bool (N,)."""
    return ~c[:, 1:].any(axis=(0, 1))


def forgetting_events(c: np.ndarray) -> np.ndarray:
    """Number of (m, e) with c[m, e-1] = 1 and c[m, e] = 0, for e in 2..E (transitions between scored
    epochs), summed over members; NaN for never-learned instances (Toneva et al.). (N,) float.
    Higher = harder (more often forgotten)."""
    cc = c[:, 1:]
    events = (cc[:, :-1] & ~cc[:, 1:]).sum(axis=(0, 1)).astype(np.float64)
    events[never_learned(c)] = np.nan
    return events


def confidence(p_true: np.ndarray) -> np.ndarray:
    """Mean over members and epochs 1..E of p_true (Swayamdipta et al.), (N,). Higher = easier."""
    return p_true[:, 1:].mean(axis=(0, 1))


def variability(p_true: np.ndarray) -> np.ndarray:
    """Mean over members of the std (ddof 0) over epochs 1..E of p_true, (N,). Higher = more ambiguous."""
    return p_true[:, 1:].std(axis=1).mean(axis=0)


def final_correct(c: np.ndarray) -> np.ndarray:
    """Number of members correct at the last epoch E, (N,) int. Higher = easier (Meding et al.)."""
    return c[:, -1].sum(axis=0, dtype=np.int32)


def check_tol(m: int, tol: int) -> None:
    if not 0 <= tol or not tol < m - tol:
        raise ValueError(f"split tolerance {tol} with {m} members: need 0 <= tol < M - tol")


def ddd(counts: np.ndarray, m: int, tol: int = 0) -> np.ndarray:
    """Meding's split of correct counts: 'trivial' if count >= M - tol, 'impossible' if count <= tol,
    else 'in-between'. Same shape as counts, dtype object (str)."""
    check_tol(m, tol)
    out = np.full(counts.shape, "in-between", dtype=object)
    out[counts >= m - tol] = "trivial"
    out[counts <= tol] = "impossible"
    return out


# ----------------------------------------------------------------------------- per epoch
# Each metric comes from sufficient statistics that add up over instances, so the log can be
# scored in chunks; the full-array function composes the two steps.


def correct_count_hist(c: np.ndarray) -> np.ndarray:
    """For each epoch, the number of instances with exactly j members correct, (T, M + 1) int."""
    m = c.shape[0]
    k = correct_counts(c)
    return np.stack([np.bincount(k[e], minlength=m + 1) for e in range(k.shape[0])])


def strict_agreement_from_hist(hist: np.ndarray) -> np.ndarray:
    """Pliushch eq. 2: #all-correct / #at-least-one-correct per epoch (0 when none is right). (T,)"""
    union = hist[:, 1:].sum(axis=1)
    return np.where(union > 0, hist[:, -1] / np.maximum(union, 1), 0.0)


def strict_agreement(c: np.ndarray) -> np.ndarray:
    """Sum over n of prod over m of c / sum over n of max over m of c, per epoch (T,). Higher = more agreement."""
    return strict_agreement_from_hist(correct_count_hist(c))


def lower_bound(acc: np.ndarray) -> np.ndarray:
    """Pliushch eq. 3: 1 - min(sum over m of (1 - acc[m, e]), 1), (T,) from acc (M, T)."""
    return 1 - np.minimum((1 - acc).sum(axis=0), 1)


def random_agreement(acc: np.ndarray) -> np.ndarray:
    """All-correct fraction if members erred independently: prod over m of acc[m, e], (T,)."""
    return acc.prod(axis=0)


def random_agreement_normalized(acc: np.ndarray) -> np.ndarray:
    """random_agreement / (1 - prod(1 - acc)): on strict_agreement's union-normalised scale, (T,); 0 when
    every member is always wrong."""
    union = 1 - (1 - acc).prod(axis=0)
    return np.where(union > 0, acc.prod(axis=0) / np.where(union > 0, union, 1), 0.0)


def bimodality_from_pmf(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Pearson's kurtosis - skewness^2 - 1 of a discrete distribution (population moments), per row.

    values (J,), weights (..., J) (counts or probabilities). NaN for a one-point distribution.
    Lower = more bimodal; exactly 0 for two points.
    """
    w = weights / weights.sum(axis=-1, keepdims=True)
    mean = (w * values).sum(axis=-1, keepdims=True)
    d = values - mean
    m2, m3, m4 = ((w * d**k).sum(axis=-1) for k in (2, 3, 4))
    with np.errstate(divide="ignore", invalid="ignore"):
        out = m4 / m2**2 - m3**2 / m2**3 - 1
    return np.where(m2 > 1e-15, out, np.nan)


def bimodality(tpa_values: np.ndarray) -> np.ndarray:
    """kurtosis(fisher=False) - skew^2 - 1 of TP-agreement over instances, per epoch: tpa (T, N) -> (T,)."""
    k = stats.kurtosis(tpa_values, axis=1, fisher=False, bias=True)
    s = stats.skew(tpa_values, axis=1, bias=True)
    return k - s**2 - 1


def poisson_binomial_pmf(p: np.ndarray) -> np.ndarray:
    """Distribution of the number of successes of independent Bernoulli(p_m): p (M,) -> (M + 1,)."""
    pmf = np.zeros(len(p) + 1)
    pmf[0] = 1.0
    for i, q in enumerate(p):
        pmf[1 : i + 2] = pmf[1 : i + 2] * (1 - q) + pmf[: i + 1] * q
        pmf[0] *= 1 - q
    return pmf


def bimodality_null(acc: np.ndarray) -> np.ndarray:
    """Bimodality of TP-agreement if members erred independently with their accuracies (analytic,
    Poisson-binomial), per epoch: acc (M, T) -> (T,)."""
    m = acc.shape[0]
    pmf = np.stack([poisson_binomial_pmf(acc[:, e]) for e in range(acc.shape[1])])
    return bimodality_from_pmf(np.arange(m + 1) / m, pmf)


def correct_count_null(acc_mean: np.ndarray, m: int, n: int) -> np.ndarray:
    """Instances expected with j members correct under Binomial(M, acc_mean), (T, M + 1) (Meding Fig. 3)."""
    return n * stats.binom.pmf(np.arange(m + 1)[None, :], m, acc_mean[:, None])


def flip_counts(x: np.ndarray) -> np.ndarray:
    """Number of (m, n) whose value changed from epoch e - 1 to e, (T,) with 0 at e = 0."""
    out = np.zeros(x.shape[1], np.int64)
    out[1:] = (x[:, 1:] != x[:, :-1]).sum(axis=(0, 2))
    return out


def ddd_fractions_from_hist(hist: np.ndarray, tol: int = 0) -> dict[str, np.ndarray]:
    """Fractions of trivial, in-between and impossible instances per epoch from the count histogram."""
    m = hist.shape[1] - 1
    check_tol(m, tol)
    n = hist.sum(axis=1)
    triv = hist[:, m - tol :].sum(axis=1) / n
    imp = hist[:, : tol + 1].sum(axis=1) / n
    return {"frac_trivial": triv, "frac_in_between": 1 - triv - imp, "frac_impossible": imp}


def epoch_metrics_from_stats(
    hist: np.ndarray,
    correct: np.ndarray,
    flips: np.ndarray,
    label_changes: np.ndarray,
    n: int,
    tol: int = 0,
) -> dict[str, np.ndarray]:
    """Every per-epoch metric from additive statistics.

    hist (T, M + 1): correct-count histogram; correct (M, T): instances each member got right;
    flips, label_changes (T,): changed (m, n) pairs of c and of pred; n: number of instances.
    """
    m = correct.shape[0]
    acc = correct / n
    acc_mean = acc.mean(axis=0)
    out = {
        "acc_mean": acc_mean,
        "acc_std": acc.std(axis=0),
        "strict_agreement": strict_agreement_from_hist(hist),
        "lower_bound": lower_bound(acc),
        "random_agreement": random_agreement(acc),
        "random_agreement_normalized": random_agreement_normalized(acc),
        "bimodality": bimodality_from_pmf(np.arange(m + 1) / m, hist.astype(np.float64)),
        "bimodality_null": bimodality_null(acc),
        **ddd_fractions_from_hist(hist, tol),
        "correct_count_hist": hist,
        "correct_count_null": correct_count_null(acc_mean, m, n),
        "flip_rate": np.where(np.arange(len(flips)) > 0, flips / (m * n), np.nan),
        "label_change_rate": np.where(np.arange(len(flips)) > 0, label_changes / (m * n), np.nan),
        "acc_by_member": acc.T,
    }
    return out


def epoch_metrics(c: np.ndarray, pred: np.ndarray, tol: int = 0) -> dict[str, np.ndarray]:
    """All per-epoch metrics of docs/concepts.md#per-epoch for one split: c, pred (M, T, N) -> {name: (T,) or (T, ...)}."""
    return epoch_metrics_from_stats(
        correct_count_hist(c), c.sum(axis=2), flip_counts(c), flip_counts(pred), c.shape[2], tol
    )


# ----------------------------------------------------------------------------- between members


def kappa_from_counts(
    agree: np.ndarray, correct_i: np.ndarray, correct_j: np.ndarray, n
) -> dict[str, np.ndarray]:
    """Error consistency from counts: agree = #instances where i and j are both right or both wrong."""
    n = np.asarray(n, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        c_obs = agree / n
        p_i, p_j = correct_i / n, correct_j / n
        c_exp = p_i * p_j + (1 - p_i) * (1 - p_j)
        kappa = np.where(c_obs >= 1, 1.0, (c_obs - c_exp) / (1 - c_exp))
    return {"c_obs": c_obs, "c_exp": c_exp, "kappa": kappa}


def pair_agreement_counts(c_e: np.ndarray) -> np.ndarray:
    """For one epoch, c_e (M, N): agree[i, j] = #n with c_i = c_j, (M, M), via one matrix product."""
    x = c_e.astype(np.float32)
    both = x @ x.T
    k = x.sum(axis=1)
    return np.rint(c_e.shape[1] - k[:, None] - k[None, :] + 2 * both).astype(np.int64)


def error_consistency(c_i: np.ndarray, c_j: np.ndarray) -> float:
    """Cohen's kappa of two members' correctness vectors (N,) (Geirhos et al. 2020); 1 where c_obs = 1.
    Higher = the two err on the same instances."""
    n = len(c_i)
    agree = (c_i == c_j).sum()
    return float(kappa_from_counts(agree, c_i.sum(), c_j.sum(), n)["kappa"])


# ----------------------------------------------------------------------------- between ensembles


def majority_vote(pred: np.ndarray) -> np.ndarray:
    """Most frequent prediction over members (ties: the smallest class), pred (M, ...) -> (...)."""
    return mode_and_count(pred)[0]


def accessibility_correlation(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Pearson and Spearman correlation of two ensembles' accessibility (N,), with two-tailed p-values."""
    if np.std(a) == 0 or np.std(b) == 0:
        return {
            "pearson_r": np.nan,
            "pearson_p": np.nan,
            "spearman_rho": np.nan,
            "spearman_p": np.nan,
        }
    r, p = stats.pearsonr(a, b)
    rho, sp = stats.spearmanr(a, b)
    return {
        "pearson_r": float(r),
        "pearson_p": float(p),
        "spearman_rho": float(rho),
        "spearman_p": float(sp),
    }


def matched_epochs(
    acc_a: np.ndarray, acc_b: np.ndarray, within: float = 0.01
) -> list[tuple[int, int]]:
    """Pairs (e_a, e_b), e_a in 1..E_a, where b's closest majority-vote accuracy is within `within` of a's."""
    pairs = []
    for ea in range(1, len(acc_a)):
        eb = int(np.argmin(np.abs(acc_b[1:] - acc_a[ea]))) + 1
        if abs(acc_b[eb] - acc_a[ea]) <= within:
            pairs.append((ea, eb))
    return pairs
