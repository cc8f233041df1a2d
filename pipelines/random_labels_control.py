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
        [--members 8] [--seed 0] [--set train.threads=1] [--workspace workspace]
        [--out reports/random-labels]
    python pipelines/random_labels_control.py --render     (redraw the report from report.json)

Results of earlier runs of other datasets stay in report.json. `reports/random-labels/README.md`
gives the commands behind the committed report and what it shows.
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
        "cifar10-lenet-cpu",
        [f"dataset.source={DATA / 'cifar10-jpeg.tar.gz'}", "train.fuse_members=0"],
    ),
}


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children, seconds."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def summarise(rows: list[dict]) -> dict:
    """The figures the verdict rests on, from one run's epoch rows of one split.

    Only epochs 1..E with mean accuracy at most 0.95 count for bimodality: nearer 100 % the
    TP-agreement distribution is a spike at 1 whose skew makes the score explode (or vanish, when
    every member is right), whatever the order of learning.

    min_bimodality : the lowest bimodality over those epochs, with its epoch, null, accuracy
        (Hacohen et al. quote this: 1.07 on train, 1.35 on test under random labels);
    at_half_accuracy : the epoch whose mean accuracy is nearest 0.5 (matched accuracy: the null
        is about the same for every run there), its bimodality, null, strict and random agreement;
    learning_bimodality, learning_null : means over the epochs with accuracy 0.2..0.9;
    final_acc : mean accuracy at the last epoch.
    """
    final = rows[-1]["acc_mean"]
    rows = [
        r
        for r in rows
        if r["epoch"] >= 1
        and r["acc_mean"] <= 0.95
        and r["bimodality"] is not None
        and r["bimodality"] == r["bimodality"]  # not NaN
    ]
    out: dict = {"final_acc": final}
    if not rows:
        return out
    low = min(rows, key=lambda r: r["bimodality"])
    out["min_bimodality"] = {
        k: low[k] for k in ("epoch", "bimodality", "bimodality_null", "acc_mean")
    }
    half = min(rows, key=lambda r: abs(r["acc_mean"] - 0.5))
    out["at_half_accuracy"] = {
        k: half[k]
        for k in (
            "epoch",
            "acc_mean",
            "bimodality",
            "bimodality_null",
            "strict_agreement",
            "random_agreement",
        )
    }
    mid = [r for r in rows if 0.2 <= r["acc_mean"] <= 0.9]
    out["learning_epochs"] = [r["epoch"] for r in mid]
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
    ap.add_argument(
        "--render",
        action="store_true",
        help="only recompute the summaries and redraw report.md / report.png from report.json",
    )
    ap.add_argument("--workspace", default=str(ROOT / "workspace"))
    ap.add_argument("--out", default=str(ROOT / "reports" / "random-labels"))
    args = ap.parse_args()

    out = Path(args.out)
    if args.render:
        report = json.loads((out / "report.json").read_text())
        for arms in report["datasets"].values():
            for arm in ("true", "random"):
                for split in ("train", "test"):
                    arms[arm][f"summary_{split}"] = summarise(arms[arm]["epochs"][split])
        write(report, out)
        return

    from curate.cli import main as curate
    from curate.sql import fetch
    from curate.workspace import Workspace

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
    write(report, out)


def _finite(x):
    """NaN (bimodality of a constant TP-agreement, every member right) as JSON null."""
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_finite(v) for v in x]
    if isinstance(x, float) and x != x:
        return None
    return x


def write(report: dict, out: Path) -> None:
    """report.json, report.md and report.png into `out`."""
    (out / "report.json").write_text(json.dumps(_finite(report), indent=1))
    plot(report, out / "report.png")
    (out / "report.md").write_text(markdown(report))
    print((out / "report.md").read_text())
    print(f"report: {out / 'report.json'}, {out / 'report.png'}, {out / 'report.md'}")


def _fmt(v, digits: int) -> str:
    """A number for the Markdown table; undefined (every member right) as n/a."""
    return "n/a" if v is None or v != v else f"{v:.{digits}f}"


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
                    cells = [
                        _fmt(r[k], d)
                        for k, d in (
                            ("acc_mean", 3),
                            ("bimodality", 2),
                            ("bimodality_null", 2),
                            ("strict_agreement", 3),
                            ("random_agreement", 3),
                        )
                    ]
                    lines.append(" | ".join([split, str(r["epoch"]), *cells]))
            lines += [
                "",
                f"summary (train): `{json.dumps(a['summary_train'])}`",
                "",
                f"summary (test): `{json.dumps(a['summary_test'])}`",
                "",
            ]
    return "\n".join(lines)


def plot(report: dict, path: Path) -> None:
    """One row per dataset: train accuracy per epoch; TP-agreement bimodality and its null per
    epoch and against mean accuracy (epochs at accuracy <= 0.95, see `summarise`); strict against
    random agreement per epoch. True labels blue, random labels red; nulls and baselines dotted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nan = float("nan")
    names = list(report["datasets"])
    fig, axes = plt.subplots(len(names), 4, figsize=(17, 3.8 * len(names)), squeeze=False)
    for row, ds in zip(axes, names, strict=True):
        for arm, c in (("true", "C0"), ("random", "C3")):
            ep = report["datasets"][ds][arm]["epochs"]["train"]
            ep = [{k: nan if v is None else v for k, v in r.items()} for r in ep]
            x = [r["epoch"] for r in ep]
            acc = [r["acc_mean"] for r in ep]
            ok = [r["epoch"] >= 1 and r["acc_mean"] <= 0.95 for r in ep]
            b = [r["bimodality"] if k else nan for r, k in zip(ep, ok, strict=True)]
            b0 = [r["bimodality_null"] if k else nan for r, k in zip(ep, ok, strict=True)]
            row[0].plot(x, acc, c=c, label=f"{arm} labels")
            row[1].plot(x, b, c=c, marker=".", label=f"{arm}: TP-agreement")
            row[1].plot(x, b0, c=c, ls=":", label=f"{arm}: independent null")
            row[2].plot(acc, b, c=c, marker=".", label=f"{arm}: TP-agreement")
            row[2].plot(acc, b0, c=c, ls=":", label=f"{arm}: null")
            row[3].plot(x, [r["strict_agreement"] for r in ep], c=c, label=f"{arm}: strict")
            row[3].plot(x, [r["random_agreement"] for r in ep], c=c, ls=":", label=f"{arm}: random")
        row[0].set_ylabel(f"{ds}\nmean train accuracy")
        row[1].set_ylabel("bimodality, train (lower = more bimodal)")
        row[2].set_ylabel("bimodality, train")
        row[3].set_ylabel("agreement, train")
        for ax in (row[0], row[1], row[3]):
            ax.set_xlabel("epoch")
        row[2].set_xlabel("mean train accuracy")
        row[1].set_ylim(0, 3)
        row[2].set_ylim(0, 3)
        for ax in row:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)


if __name__ == "__main__":
    main()
