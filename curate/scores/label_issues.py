"""Label issues: which given labels are likely wrong, from the same prediction log as the difficulty
scores, and how well that is found when the true labels are known.

Per instance of a split scored over epochs 1..E with M members (columns of `instance_scores`,
gathered in `label_issues` view):

- late epochs L = floor(E/2)+1 .. E: the members have settled by then;
- ``suggested_label``: the class predicted most often over (member, epoch in L); ties go to the given
  label when it is among the most frequent, else to the smallest class;
- ``consensus``: the fraction of those M |L| predictions that name it, 0..1;
- ``aum``: the area under the margin (Pleiss et al. 2020), the mean over members and epochs 1..E of
  the given class's logit minus the largest other logit; negative = the members rank another class
  above the given one on average;
- ``late_aum``: the same mean over the late epochs L only, when the members have learned what they
  will learn (early epochs mostly measure how hard an image is to learn, not whether its label is
  wrong);
- ``issue_score``: `issue_score` below, -late_aum; higher = more likely mislabelled;
- ``flagged``: as many labels as confident learning estimates to be wrong, summed over the classes
  (`curate.scores.noise`), by ``issue_score`` among those the members assign to another class;
  `flag` below, a fixed rule, for multilabel data and logs without p_true.

How these were chosen, before any evaluation on CIFAR-10N: on a development set of real human label
noise from other images and other annotators (the 10,000 CIFAR-10 test images, each labelled with the
worst of 25 or of 3 CIFAR-10H annotators: 40 % and 11 % wrong; `benchmarks/bench_label_signals.py`),
the late margin ranked wrong labels above right ones more often than the whole-training AUM, than
accessibility, than the late self-confidence p_true and than the earlier rank mean of -aum and the
consensus on another class; requiring the plurality class to differ as well kept F1 at its best on
both noise levels.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def late_epochs(last: int) -> range:
    """The epochs whose predictions vote for the suggested label: floor(E/2)+1 .. E."""
    return range(last // 2 + 1, last + 1)


def issue_score(late_aum: np.ndarray) -> np.ndarray:
    """How likely each given label is wrong, (N,) in logit units; higher = more likely.

    -late_aum: how far, averaged over members and the late epochs, the largest other logit lies
    above the given class's logit. Positive exactly when the members, late in training, rank
    another class above the given one on average.
    """
    return -np.asarray(late_aum, dtype=float)


def flag(late_aum: np.ndarray, suggested: np.ndarray, label: np.ndarray) -> np.ndarray:
    """The decision rule, (N,) bool: late in training the members rank another class above the
    given one on average (late_aum < 0, i.e. issue_score > 0), and the class they predict most
    often then is not the given one (suggested != label)."""
    return (np.asarray(suggested) != np.asarray(label)) & (np.asarray(late_aum) < 0)


def auroc(score: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of `score` for `positive` (bool): the probability that a random
    positive scores above a random negative, ties counting one half; NaN without both classes."""
    positive = np.asarray(positive, bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    r = rankdata(score)
    return float((r[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def noise_eval(
    label: np.ndarray,
    true_label: np.ndarray,
    score: np.ndarray,
    flagged: np.ndarray,
    suggested: np.ndarray,
) -> dict:
    """How well the signals find the wrong labels of one split (a `label_noise_eval` row).

    Returns n, n_wrong, noise_rate (fraction wrong), auroc of `score`, n_flagged, precision, recall
    and f1 of `flagged`, and recovery: among flagged wrong labels, the fraction whose suggested
    label is the true one. Undefined ratios are NaN.
    """
    wrong = np.asarray(label) != np.asarray(true_label)
    flagged = np.asarray(flagged, bool)
    tp = int((flagged & wrong).sum())
    n_flag, n_wrong = int(flagged.sum()), int(wrong.sum())
    precision = tp / n_flag if n_flag else float("nan")
    recall = tp / n_wrong if n_wrong else float("nan")
    f1 = 2 * tp / (n_flag + n_wrong) if n_flag + n_wrong else float("nan")
    hit = flagged & wrong
    recovery = float((suggested[hit] == true_label[hit]).mean()) if tp else float("nan")
    return {
        "n": len(label),
        "n_wrong": n_wrong,
        "noise_rate": n_wrong / len(label) if len(label) else float("nan"),
        "auroc": auroc(score, wrong),
        "n_flagged": n_flag,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "recovery": recovery,
    }
