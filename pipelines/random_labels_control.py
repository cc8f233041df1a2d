"""The random-labels control of Hacohen et al. §5.2, the way they ran it: small conv nets on images
whose labels are permuted (Zhang et al.), side by side with the same networks on the true labels.

Hacohen et al. report that under random labels TP-agreement is no longer bimodal (minimum Pearson
bimodality 1.07 on the train set, 1.35 on the test set, 100 st-VGGs on small mammals) while it is
strongly bimodal on the true labels. Per dataset this script

1. ingests the first N images of every split twice: with the true labels and with
   `--random-labels SEED` (`dataset.max_per_split`, so a LeNet-5 can memorise them in CPU minutes);
2. trains the same ensemble on both (fused LeNet-5, no dropout, no weight decay, the same seeds);
3. scores both runs and writes, per epoch and split, mean accuracy, TP-agreement bimodality and its
   independent-members null, strict agreement and the random-agreement baseline
   (`reports/random-labels/report.json`, `report.png`, `report.md`).

    python pipelines/random_labels_control.py [--datasets mnist cifar10] [--n 5000] [--epochs 40]
        [--members 8] [--seed 0] [--workspace workspace] [--out reports/random-labels]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data"

# per dataset: the recipe and the overrides that point it at the data on disk
SOURCES = {
    "mnist": ("mnist", [f"dataset.source={DATA / 'mnist'}", "dataset.download=false"]),
    "cifar10": (
        "cifar10-cpu",
        [f"dataset.source={DATA / 'cifar10-jpeg.tar.gz'}", "train.fuse_members=0"],
    ),
}


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children, seconds."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def summarise(rows: list[dict]) -> dict:
    """The figures the verdict rests on, from one run's train-split epoch rows (epochs >= 1).

    min_bimodality : the lowest bimodality over epochs, with its epoch, null and mean accuracy;
    learning : mean bimodality and mean null over the epochs while members learn (mean train
        accuracy between 0.2 and 0.9, where neither peak of TP-agreement dominates by accuracy alone);
    final_acc : mean train accuracy at the last epoch.
    """
    rows = [r for r in rows if r["epoch"] >= 1]
    low = min(rows, key=lambda r: r["bimodality"])
    mid = [r for r in rows if 0.2 <= r["acc_mean"] <= 0.9]
    out = {
        "min_bimodality": {
            k: low[k] for k in ("epoch", "bimodality", "bimodality_null", "acc_mean")
        },
        "final_acc": rows[-1]["acc_mean"],
        "learning_epochs": [r["epoch"] for r in mid],
    }
    if mid:
        out["learning_bimodality"] = sum(r["bimodality"] for r in mid) / len(mid)
        out["learning_null"] = sum(r["bimodality_null"] for r in mid) / len(mid)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", nargs="+", default=["mnist"], choices=list(SOURCES))
    ap.add_argument("--n", type=int, default=5000, help="first N images of every split")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--members", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0, help="the label permutation's seed")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--workspace", default=str(ROOT / "workspace"))
    ap.add_argument("--out", default=str(ROOT / "reports" / "random-labels"))
    args = ap.parse_args()

    from curate.cli import main as curate
    from curate.sql import fetch
    from curate.workspace import Workspace

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ws = Workspace.resolve(args.workspace)
    settings = {
        "n_per_split": args.n,
        "epochs": args.epochs,
        "members": args.members,
        "arch": "lenet5",
        "strategy": "fused",
        "batch_size": args.batch_size,
        "lr": args.lr,
        "schedule": "cosine",
        "weight_decay": 0.0,
        "dropout": False,
        "label_seed": args.seed,
    }
    common = [
        f"dataset.max_per_split={args.n}",
        f"train.members={args.members}",
        f"train.epochs={args.epochs}",
        "train.arch=lenet5",
        "train.strategy=fused",
        "train.weight_decay=0.0",
        "train.dropout=false",
        f"train.lr={args.lr}",
        "train.schedule=cosine",
        f"loader.batch_size={args.batch_size}",
        "score.stats=false",
        *args.overrides,
    ]
    report: dict = {"datasets": {}}
    old = out / "report.json"
    if old.exists():  # other datasets' results stay in the report
        report["datasets"] = json.loads(old.read_text())["datasets"]
    for ds in args.datasets:
        recipe, source = SOURCES[ds]
        if ds == "cifar10":  # an explicit name: the recipe's own would collide with the full set
            source = [*source, f"dataset.name=cifar10-first{args.n}"]
        arms: dict = {"settings": settings, "overrides": args.overrides}
        for arm, labels in (("true", []), ("random", [f"dataset.random_labels={args.seed}"])):
            run = f"rl-{ds}-{args.n}-{arm}"
            sets = [x for o in (*source, *common, *labels) for x in ("--set", o)]
            t0 = cpu_seconds()
            if curate(["run", recipe, "--run-name", run, "--workspace", str(ws.root), *sets]):
                sys.exit(f"{ds}, {arm} labels: the run failed")
            rows = fetch(
                ws,
                "SELECT split, epoch, acc_mean, bimodality, bimodality_null, strict_agreement, "
                "random_agreement_normalized AS random_agreement, lower_bound "
                "FROM epoch_metrics WHERE run = ? ORDER BY split, epoch",
                [run],
            ).to_dict(orient="records")
            by_split = {s: [r for r in rows if r["split"] == s] for s in ("train", "test")}
            arms[arm] = {
                "run": run,
                # CPU time of this process for ingest + train + score (a run resumed or already
                # finished counts only what this invocation did)
                "cpu_seconds": round(cpu_seconds() - t0, 1),
                "summary_train": summarise(by_split["train"]),
                "summary_test": summarise(by_split["test"]),
                "epochs": by_split,
            }
        report["datasets"][ds] = arms
    (out / "report.json").write_text(json.dumps(report, indent=1, default=float))
    plot(report, out / "report.png")
    (out / "report.md").write_text(markdown(report))
    print((out / "report.md").read_text())
    print(f"report: {out / 'report.json'}, {out / 'report.png'}, {out / 'report.md'}")


def markdown(report: dict) -> str:
    """Per dataset and arm: the train split's epochs as a table, and the summary figures."""
    lines = ["# Random-labels control", ""]
    for ds, arms in report["datasets"].items():
        s = arms["settings"]
        lines += [
            f"{ds}: {s['members']} x {s['arch']} ({s['strategy']}), first {s['n_per_split']} images "
            f"per split, {s['epochs']} epochs, batch {s['batch_size']}, lr {s['lr']} "
            f"{s['schedule']}, no weight decay, no dropout, label permutation seed {s['label_seed']}",
            "",
        ]
        for arm in ("true", "random"):
            a = arms[arm]
            lines += [
                f"## {ds}, {arm} labels (run {a['run']}, {a['cpu_seconds'] / 60:.1f} CPU-min)",
                "",
                "split | epoch | acc | bimodality | null | strict agreement | random agreement",
                "--- | --- | --- | --- | --- | --- | ---",
            ]
            for split in ("train", "test"):
                for r in a["epochs"][split]:
                    lines.append(
                        f"{split} | {r['epoch']} | {r['acc_mean']:.3f} | {r['bimodality']:.2f} | "
                        f"{r['bimodality_null']:.2f} | {r['strict_agreement']:.3f} | "
                        f"{r['random_agreement']:.3f}"
                    )
            lines += ["", f"summary (train): `{json.dumps(a['summary_train'])}`", ""]
    return "\n".join(lines)


def plot(report: dict, path: Path) -> None:
    """One row per dataset: train accuracy, bimodality against its null, strict against random
    agreement, per epoch, true labels (solid) and random labels (dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["datasets"])
    fig, axes = plt.subplots(len(names), 3, figsize=(13, 3.6 * len(names)), squeeze=False)
    for row, ds in zip(axes, names, strict=True):
        for arm, style in (("true", "-"), ("random", "--")):
            ep = report["datasets"][ds][arm]["epochs"]["train"]  # noqa: B023
            x = [r["epoch"] for r in ep]
            row[0].plot(x, [r["acc_mean"] for r in ep], style, label=f"{arm} labels")
            row[1].plot(
                x, [r["bimodality"] for r in ep], style, c="C0", label=f"{arm}: TP-agreement"
            )
            row[1].plot(x, [r["bimodality_null"] for r in ep], style, c="C1", label=f"{arm}: null")
            row[2].plot(
                x, [r["strict_agreement"] for r in ep], style, c="C0", label=f"{arm}: strict"
            )
            row[2].plot(
                x, [r["random_agreement"] for r in ep], style, c="C1", label=f"{arm}: random"
            )
        row[0].set_ylabel(f"{ds}\nmean train accuracy")
        row[1].set_ylabel("bimodality (lower = more bimodal)")
        row[2].set_ylabel("agreement (train)")
        for ax in row:
            ax.set_xlabel("epoch")
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


if __name__ == "__main__":
    main()
