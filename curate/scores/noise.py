"""How many labels of each class are wrong, and which to flag: confident learning (Northcutt et al.
2021) on the members' late-epoch probabilities, so the number flagged follows an estimate of the
noise rather than every instance the members get wrong.

Shapes: N instances of one split, K classes; ``late`` = the M |L| (member, late epoch)
predictions of `curate.scores.label_issues.late_epochs`.

Per instance, from the log (single-label data):

- ``self_conf[n]``: the mean over late predictions of the softmax probability of the given class
  (p_true);
- ``cand_conf[n]``: the mean over late predictions of the probability of the suggested class s_n
  (the plurality prediction). Where a member predicts s_n, that probability is its top one, known
  exactly from the log: p_true exp(-margin), since margin is the given class's logit minus the
  largest other one and softmax probabilities are in the ratio of their exponentials. Where it
  predicts another class, the probability of s_n is not logged, but it is bounded: at least 0, and
  at most the runner-up probability p_true exp(-margin) when the member predicts the given class,
  at most min(p_c, 1 - p_true - p_c) when it predicts a third class c (p_c = p_true exp(-margin)).
  ``cand_conf`` takes the lower bound, so the estimate errs towards fewer wrong labels: on the
  development set of `curate.scores.label_issues` its count was off by the least on average over
  both noise levels (`candidate_confidence`).

Confident learning then:

1. per-class thresholds ``t[k]``: the mean ``self_conf`` of the instances labelled k (how sure the
   members are, on average, of a class's own instances);
2. the confident joint ``C[i, j]``: instances labelled i counted as truly j when the members'
   probability of j reaches j's threshold (j = s_n when ``cand_conf >= t[s_n]``, else i when
   ``self_conf >= t[i]``; neither: not counted). An instance the members get wrong only with low
   confidence (a hard one) is not counted off the diagonal;
3. calibrated per class: the estimated number of wrong labels of class i is
   ``N_i * sum_{j != i} C[i, j] / sum_j C[i, j]`` (Northcutt et al.'s calibration of each row to
   the class's size);
4. flagged: as many instances as the classes' estimates add up to, those with the highest
   ``issue_score`` among the candidates (instances whose suggested label is not the given one).
   The estimate says how many; the ranking says which, across classes: a class whose count is
   over-estimated does not flag its weaker candidates ahead of stronger ones elsewhere.
"""

from __future__ import annotations

import numpy as np


def candidate_bounds(
    preds: np.ndarray, p_true: np.ndarray, margin: np.ndarray, suggested: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds of the mean probability of the suggested class over late
    predictions, ((N,), (N,)).

    Parameters
    ----------
    preds : (L, N) predicted classes of the late (member, epoch) predictions.
    p_true : (L, N) probability of the given class.
    margin : (L, N) given class's logit minus the largest other logit.
    suggested : (N,) the plurality class.

    Per prediction, p_top = p_true exp(-margin) is the largest probability other than the given
    class's (the predicted class's when margin < 0). A prediction of the suggested class gives its
    probability exactly: p_top (p_true when the suggested class is the given one). Any other
    prediction bounds it: from 0 to p_top when the member predicts the given class (the suggested
    class is at most the runner-up), from 0 to min(p_top, 1 - p_true - p_top) when it predicts a
    third class.
    """
    p_top = _top_other(p_true, margin, np.float64)
    hit = preds == suggested[None, :]
    exact = np.where(margin < 0, p_top, p_true)
    upper = np.where(
        margin >= 0,
        np.minimum(p_top, 1.0 - p_true),
        np.minimum(p_top, np.maximum(1.0 - p_true - p_top, 0.0)),
    )
    lo = np.where(hit, exact, 0.0).mean(axis=0)
    hi = np.where(hit, exact, upper).mean(axis=0)
    return lo, hi


def predicted_probability(p_true: np.ndarray, margin: np.ndarray) -> np.ndarray:
    """The probability of each prediction's predicted class, (L, N) float32 (shapes of the inputs):
    p_true where the given class is predicted (margin >= 0), else p_true exp(-margin), in log space
    as in `candidate_bounds` (a p_true that underflowed to 0 under a negative margin: 1)."""
    # float32 throughout (about 3x faster than float64 on ImageNet's 45 late epochs x 10 members;
    # the result is kept as float32)
    p32 = np.asarray(p_true, np.float32)
    m32 = np.asarray(margin, np.float32)
    return np.where(m32 < 0, _top_other(p32, m32, np.float32), p32).astype(np.float32, copy=False)


def _top_other(p_true: np.ndarray, margin: np.ndarray, dtype) -> np.ndarray:
    """p_top = p_true exp(-margin), the largest probability other than the given class's, in
    `dtype`. In log space, so that extreme logits (exp(-margin) overflows float32 below -88) stay
    finite; a p_true that underflowed to 0 under a negative margin: another class holds (nearly)
    all of the probability, taken as 1."""
    p = np.asarray(p_true, dtype)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        log_top = np.log(p) - np.asarray(margin, dtype)
    log_top = np.where((p == 0) & (margin < 0), dtype(0), np.nan_to_num(log_top, nan=0.0))
    return np.exp(np.minimum(log_top, dtype(0)))


def candidate_confidence_streamed(
    preds: np.ndarray, p_pred: np.ndarray, suggested: np.ndarray, rows_at_once: int = 8
) -> np.ndarray:
    """`candidate_confidence` from the predictions (L, N) and `predicted_probability` (L, N) kept
    as float32, summed a few rows at a time into float64, (N,): what the scorer computes on a log
    of any size without (L, N) float64 temporaries."""
    total = np.zeros(preds.shape[1])
    for i in range(0, len(preds), rows_at_once):
        hit = preds[i : i + rows_at_once] == suggested[None, :]
        total += np.where(hit, p_pred[i : i + rows_at_once], 0.0).sum(axis=0)
    return total / len(preds)


def candidate_confidence(
    preds: np.ndarray, p_true: np.ndarray, margin: np.ndarray, suggested: np.ndarray
) -> np.ndarray:
    """The mean probability of the suggested class over late predictions, (N,): the lower bound of
    `candidate_bounds` (exact where every late prediction names the suggested class).

    On the development set (CIFAR-10 test images labelled by the worst of k CIFAR-10H annotators;
    4 fastconv x 5 epochs) the estimate from the lower bound, the midpoint and the upper bound was
    1,620, 1,991 and 2,532 where 1,099 labels are wrong (k = 3), and 3,326, 3,937 and 4,655 where
    4,020 are (k = 25): a mean relative error of 0.32 for the lower bound, 0.42 for the midpoint."""
    return candidate_bounds(preds, p_true, margin, suggested)[0]


def class_thresholds(self_conf: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """t[k] = mean self_conf of the instances labelled k, (K,); +inf for a class with none (nothing
    can reach it)."""
    n_k = np.bincount(labels, minlength=k).astype(float)
    s_k = np.bincount(labels, weights=self_conf, minlength=k)
    return np.where(n_k > 0, s_k / np.maximum(n_k, 1), np.inf)


def confident_joint(
    labels: np.ndarray,
    suggested: np.ndarray,
    self_conf: np.ndarray,
    cand_conf: np.ndarray,
    thresholds: np.ndarray,
) -> np.ndarray:
    """C[i, j], (K, K) int: instances labelled i whose probability of j reaches t[j] (step 2 of the
    module docstring; the suggested class first, then the given one)."""
    k = len(thresholds)
    off = (suggested != labels) & (cand_conf >= thresholds[suggested])
    on = ~off & (self_conf >= thresholds[labels])
    truth = np.where(off, suggested, labels)
    counted = off | on
    return np.bincount(labels[counted] * k + truth[counted], minlength=k * k).reshape(k, k)


def wrong_per_class(joint: np.ndarray, class_sizes: np.ndarray) -> np.ndarray:
    """Estimated wrong labels per class, (K,) float: N_i times the off-diagonal share of row i of the
    confident joint (0 for a row with no counted instance)."""
    row = joint.sum(axis=1).astype(float)
    off = row - np.diag(joint)
    return np.where(row > 0, class_sizes * off / np.maximum(row, 1), 0.0)


def calibrated_flags(
    issue_score: np.ndarray, candidates: np.ndarray, n_wrong: np.ndarray
) -> np.ndarray:
    """Flag the round(sum(n_wrong)) candidates with the highest issue_score (ties: the lower
    position first); (N,) bool. Never more than the candidates."""
    flagged = np.zeros(len(issue_score), bool)
    pos = np.flatnonzero(candidates)
    order = pos[np.lexsort((pos, -np.asarray(issue_score)[pos]))]
    flagged[order[: int(np.round(np.sum(n_wrong)))]] = True
    return flagged


def estimate(
    labels: np.ndarray,
    suggested: np.ndarray,
    self_conf: np.ndarray,
    cand_conf: np.ndarray,
    issue_score: np.ndarray,
    k: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Steps 1-4: (estimated wrong labels per class (K,), flagged (N,) bool)."""
    labels = np.asarray(labels, np.int64)
    suggested = np.asarray(suggested, np.int64)
    t = class_thresholds(self_conf, labels, k)
    joint = confident_joint(labels, suggested, self_conf, cand_conf, t)
    n_wrong = wrong_per_class(joint, np.bincount(labels, minlength=k))
    return n_wrong, calibrated_flags(issue_score, suggested != labels, n_wrong)
