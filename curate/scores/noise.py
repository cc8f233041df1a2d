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
  predicts another class, the probability of s_n is not logged and counts as 0, so ``cand_conf`` is
  a lower bound: the estimate can only err towards fewer wrong labels.

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
4. flagged: in each class i, that many of its instances, those with the highest ``issue_score``
   among the candidates (instances whose suggested label is not the given one).
"""

from __future__ import annotations

import numpy as np


def candidate_confidence(
    preds: np.ndarray, p_true: np.ndarray, margin: np.ndarray, suggested: np.ndarray
) -> np.ndarray:
    """The mean probability of the suggested class over late predictions, a lower bound, (N,).

    Parameters
    ----------
    preds : (L, N) predicted classes of the late (member, epoch) predictions.
    p_true : (L, N) probability of the given class.
    margin : (L, N) given class's logit minus the largest other logit.
    suggested : (N,) the plurality class.

    Where a prediction is the suggested class, its probability is p_true exp(-margin) when it is
    not the given class (the given class's probability when it is); elsewhere it counts as 0.
    """
    p_top = np.where(margin < 0, p_true * np.exp(-np.minimum(margin, 0.0)), p_true)
    hit = preds == suggested[None, :]
    return np.where(hit, np.minimum(p_top, 1.0), 0.0).mean(axis=0)


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
    issue_score: np.ndarray, labels: np.ndarray, candidates: np.ndarray, n_wrong: np.ndarray
) -> np.ndarray:
    """Flag, in each class i, the round(n_wrong[i]) candidates labelled i with the highest
    issue_score (ties: the lower position first); (N,) bool. Never more than the candidates."""
    flagged = np.zeros(len(labels), bool)
    for i in np.flatnonzero(np.round(n_wrong) > 0):
        pos = np.flatnonzero((labels == i) & candidates)
        if not len(pos):
            continue
        order = pos[np.lexsort((pos, -issue_score[pos]))]
        flagged[order[: int(np.round(n_wrong[i]))]] = True
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
    return n_wrong, calibrated_flags(issue_score, labels, suggested != labels, n_wrong)
