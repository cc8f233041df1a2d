"""Read-only queries behind the explorer app: each returns a small DataFrame (or array) a view plots.

Every function takes an open `curate.catalog.Reader` (sandboxed, one SELECT per call) and touches at
most a page of instances, so views stay fast on an ImageNet-size catalog. The app calls them
through `call`, which holds the catalog only while the query runs, so stages can write between
two page views.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd

from curate import catalog
from curate.errors import CurateError
from curate.sql import MAX_QUERY_MEMORY
from curate.stats.definitions import STATS

DDD = ("trivial", "in-between", "impossible")


def call(root: str, name: str, *args):
    """`name(reader, *args)` with a reader opened on the workspace `root` for this call only.

    The calls that carry the user's SQL (the console's statement, the filter's WHERE clause) run in
    a worker process instead, within the console's limits (`curate.query_worker`): a runaway
    statement is stopped there, not in the app.
    """
    from curate import catalog
    from curate.workspace import Workspace

    if name == "sql_console":
        return sql_console(root, *args)
    if name in USER_SQL:
        from curate import query_worker
        from curate.sql import Limits

        limits = Limits(seconds=CONSOLE_TIMEOUT, raise_seconds=None, max_memory=CONSOLE_MEMORY)
        return query_worker.call(root, name, args, limits)
    fn = QUERIES[name]
    with catalog.read(Workspace(root)) as con:
        return fn(con, *args)


def _q(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> pd.DataFrame:
    return con.execute(sql, params or []).df()


def datasets(con) -> list[str]:
    return _q(con, "SELECT dataset FROM datasets ORDER BY dataset")["dataset"].tolist()


def runs(con, dataset: str | None = None) -> pd.DataFrame:
    """Scored runs (with their dataset), newest first."""
    sql = (
        "SELECT r.run, r.dataset, r.arch, r.members, r.epochs, r.finished_at FROM runs r "
        "WHERE EXISTS (SELECT 1 FROM epoch_metrics e WHERE e.run = r.run)"
    )
    if dataset:
        sql += " AND r.dataset = ?"
    return _q(con, sql + " ORDER BY r.finished_at DESC", [dataset] if dataset else [])


def splits(con, run: str) -> list[str]:
    return _q(con, "SELECT DISTINCT split FROM epoch_metrics WHERE run = ? ORDER BY split", [run])[
        "split"
    ].tolist()


def run_overview(con, run: str) -> pd.DataFrame:
    """Per split and epoch: accuracy (mean, std), strict agreement, lower bound, random agreement,
    bimodality and its null, trivial / in-between / impossible fractions (the papers' main figure)."""
    return _q(
        con,
        "SELECT split, epoch, acc_mean, acc_std, strict_agreement, lower_bound, random_agreement, "
        "random_agreement_normalized, bimodality, bimodality_null, frac_trivial, frac_in_between, "
        "frac_impossible, flip_rate FROM epoch_metrics WHERE run = ? ORDER BY split, epoch",
        [run],
    )


def reliability(con, run: str, split: str) -> pd.DataFrame:
    """The run's `score_reliability` rows of a split (empty for runs scored by older versions)."""
    has = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'score_reliability'"
    ).fetchone()[0]
    if not has:
        return pd.DataFrame(
            columns=["curve", "x", "fraction", "pearson", "spearman", "predicted", "ddd_same"]
        )
    return _q(
        con,
        "SELECT curve, x, fraction, pearson, pearson_std, spearman, predicted, extrapolated, "
        "ddd_same FROM score_reliability WHERE run = ? AND split = ? ORDER BY curve, x",
        [run, split],
    )


def tpa_heatmap(con, run: str, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(epochs (T,), observed (M + 1, T), null (M + 1, T)): instances with j members correct per epoch,
    observed and under independent members (Hacohen Fig. 3b; Meding Fig. 3)."""
    df = _q(
        con,
        "SELECT epoch, correct_count_hist, correct_count_null FROM epoch_metrics WHERE run = ? AND split = ? "
        "ORDER BY epoch",
        [run, split],
    )
    if df.empty:
        raise CurateError(f"no epoch metrics for run {run!r} split {split!r}")
    obs = np.stack(df["correct_count_hist"].to_numpy()).T.astype(float)
    null = np.stack(df["correct_count_null"].to_numpy()).T.astype(float)
    return df["epoch"].to_numpy(), obs, null


def classes(con, run: str, split: str) -> list[str]:
    return _q(
        con,
        "SELECT DISTINCT class_name FROM difficulty WHERE run = ? AND split = ? ORDER BY 1",
        [run, split],
    )["class_name"].tolist()


@dataclass(frozen=True)
class Subset:
    """A subset of one run's split in the difficulty view, as the subset explorer's filters set it.

    Attributes
    ----------
    ddd : keep these difficulty groups (trivial, in-between, impossible); None or [] = all
    class_name : keep this class only
    score, score_range : keep rows whose column `score` lies in [lo, hi]
    stat, stat_range : the same for a second column (an image statistic)
    where : a free SQL condition on the difficulty view, and-ed to the rest
    """

    ddd: tuple[str, ...] | list[str] | None = None
    class_name: str | None = None
    score: str | None = None
    score_range: tuple[float, float] | None = None
    stat: str | None = None
    stat_range: tuple[float, float] | None = None
    where: str | None = None


def subset_where(run: str, split: str, subset: Subset = Subset()) -> tuple[str, list]:
    """The WHERE clause (with parameters) of a subset of `difficulty`.

    Parameters
    ----------
    run, split : the run and split the subset is drawn from
    subset : the filters (`Subset`); the default keeps the whole split

    Returns
    -------
    tuple[str, list]
        the clause, with ? placeholders, and its parameters in order
    """
    ddd, class_name, where = subset.ddd, subset.class_name, subset.where
    score, score_range = subset.score, subset.score_range
    stat, stat_range = subset.stat, subset.stat_range
    clauses, params = ["run = ?", "split = ?"], [run, split]
    if ddd:
        clauses.append("ddd IN (" + ", ".join("?" for _ in ddd) + ")")
        params += list(ddd)
    if class_name:
        clauses.append("class_name = ?")
        params.append(class_name)
    for col, rng in ((score, score_range), (stat, stat_range)):
        if col and rng is not None:
            if not col.replace("_", "").isalnum():
                raise CurateError(f"bad column name {col!r}")
            clauses.append(f'"{col}" BETWEEN ? AND ?')
            params += [float(rng[0]), float(rng[1])]
    if where:
        from curate.sql import condition

        clauses.append(condition(where, "the filter"))
    return " AND ".join(clauses), params


def subset_count(con, clause: str, params: list) -> int:
    try:
        return int(
            con.execute(f"SELECT count(*) FROM difficulty WHERE {clause}", params).fetchone()[0]
        )
    except duckdb.Error as e:
        raise CurateError(f"SQL error: {str(e).splitlines()[0]}") from None


# The gallery's default order, hardest first: the continuous score that agreed best with held-out
# difficulty. On CIFAR-10 (fastconv members, epochs 1..3 of a 5-epoch run, two halves of one member
# each; `benchmarks/bench_recipes.py --analyse-only`), Spearman with the C-scores was: confidence
# 0.85, AUM 0.84, accessibility 0.75, EL2N 0.74, forgetting 0.43. Accessibility, the papers'
# learning-order measure, stays the filter.
DEFAULT_ORDER = "confidence"


def subset_page(
    con, clause: str, params: list, page: int = 0, page_size: int = 48, order: str = DEFAULT_ORDER
) -> pd.DataFrame:
    """One page of the subset, lowest `order` first (the hardest): idx, class, accessibility,
    confidence, learned epoch, ddd, source (for thumbnails)."""
    from curate.sql import quote_column, relation_columns

    try:
        order_by = quote_column(order, relation_columns(con, "difficulty"))
    except ValueError:
        raise CurateError(f"bad column name {order!r}") from None
    try:
        return con.execute(
            "SELECT dataset, split, idx, class_name, accessibility, confidence, learned_epoch, ddd, "
            f"source FROM difficulty "
            f"WHERE {clause} ORDER BY {order_by}, idx LIMIT ? OFFSET ?",
            params + [page_size, page * page_size],
        ).df()
    except duckdb.Error as e:
        raise CurateError(f"SQL error: {str(e).splitlines()[0]}") from None


def instance_detail(con, run: str, split: str, idx: int) -> pd.Series:
    df = _q(
        con, "SELECT * FROM difficulty WHERE run = ? AND split = ? AND idx = ?", [run, split, idx]
    )
    if df.empty:
        raise CurateError(f"no instance {idx} in split {split!r} of run {run!r}")
    return df.iloc[0]


def prediction_timeline(
    con, run: str, split: str, idx: int
) -> tuple[np.ndarray, np.ndarray, list[int], list[int]]:
    """(correct (M, T) bool, pred (M, T) int, members, epochs) of one instance from the raw log."""
    has_log = con.execute(
        "SELECT count(*) FROM duckdb_views() WHERE view_name = 'predictions'"
    ).fetchone()[0]
    if not has_log:
        raise CurateError("no prediction log is reachable from this catalog")
    df = _q(
        con,
        "SELECT member, epoch, pred FROM predictions WHERE run = ? AND pass = 'eval' AND split = ? "
        "AND idx = ?",
        [run, split, idx],
    )
    label = con.execute(
        "SELECT label FROM instance_scores WHERE run = ? AND split = ? AND idx = ?",
        [run, split, idx],
    ).fetchone()[0]
    members, epochs = sorted(df["member"].unique()), sorted(df["epoch"].unique())
    pred = df.pivot(index="member", columns="epoch", values="pred").reindex(
        index=members, columns=epochs
    )
    p = pred.to_numpy()
    return p == label, p, members, epochs


def agreement_curves(con, run: str, split: str) -> pd.DataFrame:
    """Per statistic and epoch: strict agreement and the mean statistic of the all-correct instances."""
    return _q(
        con,
        "SELECT statistic, epoch, strict_agreement, mean_over_agreed FROM agreement_stat_curves "
        "WHERE run = ? AND split = ? ORDER BY statistic, epoch",
        [run, split],
    )


def category_curves(con, run: str, split: str) -> pd.DataFrame:
    """Per categorical attribute (class_name, illumination, pose, ...), category and epoch: n and
    the fraction of the category's instances every member gets right (`category_agreement`)."""
    if not catalog.has_columns(con, "category_agreement", "attribute"):
        return pd.DataFrame(columns=["attribute", "category", "epoch", "n", "frac_strict"])
    return _q(
        con,
        "SELECT attribute, category, epoch, n, frac_strict FROM category_agreement "
        "WHERE run = ? AND split = ? ORDER BY attribute, category, epoch",
        [run, split],
    )


def correlation_table(con, run: str, split: str) -> pd.DataFrame:
    return _q(
        con,
        "SELECT statistic, kind, r, p, n, not_significant FROM correlations WHERE run = ? AND split = ? "
        "ORDER BY statistic, kind",
        [run, split],
    )


def scatter_sample(con, run: str, split: str, stat: str, n: int = 5000) -> pd.DataFrame:
    """Accessibility against a statistic, or a numeric image attribute (`image_attributes`, e.g.
    scale), for a seeded sample of at most n instances."""
    if stat in STATS:
        return _q(
            con,
            f'SELECT * FROM (SELECT accessibility, "{stat}" AS value, ddd FROM difficulty WHERE run = ? AND split = ? '
            f'AND "{stat}" IS NOT NULL) USING SAMPLE reservoir({int(n)} ROWS) REPEATABLE (0)',  # sample after filtering
            [run, split],
        )
    numeric = con.execute(
        "SELECT count(*) FROM image_attributes a JOIN runs r USING (dataset) "
        "WHERE r.run = ? AND a.attribute = ? AND a.value IS NOT NULL",
        [run, stat],
    ).fetchone()[0]
    if not numeric:
        raise CurateError(
            f"unknown statistic {stat!r}: neither an image statistic nor a numeric attribute"
        )
    return _q(
        con,
        "SELECT * FROM (SELECT d.accessibility, a.value, d.ddd FROM difficulty d JOIN image_attributes a "
        "USING (dataset, split, idx) WHERE d.run = ? AND d.split = ? AND a.attribute = ? "
        f"AND a.value IS NOT NULL) USING SAMPLE reservoir({int(n)} ROWS) REPEATABLE (0)",
        [run, split, stat],
    )


def consistency_matrix(
    con, run: str, split: str, subset: str = "all", epoch: int | None = None
) -> pd.DataFrame:
    """Members x members kappa at an epoch (default: the last), on all or on in-between instances."""
    if epoch is None:
        epoch = con.execute(
            "SELECT max(epoch) FROM error_consistency WHERE run = ? AND split = ?", [run, split]
        ).fetchone()[0]
    df = _q(
        con,
        "SELECT member_i, member_j, kappa FROM error_consistency WHERE run = ? AND split = ? AND "
        "subset = ? AND epoch = ?",
        [run, split, subset, epoch],
    )
    members = sorted(set(df["member_i"]) | set(df["member_j"]))
    mat = pd.DataFrame(np.eye(len(members)), index=members, columns=members)
    for r in df.itertuples():
        mat.loc[r.member_i, r.member_j] = mat.loc[r.member_j, r.member_i] = r.kappa
    return mat


# The SQL console's limits, which its page can raise. 30 s: a page that has not answered in half a
# minute has gone wrong for the person waiting, and the catalog is free again well within the 120 s
# a stage waits for it. 100,000 rows: more than a browser table is useful for, and as much as the
# page sends comfortably (`curate query --out` exports more).
CONSOLE_TIMEOUT = 30.0
CONSOLE_MAX_ROWS = 100_000
CONSOLE_MEMORY = MAX_QUERY_MEMORY  # the most memory a console or filter query may take
# the calls of `call` that carry the user's SQL (the filter's WHERE clause) and so run in a worker,
# within the console's time and memory limits
USER_SQL = ("subset_count", "subset_page")


def sql_console(
    root, sql: str, timeout: float = CONSOLE_TIMEOUT, max_rows: int = CONSOLE_MAX_ROWS
) -> pd.DataFrame:
    """One read-only SELECT of the console, in a worker process within its limits
    (`curate.query_worker.query`).

    Parameters
    ----------
    root : the workspace
    sql : the statement
    timeout : seconds before the query is stopped
    max_rows : the most rows the result may have

    Returns
    -------
    pd.DataFrame
        The result (empty for a statement without one).

    Raises
    ------
    CurateError
        A refused or bad statement; `curate.sql.QueryLimitError` when a limit is hit.
    """
    from curate import query_worker
    from curate.sql import Limits

    limits = Limits(
        seconds=timeout,
        rows=max_rows,
        raise_seconds="the console's 'time limit (s)'",
        raise_rows="the console's 'row limit'",
        max_memory=CONSOLE_MEMORY,
    )
    try:
        return query_worker.query(root, sql, (), limits)
    except duckdb.PermissionException as e:
        raise CurateError(
            f"not allowed: {str(e).splitlines()[0]}. The console reads the catalog and the "
            "prediction log, no other file"
        ) from None
    except duckdb.Error as e:
        raise CurateError(str(e).splitlines()[0]) from None


def thumbnails(
    ws, dataset: str, split: str, idx: list[int], sources: list[str] | None = None
) -> list[np.ndarray]:
    """The images of `idx` as uint8 (H, W, C): from the .beton for raw and float storage (float data
    scaled by the whole split's range, as for the statistics), from the source files for JPEG."""
    from curate.data.loader import dataset_info
    from curate.data.pixels import read_split_uint8
    from curate.workspace import Workspace

    ws = ws if isinstance(ws, Workspace) else Workspace.resolve(ws)
    info = dataset_info(dataset, ws)
    if info.storage == "jpeg":
        from curate.data.formats.base import decode_image

        return [decode_image(s) for s in sources]
    return list(read_split_uint8(info, split, idx).images)


# the functions `call` may run: every query above that takes a reader first
def label_confusion(con, run: str, split: str) -> pd.DataFrame:
    """Flagged labels per (given class, suggested class): given, suggested, n."""
    if not catalog.has_columns(con, "label_issues", "flagged", "late_aum"):
        return pd.DataFrame(columns=["given", "suggested", "n"])
    return _q(
        con,
        "SELECT class_name AS given, suggested_class AS suggested, count(*) AS n FROM label_issues "
        # late_aum is NULL in runs scored before the present issue_score and flagged
        "WHERE run = ? AND split = ? AND flagged AND late_aum IS NOT NULL GROUP BY ALL "
        "ORDER BY n DESC",
        [run, split],
    )


def label_issue_page(
    con,
    run: str,
    split: str,
    given: str | None = None,
    suggested: str | None = None,
    page: int = 0,
    page_size: int = 48,
) -> pd.DataFrame:
    """A page of flagged labels, highest issue_score first, optionally of one class pair."""
    if not catalog.has_columns(con, "label_issues", "late_aum"):
        return pd.DataFrame()
    sql = (
        "SELECT dataset, idx, class_name, suggested_class, consensus, issue_score, late_aum, aum, "
        "accessibility, true_label, source FROM label_issues WHERE run = ? AND split = ? AND flagged "
        "AND late_aum IS NOT NULL"
    )
    params: list = [run, split]
    for col, value in (("class_name", given), ("suggested_class", suggested)):
        if value is not None:
            sql += f" AND {col} = ?"  # a constant column name; the value is a parameter
            params.append(value)
    sql += " ORDER BY issue_score DESC, idx LIMIT ? OFFSET ?"
    return _q(con, sql, params + [int(page_size), int(page) * int(page_size)])


def label_noise(con, run: str, split: str) -> pd.DataFrame:
    """The run's `label_noise_eval` row of a split (empty when its labels are the true ones)."""
    if not catalog.has_columns(con, "label_noise_eval", "auroc"):
        return pd.DataFrame()
    return _q(con, "SELECT * FROM label_noise_eval WHERE run = ? AND split = ?", [run, split])


def reference_rows(con, run: str) -> pd.DataFrame:
    """The run's comparisons with external references (`curate evaluate`), newest first."""
    if not catalog.has_columns(con, "reference_agreement", "spearman"):
        return pd.DataFrame()
    return _q(
        con,
        "SELECT split, score, reference, reference_column, n, spearman, spearman_p, pearson, "
        "pearson_p, auroc, created_at FROM reference_agreement WHERE run = ? "
        "ORDER BY created_at DESC",
        [run],
    )


QUERIES = {
    f.__name__: f
    for f in (
        datasets,
        runs,
        splits,
        run_overview,
        reliability,
        tpa_heatmap,
        classes,
        subset_count,
        subset_page,
        instance_detail,
        prediction_timeline,
        agreement_curves,
        category_curves,
        correlation_table,
        scatter_sample,
        consistency_matrix,
        label_confusion,
        label_issue_page,
        label_noise,
        reference_rows,
    )
}
