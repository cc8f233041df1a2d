"""Between ensembles (docs/concepts.md#ensemble-comparison, `ensemble_comparison`): the accessibility correlation of two
ensembles on one split and Hacohen's counts at epochs of matched majority-vote accuracy. The
ensembles are a run's two halves, or a run and another run on the same dataset."""

from __future__ import annotations

import numpy as np

from curate.scores import definitions as d
from curate.scores.engine import SplitScores


def compare_groups(
    correct_a: np.ndarray, correct_b: np.ndarray, epochs: np.ndarray, within: float = 0.01
) -> list[dict]:
    """Hacohen Fig. 8a: at epochs of matched majority-vote accuracy, counts correct by both / only a / only b."""
    acc_a, acc_b = correct_a.mean(axis=1), correct_b.mean(axis=1)
    out = []
    for ta, tb in d.matched_epochs(acc_a, acc_b, within):
        a, b = correct_a[ta], correct_b[tb]
        out.append(
            {
                "epoch_a": int(epochs[ta]),
                "epoch_b": int(epochs[tb]),
                "acc_a": float(acc_a[ta]),
                "acc_b": float(acc_b[tb]),
                "both_correct": int((a & b).sum()),
                "only_a": int((a & ~b).sum()),
                "only_b": int((~a & b).sum()),
            }
        )
    return out


def comparison_rows(
    a: tuple[str, list[int], np.ndarray, np.ndarray],
    b: tuple[str, list[int], np.ndarray, np.ndarray],
    split: str,
    epochs: np.ndarray,
) -> list[dict]:
    """Rows of `ensemble_comparison` for ensembles a and b, each given as (run, members,
    accessibility (N,), majority vote correct (T, N))."""
    (run_a, members_a, access_a, correct_a), (run_b, members_b, access_b, correct_b) = a, b
    key = {
        "run_a": run_a,
        "members_a": members_a,
        "run_b": run_b,
        "members_b": members_b,
        "split": split,
    }
    rows = [
        {
            **key,
            "kind": "accessibility",
            "n": len(access_a),
            **d.accessibility_correlation(access_a, access_b),
        }
    ]
    for r in compare_groups(correct_a, correct_b, epochs):
        rows.append({**key, "kind": "matched-epoch", "n": len(access_a), **r})
    for r in binned(access_a, access_b):
        rows.append({**key, "kind": "binned", **r})
    return rows


def binned(access_a: np.ndarray, access_b: np.ndarray, bins: int = 10) -> list[dict]:
    """Hacohen Fig. 11: instances binned by a's accessibility (equal-width bins over [0, 1], the
    last closed), and per bin the mean of b's accessibility with its standard error (std / sqrt n,
    NaN for one instance). Empty bins are left out."""
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.searchsorted(edges, access_a, side="right") - 1, 0, bins - 1)
    out = []
    for k in range(bins):
        v = access_b[which == k]
        if len(v) == 0:
            continue
        se = float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else float("nan")
        out.append(
            {
                "n": len(v),
                "bin_lo": float(edges[k]),
                "bin_hi": float(edges[k + 1]),
                "mean_b": float(v.mean()),
                "se_b": se,
            }
        )
    return out


def halves_rows(run: str, sc: SplitScores, halves: dict[str, list[int]]) -> list[dict]:
    """A run's first half of members against its second half (groups "a" and "b" of the scoring)."""
    a = (run, halves["a"], sc.groups_accessibility["a"], sc.groups_correct["a"])
    b = (run, halves["b"], sc.groups_accessibility["b"], sc.groups_correct["b"])
    return comparison_rows(a, b, sc.split, sc.epoch["epoch"])


def runs_rows(run: str, sc: SplitScores, other: str, osc: SplitScores) -> list[dict]:
    """A whole run against another whole run, over the epochs both have."""
    t = min(len(sc.epoch["epoch"]), len(osc.epoch["epoch"]))
    a = (run, sc.members, sc.instance["accessibility"], sc.groups_correct["all"][:t])
    b = (other, osc.members, osc.instance["accessibility"], osc.groups_correct["all"][:t])
    return comparison_rows(a, b, sc.split, sc.epoch["epoch"][:t])
