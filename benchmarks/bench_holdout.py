"""Held-out members on CIFAR-10: do scores from members that never trained on an image estimate its
C-score, or count wrong labels, better than the members that did?

The C-scores (Jiang et al.) are held-out by definition: the accuracy on an image of models trained
without it. Every curate score is in-sample: the members train on every image they score. This
benchmark trains the `cifar10-cpu` recipe twice, each run on a random half of the train split
(`train.subset`, halves drawn with seed 0, `equal_steps` off: each member trains 5 epochs on 25,000
images), so that every image is held out by the 8 members of one run and in-sample for the 8 of
the other. Per image it then compares, on the train split:

- confidence (mean p_true over members and epochs 1..E) and accuracy (mean correctness), from the
  held-out members, from the in-sample members, and from all 16: Spearman rho with the C-scores
  and split-half r (members 0-3 against 4-7 of each run);
- the number of wrong labels `curate.scores.noise` estimates on the clean labels (lower is better:
  CIFAR-10's labels are very nearly all right), from the held-out and from the in-sample
  predictions of the late epochs.

The full-data recipe (8 members on all 50,000) is the row `fastconv16-8x5-fp32` of recipes.json.

    python benchmarks/bench_holdout.py [--work DIR]        # trains both halves, then analyses
    python benchmarks/bench_holdout.py --analyse-only --work DIR [--time-logs A B]
        # the runs half-h1 and half-h2 exist in DIR (trained as above); CPU from their time logs

Figures go to benchmarks/results/holdout.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_recipes import (  # noqa: E402
    CSCORES,
    SOURCE,
    _plain,
    correlate,
    cpu_children,
    cpu_from_time_log,
    curate,
    read_log,
)

N_TRAIN, DATASET = 50_000, "cifar10-jpeg"


def halves(folder: Path) -> dict[str, Path]:
    """Two complementary random halves of the train idx (seed 0), as .npy subset files."""
    order = np.random.default_rng(0).permutation(N_TRAIN)
    out = {}
    for name, part in (("h1", order[: N_TRAIN // 2]), ("h2", order[N_TRAIN // 2 :])):
        out[name] = folder / f"{name}.npy"
        np.save(out[name], np.sort(part))
    return out


def read(ws: Path, run: str, labels) -> dict[str, np.ndarray]:
    """pred, p_true, margin, correct (M, E+1, N), idx and y of the run's train log."""
    from curate.scores.engine import log_layout

    run_dir = ws / "runs" / run
    members, last = log_layout(run_dir, "train")
    log = read_log(run_dir, "train", members, last, labels)
    keep = ("pred", "p_true", "margin")
    return {k: getattr(log, k) for k in keep} | {"correct": log.c, "idx": log.idx, "y": log.labels}


def noise_count(y, pred, p_true, margin) -> int:
    """`curate.scores.noise`'s estimate of the wrong labels from the late epochs, (M, E+1, N)."""
    from curate.scores import label_issues as li
    from curate.scores import noise as nz
    from curate.scores.engine import vote_mode

    late = list(li.late_epochs(pred.shape[1] - 1))
    flat = [a[:, late].reshape(-1, a.shape[2]) for a in (pred, p_true, margin)]
    preds = flat[0].astype(np.int16)
    suggested, _ = vote_mode(preds, y.astype(np.int16))
    cand = nz.candidate_confidence(preds, flat[1], flat[2], suggested)
    score = li.issue_score(flat[2].mean(axis=0, dtype=np.float64))
    n_wrong, _ = nz.estimate(y, suggested, flat[1].mean(axis=0, dtype=np.float64), cand, score, 10)
    return int(round(n_wrong.sum()))


def analyse(ws: Path, subset: Path) -> dict:
    from curate import catalog
    from curate.workspace import Workspace

    labels = catalog.split_labels(Workspace(ws), DATASET, "train")
    a, b = read(ws, "half-h1", labels), read(ws, "half-h2", labels)
    assert np.array_equal(a["idx"], b["idx"])
    ref = np.load(CSCORES)["scores"][a["idx"]]
    in_a = np.zeros(N_TRAIN, bool)
    in_a[np.load(subset)] = True
    in_a = in_a[a["idx"]]  # images run half-h1 trained on

    def pick(key, held: bool):  # (M, E+1, N): each image's held-out (or in-sample) members
        return np.where(in_a[None, None] != held, a[key], b[key])

    out = {}
    for score, key in (("confidence", "p_true"), ("accuracy", "correct")):

        def mean(x, rows=slice(None)):
            return x[rows, 1:].astype(np.float64).mean(axis=(0, 1))

        for who in ("held_out", "in_sample", "all"):
            if who == "all":
                halves_ = [
                    (mean(a[key], r) + mean(b[key], r)) / 2 for r in (slice(0, 4), slice(4, 8))
                ]
                full = (mean(a[key]) + mean(b[key])) / 2
            else:
                x = pick(key, who == "held_out")
                halves_, full = [mean(x, slice(0, 4)), mean(x, slice(4, 8))], mean(x)
            out[f"{score}_{who}"] = {
                "spearman_cscore": correlate(full, ref)["rho"],
                "split_half_r": correlate(*halves_)["r"],
            }
    for who in ("held_out", "in_sample"):
        out[f"noise_estimate_clean_{who}"] = noise_count(
            a["y"], *(pick(k, who == "held_out") for k in ("pred", "p_true", "margin"))
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--work", type=Path, default=ROOT / "benchmarks" / ".work" / "holdout")
    ap.add_argument("--analyse-only", action="store_true", help="the two runs exist in --work")
    ap.add_argument(
        "--time-logs",
        type=Path,
        nargs="*",
        help="with --analyse-only: the runs' `/usr/bin/time -v` logs, for their CPU minutes",
    )
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "holdout.json")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    files = halves(args.work)
    row = {"command": " ".join(["python", "benchmarks/bench_holdout.py", *sys.argv[1:]])}
    if not args.analyse_only:
        c0 = cpu_children()
        for name, path in files.items():
            sets = [f"dataset.source={SOURCE}", "train.precision=fp32", f"train.subset={path}"]
            sets = [x for s in sets for x in ("--set", s)]
            curate("run", "cifar10-cpu", "--run-name", f"half-{name}", "--workspace",
                   str(args.work), *sets, log=args.work / f"half-{name}.log")  # fmt: skip
        row["cpu_minutes_both_runs"] = (cpu_children() - c0) / 60
    elif args.time_logs:
        row["cpu_minutes_both_runs"] = sum(
            cpu_from_time_log(p)["cpu_minutes"] for p in args.time_logs
        )
    row |= analyse(args.work, files["h1"])
    row["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    for k, v in row.items():
        print(f"{k:32s} {v}")
    args.out.write_text(json.dumps(_plain(row), indent=2, allow_nan=False) + "\n")


if __name__ == "__main__":
    main()
