"""Hacohen et al.'s figures: TP-agreement histograms against the independent null and bimodality
(Figs. 2-3), learned epoch by accessibility (Fig. 6), accessibility of two ensembles against each
other (Fig. 8b-d, Fig. 11) and counts at matched accuracy (Fig. 8a).

Every figure in three steps: its numbers (`*_numbers`, from the catalog's rows), its drawing
(`*_figure`, a PNG of the report folder) and its caption (`*_caption`, the paper's finding and the
run's numbers).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from curate.report import catalog, plot
from curate.report.catalog import RunData
from curate.report.page import Figure, Headline, Section
from curate.workspace import Workspace

MAX_PANELS = 6  # TP-agreement histograms drawn per split (Hacohen show epochs 1, 2, 5, 30, 40, 100)


def shown_epochs(last: int, k: int = MAX_PANELS) -> list[int]:
    """Up to k epochs from 1..last, spaced geometrically (early epochs change fastest), always with
    1 and last."""
    if last < 1:
        return [0]
    return sorted({int(round(v)) for v in np.geomspace(1, last, min(k, last))} | {1, last})


def section(ws: Workspace, data: RunData, folder: Path, compare: list[str]) -> Section:
    """Figures, notes and headline rows of the Hacohen part of the report."""
    sec = Section(
        "hacohen",
        "Hacohen et al.: TP-agreement, accessibility and learning order",
        "TP-agreement is the fraction of members that classify an image correctly at an epoch; "
        "accessibility its mean over epochs 1..E. Bimodality is kurtosis - skewness^2 - 1 of "
        "TP-agreement over images: lower = more bimodal, 0 for two spikes; the null is the same "
        "statistic for independent members of the same accuracies.",
    )
    bim, bim_null, bim_epoch = {}, {}, {}
    for split in data.splits:
        e_star = _histograms(data, split, folder, sec)
        em = data.em(split).set_index("epoch")
        bim[split] = float(em.loc[e_star, "bimodality"])
        bim_null[split] = float(em.loc[e_star, "bimodality_null"])
        bim_epoch[split] = e_star
        _learned(ws, data, split, folder, sec)
    half_r = _comparisons(ws, data, folder, sec, compare)
    sec.headlines = _headlines(sec.title, data.run, bim, bim_null, bim_epoch, half_r)
    return sec


def _headlines(
    title: str, run: str, bim: dict, bim_null: dict, bim_epoch: dict, half_r: dict
) -> list[Headline]:
    rows = [
        Headline(
            title,
            "bimodality at the most bimodal epoch",
            "ImageNet, 27 ResNet-50: bimodal at every epoch (Fig. 3)",
            bim,
        ),
        Headline(
            title,
            "its independent-members null",
            "unimodal, Gaussian-like; synthetic Gabor / Gaussian data stay near it (Fig. 10)",
            bim_null,
        ),
        Headline(title, "the most bimodal epoch (1..E)", "—", bim_epoch, "d"),
        Headline(
            title,
            "accessibility Pearson r, two halves of the run",
            "two collections of 13 ResNet-50: r = 0.99 (Fig. 8b)",
            half_r.pop(run, {}),
        ),
    ]
    for other, values in half_r.items():
        rows.append(
            Headline(
                title,
                f"accessibility Pearson r against run {other}",
                "ResNet-50 vs AlexNet 0.87, vs DenseNet 0.97 (Fig. 8c-d); vs AdaBoost 0.35 "
                "(Fig. 11)",
                values,
            )
        )
    return rows


# ----------------------------------------------------------------------------- Figs. 2-3


def _histograms(data: RunData, split: str, folder: Path, sec: Section) -> int:
    """Figs. 2-3 for a split; returns the most bimodal epoch (lowest bimodality in 1..E)."""
    em = data.em(split)
    nums = tpa_numbers(em)
    name = _tpa_figure(data.run, split, em, nums, folder)
    sec.figures.append(_tpa_caption(split, nums, name))
    name = _bimodality_figure(em, nums, split, folder)
    sec.figures.append(_bimodality_caption(split, nums, name))
    return nums["e_star"]


def tpa_numbers(em: pd.DataFrame) -> dict:
    """Figs. 2-3's numbers of one split's epoch_metrics: the correct-count histograms and their
    nulls (epochs x M + 1), the instances n, the members M, the last epoch E, the epochs drawn,
    the most bimodal epoch e_star, and bimodality with its null by epoch."""
    hist = np.stack(em["correct_count_hist"].to_numpy()).astype(float)  # (T, M + 1)
    trained = em[em["epoch"] >= 1]
    b = trained["bimodality"].to_numpy(float)
    E = int(em["epoch"].max())
    by = em.set_index("epoch")
    return {
        "hist": hist,
        "null": np.stack(em["correct_count_null"].to_numpy()).astype(float),
        "n": hist[0].sum(),
        "M": hist.shape[1] - 1,
        "E": E,
        "epochs": shown_epochs(E),
        "e_star": int(trained["epoch"].iloc[int(np.nanargmin(b))]) if np.isfinite(b).any() else E,
        "bimodality": by["bimodality"],
        "bimodality_null": by["bimodality_null"],
    }


def _tpa_figure(run: str, split: str, em: pd.DataFrame, nums: dict, folder: Path) -> str:
    hist, null, n, M, epochs = (nums[k] for k in ("hist", "null", "n", "M", "epochs"))
    by = em.set_index("epoch")
    levels = np.arange(M + 1) / M
    ncols = min(3, len(epochs))
    nrows = int(np.ceil(len(epochs) / ncols))
    fig, axes = plot.figure(
        ncols, nrows, width=3.3 * ncols, height=2.4 * nrows + 0.6, squeeze=False, sharey=True
    )
    for ax in axes.flat[len(epochs) :]:
        ax.set_visible(False)
    width = 0.8 / M
    for ax, e in zip(axes.flat, epochs, strict=False):
        i = int(np.flatnonzero(em["epoch"].to_numpy() == e)[0])
        ax.bar(levels, hist[i] / n, width=width, color=plot.COLORS["strict"], label="observed")
        ax.bar(
            levels,
            null[i] / n,
            width=width,
            fill=False,
            edgecolor=plot.COLORS["null"],
            lw=1.5,
            label="independent null",
        )
        ax.set_title(f"epoch {e}: mean accuracy {by.loc[e, 'acc_mean']:.2f}", fontsize=8)
        ax.set_ylim(0, 1)
    for ax in axes[:, 0]:
        ax.set_ylabel(plot.FRACTION)
    axes[0][0].legend(fontsize=7, loc="upper left")
    fig.supxlabel("TP-agreement (fraction of members correct, 0-1)")
    fig.suptitle(f"{run} / {split}: TP-agreement distribution per epoch")
    return plot.save(fig, folder, f"hacohen_tpa_hist_{split}.png")


def _tpa_caption(split: str, nums: dict, name: str) -> Figure:
    b, b0 = nums["bimodality"], nums["bimodality_null"]
    texts = [f"epoch {e}: {b.loc[e]:.2f} vs null {b0.loc[e]:.2f}" for e in nums["epochs"]]
    return Figure(
        name,
        f"TP-agreement histograms against the independent null ({split}; Hacohen Figs. 2-3a)",
        "Paper: for 27 ResNet-50 on ImageNet the distribution is bimodal (images at 0 or 1) at "
        "every epoch, while independent classifiers of the same accuracy give a Gaussian-like "
        "hump that drifts with accuracy; on synthetic data (Gabor patches, two Gaussians) it "
        "stays near that null. The null drawn here is Binomial(M, mean accuracy); the "
        "bimodality null is the exact Poisson-binomial one. This run, bimodality (lower = "
        "more bimodal): " + "; ".join(texts) + ".",
    )


def _bimodality_figure(em: pd.DataFrame, nums: dict, split: str, folder: Path) -> str:
    M, E = nums["M"], nums["E"]
    fig, (ax0, ax1) = plot.figure(2, width=10, height=3.6)
    frac = (nums["hist"] / nums["n"]).T  # (M + 1, T)
    im = ax0.imshow(
        frac,
        origin="lower",
        aspect="auto",
        cmap="viridis",
        extent=(em["epoch"].min() - 0.5, E + 0.5, -0.5 / M, 1 + 0.5 / M),
    )
    ax0.set_xlabel(plot.EPOCH_LABEL)
    ax0.set_ylabel("TP-agreement")
    ax0.grid(False)
    fig.colorbar(im, ax=ax0, label=plot.FRACTION)
    ax0.set_title("images per TP-agreement and epoch")
    ax1.plot(
        em["epoch"], em["bimodality"], "-o", ms=3, color=plot.COLORS["strict"], label="observed"
    )
    ax1.plot(
        em["epoch"],
        em["bimodality_null"],
        "--",
        color=plot.COLORS["null"],
        label="independent null",
    )
    ax1.axhline(0, color="k", lw=0.6)
    ax1.set_xlabel(plot.EPOCH_LABEL)
    ax1.set_ylabel("bimodality (kurtosis - skew² - 1)")
    ax1.set_title("bimodality (lower = more bimodal)")
    ax1.legend()
    return plot.save(fig, folder, f"hacohen_bimodality_{split}.png")


def _bimodality_caption(split: str, nums: dict, name: str) -> Figure:
    b, b0, e_star, E = nums["bimodality"], nums["bimodality_null"], nums["e_star"], nums["E"]
    return Figure(
        name,
        f"TP-agreement over training and its bimodality ({split}; Hacohen Fig. 3b)",
        "Paper: real classifiers show two bands (TP-agreement 0 and 1) throughout training, "
        "the null a single band following the accuracy. This run: most bimodal at epoch "
        f"{e_star} ({b.loc[e_star]:.3f} against a null of {b0.loc[e_star]:.3f}); at the last "
        f"epoch {E} {b.loc[E]:.3f} against {b0.loc[E]:.3f}.",
    )


# ----------------------------------------------------------------------------- Fig. 6


def _learned(ws: Workspace, data: RunData, split: str, folder: Path, sec: Section) -> None:
    bins = catalog.learned_by_accessibility(ws, data.run, split)
    if bins.empty:
        return
    nums = learned_numbers(bins, int(data.last(split)["epoch"]))
    name = _learned_figure(data.run, split, bins, nums, folder)
    sec.figures.append(_learned_caption(split, bins, nums, name))


def learned_numbers(bins: pd.DataFrame, E: int) -> dict:
    """Fig. 6's numbers: per accessibility bin the median learned epoch and its 25-75 % range,
    capped at E + 1 where "not learned by epoch E" is drawn; the bins learned (finite median)."""
    cap = E + 1
    med = bins["median"].to_numpy(float)
    return {
        "E": E,
        "cap": cap,
        "median": med,
        "shown": np.minimum(med, cap),
        "lo": np.minimum(bins["q25"].to_numpy(float), cap),
        "hi": np.minimum(bins["q75"].to_numpy(float), cap),
        "finite": np.isfinite(med),
    }


def _learned_figure(run: str, split: str, bins: pd.DataFrame, nums: dict, folder: Path) -> str:
    cap, shown = nums["cap"], nums["shown"]
    fig, ax = plot.figure()
    x = np.arange(1, len(bins) + 1)
    ax.errorbar(
        x,
        shown,
        yerr=[shown - nums["lo"], nums["hi"] - shown],
        fmt="o",
        color=plot.COLORS["null"],
        ecolor="#999",
        capsize=2,
    )
    ax.axhline(cap, color="k", ls=":", lw=0.8)
    ax.text(1, cap, " not learned by E", va="bottom", fontsize=7)
    ax.set_xticks(x[::2], [f"{a:.2f}" for a in bins["accessibility"].to_numpy()[::2]], fontsize=7)
    ax.set_xlabel(f"accessibility (mean of each of {len(bins)} equal bins, least accessible first)")
    ax.set_ylabel("learned epoch (median over members)")
    ax.set_ylim(0, cap + 0.8)
    ax.set_title(f"{run} / {split}: learned epoch by accessibility")
    return plot.save(fig, folder, f"hacohen_learned_epoch_{split}.png")


def _learned_caption(split: str, bins: pd.DataFrame, nums: dict, name: str) -> Figure:
    finite = nums["finite"]
    learned = nums["median"][finite]
    return Figure(
        name,
        f"Learned epoch by accessibility bin ({split}; Hacohen Fig. 6)",
        "Paper: for 20 VGG-19 on CIFAR-100, sorted into bins of 5 % by accessibility, the "
        "median learned epoch falls steadily with accessibility and varies little between "
        "models. Dots: the median of the bin's learned epochs (each the median over members); "
        "bars: the bin's 25-75 % range; never-learned images count as not learned. This run: "
        f"{int((~finite).sum())} of {len(bins)} bins not learned by epoch {nums['E']}; the learned "
        f"bins' medians run from {learned.max() if len(learned) else float('nan'):.1f} to "
        f"{learned.min() if len(learned) else float('nan'):.1f} as accessibility rises to "
        f"{bins['accessibility'].iloc[-1]:.2f}.",
    )


# ----------------------------------------------------------------------------- Figs. 8, 11


def _members(v) -> list[int]:
    return [int(m) for m in v]


def _comparisons(
    ws: Workspace, data: RunData, folder: Path, sec: Section, compare: list[str]
) -> dict[str, dict[str, float]]:
    """Fig. 8b-d scatters, Fig. 11 bins and Fig. 8a counts; returns {run_b: {split: stored r}}."""
    comp = data.comparisons
    acc_rows = comp[comp["kind"] == "accessibility"] if not comp.empty else comp
    stored_runs = sorted(set(acc_rows["run_b"]) - {data.run}) if len(acc_rows) else []
    others = list(dict.fromkeys([*stored_runs, *compare]))
    stored: dict[str, dict[str, float]] = {data.run: {}}
    if acc_rows.empty or data.run not in set(acc_rows["run_b"]):
        sec.notes.append(
            "No comparison of the run's two halves in ensemble_comparison (a run of one member, "
            f"or scored by an older version); rerun `curate score {data.run}`."
        )
    if not compare and not others:
        sec.notes.append(
            "No second run is compared: train another ensemble on the same dataset (another "
            f"architecture, or `--set train.strategy=adaboost`), then `curate score {data.run} "
            f"--compare RUN2` and `curate report {data.run} --compare RUN2` add Fig. 8c-d, 8a and 11 "
            "for it."
        )
    for split in data.splits:
        rows = acc_rows[acc_rows["split"] == split] if len(acc_rows) else acc_rows
        panels = _halves_panels(ws, data.run, split, rows, sec, stored)
        panels += _other_panels(ws, data.run, split, rows, others, sec, stored)
        if panels:
            name = _scatter_figure(split, panels, folder)
            sec.figures.append(_scatter_caption(split, panels, name))
        _binned(data, split, folder, sec)
        _matched(data, split, folder, sec)
    return stored


def _halves_panels(
    ws: Workspace, run: str, split: str, rows: pd.DataFrame, sec: Section, stored: dict
) -> list[tuple]:
    """Fig. 8b's panel of the run's two halves (title, sample a, sample b, r, n, label a, label
    b), from the prediction log; none when the log is out of reach (said in a note)."""
    panels = []
    for row in rows[rows["run_b"] == run].itertuples() if len(rows) else []:
        stored[run][split] = float(row.pearson_r)
        ma, mb = _members(row.members_a), _members(row.members_b)
        pts = catalog.halves_accessibility(ws, run, split, ma, mb)
        if pts is None:
            sec.notes.append(
                f"{split}: the prediction log is not reachable from this catalog, or larger than "
                f"{catalog.MAX_LOG_ROWS:,} rows, so the halves' scatter is not drawn (their r "
                "is in the table)."
            )
            continue
        panels.append(
            ("two halves of the run", pts["a"], pts["b"], float(row.pearson_r), int(row.n))
            + (f"members {ma}", f"members {mb}")
        )
    return panels


def _other_panels(
    ws: Workspace,
    run: str,
    split: str,
    rows: pd.DataFrame,
    others: list[str],
    sec: Section,
    stored: dict,
) -> list[tuple]:
    """Fig. 8c-d's panels, one per other run: its stored r, else one computed here (said in a
    note, and stored as None)."""
    panels = []
    for other in others:
        sample, agg = catalog.runs_accessibility(ws, run, other, split)
        if agg["n"] == 0:
            sec.notes.append(f"{split}: run {other} has no scores on this split.")
            continue
        row = rows[rows["run_b"] == other] if len(rows) else rows
        if len(row):
            r = float(row["pearson_r"].iloc[0])
            stored.setdefault(other, {})[split] = r
        else:
            r = agg["r"]
            sec.notes.append(
                f"{split}: ensemble_comparison has no rows of {run} against {other}; r is "
                f"computed here from both runs' accessibility, and the matched-accuracy "
                f"counts need `curate score {run} --compare {other}`."
            )
            stored.setdefault(other, {})[split] = None
        panels.append((f"against run {other}", sample["a"], sample["b"], r, agg["n"], run, other))
    return panels


def _scatter_figure(split: str, panels: list, folder: Path) -> str:
    fig, axes = plot.figure(len(panels), 1, width=3.6 * len(panels), height=3.6, squeeze=False)
    for ax, (title, a, b, r, n, la, lb) in zip(axes[0], panels, strict=True):
        ax.scatter(a, b, s=4, alpha=0.3, color=plot.COLORS["strict"], lw=0)
        ax.plot([0, 1], [0, 1], color="k", lw=0.6)
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.set_aspect("equal")
        ax.set_xlabel(f"accessibility, {la} (0-1)")
        ax.set_ylabel(f"accessibility, {lb} (0-1)")
        ax.set_title(f"{title}: r = {r:.3f} (n = {n})", fontsize=8)
    return plot.save(fig, folder, f"hacohen_accessibility_{split}.png")


def _scatter_caption(split: str, panels: list, name: str) -> Figure:
    texts = [f"{title}: r = {r:.3f} over {n} images" for title, _, _, r, n, _, _ in panels]
    return Figure(
        name,
        f"Accessibility of two ensembles against each other ({split}; Hacohen Fig. 8b-d)",
        "Paper (ImageNet train set): two disjoint collections of 13 ResNet-50, r = 0.99; 27 "
        "ResNet-50 against 22 AlexNet, r = 0.87; against 6 DenseNet, r = 0.97. This run: "
        + "; ".join(texts)
        + f" (at most {catalog.SCATTER_POINTS} images drawn; r from the catalog over all).",
    )


def _binned(data: RunData, split: str, folder: Path, sec: Section) -> None:
    comp = data.comparisons
    rows = comp[(comp["kind"] == "binned") & (comp["split"] == split)] if not comp.empty else comp
    if rows.empty:
        return
    curves = binned_numbers(rows, data.run)
    name = _binned_figure(data.run, split, rows, curves, folder)
    sec.figures.append(_binned_caption(split, curves, name))


def binned_numbers(rows: pd.DataFrame, run: str) -> list[tuple[str, pd.DataFrame]]:
    """Fig. 11's curves: per compared run (the run itself = its second half) its label and rows
    (bin_lo, bin_hi, mean_b, se_b), in the catalog's order."""
    return [
        ("second half" if run_b == run else run_b, g)
        for run_b, g in rows.groupby("run_b", sort=False)
    ]


def _binned_figure(run: str, split: str, rows: pd.DataFrame, curves: list, folder: Path) -> str:
    fig, ax = plot.figure()
    for label, g in curves:
        mid = (g["bin_lo"] + g["bin_hi"]) / 2
        ax.errorbar(mid, g["mean_b"], yerr=g["se_b"], fmt="-o", ms=3, capsize=2, label=label)
    ax.plot([0, 1], [0, 1], color="k", lw=0.6)
    only_halves = set(rows["run_b"]) == {run}
    first = f"the first half of {run}" if only_halves else f"{run} (its first half for the halves)"
    ax.set_xlabel(f"accessibility under {first} (bin centre, 0-1)")
    ax.set_ylabel("mean accessibility under the other (± s.e.)")
    ax.set_title(f"{run} / {split}: binned accessibility")
    ax.legend(fontsize=7)
    return plot.save(fig, folder, f"hacohen_binned_{split}.png")


def _binned_caption(split: str, curves: list, name: str) -> Figure:
    texts = [
        f"{label}: mean {g['mean_b'].iloc[0]:.2f} in the lowest bin, {g['mean_b'].iloc[-1]:.2f} "
        "in the highest"
        for label, g in curves
    ]
    return Figure(
        name,
        f"Mean accessibility of the other ensemble per accessibility bin ({split}; Hacohen Fig. 11)",
        "Paper: AdaBoost (100 linear classifiers) against 100 st-VGG on CIFAR-10 correlate "
        "weakly (r = 0.35 on pixels, 0.05 on Inception features): neural networks and boosting "
        "learn in different orders. This run: " + "; ".join(texts) + ".",
    )


def _matched(data: RunData, split: str, folder: Path, sec: Section) -> None:
    comp = data.comparisons
    rows = (
        comp[(comp["kind"] == "matched-epoch") & (comp["split"] == split)]
        if not comp.empty
        else comp
    )
    if rows.empty:
        sec.notes.append(
            f"{split}: no epochs where the two ensembles' majority votes are within 1 % accuracy, "
            "so no matched-accuracy counts (Fig. 8a)."
        )
        return
    pairs = matched_numbers(rows, data.run)
    name = _matched_figure(data.run, split, pairs, folder)
    sec.figures.append(_matched_caption(split, pairs, name))


def matched_numbers(rows: pd.DataFrame, run: str) -> list[dict]:
    """Fig. 8a's numbers: per compared run its two labels, its rows by the run's accuracy, the
    instances n and the last row (the highest matched accuracy)."""
    out = []
    for run_b, g in rows.groupby("run_b", sort=False):
        g = g.sort_values("acc_a")
        out.append(
            {
                "la": "first half" if run_b == run else run,
                "lb": "second half" if run_b == run else run_b,
                "rows": g,
                "n": float(g["n"].iloc[0]),
                "last": g.iloc[-1],
            }
        )
    return out


def _matched_figure(run: str, split: str, pairs: list[dict], folder: Path) -> str:
    fig, axes = plot.figure(len(pairs), 1, width=4.2 * len(pairs), height=3.4, squeeze=False)
    for ax, p in zip(axes[0], pairs, strict=True):
        g, n, la, lb = p["rows"], p["n"], p["la"], p["lb"]
        ax.plot(g["acc_a"], g["both_correct"] / n, "-o", ms=3, label="both correct")
        ax.plot(g["acc_a"], g["only_a"] / n, ":s", ms=3, label=f"only {la}")
        ax.plot(g["acc_a"], g["only_b"] / n, "--^", ms=3, label=f"only {lb}")
        ax.set_xlabel(f"majority-vote accuracy of {la} (0-1)")
        ax.set_ylabel(plot.FRACTION)
        ax.set_title(f"{la} vs {lb}", fontsize=8)
        ax.legend(fontsize=7)
    fig.suptitle(f"{run} / {split}: images correct at matched majority-vote accuracy")
    return plot.save(fig, folder, f"hacohen_matched_{split}.png")


def _matched_caption(split: str, pairs: list[dict], name: str) -> Figure:
    texts = []
    for p in pairs:
        last, la, lb = p["last"], p["la"], p["lb"]
        texts.append(
            f"{la} vs {lb} at accuracy {last['acc_a']:.3f}: {int(last['both_correct'])} both, "
            f"{int(last['only_a'])} only {la}, {int(last['only_b'])} only {lb} of {int(p['n'])}"
        )
    return Figure(
        name,
        f"Images correct by both / only one ensemble at matched accuracy ({split}; Hacohen Fig. 8a)",
        "Paper: at epochs where ResNet-50's and AlexNet's majority votes are equally accurate, "
        "nearly every correct image is correct for both; after AlexNet converges, ResNet-50 "
        "first learns what only AlexNet had. This run: " + "; ".join(texts) + ".",
    )
