"""Which signal of the prediction log finds wrong labels best: the development set on which
`issue_score` and `flagged` (curate/scores/label_issues.py) were chosen, kept apart from the CIFAR-10N
labels they are evaluated on (benchmarks/bench_label_noise.py).

Data: real human label noise on other images, from other annotators. The 10,000 CIFAR-10 test images
of ../shared/data/cifar10-jpeg.tar.gz become the training split; each gets the label of the worst of
k annotators of CIFAR-10H (../shared/data/refs/cifar10h-counts-test.npy, about 51 per image): k of
them are drawn without replacement, seeded, and if any is wrong the image gets one of the wrong
labels drawn, else its own (as CIFAR-10N's `worse_label` takes the worst of 3 annotators). k = 25
gives about 40 % wrong labels, k = 3 about 11 %. The first 10,000 CIFAR-10 training images are the
test split.

For each noise level: `curate ingest` with those labels, `curate run` of the recipe, then from the
run's prediction log (eval pass, train split, epochs 1..E) the AUROC of each candidate signal for
label != true label, and precision / recall / F1 of each candidate rule.

    python benchmarks/bench_label_signals.py [--recipe cifar10-label-issues] [--epochs 5 10] [--k 25 3]

Figures go to benchmarks/results/label_signals.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tarfile
from pathlib import Path

import numpy as np
from bench_label_noise import DATA, ROOT, SOURCE, curate  # the same data and `curate` runner
from scipy.stats import rankdata

HUMANS = DATA / "refs" / "cifar10h-counts-test.npy"
CLASSES = "airplane automobile bird cat deer dog frog horse ship truck".split()


def build_images(root: Path) -> np.ndarray:
    """The image folder (train = CIFAR-10 test images, test = the first 10,000 training images);
    returns the CIFAR-10 labels of its train split in idx order."""
    labels = np.full(10_000, -1)
    done = root / ".complete"
    with tarfile.open(SOURCE) as tar:
        for m in tar:
            parts = m.name.split("/")
            if not m.isfile() or len(parts) < 3 or not parts[-1].endswith(".jpg"):
                continue
            split, cls, i = parts[-3], parts[-2], int(parts[-1][:-4])
            if split == "test":
                labels[i] = CLASSES.index(cls)
                target = root / "train" / cls / parts[-1]
            elif i < 10_000:
                target = root / "test" / cls / parts[-1]
            else:
                continue
            if not done.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(tar.extractfile(m).read())
    done.touch()
    assert (labels >= 0).all()
    return labels


def worst_of(counts: np.ndarray, true: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Per image, k of its annotators drawn without replacement; one of their wrong labels if any
    is wrong (drawn uniformly among the drawn annotators' wrong answers), else the true label."""
    rng = np.random.default_rng(seed)
    out = true.copy()
    for i, c in enumerate(counts.astype(int)):
        pool = np.repeat(np.arange(len(c)), c)
        drawn = rng.choice(pool, min(k, len(pool)), replace=False)
        wrong = drawn[drawn != true[i]]
        if len(wrong):
            out[i] = rng.choice(wrong)
    return out


def read_log(ws: Path, run: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """pred, p_true, margin (M, E, N) of epochs 1..E, and the given labels (N,), in idx order."""
    import duckdb

    con = duckdb.connect(str(ws / "catalog.duckdb"), read_only=True)
    try:
        df = con.execute(
            "SELECT member, epoch, idx, pred, p_true, margin FROM predictions "
            "WHERE run = ? AND pass = 'eval' AND split = 'train' AND epoch > 0",
            [run],
        ).df()
        given = con.execute(
            "SELECT label FROM instance_scores WHERE run = ? AND split = 'train' ORDER BY idx",
            [run],
        ).fetchnumpy()["label"]
    finally:
        con.close()
    m, e, n = df.member.max() + 1, df.epoch.max(), len(given)
    out = []
    for col in ("pred", "p_true", "margin"):
        a = np.zeros((m, e, n), np.float64)
        a[df.member.to_numpy(), df.epoch.to_numpy() - 1, df.idx.to_numpy()] = df[col].to_numpy()
        out.append(a)
    return out[0].astype(int), out[1], out[2], np.asarray(given)


def candidates(pred, p_true, margin, given, k: int = 10):
    """The candidate scores (higher = more likely wrong) and rules, from the log's arrays."""
    from curate.scores import label_issues as li

    m, e, n = pred.shape
    late = np.array(list(li.late_epochs(e))) - 1
    aum, late_aum, last = margin.mean((0, 1)), margin[:, late].mean((0, 1)), margin[:, -1].mean(0)
    votes = np.stack([(pred[:, late] == c).sum((0, 1)) for c in range(k)], 1)
    plural = np.where(votes[np.arange(n), given] == votes.max(1), given, votes.argmax(1))
    consensus = votes.max(1) / votes.sum(1)
    other = np.where(plural != given, consensus, 0.0)
    r = lambda a: rankdata(a) / n  # noqa: E731
    scores = {
        "-late_aum (issue_score)": li.issue_score(late_aum),
        "-aum (all epochs)": -aum,
        "-margin, last epoch": -last,
        "1 - accessibility": -(pred == given).mean((0, 1)),
        "1 - late p_true": -p_true[:, late].mean((0, 1)),
        "late consensus on another class": other,
        "rank mean of -aum and that consensus (earlier issue_score)": (r(-aum) + r(other)) / 2,
    }
    rules = {
        "suggested != label and late_aum < 0 (flagged)": li.flag(late_aum, plural, given),
        "late_aum < 0": late_aum < 0,
        "suggested != label": plural != given,
        "suggested != label, consensus > 1/2, aum < 0 (earlier flagged)": (plural != given)
        & (consensus > 0.5)
        & (aum < 0),
    }
    return scores, rules


def evaluate(wrong: np.ndarray, scores: dict, rules: dict) -> dict:
    from curate.scores.label_issues import auroc

    out = {"auroc": {k: auroc(v, wrong) for k, v in scores.items()}, "rules": {}}
    for k, flag in rules.items():
        tp = int((flag & wrong).sum())
        out["rules"][k] = {
            "n_flagged": int(flag.sum()),
            "precision": tp / max(int(flag.sum()), 1),
            "recall": tp / int(wrong.sum()),
            "f1": 2 * tp / (int(flag.sum()) + int(wrong.sum())),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--recipe", default="cifar10-label-issues")
    ap.add_argument("--k", type=int, nargs="+", default=[25, 3], help="worst of k annotators")
    ap.add_argument("--epochs", type=int, nargs="+", default=[5, 10])
    ap.add_argument("--seed", type=int, default=12345)
    ap.add_argument("--set", dest="extra", action="append", default=[], help="more overrides")
    ap.add_argument("--work", type=Path, default=ROOT / "benchmarks" / ".work" / "label-signals")
    ap.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "label_signals.json"
    )
    args = ap.parse_args()
    for p in (SOURCE, HUMANS):
        if not p.exists():
            raise SystemExit(f"{p} is absent (shared data)")
    ws = args.work.resolve()
    images = ws / "images"
    true = build_images(images)
    counts = np.load(HUMANS)
    results = []
    for k in args.k:
        noisy = worst_of(counts, true, k, args.seed)
        labels = ws / f"worst{k}.npy"
        np.save(labels, noisy)
        name = f"dev-worst{k}"
        common = [
            f"dataset.source={images}",
            f"dataset.name={name}",
            f"dataset.labels={labels}",
            "score.stats=false",
            *args.extra,
        ]
        flags = [a for s in common for a in ("--set", s)]
        ingest = [a for s in common if s.startswith("dataset.") for a in ("--set", s)]
        curate("ingest", args.recipe, "--workspace", str(ws), *ingest, log=ws / f"{name}.log")
        for epochs in args.epochs:
            run = f"{name}-e{epochs}"
            print(f"== {run}: {(noisy != true).mean():.1%} wrong", flush=True)
            curate(
                "run",
                args.recipe,
                "--run-name",
                run,
                "--workspace",
                str(ws),
                *flags,
                "--set",
                f"train.epochs={epochs}",
                log=ws / f"{run}.log",
            )
            pred, p_true, margin, given = read_log(ws, run)
            assert np.array_equal(given, noisy)
            row = evaluate(given != true, *candidates(pred, p_true, margin, given))
            row |= {
                "k": k,
                "epochs": epochs,
                "members": int(pred.shape[0]),
                "noise_rate": float((noisy != true).mean()),
                "acc_vs_true_last_epoch": float((pred[:, -1] == true).mean()),
            }
            results.append(row)
            for s, v in row["auroc"].items():
                print(f"  AUROC {v:.3f}  {s}")
            for s, v in row["rules"].items():
                print(f"  F1 {v['f1']:.3f} (P {v['precision']:.3f}, R {v['recall']:.3f})  {s}")
            write(args, results)
    print(f"wrote {args.out}")


def write(args, results: list[dict]) -> None:
    out = {
        "what": "AUROC of candidate wrong-label scores and F1 of candidate rules on a development "
        "set of real human noise (CIFAR-10 test images, worst of k CIFAR-10H annotators), apart "
        "from the CIFAR-10N evaluation",
        "command": " ".join(["python", "benchmarks/bench_label_signals.py", *sys.argv[1:]]),
        "recipe": args.recipe,
        "seed": args.seed,
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
