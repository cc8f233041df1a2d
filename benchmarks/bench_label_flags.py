"""Calibrated label flags against the earlier fixed rule, on one scored run whose true labels are
known (e.g. CIFAR-10N `aggre` from bench_label_noise.py's work dir): the same ranking, two rules.

- calibrated (today's `flagged`): per class, as many as confident learning estimates to be wrong
  (`curate.scores.noise`), by issue_score among the instances assigned to another class;
- fixed (before): every instance with late_aum < 0 whose suggested label is not the given one.

Both from the run's `instance_scores` in one read; precision, recall, F1 against the true labels,
the estimated noise rate beside the true one, per split. On CIFAR-10's test split, whose labels
the source takes as true, the flags are also checked against the 79 labels the majority of
CIFAR-10H's annotators disagrees with (../shared/data/refs/cifar10h-counts-test.npy, by idx:
standard CIFAR-10 order), when that file is there. Reads the catalog read-only.

    python benchmarks/bench_label_flags.py --workspace W --run cifar10n-aggre \
        [--out benchmarks/results/label_flags.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def rule_figures(flagged: np.ndarray, wrong: np.ndarray) -> dict:
    """n_flagged, precision, recall, F1 of `flagged` for `wrong` (NaN where undefined)."""
    tp, n_flag, n_wrong = int((flagged & wrong).sum()), int(flagged.sum()), int(wrong.sum())
    return {
        "n_flagged": n_flag,
        "flagged_fraction": n_flag / len(flagged),
        "precision": tp / n_flag if n_flag else float("nan"),
        "recall": tp / n_wrong if n_wrong else float("nan"),
        "f1": 2 * tp / (n_flag + n_wrong) if n_flag + n_wrong else float("nan"),
    }


HUMANS = ROOT.parent / "shared" / "data" / "refs" / "cifar10h-counts-test.npy"


def split_figures(con, run: str, split: str) -> dict:
    """Both rules on one split of `run`, and the estimated against the true noise rate."""
    from curate.scores import label_issues as li

    df = con.execute(
        "SELECT s.idx, s.label, i.true_label, s.flagged, s.late_aum, s.suggested_label, "
        "s.issue_score "
        "FROM instance_scores s JOIN instances i USING (dataset, split, idx) "
        "WHERE s.run = ? AND s.split = ? ORDER BY s.idx",
        [run, split],
    ).df()
    wrong = (df["label"] != df["true_label"]).to_numpy()
    fixed = li.flag(
        df["late_aum"].to_numpy(), df["suggested_label"].to_numpy(), df["label"].to_numpy()
    )
    est = con.execute(
        "SELECT sum(est_wrong) FROM label_noise_estimate WHERE run = ? AND split = ?", [run, split]
    ).fetchone()[0]
    humans = {}
    if split == "test" and HUMANS.exists() and not wrong.any():
        counts = np.load(HUMANS)
        if len(counts) == len(df) and np.array_equal(df["idx"].to_numpy(), np.arange(len(df))):
            disputed = counts.argmax(axis=1) != df["label"].to_numpy()
            humans = {
                "cifar10h_majority_disagrees": int(disputed.sum()),
                "calibrated_vs_cifar10h": rule_figures(df["flagged"].to_numpy(bool), disputed),
                "fixed_vs_cifar10h": rule_figures(fixed, disputed),
            }
    return humans | {
        "n": len(df),
        "n_wrong": int(wrong.sum()),
        "noise_rate": float(wrong.mean()),
        "estimated_noise_rate": None if est is None else float(est) / len(df),
        "auroc": li.auroc(df["issue_score"].to_numpy(), wrong) if wrong.any() else None,
        "calibrated": rule_figures(df["flagged"].to_numpy(bool), wrong),
        "fixed": rule_figures(fixed, wrong),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workspace", type=Path, required=True)
    ap.add_argument("--run", required=True)
    ap.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "label_flags.json"
    )
    args = ap.parse_args()
    from curate import catalog
    from curate.workspace import Workspace

    with catalog.read(Workspace(args.workspace)) as con:
        splits = [
            s
            for (s,) in con.execute(
                "SELECT DISTINCT split FROM instance_scores WHERE run = ? ORDER BY split",
                [args.run],
            ).fetchall()
        ]
        res = {s: split_figures(con, args.run, s) for s in splits}
    out = {
        "what": __doc__.split("\n\n")[0],
        "command": " ".join(["python", "benchmarks/bench_label_flags.py", *sys.argv[1:]]),
        "run": args.run,
        "splits": res,
    }
    old = json.loads(args.out.read_text()) if args.out.exists() else {}
    old[args.run] = out
    args.out.write_text(json.dumps(old, indent=1) + "\n")
    for s, r in res.items():
        c, f = r["calibrated"], r["fixed"]
        print(
            f"{args.run} / {s}: {r['noise_rate']:.1%} wrong, estimated "
            f"{(r['estimated_noise_rate'] or 0):.1%}; calibrated: {c['n_flagged']} flagged, "
            f"precision {c['precision']:.3f}, F1 {c['f1']:.3f}; fixed: {f['n_flagged']} flagged, "
            f"precision {f['precision']:.3f}, F1 {f['f1']:.3f}"
        )


if __name__ == "__main__":
    main()
