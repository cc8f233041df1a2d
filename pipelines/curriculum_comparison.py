"""Curriculum against anti-curriculum, random ordering (same pacing) and no pacing, on MNIST (default) or
any recipe: test accuracy per epoch for each arm, as Hacohen et al. and Wu et al. compare them.

1. a scoring run (the recipe's members) gives every training image its accessibility;
2. three orderings are exported from it: easy first, hard first, random, all with one pacing;
3. each arm trains the same members from the same seeds; the no-pacing arm is plain training;
4. the report (Markdown, JSON, PNG) lists mean test accuracy per epoch per arm.

    python pipelines/curriculum_comparison.py [--recipe mnist] [--members 2] [--epochs 3]
        [--set dataset.source=../shared/data/mnist] [--workspace workspace] [--out reports/curriculum-mnist]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--recipe", default="mnist")
    ap.add_argument("--members", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--pacing", default="linear")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--workspace", default="workspace")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    import pandas as pd

    from curate.cli import main as curate

    ws = ["--workspace", args.workspace]
    over = [x for o in args.overrides for x in ("--set", o)]
    size = ["--set", f"train.members={args.members}", "--set", f"train.epochs={args.epochs}"]
    base = f"{args.recipe}-cc-score"
    out = Path(args.out or ROOT / "reports" / f"curriculum-{args.recipe}")
    out.mkdir(parents=True, exist_ok=True)
    steps = []
    if curate(
        ["run", args.recipe, "--run-name", base, *ws, *over, *size, "--set", "score.stats=false"]
    ):
        sys.exit("the scoring run failed")
    arms = {"no pacing": None}
    for mode, flag in (
        ("curriculum", []),
        ("anti-curriculum", ["--anti"]),
        ("random", ["--random"]),
    ):
        path = out / f"order-{mode}.npy"
        rc = curate(
            [
                "curriculum",
                base,
                "--pacing",
                args.pacing,
                "--pacing-a",
                "0.8",
                "--pacing-b",
                "0.2",
                *flag,
                "--out",
                str(path),
                *ws,
            ]
        )
        if rc:
            sys.exit(f"exporting the {mode} ordering failed")
        arms[mode] = path
    rows = []
    for arm, order in arms.items():
        run = f"{args.recipe}-cc-{arm.replace(' ', '-')}"
        extra = ["--curriculum", str(order)] if order else []
        if curate(
            [
                "train",
                args.recipe,
                "--run-name",
                run,
                *ws,
                *over,
                *size,
                "--set",
                "train.seed=1",
                *extra,
            ]
        ):
            sys.exit(f"training arm {arm} failed")
        for m in range(args.members):
            prog = json.loads(
                (Path(args.workspace) / "runs" / run / "progress" / f"member={m}.json").read_text()
            )
            for e, rec in prog["epochs"].items():
                test = rec["acc"].get("test", rec["acc"].get("val"))
                rows.append({"arm": arm, "member": m, "epoch": int(e), "test_acc": test})
        steps.append(arm)
    df = pd.DataFrame(rows)
    table = df.groupby(["arm", "epoch"])["test_acc"].agg(["mean", "std"]).reset_index()
    wide = table.pivot(index="epoch", columns="arm", values="mean")[steps]
    (out / "report.json").write_text(table.to_json(orient="records", indent=1))
    md = [
        f"# Curriculum comparison: {args.recipe}, {args.members} members, {args.epochs} epochs, pacing "
        f"{args.pacing} (a 0.8, b 0.2)",
        "",
        "Mean test accuracy per epoch (epoch 0 = untrained):",
        "",
        "```",
        wide.round(4).to_string(),
        "```",
        "",
    ]
    (out / "report.md").write_text("\n".join(md))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for arm in steps:
        t = table[table["arm"] == arm]
        ax.errorbar(
            t["epoch"], t["mean"], yerr=t["std"].fillna(0), label=arm, marker="o", capsize=3
        )
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"{args.recipe}: curricula ({args.pacing} pacing)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "report.png", dpi=100)
    print(wide.to_string())
    print(f"report: {out / 'report.md'}, {out / 'report.json'}, {out / 'report.png'}")


if __name__ == "__main__":
    main()
