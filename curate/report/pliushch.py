"""Pliushch et al.'s figures: strict agreement against its baselines (Fig. 2), agreement against image
statistics (Figs. 4-7) and agreement per category of an attribute (Fig. 6c).

Every figure in three steps: its numbers (`*_numbers`, from the catalog's rows), its drawing
(`*_figure`, a PNG of the report folder) and its caption (`*_caption`, the paper's finding and the
run's numbers).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from curate.report import plot
from curate.report.catalog import RunData
from curate.report.page import Figure, Headline, Section, format_value

KIND_PEARSON = "strict_agreement~mean_over_agreed"
KIND_SPEARMAN = "accessibility~statistic (spearman)"
MAX_CATEGORIES = 10  # lines per category plot: the 5 agreed on earliest and the 5 latest


def section(data: RunData, folder: Path) -> Section:
    """Figures, notes and headline rows of the Pliushch part of the report."""
    sec = Section(
        "pliushch",
        "Pliushch et al.: strict agreement and image statistics",
        "Strict agreement is the share of the images some member classifies correctly that every "
        "member classifies correctly (eq. 2); the lower bound (eq. 3) is the agreement the members' "
        "accuracies force, the random agreement the one independent members would show.",
    )
    rows = {k: {} for k in ("acc", "strict", "random", "lower", "above", "r")}
    for split in data.splits:
        _agreement(data, split, folder, sec, rows)
        _statistics(data, split, folder, sec, rows)
        _categories(data, split, folder, sec)
    sec.headlines = _headlines(sec.title, data, rows)
    return sec


def _headlines(title: str, data: RunData, rows: dict) -> list[Headline]:
    E = {s: int(data.last(s)["epoch"]) for s in data.splits}
    return [
        Headline(title, "mean member accuracy at E", "(context for the rows below)", rows["acc"]),
        Headline(
            title,
            "strict agreement at E",
            "above the lower bound and the random agreement at every epoch (Fig. 2, App. Fig. 1)",
            rows["strict"],
        ),
        Headline(
            title,
            "random agreement at E (union-normalised)",
            "below strict agreement, above the lower bound",
            rows["random"],
        ),
        Headline(title, "lower bound at E", "0 until accuracy exceeds (M-1)/M", rows["lower"]),
        Headline(
            title,
            "epochs 1..E with strict agreement above random agreement",
            "all",
            {s: rows["above"][s] / E[s] if E[s] else None for s in data.splits},
            "%",
        ),
        Headline(
            title,
            "largest |Pearson r|: strict agreement vs mean statistic of agreed images",
            "Pascal, entropy: r = 0.88 (Fig. 4); weak on CIFAR-10 (Fig. 7b)",
            rows["r"],
        ),
    ]


# ----------------------------------------------------------------------------- Fig. 2


def _agreement(data: RunData, split: str, folder: Path, sec: Section, rows: dict) -> None:
    em = data.em(split)
    nums = agreement_numbers(em)
    name = _agreement_figure(data.run, split, em, folder)
    sec.figures.append(_agreement_caption(split, nums, name))
    for key in ("acc", "strict", "random", "lower", "above"):
        rows[key][split] = nums[key]


def agreement_numbers(em: pd.DataFrame) -> dict:
    """Fig. 2's numbers of one split's epoch_metrics: the last epoch's accuracy, strict and random
    agreement and lower bound; the trained epochs where strict exceeds random agreement (above, of
    trained); the largest gap between strict agreement and the lower bound and its epoch."""
    last = em.iloc[-1]
    trained = em[em["epoch"] >= 1]
    gap = (trained["strict_agreement"] - trained["lower_bound"]).to_numpy()
    g = int(np.argmax(gap)) if len(gap) else 0
    return {
        "epoch": int(last["epoch"]),
        "acc": float(last["acc_mean"]),
        "strict": float(last["strict_agreement"]),
        "random": float(last["random_agreement_normalized"]),
        "lower": float(last["lower_bound"]),
        "above": int((trained["strict_agreement"] > trained["random_agreement_normalized"]).sum()),
        "trained": len(trained),
        "gap": float(gap[g]) if len(gap) else float("nan"),
        "gap_epoch": int(trained["epoch"].iloc[g]) if len(gap) else 0,
    }


def _agreement_figure(run: str, split: str, em: pd.DataFrame, folder: Path) -> str:
    e = em["epoch"].to_numpy()
    fig, ax = plot.figure()
    acc, std = em["acc_mean"].to_numpy(), em["acc_std"].to_numpy()
    strict, lower = em["strict_agreement"].to_numpy(), em["lower_bound"].to_numpy()
    rand = em["random_agreement_normalized"].to_numpy()
    ax.fill_between(e, lower, strict, color=plot.COLORS["strict"], alpha=0.15)
    ax.fill_between(e, acc - std, acc + std, color=plot.COLORS["acc"], alpha=0.2)
    ax.plot(e, acc, "-o", ms=3, color=plot.COLORS["acc"], label="mean accuracy (± std)")
    ax.plot(e, strict, "-o", ms=3, color=plot.COLORS["strict"], label="strict agreement")
    ax.plot(e, rand, "--", color=plot.COLORS["random"], label="random agreement")
    ax.plot(e, lower, ":", color=plot.COLORS["lower"], label="lower bound")
    ax.set_xlabel(plot.EPOCH_LABEL)
    ax.set_ylabel("agreement, accuracy (fraction, 0-1)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"{run} / {split}: agreement and its baselines")
    ax.legend(loc="lower right")
    return plot.save(fig, folder, f"pliushch_agreement_{split}.png")


def _agreement_caption(split: str, n: dict, name: str) -> Figure:
    return Figure(
        name,
        f"Agreement, accuracy, random agreement and lower bound per epoch ({split}; Pliushch "
        "Fig. 2)",
        "Paper: on CIFAR-10 (DenseNet-121, 5 networks) strict agreement rises far above the "
        "lower bound, most clearly in the first epochs (shaded), and above the expected random "
        "agreement (appendix Fig. 1); the same holds across architectures and, more slowly, "
        f"with random labels. This run: at epoch {n['epoch']} strict agreement "
        f"{n['strict']:.3f} against random agreement {n['random']:.3f} and lower bound "
        f"{n['lower']:.3f} (mean accuracy {n['acc']:.3f}); strict agreement exceeds random "
        f"agreement at {n['above']} of {n['trained']} epochs, and the lower bound by up to "
        f"{n['gap']:.3f} (epoch {n['gap_epoch']}). Random agreement is shown on strict "
        "agreement's union-normalised scale.",
    )


# ----------------------------------------------------------------------------- Figs. 4-7


def _statistics(data: RunData, split: str, folder: Path, sec: Section, rows: dict) -> None:
    curves = data.stat_curves
    curves = curves[curves["split"] == split] if not curves.empty else curves
    rows["r"][split] = None
    if curves.empty:
        sec.notes.append(
            f"{split}: no image statistics in the catalog, so no agreement-statistic curves; run "
            f"`curate stats {data.dataset}` (then `curate score {data.run}`)."
        )
        return
    nums = statistics_numbers(curves, data.correlations[data.correlations["split"] == split])
    if nums["missing"]:
        sec.notes.append(
            f"{split}: no values of {', '.join(nums['missing'])} on these images (see image_stats."
            "stats_note, e.g. images smaller than the 10x10 entropy window)."
        )
    if not nums["stats"]:
        return
    name = _statistics_figure(data.run, split, curves, nums, folder)
    rows["r"][split] = nums["r"]
    sec.figures.append(_statistics_caption(split, nums, name))
    sec.tables.append(_statistics_table(split, nums))


def statistics_numbers(curves: pd.DataFrame, corr: pd.DataFrame) -> dict:
    """Figs. 4-7's numbers of one split: the statistics with values (stats) and those without
    (missing), the Pearson and Spearman rows by statistic, each drawn statistic's label (its r, in
    brackets when p >= 0.001) and the largest |r| (None when no r was computed)."""
    pear = corr[corr["kind"] == KIND_PEARSON].set_index("statistic")
    spear = corr[corr["kind"] == KIND_SPEARMAN].set_index("statistic")
    stats = [
        s
        for s in curves["statistic"].unique()
        if curves.loc[curves["statistic"] == s, "mean_over_agreed"].notna().any()
    ]
    rs = pear["r"].dropna() if not pear.empty else pd.Series(dtype=float)
    return {
        "stats": stats,
        "missing": sorted(set(curves["statistic"]) - set(stats)),
        "pearson": pear,
        "spearman": spear,
        "labels": {stat: _label(pear, stat) for stat in stats},
        "r": float(rs.loc[rs.abs().idxmax()]) if len(rs) else None,
    }


def _label(pear: pd.DataFrame, stat: str) -> str:
    """'r = 0.42', in brackets when not significant, or why there is no r."""
    r = pear.loc[stat, "r"] if stat in pear.index else np.nan
    ns = bool(pear.loc[stat, "not_significant"]) if stat in pear.index else True
    label = "no r (constant, or too few epochs)" if not np.isfinite(r) else f"r = {r:.2f}"
    return f"[{label}]" if np.isfinite(r) and ns else label


def _statistics_figure(run: str, split: str, curves: pd.DataFrame, nums: dict, folder: Path) -> str:
    stats, pear = nums["stats"], nums["pearson"]
    ncols = min(3, len(stats))
    nrows = int(np.ceil(len(stats) / ncols))
    fig, axes = plot.figure(ncols, nrows, width=3.4 * ncols, height=2.6 * nrows, squeeze=False)
    for ax in axes.flat[len(stats) :]:
        ax.set_visible(False)
    for ax, stat in zip(axes.flat, stats, strict=False):
        c = curves[(curves["statistic"] == stat) & (curves["epoch"] >= 1)]
        used = pear.loc[stat, "epochs"] if stat in pear.index else None
        used = list(used) if used is not None and not isinstance(used, float) else []
        if used:
            c = c[c["epoch"].isin(used)]
        ax.plot(c["epoch"], c["strict_agreement"], "-o", ms=3, color=plot.COLORS["strict"])
        ax.set_xlabel("epoch")
        ax.set_ylabel("strict agreement (0-1)", color=plot.COLORS["strict"])
        ax2 = ax.twinx()
        ax2.plot(c["epoch"], c["mean_over_agreed"], "-s", ms=3, color="#8c3fa0")
        ax2.set_ylabel(f"mean {stat}\nof agreed images", color="#8c3fa0", fontsize=7)
        ax2.grid(False)
        ax.set_title(f"{stat}: {nums['labels'][stat]}", fontsize=8)
    fig.suptitle(f"{run} / {split}: strict agreement (blue) and mean statistic (purple)")
    return plot.save(fig, folder, f"pliushch_statistics_{split}.png")


def _statistics_caption(split: str, nums: dict, name: str) -> Figure:
    epochs_note = (
        "over the epochs e > 5 with strict agreement >= 0.20, as in the paper"
        if nums["r"] is not None
        else "no epoch has e > 5 and strict agreement >= 0.20, so no r is computed (all epochs "
        "from 1 are drawn)"
    )
    return Figure(
        name,
        f"Agreement against each image statistic ({split}; Pliushch Figs. 4-7)",
        "Paper: the mean statistic of the images all networks agree on tracks agreement: on "
        "Pascal entropy rises with agreement (r = 0.88), low-entropy, few-segment, "
        "low-frequency images being learnt first; on KTH-TIPS2b, ImageNet and CIFAR-10 the "
        "direction reverses, and on CIFAR-10 the correlations are marginal. "
        f"This run, Pearson r {epochs_note} (in brackets: p >= 0.001): "
        + "; ".join(f"{stat} {label}" for stat, label in nums["labels"].items())
        + ".",
    )


def _statistics_table(split: str, nums: dict) -> tuple[str, list[str], list[list[str]]]:
    pear, spear = nums["pearson"], nums["spearman"]
    table = []
    for stat in sorted(set(pear.index) | set(spear.index)):
        p = pear.loc[stat] if stat in pear.index else None
        s = spear.loc[stat] if stat in spear.index else None
        table.append(
            [
                stat,
                format_value(p["r"]) if p is not None else "—",
                format_value(p["p"], ".2g") if p is not None else "—",
                str(int(p["n"])) if p is not None else "—",
                format_value(s["r"]) if s is not None else "—",
                format_value(s["p"], ".2g") if s is not None else "—",
            ]
        )
    return (
        f"{split}: Pearson r of strict agreement against the mean statistic of the agreed "
        "images (over epochs), and Spearman rho of accessibility against the statistic (over "
        "instances; catalog table correlations).",
        ["statistic", "Pearson r", "p", "epochs", "Spearman rho", "p"],
        table,
    )


# ----------------------------------------------------------------------------- Fig. 6c


def _categories(data: RunData, split: str, folder: Path, sec: Section) -> None:
    cats = data.categories
    cats = cats[cats["split"] == split] if not cats.empty else cats
    if cats.empty:
        sec.notes.append(
            f"{split}: no categorical attributes (category_agreement is empty): agreement per "
            "category needs image statistics or attributes such as KTH-TIPS2-b's illumination."
        )
        return
    for attr in cats["attribute"].unique():
        a = cats[(cats["attribute"] == attr) & (cats["epoch"] >= 1)]
        order, shown = category_numbers(a)
        name = _category_figure(data.run, split, attr, a, shown, folder)
        sec.figures.append(_category_caption(split, attr, order, name))


def category_numbers(a: pd.DataFrame) -> tuple[pd.Series, list]:
    """Fig. 6c's numbers of one attribute: its categories' strict agreement averaged over epochs,
    highest first, and the categories drawn (at most MAX_CATEGORIES: the first and last half)."""
    order = a.groupby("category")["frac_strict"].mean().sort_values(ascending=False)
    shown = list(order.index)
    if len(shown) > MAX_CATEGORIES:
        half = MAX_CATEGORIES // 2
        shown = shown[:half] + shown[-half:]
    return order, shown


def _category_figure(run: str, split: str, attr, a: pd.DataFrame, shown: list, folder: Path) -> str:
    fig, ax = plot.figure()
    for cat in shown:
        c = a[a["category"] == cat]
        ax.plot(c["epoch"], c["frac_strict"], "-o", ms=2, label=f"{cat} (n={int(c['n'].iloc[0])})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("strict agreement in the category (0-1)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"{run} / {split}: strict agreement per {attr}")
    ax.legend(fontsize=6, ncol=2, loc="lower right")
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", str(attr))  # an attribute name as a file name
    return plot.save(fig, folder, f"pliushch_category_{safe}_{split}.png")


def _category_caption(split: str, attr, order: pd.Series, name: str) -> Figure:
    more = (
        f" (the {MAX_CATEGORIES // 2} agreed on earliest and latest of {len(order)} shown)"
        if len(order) > MAX_CATEGORIES
        else ""
    )
    return Figure(
        name,
        f"Agreement per {attr} ({split}; Pliushch Fig. 6c)",
        "Paper: on KTH-TIPS2b textures lit from the front are agreed on later than under "
        "other illuminations, frontal poses earlier than other rotations; scale shows no "
        f"effect. This run{more}: averaged over epochs 1..E, {attr} {order.index[0]!r} is "
        f"agreed on most ({order.iloc[0]:.3f}), {order.index[-1]!r} least "
        f"({order.iloc[-1]:.3f}).",
    )
