"""Pliushch et al.'s figures: strict agreement against its baselines (Fig. 2), agreement against image
statistics (Figs. 4-7) and agreement per category of an attribute (Fig. 6c)."""

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
    E = {s: int(data.last(s)["epoch"]) for s in data.splits}
    sec.headlines = [
        Headline(
            sec.title, "mean member accuracy at E", "(context for the rows below)", rows["acc"]
        ),
        Headline(
            sec.title,
            "strict agreement at E",
            "above the lower bound and the random agreement at every epoch (Fig. 2, App. Fig. 1)",
            rows["strict"],
        ),
        Headline(
            sec.title,
            "random agreement at E (union-normalised)",
            "below strict agreement, above the lower bound",
            rows["random"],
        ),
        Headline(sec.title, "lower bound at E", "0 until accuracy exceeds (M-1)/M", rows["lower"]),
        Headline(
            sec.title,
            "epochs 1..E with strict agreement above random agreement",
            "all",
            {s: rows["above"][s] / E[s] if E[s] else None for s in data.splits},
            "%",
        ),
        Headline(
            sec.title,
            "largest |Pearson r|: strict agreement vs mean statistic of agreed images",
            "Pascal, entropy: r = 0.88 (Fig. 4); weak on CIFAR-10 (Fig. 7b)",
            rows["r"],
        ),
    ]
    return sec


def _agreement(data: RunData, split: str, folder: Path, sec: Section, rows: dict) -> None:
    em = data.em(split)
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
    ax.set_title(f"{data.run} / {split}: agreement and its baselines")
    ax.legend(loc="lower right")
    name = plot.save(fig, folder, f"pliushch_agreement_{split}.png")
    last = em.iloc[-1]
    trained = em[em["epoch"] >= 1]
    above = int((trained["strict_agreement"] > trained["random_agreement_normalized"]).sum())
    gap = (trained["strict_agreement"] - trained["lower_bound"]).to_numpy()
    g = int(np.argmax(gap)) if len(gap) else 0
    rows["acc"][split] = float(last["acc_mean"])
    rows["strict"][split] = float(last["strict_agreement"])
    rows["random"][split] = float(last["random_agreement_normalized"])
    rows["lower"][split] = float(last["lower_bound"])
    rows["above"][split] = above
    sec.figures.append(
        Figure(
            name,
            f"Agreement, accuracy, random agreement and lower bound per epoch ({split}; Pliushch "
            "Fig. 2)",
            "Paper: on CIFAR-10 (DenseNet-121, 5 networks) strict agreement rises far above the "
            "lower bound, most clearly in the first epochs (shaded), and above the expected random "
            "agreement (appendix Fig. 1); the same holds across architectures and, more slowly, "
            f"with random labels. This run: at epoch {int(last['epoch'])} strict agreement "
            f"{last['strict_agreement']:.3f} against random agreement "
            f"{last['random_agreement_normalized']:.3f} and lower bound {last['lower_bound']:.3f} "
            f"(mean accuracy {last['acc_mean']:.3f}); strict agreement exceeds random agreement "
            f"at {above} of {len(trained)} epochs, and the lower bound by up to "
            f"{gap[g] if len(gap) else float('nan'):.3f} (epoch "
            f"{int(trained['epoch'].iloc[g]) if len(gap) else 0}). Random agreement is shown on "
            "strict agreement's union-normalised scale.",
        )
    )


def _statistics(data: RunData, split: str, folder: Path, sec: Section, rows: dict) -> None:
    curves = data.stat_curves
    curves = curves[curves["split"] == split] if not curves.empty else curves
    if curves.empty:
        sec.notes.append(
            f"{split}: no image statistics in the catalog, so no agreement-statistic curves; run "
            f"`curate stats {data.dataset}` (then `curate score {data.run}`)."
        )
        rows["r"][split] = None
        return
    corr = data.correlations[data.correlations["split"] == split]
    pear = corr[corr["kind"] == KIND_PEARSON].set_index("statistic")
    spear = corr[corr["kind"] == KIND_SPEARMAN].set_index("statistic")
    stats = [
        s
        for s in curves["statistic"].unique()
        if curves.loc[curves["statistic"] == s, "mean_over_agreed"].notna().any()
    ]
    missing = sorted(set(curves["statistic"]) - set(stats))
    if missing:
        sec.notes.append(
            f"{split}: no values of {', '.join(missing)} on these images (see image_stats."
            "stats_note, e.g. images smaller than the 10x10 entropy window)."
        )
    if not stats:
        rows["r"][split] = None
        return
    ncols = min(3, len(stats))
    nrows = int(np.ceil(len(stats) / ncols))
    fig, axes = plot.figure(ncols, nrows, width=3.4 * ncols, height=2.6 * nrows, squeeze=False)
    for ax in axes.flat[len(stats) :]:
        ax.set_visible(False)
    texts = []
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
        r = pear.loc[stat, "r"] if stat in pear.index else np.nan
        ns = bool(pear.loc[stat, "not_significant"]) if stat in pear.index else True
        label = "no r (constant, or too few epochs)" if not np.isfinite(r) else f"r = {r:.2f}"
        if np.isfinite(r) and ns:
            label = f"[{label}]"
        ax.set_title(f"{stat}: {label}", fontsize=8)
        texts.append(f"{stat} {label}")
    fig.suptitle(f"{data.run} / {split}: strict agreement (blue) and mean statistic (purple)")
    name = plot.save(fig, folder, f"pliushch_statistics_{split}.png")
    rs = pear["r"].dropna() if not pear.empty else pd.Series(dtype=float)
    rows["r"][split] = float(rs.loc[rs.abs().idxmax()]) if len(rs) else None
    epochs_note = (
        "over the epochs e > 5 with strict agreement >= 0.20, as in the paper"
        if len(rs)
        else "no epoch has e > 5 and strict agreement >= 0.20, so no r is computed (all epochs "
        "from 1 are drawn)"
    )
    sec.figures.append(
        Figure(
            name,
            f"Agreement against each image statistic ({split}; Pliushch Figs. 4-7)",
            "Paper: the mean statistic of the images all networks agree on tracks agreement: on "
            "Pascal entropy rises with agreement (r = 0.88), low-entropy, few-segment, "
            "low-frequency images being learnt first; on KTH-TIPS2b, ImageNet and CIFAR-10 the "
            "direction reverses, and on CIFAR-10 the correlations are marginal. "
            f"This run, Pearson r {epochs_note} (in brackets: p >= 0.001): "
            + "; ".join(texts)
            + ".",
        )
    )
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
    sec.tables.append(
        (
            f"{split}: Pearson r of strict agreement against the mean statistic of the agreed "
            "images (over epochs), and Spearman rho of accessibility against the statistic (over "
            "instances; catalog table correlations).",
            ["statistic", "Pearson r", "p", "epochs", "Spearman rho", "p"],
            table,
        )
    )


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
        order = a.groupby("category")["frac_strict"].mean().sort_values(ascending=False)
        shown = list(order.index)
        if len(shown) > MAX_CATEGORIES:
            half = MAX_CATEGORIES // 2
            shown = shown[:half] + shown[-half:]
        fig, ax = plot.figure()
        for cat in shown:
            c = a[a["category"] == cat]
            ax.plot(
                c["epoch"], c["frac_strict"], "-o", ms=2, label=f"{cat} (n={int(c['n'].iloc[0])})"
            )
        ax.set_xlabel("epoch")
        ax.set_ylabel("strict agreement in the category (0-1)")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(f"{data.run} / {split}: strict agreement per {attr}")
        ax.legend(fontsize=6, ncol=2, loc="lower right")
        safe = re.sub(r"[^A-Za-z0-9_-]", "_", str(attr))  # an attribute name as a file name
        name = plot.save(fig, folder, f"pliushch_category_{safe}_{split}.png")
        more = (
            f" (the {MAX_CATEGORIES // 2} agreed on earliest and latest of {len(order)} shown)"
            if len(order) > MAX_CATEGORIES
            else ""
        )
        sec.figures.append(
            Figure(
                name,
                f"Agreement per {attr} ({split}; Pliushch Fig. 6c)",
                "Paper: on KTH-TIPS2b textures lit from the front are agreed on later than under "
                "other illuminations, frontal poses earlier than other rotations; scale shows no "
                f"effect. This run{more}: averaged over epochs 1..E, {attr} {order.index[0]!r} is "
                f"agreed on most ({order.iloc[0]:.3f}), {order.index[-1]!r} least "
                f"({order.iloc[-1]:.3f}).",
            )
        )
