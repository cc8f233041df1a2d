"""Meding et al.'s figures: the correct-count histogram against the binomial (Fig. 3), trivial /
in-between / impossible fractions over epochs, error consistency on all and on in-between images
(B.2, Fig. 16), flip rates (Fig. 11) and the human 2AFC study (B.4) when its analysis exists.

Every figure in three steps: its numbers (`*_numbers`, from the catalog's rows), its drawing
(`*_figure`, a PNG of the report folder) and its caption (`*_caption`, the paper's finding and the
run's numbers).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from curate.errors import CurateError
from curate.report import plot
from curate.report.catalog import RunData, kappa_pairs
from curate.report.page import Figure, Headline, Section, format_value
from curate.workspace import Workspace

HUMAN_ACCURACY = 0.814  # Meding et al.: mean 2AFC accuracy of the observers
HUMAN_KAPPA = 0.59  # their error consistency between subjects
FRACTIONS = {"triv": "trivial", "inb": "in_between", "imp": "impossible"}  # headline key: column


def section(ws: Workspace, data: RunData, folder: Path, pairs: Path | None) -> Section:
    """Figures, notes and headline rows of the Meding part of the report."""
    tol = int(data.epoch_metrics["tol"].iloc[-1])
    sec = Section(
        "meding",
        "Meding et al.: dichotomous data difficulty",
        f"An image is trivial when at least M - {tol} members classify it correctly at the last "
        f"epoch, impossible when at most {tol} do, in-between otherwise (tolerance {tol}). Error "
        "consistency is Cohen's kappa between two members' correct/wrong patterns: 0 = no more "
        "overlap than their accuracies imply.",
    )
    rows = {k: {} for k in ("triv", "inb", "imp", "k_all", "k_inb", "flip1", "flipE")}
    for split in data.splits:
        _histogram(data, split, folder, sec)
        _fractions(data, split, folder, sec, rows)
        _consistency(ws, data, split, folder, sec, rows)
        _flips(data, split, folder, sec, rows)
    human = _human(folder, sec, pairs)
    sec.headlines = _headlines(sec.title, data.splits, rows, human)
    return sec


def _headlines(title: str, splits: list[str], rows: dict, human: dict) -> list[Headline]:
    return [
        Headline(
            title, "trivial at E", "ImageNet val, 13 ResNet-18 variants: 46.0 %", rows["triv"], "%"
        ),
        Headline(title, "in-between at E", "42.5 %", rows["inb"], "%"),
        Headline(title, "impossible at E", "11.5 %", rows["imp"], "%"),
        Headline(
            title,
            "mean kappa between members at E, all images",
            "high for every pair of models (Fig. 2)",
            rows["k_all"],
        ),
        Headline(
            title,
            "mean kappa at E, in-between images only",
            "drops towards 0 (B.2, Fig. 16)",
            rows["k_inb"],
        ),
        Headline(title, "flip rate at epoch 1", "highest early (Fig. 11)", rows["flip1"]),
        Headline(title, "flip rate at E", "small late in training", rows["flipE"]),
        Headline(
            title,
            "human 2AFC accuracy (trivial vs impossible)",
            f"{HUMAN_ACCURACY:.1%} (B.4)",
            {s: human.get("accuracy") for s in splits},
            "%",
        ),
        Headline(
            title,
            "kappa between observers",
            f"{HUMAN_KAPPA}",
            {s: human.get("kappa") for s in splits},
        ),
    ]


# ----------------------------------------------------------------------------- Fig. 3


def _histogram(data: RunData, split: str, folder: Path, sec: Section) -> None:
    nums = histogram_numbers(data.last(split))
    name = _histogram_figure(data.run, split, nums, folder)
    sec.figures.append(_histogram_caption(split, nums, name))


def histogram_numbers(last: pd.Series) -> dict:
    """Fig. 3's numbers at the last scored epoch: the correct-count histogram and its binomial
    null (M + 1 counts each), the instances n, the members M, the mean accuracy and the epoch."""
    hist = np.asarray(last["correct_count_hist"], float)
    return {
        "hist": hist,
        "null": np.asarray(last["correct_count_null"], float),
        "n": hist.sum(),
        "M": len(hist) - 1,
        "acc": last["acc_mean"],
        "epoch": int(last["epoch"]),
    }


def _histogram_figure(run: str, split: str, nums: dict, folder: Path) -> str:
    hist, null, n, M = nums["hist"], nums["null"], nums["n"], nums["M"]
    x = np.arange(M + 1)
    fig, ax = plot.figure()
    ax.bar(x - 0.2, hist / n, 0.4, color=plot.COLORS["strict"], label="observed")
    ax.bar(
        x + 0.2,
        null / n,
        0.4,
        color=plot.COLORS["lower"],
        label=f"Binomial({M}, {nums['acc']:.3f})",
    )
    ticks = [str(j) for j in x]
    ticks[0], ticks[-1] = "None", "All"
    ax.set_xticks(x, ticks)
    ax.set_xlabel("members correct at the last epoch")
    ax.set_ylabel(plot.FRACTION)
    ax.set_title(f"{run} / {split}: correct-count histogram, epoch {nums['epoch']}")
    ax.legend()
    return plot.save(fig, folder, f"meding_correct_count_{split}.png")


def _histogram_caption(split: str, nums: dict, name: str) -> Figure:
    hist, null, n = nums["hist"], nums["null"], nums["n"]
    return Figure(
        name,
        f"How many members classify each image correctly ({split}; Meding Fig. 3)",
        "Paper: on the ImageNet validation set (13 models, 69.05 % mean accuracy) the "
        "histogram has two spikes, at None and All, where equally difficult images and "
        "independent models would give the binomial hump. This run: None "
        f"{hist[0] / n:.1%} (binomial {null[0] / n:.1%}), All {hist[-1] / n:.1%} (binomial "
        f"{null[-1] / n:.1%}) at mean accuracy {nums['acc']:.3f}.",
    )


# ----------------------------------------------------------------------------- trivial / in-between


def _fractions(data: RunData, split: str, folder: Path, sec: Section, rows: dict) -> None:
    em = data.em(split)
    name = _fractions_figure(data.run, split, em, folder)
    last = em.iloc[-1]
    nums = {k: float(last[f"frac_{c}"]) for k, c in FRACTIONS.items()}
    for key, value in nums.items():
        rows[key][split] = value
    sec.figures.append(_fractions_caption(split, int(last["epoch"]), nums, name))


def _fractions_figure(run: str, split: str, em: pd.DataFrame, folder: Path) -> str:
    fig, ax = plot.figure()
    e = em["epoch"].to_numpy()
    parts = [em[f"frac_{c}"].to_numpy(float) for c in FRACTIONS.values()]
    ax.stackplot(
        e,
        *parts,
        labels=["trivial", "in-between", "impossible"],
        colors=[plot.COLORS[k] for k in ("trivial", "in-between", "impossible")],
        alpha=0.85,
    )
    ax.set_xlabel(plot.EPOCH_LABEL)
    ax.set_ylabel(plot.FRACTION)
    ax.set_ylim(0, 1)
    ax.set_xlim(e.min(), e.max())
    ax.set_title(f"{run} / {split}: trivial, in-between, impossible per epoch")
    ax.legend(loc="center right")
    return plot.save(fig, folder, f"meding_ddd_{split}.png")


def _fractions_caption(split: str, epoch: int, nums: dict, name: str) -> Figure:
    return Figure(
        name,
        f"Trivial / in-between / impossible fractions over epochs ({split})",
        "Paper: ImageNet validation after 90 epochs, 46.0 % trivial, 42.5 % in-between, 11.5 % "
        "impossible (48.2 / 37.5 / 14.3 % across architectures and objectives). This run at "
        f"epoch {epoch}: {nums['triv']:.1%} trivial, {nums['inb']:.1%} in-between, "
        f"{nums['imp']:.1%} impossible.",
    )


# ----------------------------------------------------------------------------- B.2, Fig. 16


def _consistency(
    ws: Workspace, data: RunData, split: str, folder: Path, sec: Section, rows: dict
) -> None:
    k = data.kappa[data.kappa["split"] == split] if not data.kappa.empty else data.kappa
    rows["k_all"][split] = rows["k_inb"][split] = None
    if k.empty:
        sec.notes.append(f"{split}: no error_consistency rows (an ensemble of one member?).")
        return
    E = int(data.last(split)["epoch"])
    curves = consistency_numbers(k, E)
    for subset, (_, value) in curves.items():
        rows["k_all" if subset == "all" else "k_inb"][split] = value
    pairs = kappa_pairs(ws, data.run, split, E)
    name = _consistency_figure(data, split, curves, pairs, E, folder)
    sec.figures.append(_consistency_caption(split, curves, E, name))


def consistency_numbers(k: pd.DataFrame, E: int) -> dict[str, tuple[pd.DataFrame, float | None]]:
    """B.2's numbers of one split: per subset (all, in-between) with rows, its mean / min / max
    kappa over member pairs by trained epoch and the mean at epoch E (None when not there)."""
    out = {}
    for subset in ("all", "in-between"):
        g = k[(k["subset"] == subset) & (k["epoch"] >= 1)].sort_values("epoch")
        if g.empty:
            continue
        at = g[g["epoch"] == E]
        out[subset] = (g, float(at["mean"].iloc[0]) if len(at) else None)
    return out


def _consistency_figure(
    data: RunData, split: str, curves: dict, pairs: pd.DataFrame, E: int, folder: Path
) -> str:
    fig, (ax, ax_m) = plot.figure(2, width=10.5, height=4.0, gridspec_kw={"width_ratios": [3, 2]})
    colors = {"all": plot.COLORS["strict"], "in-between": plot.COLORS["in-between"]}
    for subset, (g, _) in curves.items():
        color = colors[subset]
        ax.fill_between(g["epoch"], g["min"], g["max"], color=color, alpha=0.2)
        ax.plot(
            g["epoch"],
            g["mean"],
            "-o",
            ms=3,
            color=color,
            label=f"{subset} images (mean, min-max over pairs)",
        )
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xlabel("epoch")
    ax.set_ylabel("error consistency (Cohen's kappa, -1..1)")
    ax.set_title("mean over member pairs per epoch")
    ax.legend(fontsize=7)
    _matrix(ax_m, pairs, int(data.info["members"]), E)
    fig.suptitle(f"{data.run} / {split}: error consistency between members")
    return plot.save(fig, folder, f"meding_consistency_{split}.png")


def _consistency_caption(split: str, curves: dict, E: int, name: str) -> Figure:
    texts = [f"{subset} {format_value(value)}" for subset, (_, value) in curves.items()]
    return Figure(
        name,
        f"Error consistency of all member pairs, on all and on in-between images ({split}; "
        "Meding Fig. 2, B.2 / Fig. 16)",
        "Paper: ResNet-18 variants that differ in seed, architecture, optimiser or objective "
        "all show high error consistency on the full ImageNet validation set; on the "
        "in-between images alone kappa drops, for many pairs to about 0: the agreement comes "
        "from the trivial and impossible images. In-between is the split at the last epoch; "
        "the matrix shows every pair at that epoch. "
        f"This run, mean kappa over pairs at epoch {E}: " + ", ".join(texts) + ".",
    )


def _matrix(ax, pairs: pd.DataFrame, members: int, epoch: int) -> None:
    """Members x members kappa at `epoch`: above the diagonal on all images, below on in-between."""
    if len(pairs):  # the run's member ids, whatever they are
        members = max(members, int(pairs[["member_i", "member_j"]].to_numpy().max()) + 1)
    mat = np.full((members, members), np.nan)
    for r in pairs.itertuples():
        i, j = (r.member_i, r.member_j) if r.subset == "all" else (r.member_j, r.member_i)
        mat[i, j] = r.kappa
    im = ax.imshow(mat, vmin=-1, vmax=1, cmap="RdBu_r")
    ax.grid(False)
    ax.set_xlabel("member")
    ax.set_ylabel("member")
    ax.set_title(f"epoch {epoch}: above diagonal all, below in-between", fontsize=8)
    ax.figure.colorbar(im, ax=ax, label="Cohen's kappa (-1..1)")


# ----------------------------------------------------------------------------- Fig. 11


def _flips(data: RunData, split: str, folder: Path, sec: Section, rows: dict) -> None:
    em = data.em(split)
    em = em[em["epoch"] >= 1]
    if em.empty:
        return
    name = _flips_figure(data.run, split, em, folder)
    first, last = em.iloc[0], em.iloc[-1]
    rows["flip1"][split] = float(first["flip_rate"])
    rows["flipE"][split] = float(last["flip_rate"])
    sec.figures.append(_flips_caption(split, first, last, name))


def _flips_figure(run: str, split: str, em: pd.DataFrame, folder: Path) -> str:
    fig, ax = plot.figure()
    ax.plot(em["epoch"], em["flip_rate"], "-o", ms=3, label="correctness changed (flip rate)")
    ax.plot(em["epoch"], em["label_change_rate"], "--s", ms=3, label="predicted class changed")
    ax.set_xlabel("epoch e (change since e - 1)")
    ax.set_ylabel("fraction of (member, image) pairs (0-1)")
    ax.set_ylim(bottom=0)
    ax.set_title(f"{run} / {split}: decisions that change between epochs")
    ax.legend()
    return plot.save(fig, folder, f"meding_flips_{split}.png")


def _flips_caption(split: str, first: pd.Series, last: pd.Series, name: str) -> Figure:
    return Figure(
        name,
        f"Flip rates ({split}; Meding Fig. 11)",
        "Paper: the number of ImageNet validation decisions that change from one epoch to the "
        "next is large in the first epochs and small once training settles (per model, "
        "90 epochs). This run: flip rate "
        f"{first['flip_rate']:.3f} at epoch {int(first['epoch'])}, {last['flip_rate']:.3f} at "
        f"epoch {int(last['epoch'])}; predicted class changes {first['label_change_rate']:.3f} "
        f"and {last['label_change_rate']:.3f}.",
    )


# ----------------------------------------------------------------------------- B.4


def read_pairs(pairs: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The per-observer and between-observer tables `curate pairs-analyse` wrote in `pairs`."""
    a, c = pairs / "analysis.csv", pairs / "consistency.csv"
    if not pairs.is_dir():
        raise CurateError(f"--pairs {pairs}: no such folder; give the folder `curate pairs` wrote")
    if not a.exists():
        raise CurateError(
            f"--pairs {pairs}: no analysis.csv there; run `curate pairs-analyse {pairs} "
            "answers*.csv` first"
        )
    try:
        table = pd.read_csv(a)
        cons = pd.read_csv(c) if c.exists() else pd.DataFrame(columns=["kappa"])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as e:
        raise CurateError(
            f"--pairs {pairs}: analysis.csv or consistency.csv is not readable ({e}); rerun "
            "pairs-analyse"
        ) from None
    missing = {"observer", "n", "correct", "accuracy", "p"} - set(table.columns)
    if missing or "kappa" not in cons.columns:
        raise CurateError(
            f"--pairs {pairs}: analysis.csv lacks {sorted(missing) or ['consistency.csv kappa']}; "
            "it was not written by `curate pairs-analyse`"
        )
    for frame, name, cols in (
        (table, "analysis", ("n", "correct", "accuracy", "p")),
        (cons, "consistency", ("kappa",)),
    ):
        for col in cols:
            frame[col] = _numbers(pairs, frame, name, col)
    return table, cons


def _numbers(pairs: Path, frame: pd.DataFrame, name: str, col: str) -> pd.Series:
    """Column `col` of `name`.csv as numbers (empty cells NaN, as written); CurateError at text."""
    values = pd.to_numeric(frame[col], errors="coerce")
    bad = values.isna() & frame[col].notna()
    if bad.any():
        row = int(bad.to_numpy().argmax())
        raise CurateError(
            f"--pairs {pairs}: {name}.csv column {col} holds {frame[col].iloc[row]!r} on "
            f"line {row + 2}, not a number; rerun pairs-analyse"
        )
    return values


def _human(folder: Path, sec: Section, pairs: Path | None) -> dict:
    """The 2AFC results: pooled accuracy and mean kappa (empty when no --pairs)."""
    if pairs is None:
        sec.notes.append(
            "Human study: absent. `curate pairs RUN --out DIR`, observers' answers, then "
            "`curate pairs-analyse DIR answers*.csv` and `curate report RUN --pairs DIR` add "
            f"it (Meding: {HUMAN_ACCURACY:.1%} mean accuracy, kappa {HUMAN_KAPPA} between subjects)."
        )
        return {}
    table, cons = read_pairs(pairs)
    nums = human_numbers(table, cons)
    sec.tables.append(_human_table(pairs, table))
    png = pairs / "analysis.png"
    if png.exists():
        (folder / "meding_human_study.png").write_bytes(png.read_bytes())
        sec.figures.append(_human_caption(len(table), nums, "meding_human_study.png"))
    return nums


def human_numbers(table: pd.DataFrame, cons: pd.DataFrame) -> dict:
    """B.4's numbers: the observers' pooled accuracy and their mean kappa (None with one)."""
    total = table["n"].sum()
    return {
        "accuracy": float(table["correct"].sum() / total) if total else float("nan"),
        "kappa": float(cons["kappa"].mean()) if len(cons) else None,
    }


def _human_table(pairs: Path, table: pd.DataFrame) -> tuple[str, list[str], list[list[str]]]:
    return (
        f"Human 2AFC study ({pairs.name}): which of a trivial and an impossible image is harder "
        "for the network; accuracy per observer with a two-sided binomial test against 50 %.",
        ["observer", "trials", "correct", "accuracy", "p"],
        [
            [
                str(r.observer),
                str(int(r.n)),
                str(int(r.correct)),
                format_value(r.accuracy, "%"),
                format_value(r.p, ".2g"),
            ]
            for r in table.itertuples()
        ],
    )


def _human_caption(observers: int, nums: dict, name: str) -> Figure:
    kappa = nums["kappa"]
    return Figure(
        name,
        "Human 2AFC study (Meding B.4)",
        f"Paper: observers pick the impossible image in {HUMAN_ACCURACY:.1%} of trials, with "
        f"error consistency {HUMAN_KAPPA} between subjects. This study: {observers} "
        f"observers, pooled accuracy {nums['accuracy']:.1%}"
        + (f", mean kappa between observers {kappa:.2f}." if kappa is not None else "."),
    )
