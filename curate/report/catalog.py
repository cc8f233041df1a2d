"""What the report reads from the catalog, through the read-only reader only (`curate.sql.fetch`).

Per-instance tables are summarised in SQL (bins, samples, correlations over every instance), so a
report of an ImageNet-size run moves kilobytes, not the table.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from curate.errors import CurateError
from curate.sql import fetch
from curate.workspace import Workspace

SCATTER_POINTS = 4000  # instances drawn (seeded) for an accessibility scatter; r uses all of them
FIG6_BINS = 20  # Hacohen Fig. 6: bins of 5 % of the instances each
# log rows (instances x members x epochs) beyond which the halves' scatter is not drawn: every row
# is read to draw it (about a minute at this size on two cores); r is in the catalog anyway
MAX_LOG_ROWS = 300_000_000


@dataclass
class RunData:
    """The run's catalog rows the report draws on; empty frames where a table has no rows."""

    run: str
    dataset: str
    info: dict
    splits: list[str]
    epoch_metrics: pd.DataFrame
    comparisons: pd.DataFrame
    correlations: pd.DataFrame
    stat_curves: pd.DataFrame
    categories: pd.DataFrame
    reliability: pd.DataFrame
    label_noise: pd.DataFrame
    kappa: pd.DataFrame  # per split, subset, epoch: mean / min / max over member pairs
    label_estimate: pd.DataFrame = field(default_factory=pd.DataFrame)  # label_noise_estimate

    def em(self, split: str) -> pd.DataFrame:
        """epoch_metrics of one split, by epoch."""
        return self.epoch_metrics[self.epoch_metrics["split"] == split].sort_values("epoch")

    def last(self, split: str) -> pd.Series:
        """epoch_metrics of the last scored epoch of a split."""
        return self.em(split).iloc[-1]


def _has_table(ws: Workspace, table: str) -> bool:
    return bool(
        fetch(ws, "SELECT count(*) AS n FROM duckdb_tables() WHERE table_name = ?", [table])["n"][0]
    )


def _rows(ws: Workspace, table: str, sql: str, params: list) -> pd.DataFrame:
    """`sql` when `table` exists (catalogs of older versions may lack it), else an empty frame."""
    return fetch(ws, sql, params) if _has_table(ws, table) else pd.DataFrame()


def _refuse_unfinished(ws: Workspace, run: str, flag: str) -> None:
    """A run without a `runs` row but with scores: its training was killed and `curate score`
    scored the epochs it had (the row is written when training finishes)."""
    if not fetch(ws, "SELECT 1 FROM epoch_metrics WHERE run = ? LIMIT 1", [run]).empty:
        from curate.runlog.manifest import unfinished

        why, fix = unfinished(ws.run_dir(run))
        raise CurateError(
            f"{flag}run {run!r} is not finished (scored, but {why}: no row in runs); {fix}, then "
            f"`curate score {run}`"
        )


def _run_row(ws: Workspace, run: str) -> dict:
    """The run's `runs` row; CurateError when the run is unknown or unfinished."""
    info = fetch(ws, "SELECT * FROM runs WHERE run = ?", [run])
    if info.empty:
        _refuse_unfinished(ws, run, "")
        known = fetch(ws, "SELECT run FROM runs ORDER BY run")["run"].tolist()
        raise CurateError(
            f"no run {run!r} in the catalog {ws.catalog} (runs: {', '.join(known) or 'none'}); "
            "make and score it first (`curate run RECIPE`, or a curate.Recorder / `curate import-log` "
            "run, then `curate score RUN`) or pass the right --workspace"
        )
    return info.iloc[0].to_dict()


def _check_compared(ws: Workspace, run: str, dataset: str, compare: list[str]) -> None:
    """CurateError unless every compared run is finished, of `dataset` and scored."""
    for other in compare:
        o = fetch(ws, "SELECT dataset FROM runs WHERE run = ?", [other])
        if o.empty:
            _refuse_unfinished(ws, other, "--compare ")
            raise CurateError(f"--compare {other}: no such run in the catalog")
        if o["dataset"][0] != dataset:
            raise CurateError(
                f"--compare {other}: it trained on {o['dataset'][0]!r}, {run} on {dataset!r}; "
                "compare runs of the same dataset"
            )
        scored = fetch(ws, "SELECT count(*) AS n FROM instance_scores WHERE run = ?", [other])
        if scored["n"][0] == 0:
            raise CurateError(f"--compare {other}: it has no scores; run `curate score {other}`")


def _tables(ws: Workspace, run: str) -> dict[str, pd.DataFrame]:
    """The run's rows of every table beside epoch_metrics that the report draws on."""
    return {
        "comparisons": fetch(
            ws,
            "SELECT * FROM ensemble_comparison WHERE run_a = ? ORDER BY run_b, split, kind, "
            "epoch_a, bin_lo",
            [run],
        ),
        "correlations": _rows(
            ws,
            "correlations",
            "SELECT * FROM correlations WHERE run = ? ORDER BY split, statistic, kind",
            [run],
        ),
        "stat_curves": _rows(
            ws,
            "agreement_stat_curves",
            "SELECT * FROM agreement_stat_curves WHERE run = ? ORDER BY split, statistic, epoch",
            [run],
        ),
        "categories": _rows(
            ws,
            "category_agreement",
            "SELECT * FROM category_agreement WHERE run = ? ORDER BY split, attribute, category, "
            "epoch",
            [run],
        ),
        "reliability": _rows(
            ws,
            "score_reliability",
            "SELECT * FROM score_reliability WHERE run = ? ORDER BY split, curve, x",
            [run],
        ),
        "label_noise": _rows(
            ws, "label_noise_eval", "SELECT * FROM label_noise_eval WHERE run = ?", [run]
        ),
        "label_estimate": _rows(
            ws,
            "label_noise_estimate",
            "SELECT e.*, d.class_names[e.label + 1] AS class_name FROM label_noise_estimate e "
            "JOIN runs r USING (run) JOIN datasets d USING (dataset) WHERE e.run = ? "
            "ORDER BY e.split, e.label",
            [run],
        ),
        "kappa": fetch(
            ws,
            "SELECT split, subset, epoch, avg(kappa) AS mean, min(kappa) AS min, max(kappa) AS "
            "max, count(*) AS pairs FROM error_consistency WHERE run = ? GROUP BY ALL "
            "ORDER BY split, subset, epoch",
            [run],
        ),
    }


def load(ws: Workspace, run: str, compare: list[str] | None = None) -> RunData:
    """Read everything the report needs of `run` (and of the runs it is compared with).

    Parameters
    ----------
    ws : Workspace
        The workspace; read through the read-only reader only.
    run : str
        The reported run.
    compare : list of str, optional
        Runs whose accessibility the report compares with the run's.

    Returns
    -------
    RunData
        The run's catalog rows; empty frames where a table has no rows.

    Raises
    ------
    CurateError
        When the run is unknown or unscored, or a compared run is unknown, unscored or of another
        dataset.
    """
    row = _run_row(ws, run)
    em = fetch(ws, "SELECT * FROM epoch_metrics WHERE run = ? ORDER BY split, epoch", [run])
    if em.empty:
        raise CurateError(f"run {run!r} has no scores; run `curate score {run}` first")
    _check_compared(ws, run, row["dataset"], compare or [])
    splits = sorted(em["split"].unique(), key=lambda s: (s != "train", s))
    return RunData(
        run=run,
        dataset=row["dataset"],
        info=row,
        splits=splits,
        epoch_metrics=em,
        **_tables(ws, run),
    )


def learned_by_accessibility(ws: Workspace, run: str, split: str) -> pd.DataFrame:
    """Hacohen Fig. 6: instances sorted by accessibility (ties by idx) in FIG6_BINS bins of equal
    size (the first ones one larger when N is not a multiple); per bin the mean accessibility and
    the 25 / 50 / 75 % quantiles of learned_epoch, a never-learned instance (NULL) counting as
    +infinity, so a median can be 'not learned'. Quantiles are discrete (DuckDB's quantile_disc:
    the smallest value with at least that share of the bin at or below it), so infinity never
    enters an interpolation."""
    return fetch(
        ws,
        "WITH b AS (SELECT accessibility, coalesce(learned_epoch, 'infinity'::DOUBLE) AS le, "
        "ntile(?) OVER (ORDER BY accessibility, idx) AS bin FROM instance_scores "
        "WHERE run = ? AND split = ?) "
        "SELECT bin, count(*) AS n, avg(accessibility) AS accessibility, "
        "quantile_disc(le, 0.25) AS q25, quantile_disc(le, 0.5) AS median, "
        "quantile_disc(le, 0.75) AS q75 FROM b GROUP BY bin ORDER BY bin",
        [FIG6_BINS, run, split],
    )


def kappa_pairs(ws: Workspace, run: str, split: str, epoch: int) -> pd.DataFrame:
    """Every member pair's error consistency at one epoch, on all and on in-between instances."""
    return fetch(
        ws,
        "SELECT subset, member_i, member_j, kappa FROM error_consistency WHERE run = ? AND "
        "split = ? AND epoch = ?",
        [run, split, epoch],
    )


def _step(ws: Workspace, run: str, split: str) -> int:
    n = fetch(
        ws, "SELECT count(*) AS n FROM instance_scores WHERE run = ? AND split = ?", [run, split]
    )["n"][0]
    return max(1, int(np.ceil(n / SCATTER_POINTS)))


def halves_accessibility(
    ws: Workspace, run: str, split: str, members_a: list[int], members_b: list[int]
) -> pd.DataFrame | None:
    """Accessibility (epochs 1..E) of two member groups of one run, from the prediction log, on every
    k-th instance (at most SCATTER_POINTS); None when the log is not reachable or larger than
    MAX_LOG_ROWS."""
    size = fetch(
        ws,
        "SELECT count(*) * max(members) * max(epochs) AS rows FROM instance_scores "
        "WHERE run = ? AND split = ?",
        [run, split],
    )["rows"][0]
    if size is None or size > MAX_LOG_ROWS:
        return None
    has_log = fetch(ws, "SELECT count(*) AS n FROM duckdb_views() WHERE view_name = 'predictions'")[
        "n"
    ][0]
    if not has_log:
        return None
    step = _step(ws, run, split)
    return fetch(
        ws,
        "SELECT p.idx, avg((p.pred = s.label)::DOUBLE) FILTER (WHERE list_contains(?, p.member)) "
        "AS a, avg((p.pred = s.label)::DOUBLE) FILTER (WHERE list_contains(?, p.member)) AS b "
        "FROM predictions p JOIN instance_scores s ON s.run = p.run AND s.split = p.split AND "
        "s.idx = p.idx WHERE p.run = ? AND p.pass = 'eval' AND p.split = ? AND p.epoch >= 1 AND "
        "p.epoch <= s.epochs AND p.idx % ? = 0 GROUP BY p.idx ORDER BY p.idx",
        [[int(m) for m in members_a], [int(m) for m in members_b], run, split, step],
    )


def runs_accessibility(
    ws: Workspace, run_a: str, run_b: str, split: str
) -> tuple[pd.DataFrame, dict]:
    """Accessibility of two runs on the same instances: a seeded sample (at most SCATTER_POINTS) and
    Pearson r / Spearman rho over all of them, computed by DuckDB."""
    join = (
        "FROM instance_scores a JOIN instance_scores b ON a.split = b.split AND a.idx = b.idx "
        "WHERE a.run = ? AND b.run = ? AND a.split = ?"
    )
    agg = fetch(
        ws,
        "SELECT count(*) AS n, corr(a.accessibility, b.accessibility) AS r " + join,
        [run_a, run_b, split],
    ).iloc[0]
    step = _step(ws, run_a, split)
    sample = fetch(
        ws,
        "SELECT a.idx, a.accessibility AS a, b.accessibility AS b "
        + join
        + " AND a.idx % ? = 0 ORDER BY a.idx",
        [run_a, run_b, split, step],
    )
    return sample, {"n": int(agg["n"]), "r": float(agg["r"]) if agg["n"] > 1 else float("nan")}
