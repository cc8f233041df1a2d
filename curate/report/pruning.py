"""Pruning, proven by retraining: test accuracy against the fraction of the train split kept, for
every run trained on a subset `curate prune` drew from the reported run (`runs.subset_info`),
beside the same recipe trained on the whole split. The section exists only when such runs do."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from curate.report import plot
from curate.report.page import Figure, Headline, Section
from curate.sql import fetch
from curate.workspace import Workspace


def _without_subset(recipe: str) -> str:
    ident = json.loads(recipe)
    ident.get("train", {}).pop("subset", None)
    return json.dumps(ident, sort_keys=True)


def retrainings(ws: Workspace, run: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(pruned, full): one row per member of every finished run trained on a subset pruned from
    `run` (method, strategy, keep, split, acc), and of the runs of the same recipes on the whole
    split (keep = 1)."""
    have = fetch(
        ws,
        "SELECT count(*) AS n FROM duckdb_columns() WHERE table_name = 'runs' "
        "AND column_name = 'subset_info'",
    )
    empty = pd.DataFrame(columns=["run", "score", "strategy", "keep", "split", "acc"])
    if int(have["n"].iloc[0]) == 0:
        return empty, empty
    rows = fetch(
        ws,
        "SELECT r.run, r.recipe, r.subset_info, r.epochs, m.member, m.final_acc, m.epochs_done "
        "FROM runs r JOIN members m USING (run) WHERE r.dataset = "
        "(SELECT dataset FROM runs WHERE run = ?) ORDER BY r.run, m.member",
        [run],
    )
    if rows.empty:
        return empty, empty
    rows = rows[rows["epochs_done"] >= rows["epochs"]]
    out, recipes = [], set()
    for r in rows.itertuples():
        if r.subset_info is None or pd.isna(r.subset_info):
            continue
        info = json.loads(r.subset_info)
        if info.get("run") != run:
            continue
        recipes.add(_without_subset(r.recipe))
        for split, acc in json.loads(r.final_acc).items():
            out.append(
                {
                    "run": r.run,
                    "score": info.get("score")
                    + (
                        f"@{info['score_epoch']}"
                        if info.get("score") == "el2n" and info.get("score_epoch")
                        else ""
                    ),
                    "strategy": info.get("strategy"),
                    "keep": float(info.get("keep", np.nan)),
                    "split": split,
                    "acc": float(acc),
                }
            )
    full = []
    for r in rows.itertuples():
        whole = r.subset_info is None or pd.isna(r.subset_info)
        if whole and r.run != run and _without_subset(r.recipe) in recipes:
            for split, acc in json.loads(r.final_acc).items():
                full.append(
                    {"run": r.run, "score": None, "strategy": "full data", "keep": 1.0}
                    | {"split": split, "acc": float(acc)}
                )
    return (pd.DataFrame(out) if out else empty), (pd.DataFrame(full) if full else empty)


def section(ws: Workspace, run: str, folder: Path) -> Section | None:
    """The figure of accuracy against the fraction kept, or None when no retraining exists."""
    pruned, full = retrainings(ws, run)
    if pruned.empty:
        return None
    split = "test" if (pruned["split"] == "test").any() else str(pruned["split"].iloc[0])
    p = pruned[pruned["split"] == split]
    f = full[full["split"] == split] if not full.empty else full
    sec = Section(
        "pruning",
        "Pruning by difficulty, proven by retraining",
        f"Runs trained on subsets of the train split that `curate prune` drew from {run}'s scores "
        f"(one line per score and strategy), their {split} accuracy at the last epoch against "
        "the fraction kept: mean over members (seeds), bars one population standard deviation. "
        "Full data: the same recipe on the whole split.",
    )
    stats = (
        p.groupby(["score", "strategy", "keep"])["acc"]
        .agg(mean="mean", std=lambda a: float(np.std(a)), count="count")
        .reset_index()
    )
    fig, ax = plot.figure(1, width=7.5, height=4.4)
    for (score, strategy), g in stats.groupby(["score", "strategy"]):
        g = g.sort_values("keep")
        label = "random" if strategy == "random" else f"{strategy} by {score}"
        ax.errorbar(g["keep"], g["mean"], yerr=g["std"], fmt="-o", ms=3, capsize=2, label=label)
    full_mean = float(f["acc"].mean()) if not f.empty else None
    if full_mean is not None:
        ax.axhline(full_mean, color="k", ls="--", lw=0.9, label="full data")
        ax.axhline(full_mean - 0.01, color="k", ls=":", lw=0.7, label="full data - 1 point")
    ax.set_xlabel("fraction of the train split kept")
    ax.set_ylabel(f"{split} accuracy")
    ax.legend(fontsize=7, ncol=2)
    fig.suptitle(f"{run}: accuracy after pruning")
    name = plot.save(fig, folder, "pruning_accuracy.png")
    best_half = stats[np.isclose(stats["keep"], 0.5)].sort_values("mean", ascending=False)
    rnd = stats[stats["strategy"] == "random"].set_index("keep")["mean"]
    beat = []
    for keep, g in stats[stats["strategy"] != "random"].groupby("keep"):
        top = g.sort_values("mean").iloc[-1]
        if keep in rnd.index:
            beat.append(top["mean"] > rnd[keep])
    text = []
    if not best_half.empty:
        b = best_half.iloc[0]
        text.append(
            f"At 50 % kept the best is {b['strategy']} by {b['score']}: {b['mean']:.4f}"
            + (
                f" (full data {full_mean:.4f}, {100 * (b['mean'] - full_mean):+.2f} points)"
                if full_mean is not None
                else ""
            )
            + "."
        )
    if beat:
        text.append(
            f"The best non-random strategy beats random at {sum(beat)} of {len(beat)} fractions."
        )
    sec.figures.append(
        Figure(
            name,
            "Accuracy against the fraction kept",
            "Data Diet (Paul et al. 2021) kept half of CIFAR-10 without loss by EL2N; Sorscher "
            "et al. 2022: keep the easy when data are scarce, the hard when abundant; Zheng et al. "
            "2023 (ccs): at high pruning rates cover the score range. This run: " + " ".join(text),
        )
    )
    sec.headlines = [
        Headline(
            sec.title,
            "accuracy at 50 % kept, best strategy",
            "Paul et al.: no loss at 50 % on CIFAR-10 (ResNet-18, 200 epochs)",
            {split: float(best_half.iloc[0]["mean"]) if not best_half.empty else None},
        ),
        Headline(sec.title, "accuracy on full data, same recipe", "—", {split: full_mean}),
    ]
    if full_mean is None:
        sec.notes.append(
            "No run of the same recipe on the whole train split is in the catalog; train one "
            "(the same command without --subset, another --run-name) to draw the full-data line."
        )
    return sec
