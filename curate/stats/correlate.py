"""Agreement against image statistics (docs/concepts.md#correlations): the `correlations` and `category_agreement`
tables, as Pliushch et al. analyse them.

mu_f[e] = mean of statistic f over the instances every member gets right at epoch e; Pearson r
between strict_agreement[e] and mu_f[e] over the epochs e > 5 with strict_agreement >= 0.20; p >= 0.001
is reported as not significant. Per instance: Spearman rho between accessibility and f. f is an
image statistic (`image_stats`) or a numeric image attribute (`image_attributes`, e.g. Pascal VOC's
object count, KTH-TIPS2-b's scale); a categorical attribute (KTH-TIPS2-b's illumination and pose)
and the class get, per category and epoch, the fraction of its instances with strict = 1
(`category_agreement`, Pliushch Fig. 6c).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from curate import catalog
from curate.stats.definitions import STATS
from curate.workspace import Workspace

MIN_EPOCH = 5  # epochs e > 5 (Pliushch et al. omit the first, noisy ones)
MIN_STRICT = 0.20
ALPHA = 0.001


def strict_mean_of_stat(strict: np.ndarray, f: np.ndarray) -> np.ndarray:
    """mu_f[e]: mean of f (N,) over instances with strict[e, n], (T,) from strict (T, N); NaN when none."""
    ok = ~np.isnan(f)
    s = strict & ok[None, :]
    count = s.sum(axis=1)
    total = (s * np.where(ok, f, 0)[None, :]).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan)


def correlation_epochs(epochs: np.ndarray, strict_agreement: np.ndarray) -> np.ndarray:
    """Mask of the epochs Pliushch et al. plot: e > 5 and strict agreement >= 0.20."""
    return (epochs > MIN_EPOCH) & (strict_agreement >= MIN_STRICT)


def agreement_correlation(
    epochs: np.ndarray, strict_agreement: np.ndarray, strict: np.ndarray, f: np.ndarray
) -> dict:
    """Pearson r (two-tailed p) between strict_agreement[e] and mu_f[e] over the chosen epochs.

    Positive r: as agreement grows, the agreed-upon instances have higher f (learned later).
    """
    mu = strict_mean_of_stat(strict, f)
    use = correlation_epochs(epochs, strict_agreement) & np.isfinite(mu)
    n = int(use.sum())
    if n < 3 or np.std(mu[use]) == 0 or np.std(strict_agreement[use]) == 0:
        return {
            "r": np.nan,
            "p": np.nan,
            "n": n,
            "epochs": epochs[use].tolist(),
            "not_significant": True,
        }
    r, p = stats.pearsonr(strict_agreement[use], mu[use])
    return {
        "r": float(r),
        "p": float(p),
        "n": n,
        "epochs": epochs[use].tolist(),
        "not_significant": bool(p >= ALPHA),
    }


def accessibility_correlation(accessibility: np.ndarray, f: np.ndarray) -> dict:
    """Spearman rho (two-tailed p) between accessibility and f over instances (NaN f left out).
    Negative rho: images with higher f are harder."""
    ok = ~np.isnan(f)
    n = int(ok.sum())
    if n < 3 or np.std(f[ok]) == 0 or np.std(accessibility[ok]) == 0:
        return {"r": np.nan, "p": np.nan, "n": n, "not_significant": True}
    rho, p = stats.spearmanr(accessibility[ok], f[ok])
    return {"r": float(rho), "p": float(p), "n": n, "not_significant": bool(p >= ALPHA)}


def category_fractions(strict: np.ndarray, categories: np.ndarray) -> pd.DataFrame:
    """Per category and epoch, the fraction of the category's instances every member gets right."""
    rows = []
    for cat in pd.unique(categories):
        mask = categories == cat
        frac = strict[:, mask].mean(axis=1)
        rows += [(cat, e, int(mask.sum()), float(v)) for e, v in enumerate(frac)]
    return pd.DataFrame(rows, columns=["category", "epoch", "n", "frac_strict"])


CORRELATION_COLUMNS = [
    "run",
    "dataset",
    "split",
    "statistic",
    "kind",
    "r",
    "p",
    "n",
    "epochs",
    "not_significant",
]
CURVE_COLUMNS = ["run", "split", "statistic", "epoch", "strict_agreement", "mean_over_agreed"]


def compute_correlations(ws: Workspace, dataset: str) -> int:
    """Fill `correlations`, `category_agreement` and `agreement_stat_curves` for every scored run of
    `dataset` that has image statistics or image attributes.

    The statistics of `image_stats` and the numeric attributes of `image_attributes` (e.g.
    KTH-TIPS2-b's scale) get the same two correlations and curves; the categorical attributes
    (illumination, pose, ...) get `category_agreement` rows beside the per-class ones.

    Returns
    -------
    int
        The number of `correlations` rows written (0 when the dataset has neither statistics nor
        attributes, or no scored run).
    """
    frames = _scored_runs(ws, dataset)
    if not frames:
        return 0
    attrs = _attributes(ws, dataset)
    corr_rows, cat_frames, curve_rows = [], [], []
    for run, (inst, em) in frames.items():
        for split, g in inst.groupby("split"):
            strict = _strict(g)
            numeric, categorical = _split_attributes(attrs, split, g["idx"].to_numpy())
            columns = {k: g[k].to_numpy(dtype=float) for k in STATS if k in g} | numeric
            rows, curves = _statistic_rows(
                run, dataset, split, g, strict, em[em["split"] == split], columns
            )
            corr_rows += rows
            curve_rows += curves
            cat_frames.append(
                _category_frame(run, split, strict, g["class_name"].to_numpy(), categorical)
            )
    corr = pd.DataFrame(corr_rows, columns=CORRELATION_COLUMNS)
    cats = pd.concat(cat_frames, ignore_index=True)
    curves = pd.DataFrame(curve_rows, columns=CURVE_COLUMNS)
    _write(ws, list(frames), corr, cats, curves)
    return len(corr_rows)


def _scored_runs(ws: Workspace, dataset: str) -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    """run -> (its instance scores joined with classes and, when computed, image statistics,
    ordered by split and idx; its strict agreement per split and epoch). Empty when the dataset
    has neither image statistics nor image attributes."""
    con = catalog.read(ws)
    try:
        has_stats, has_attrs = (
            con.execute(f"SELECT count(*) FROM {t} WHERE dataset = ?", [dataset]).fetchone()[0]
            for t in ("image_stats", "image_attributes")  # table names from code, not input
        )
        runs = [
            r[0]
            for r in con.execute(
                "SELECT DISTINCT run FROM instance_scores WHERE dataset = ?", [dataset]
            ).fetchall()
        ]
        if not has_stats and not has_attrs:
            return {}
        # column names from code, not input; without statistics, attributes alone are correlated
        stat_cols = "".join(f", st.{k}" for k in STATS) if has_stats else ""
        stat_join = "JOIN image_stats st USING (dataset, split, idx) " if has_stats else ""
        return {
            run: (
                con.execute(
                    "SELECT s.split, s.idx, s.members, s.accessibility, s.correct_by_epoch, "
                    f"i.class_name{stat_cols} FROM instance_scores s "
                    "JOIN instances i USING (dataset, split, idx) "
                    f"{stat_join}"
                    "WHERE s.run = ? ORDER BY s.split, s.idx",
                    [run],
                ).df(),
                con.execute(
                    "SELECT split, epoch, strict_agreement FROM epoch_metrics WHERE run = ? "
                    "ORDER BY split, epoch",
                    [run],
                ).df(),
            )
            for run in runs
        }
    finally:
        con.close()


def _attributes(ws: Workspace, dataset: str) -> pd.DataFrame:
    """The dataset's `image_attributes` rows (split, idx, attribute, value, category)."""
    con = catalog.read(ws)
    try:
        return con.execute(
            "SELECT split, idx, attribute, value, category FROM image_attributes "
            "WHERE dataset = ? ORDER BY attribute, split, idx",
            [dataset],
        ).df()
    finally:
        con.close()


def _split_attributes(
    attrs: pd.DataFrame, split: str, idx: np.ndarray
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The attributes of one split aligned with `idx`: numeric name -> float array (NaN where an
    instance has none), categorical name -> object array (None where it has none)."""
    numeric, categorical = {}, {}
    for name, a in attrs[attrs["split"] == split].groupby("attribute", sort=True):
        a = a.set_index("idx")
        if a["category"].notna().any():
            categorical[name] = a["category"].reindex(idx).astype(object).to_numpy()
        else:
            numeric[name] = a["value"].reindex(idx).to_numpy(dtype=float)
    return numeric, categorical


def _strict(g: pd.DataFrame) -> np.ndarray:
    """strict[e, n]: every member right, (T, N), from the per-epoch correct counts."""
    counts = np.stack(g["correct_by_epoch"].to_numpy()).T  # (T, N)
    return counts == g["members"].to_numpy()[None, :]


def _statistic_rows(
    run: str,
    dataset: str,
    split: str,
    g: pd.DataFrame,
    strict: np.ndarray,
    e: pd.DataFrame,
    columns: dict[str, np.ndarray],
) -> tuple[list[tuple], list[tuple]]:
    """For each statistic or numeric attribute of one split (`columns`: name -> (N,) values
    aligned with g, NaN = none): its two `correlations` rows (Pearson over epochs, Spearman over
    instances) and its `agreement_stat_curves` rows."""
    epochs = e["epoch"].to_numpy()
    sa = e["strict_agreement"].to_numpy()
    access = g["accessibility"].to_numpy(dtype=float)
    rows, curves = [], []
    for stat, f in columns.items():
        curves += [
            (run, split, stat, int(ep), float(a), float(mu))
            for ep, a, mu in zip(epochs, sa, strict_mean_of_stat(strict, f), strict=True)
        ]
        a = agreement_correlation(epochs, sa, strict, f)
        b = accessibility_correlation(access, f)
        for kind, res, used in (
            ("strict_agreement~mean_over_agreed", a, a["epochs"]),
            ("accessibility~statistic (spearman)", b, None),
        ):
            rows.append(
                (run, dataset, split, stat, kind, res["r"], res["p"], res["n"], used,
                 res["not_significant"])
            )  # fmt: skip
    return rows, curves


def _category_frame(
    run: str,
    split: str,
    strict: np.ndarray,
    classes: np.ndarray,
    categorical: dict[str, np.ndarray],
) -> pd.DataFrame:
    """`category_agreement` rows of one split: per class, and per category of each categorical
    attribute (instances without the attribute left out), the all-correct fraction per epoch."""
    frames = []
    for attribute, values in {"class_name": classes, **categorical}.items():
        has = pd.notna(values)
        cf = category_fractions(strict[:, has], values[has])
        cf.insert(0, "attribute", attribute)
        cf.insert(0, "split", split)
        cf.insert(0, "run", run)
        frames.append(cf)
    return pd.concat(frames, ignore_index=True)


def _write(
    ws: Workspace, runs: list[str], corr: pd.DataFrame, cats: pd.DataFrame, curves: pd.DataFrame
) -> None:
    """Replace the runs' rows of the three tables in one transaction."""
    with catalog.write(ws) as con:
        for run in runs:
            con.execute("DELETE FROM correlations WHERE run = ?", [run])
            con.execute("DELETE FROM category_agreement WHERE run = ?", [run])
            con.execute("DELETE FROM agreement_stat_curves WHERE run = ?", [run])
        catalog.insert_frame(con, "agreement_stat_curves", curves)
        catalog.insert_frame(con, "correlations", corr)
        catalog.insert_frame(con, "category_agreement", cats)
