"""How far the run's scores can be trusted: both score-reliability curves (table
`score_reliability`) and, where true labels are known, how well wrong labels were found
(`label_noise_eval`).

The curves' figure in three steps: its numbers (`reliability_numbers`), its drawing (`_figure`) and
its caption (`_caption`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from curate.report import plot
from curate.report.catalog import RunData
from curate.report.page import Figure, Headline, Section

TARGET = 0.95  # split-half r the summary of `curate run` aims at


def section(data: RunData, folder: Path) -> Section:
    """Figures, notes and headline rows of the reliability part of the report."""
    sec = Section(
        "reliability",
        "Reliability of the scores",
        "Members: m members drawn at random are split into two halves and the halves' "
        "accessibilities correlated (split-half r, mean over seeded draws); the Spearman-Brown "
        "formula extends the value measured at the run's size. Epochs: accessibility from epochs "
        "1..e only, against the full run.",
    )
    r_M, need, prefix = {}, {}, {}
    rel = data.reliability
    for split in data.splits:
        g = rel[rel["split"] == split] if not rel.empty else rel
        if g.empty:
            sec.notes.append(
                f"{split}: no score_reliability rows (scored by an older version, or fewer than "
                f"two members); rerun `curate score {data.run}`."
            )
            r_M[split] = need[split] = prefix[split] = None
            continue
        r_M[split], need[split], prefix[split] = _curves(data, split, g, folder, sec)
    sec.headlines = [
        Headline(
            sec.title,
            "split-half r of accessibility at the run's size",
            "Hacohen: r = 0.99 between two collections of 13 ResNet-50",
            r_M,
        ),
        Headline(sec.title, f"members predicted for r = {TARGET}", "—", need, "d"),
        Headline(sec.title, "first epoch whose scores agree at rho >= 0.9", "—", prefix, "d"),
    ]
    _labels(data, sec)
    from curate.scores.summary import WHICH_SCORE

    sec.notes.append(WHICH_SCORE[0].upper() + WHICH_SCORE[1:] + " (docs/concepts.md, which score).")
    return sec


def _curves(data: RunData, split: str, g, folder: Path, sec: Section):
    mem = g[g["curve"] == "members"].sort_values("x")
    ep = g[g["curve"] == "epochs"].sort_values("x")
    nums = reliability_numbers(mem, ep)
    name = _figure(data.run, split, mem, ep, folder)
    sec.figures.append(_caption(split, nums, name))
    return nums["r"], nums["need"], nums["prefix"]


def reliability_numbers(mem: pd.DataFrame, ep: pd.DataFrame) -> dict:
    """The curves' numbers: the measured split-half r at the largest measured size M, the members
    predicted to reach TARGET (need), the first epoch whose prefix agrees with the full run at
    rho >= 0.9 (prefix) and the last epoch E; None where there is none."""
    meas = mem[mem["pearson"].notna()]
    M = int(meas["x"].max()) if len(meas) else None
    reach = mem[mem["predicted"] >= TARGET]
    ok = ep[ep["spearman"] >= 0.9]
    return {
        "M": M,
        "r": float(meas.loc[meas["x"] == M, "pearson"].iloc[0]) if M else None,
        "need": int(reach["x"].min()) if len(reach) else None,
        "prefix": int(ok["x"].min()) if len(ok) else None,
        "E": int(ep["x"].max()) if len(ep) else 0,
    }


def _figure(run: str, split: str, mem: pd.DataFrame, ep: pd.DataFrame, folder: Path) -> str:
    fig, (ax0, ax1) = plot.figure(2, width=10, height=3.6)
    _members_panel(ax0, mem)
    ax1.plot(ep["x"], ep["spearman"], "-o", ms=3, label="Spearman rho with the full run")
    ax1.plot(
        ep["x"],
        ep["ddd_same"],
        "--s",
        ms=3,
        label="share with its final trivial / in-between / impossible",
    )
    ax1.axhline(0.9, color="k", ls=":", lw=0.8)
    ax1.set_xlabel("last epoch e of the prefix 1..e")
    ax1.set_ylabel("agreement with the full run (0-1)")
    ax1.set_ylim(0, 1.02)
    ax1.set_title("epochs")
    ax1.legend(fontsize=7)
    fig.suptitle(f"{run} / {split}: score reliability")
    return plot.save(fig, folder, f"reliability_{split}.png")


def _members_panel(ax, mem: pd.DataFrame) -> None:
    """Split-half r by members: measured (± std over draws) and the Spearman-Brown prediction."""
    meas = mem[mem["pearson"].notna()]
    ax.errorbar(
        meas["x"],
        meas["pearson"],
        yerr=meas["pearson_std"],
        fmt="-o",
        ms=3,
        capsize=2,
        label="measured (± std over draws)",
    )
    ax.plot(
        mem["x"],
        mem["predicted"],
        "--",
        color=plot.COLORS["null"],
        label="Spearman-Brown prediction",
    )
    ax.axhline(TARGET, color="k", ls=":", lw=0.8)
    ax.set_xscale("log")
    top = mem["x"].max()
    ticks = [t for t in (2, 4, 8, 16, 32, 64, 128, 256, 512, 1024) if t <= top]
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("members m (log scale)")
    ax.set_ylabel("split-half Pearson r of accessibility")
    ax.set_ylim(0, 1.02)
    ax.set_title("members")
    ax.legend(fontsize=7)


def _caption(split: str, nums: dict, name: str) -> Figure:
    r, M, need, prefix, E = (nums[k] for k in ("r", "M", "need", "prefix", "E"))
    return Figure(
        name,
        f"Score reliability by ensemble size and by epochs ({split})",
        "Hacohen et al. found r = 0.99 between two collections of ResNet-50s. This run: "
        f"split-half r = {r if r is not None else float('nan'):.3f} at {M} members; "
        + (
            f"{need} members would reach r = {TARGET} (predicted); "
            if need is not None
            else f"no size in the table is predicted to reach r = {TARGET}; "
        )
        + (
            f"scores from epochs 1..{prefix} of {E} already agree at rho >= 0.9."
            if prefix is not None
            else f"no prefix of the {E} epochs agrees at rho >= 0.9."
        ),
    )


def _estimate(data: RunData, sec: Section) -> None:
    """The estimated share of wrong labels per split and per class, beside the count flagged."""
    est = data.label_estimate
    if est.empty:
        return
    values = {}
    for split, g in est.groupby("split"):
        values[split] = float(g["est_wrong"].sum() / max(g["n"].sum(), 1))
        top = g.sort_values("noise_rate", ascending=False).head(10)
        parts = ", ".join(
            f"{r.class_name or r.label}: {r.noise_rate:.1%} ({r.n_flagged} flagged)"
            for r in top.itertuples()
        )
        sec.notes.append(
            f"Estimated wrong labels, {split} (confident learning on the late epochs; "
            f"label_noise_estimate): {g['est_wrong'].sum():.0f} of {g['n'].sum()}, "
            f"{g['n_flagged'].sum()} flagged. Per class, highest first: {parts}."
        )
    sec.headlines.append(Headline(sec.title, "estimated share of wrong labels", "—", values, "%"))


def _labels(data: RunData, sec: Section) -> None:
    _estimate(data, sec)
    ln = data.label_noise
    if ln.empty:
        sec.notes.append(
            "Wrong labels: the run trained on the source's own labels, so label_noise_eval is "
            "empty (it is written when `--labels` or random labels make some labels differ)."
        )
        return
    for key, label, fmt in (
        ("noise_rate", "share of wrong labels", "%"),
        ("auroc", "AUROC of issue_score for wrong labels", ".3f"),
        ("f1", "F1 of flagged", ".3f"),
    ):
        values = {}
        for r in ln.itertuples():
            v = getattr(r, key)
            values[r.split] = float(v) if v is not None and np.isfinite(v) else None
        sec.headlines.append(Headline(sec.title, label, "—", values, fmt))
