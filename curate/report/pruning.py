"""Pruning, proven by retraining: test accuracy against the fraction of the train split kept, for
every run trained on a subset `curate prune` drew from the reported run (`runs.subset_info`),
beside the same recipe trained on the whole split. The section exists only when such runs do.

Its figure in three steps: its numbers (`pruning_numbers`), its drawing (`_figure`) and its caption
(`_caption`), which quotes the pruning benchmarks' regime thresholds from `curate.findings`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from curate import findings
from curate.prune import held_out, run_accuracy
from curate.report import plot
from curate.report.page import Figure, Headline, Section
from curate.sql import fetch
from curate.workspace import Workspace

COLUMNS = ["run", "score", "strategy", "keep", "steps", "split", "acc", "family"]


def _without_subset(recipe: str) -> str:
    """The recipe of the same training on the whole split: no subset, and for a run at equal steps
    (train.equal_steps) the epochs it was asked for, not the epochs it trained."""
    ident = json.loads(recipe)
    train = ident.get("train", {})
    train.pop("subset", None)
    if train.get("equal_steps") and "epochs_asked" in train:
        train["epochs"] = train.pop("epochs_asked")
    train["equal_steps"] = False
    return json.dumps(ident, sort_keys=True)


def retrainings(ws: Workspace, run: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(pruned, full): one row per member of every finished run trained on a subset pruned from
    `run` (method, strategy, keep, steps, split, acc), and of the runs of the same recipes on the
    whole split (keep = 1); `family` is that whole-split recipe, as JSON."""
    empty = pd.DataFrame(columns=COLUMNS)
    rows = _finished_members(ws, run)
    if rows.empty:
        return empty, empty
    out = _pruned_rows(rows, run)
    full = _full_rows(rows, run, {r["family"] for r in out})
    return (pd.DataFrame(out) if out else empty), (pd.DataFrame(full) if full else empty)


def _finished_members(ws: Workspace, run: str) -> pd.DataFrame:
    """Every member of the finished runs on `run`'s dataset, with its run's recipe and subset;
    empty for a catalog older than runs.subset_info."""
    have = fetch(
        ws,
        "SELECT count(*) AS n FROM duckdb_columns() WHERE table_name = 'runs' "
        "AND column_name = 'subset_info'",
    )
    if int(have["n"].iloc[0]) == 0:
        return pd.DataFrame()
    rows = fetch(
        ws,
        "SELECT r.run, r.recipe, r.subset_info, r.epochs, m.member, m.final_acc, m.epochs_done "
        "FROM runs r JOIN members m USING (run) WHERE r.dataset = "
        "(SELECT dataset FROM runs WHERE run = ?) ORDER BY r.run, m.member",
        [run],
    )
    return rows[rows["epochs_done"] >= rows["epochs"]] if not rows.empty else rows


def _pruned_rows(rows: pd.DataFrame, run: str) -> list[dict]:
    """One row per member and split of the runs trained on a subset pruned from `run`."""
    out = []
    for r in rows.itertuples():
        if r.subset_info is None or pd.isna(r.subset_info):
            continue
        info = json.loads(r.subset_info)
        if info.get("run") != run:
            continue
        el2n_at = info.get("score") == "el2n" and info.get("score_epoch")
        # equal epochs: F of the full run's steps; equal steps: as many (train.equal_steps)
        equal = json.loads(r.recipe).get("train", {}).get("equal_steps")
        for split, acc in json.loads(r.final_acc).items():
            out.append(
                {
                    "run": r.run,
                    "score": info.get("score") + (f"@{info['score_epoch']}" if el2n_at else ""),
                    "strategy": info.get("strategy"),
                    "keep": float(info.get("keep", np.nan)),
                    "steps": "equal steps" if equal else "equal epochs",
                    "split": split,
                    "acc": float(acc),
                    "family": _without_subset(r.recipe),
                }
            )
    return out


def _full_rows(rows: pd.DataFrame, run: str, recipes: set[str]) -> list[dict]:
    """One row per member and split of the runs of those recipes on the whole split."""
    full = []
    for r in rows.itertuples():
        whole = r.subset_info is None or pd.isna(r.subset_info)
        family = _without_subset(r.recipe) if whole and r.run != run else None
        if family in recipes:
            for split, acc in json.loads(r.final_acc).items():
                full.append(
                    {"run": r.run, "score": None, "strategy": "full data", "keep": 1.0}
                    | {"steps": "equal epochs", "split": split, "acc": float(acc)}
                    | {"family": family}
                )
    return full


def section(ws: Workspace, run: str, folder: Path) -> Section | None:
    """The figure of accuracy against the fraction kept, or None when no retraining exists."""
    pruned, full = retrainings(ws, run)
    if pruned.empty:
        return None
    p, f, split, others = _one_recipe(pruned, full)
    sec = Section(
        "pruning",
        "Pruning by difficulty, proven by retraining",
        f"Runs trained on subsets of the train split that `curate prune` drew from {run}'s scores "
        f"(one line per score and strategy), their {split} accuracy at the last epoch against "
        "the fraction kept: mean over members (seeds), bars one population standard deviation; "
        "dashed: trained at equal steps (train.equal_steps: round(E / F) epochs). Full data: the "
        "same recipe on the whole split, E epochs.",
    )
    nums = pruning_numbers(p, f)
    name = _figure(run, split, nums, folder)
    sec.figures.append(_caption(nums, *run_accuracy(ws, run), name))
    best = nums["best_half"]
    sec.headlines = [
        Headline(
            sec.title,
            "accuracy at 50 % kept, best strategy",
            "Paul et al.: no loss at 50 % on CIFAR-10 (ResNet-18, 200 epochs)",
            {split: float(best.iloc[0]["mean"]) if not best.empty else None},
        ),
        Headline(sec.title, "accuracy on full data, same recipe", "—", {split: nums["full"]}),
    ]
    sec.notes += _notes(run, others, nums["full"])
    return sec


def _one_recipe(
    pruned: pd.DataFrame, full: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame, str, int]:
    """One recipe per figure: the one retrained on the most subsets, its full-data runs beside it,
    on the test split if logged; (pruned rows, full rows, split, runs of other recipes)."""
    runs_per_family = pruned.groupby("family")["run"].nunique().sort_values(ascending=False)
    family = runs_per_family.index[0]
    others = int(runs_per_family.iloc[1:].sum())
    pruned = pruned[pruned["family"] == family]
    full = full[full["family"] == family] if not full.empty else full
    split = "test" if (pruned["split"] == "test").any() else str(pruned["split"].iloc[0])
    p = pruned[pruned["split"] == split]
    f = full[full["split"] == split] if not full.empty else full
    return p, f, split, others


def pruning_numbers(p: pd.DataFrame, f: pd.DataFrame) -> dict:
    """The figure's numbers: per line (score, strategy, steps) and fraction kept the members' mean
    accuracy, population std and count (stats); full data's mean accuracy (None without a
    full-data run); the lines at 50 % kept, best first; per fraction and steps whether the best
    non-random line beat random (beat)."""
    p = p.assign(
        label=[
            ("random" if st == "random" else f"{st} by {sc}")
            + (", equal steps" if steps == "equal steps" else "")
            for st, sc, steps in zip(p["strategy"], p["score"], p["steps"], strict=True)
        ]
    )
    stats = (
        p.groupby(["label", "score", "strategy", "steps", "keep"])["acc"]
        .agg(mean="mean", std=lambda a: float(np.std(a)), count="count")
        .reset_index()
    )
    beat = []  # against random at the same fraction and the same steps
    for _, g in stats.groupby(["keep", "steps"]):
        rnd = g[g["strategy"] == "random"]["mean"]
        rest = g[g["strategy"] != "random"]
        if len(rnd) and len(rest):
            beat.append(rest["mean"].max() > rnd.iloc[0])
    return {
        "stats": stats,
        "full": float(f["acc"].mean()) if not f.empty else None,
        "best_half": stats[np.isclose(stats["keep"], 0.5)].sort_values("mean", ascending=False),
        "beat": beat,
    }


def _figure(run: str, split: str, nums: dict, folder: Path) -> str:
    fig, ax = plot.figure(1, width=7.5, height=4.4)
    for (label, steps), g in nums["stats"].groupby(["label", "steps"]):
        g = g.sort_values("keep")
        ls = "--" if steps == "equal steps" else "-"
        ax.errorbar(
            g["keep"], g["mean"], yerr=g["std"], fmt="o", ls=ls, ms=3, capsize=2, label=label
        )
    full_mean = nums["full"]
    if full_mean is not None:
        ax.axhline(full_mean, color="k", ls="--", lw=0.9, label="full data")
        ax.axhline(full_mean - 0.01, color="k", ls=":", lw=0.7, label="full data - 1 point")
    ax.set_xlabel("fraction of the train split kept")
    ax.set_ylabel(f"{split} accuracy")
    ax.legend(fontsize=7, ncol=2)
    fig.suptitle(f"{run}: accuracy after pruning")
    return plot.save(fig, folder, "pruning_accuracy.png")


def _caption(nums: dict, accs: dict[str, float], epoch: int | None, name: str) -> Figure:
    """The papers' findings, this run's best at 50 % kept, how often it beat random, and where
    the scores' held-out accuracy falls against the benchmarks' regime thresholds."""
    full_mean, beat, text = nums["full"], nums["beat"], []
    if not nums["best_half"].empty:
        b = nums["best_half"].iloc[0]
        text.append(
            f"At 50 % kept the best is {b['label']}: {b['mean']:.4f}"
            + (
                f" (full data {full_mean:.4f}, {100 * (b['mean'] - full_mean):+.2f} points)"
                if full_mean is not None
                else ""
            )
            + "."
        )
    if beat:
        text.append(
            f"The best non-random strategy beats random at {sum(beat)} of {len(beat)} fractions "
            "(each at the same steps)."
        )
    scored = held_out(accs)
    if scored is not None:
        text.append(_regime(scored, accs, epoch))
    return Figure(
        name,
        "Accuracy against the fraction kept",
        "Data Diet (Paul et al. 2021) kept half of CIFAR-10 without loss by EL2N; Sorscher "
        "et al. 2022: keep the easy when data are scarce, the hard when abundant; Zheng et al. "
        "2023 (ccs): at high pruning rates cover the score range. This run: " + " ".join(text),
    )


def _regime(scored: tuple[str, float], accs: dict[str, float], epoch: int | None) -> str:
    """The scoring run's held-out accuracy beside the benchmarks' thresholds (curate.findings)."""
    found = findings.load()
    return (
        f"The scores come from members that reach {scored[1]:.3f} on {scored[0]} at epoch "
        f"{epoch}"
        + (f" (train {accs['train']:.3f})" if "train" in accs else "")
        + ". In curate's pruning benchmarks keeping the hard beat random at 50 % kept where "
        f"the scoring run reached {found['held_out_high']:.2f} or more on held-out data, and lost "
        f"to it where the run stayed under {found['held_out_low']:.2f}."
    )


def _notes(run: str, others: int, full_mean: float | None) -> list[str]:
    notes = []
    if others:
        notes.append(
            f"{others} run(s) retrained on subsets of {run} with another recipe are not drawn: "
            "the figure shows the recipe retrained on the most subsets."
        )
    if full_mean is None:
        notes.append(
            "No run of the same recipe on the whole train split is in the catalog; train one "
            "(the same command without --subset, another --run-name) to draw the full-data line."
        )
    return notes
