"""The catalog's views: `difficulty` and its three bands, `label_issues`, and `predictions` over
the Parquet prediction log; recreated by every writer, shadowed per reader for a moved workspace.
"""

from __future__ import annotations

import duckdb

from curate.catalog.schema import _tables
from curate.runlog.layout import RUN_IN_SHARD_PATH, has_shards, shards_glob
from curate.workspace import Workspace

VIEWS = {
    "difficulty": "instances joined with instance_scores (one row per run and instance) and, when computed, image_stats",
    "trivial": "rows of difficulty with ddd = 'trivial'",
    "in_between": "rows of difficulty with ddd = 'in-between'",
    "impossible": "rows of difficulty with ddd = 'impossible'",
    "label_issues": "one row per run and instance: given and suggested class, consensus, "
    "issue_score (higher = more likely mislabelled), flagged, with aum, late_aum, accessibility, forgetting "
    "and the image's source (columns documented in instance_scores)",
    "predictions": "every run's prediction log (Parquet shards): run, pass, split, member, epoch, idx, pred, p_true, margin, "
    "el2n (pred: the predicted class, or for multilabel runs the predicted class set as a bitmask; el2n: the L2 norm "
    "of softmax minus one-hot, NaN where the learner gives none, NULL in logs older than the column)",
}


def refresh_views(con: duckdb.DuckDBPyConnection, ws: Workspace) -> None:
    """(Re)create the views; `difficulty` joins image_stats only once that table exists."""
    stats = "image_stats" in _tables(
        con
    )  # created with the schema; kept for catalogs of older versions
    con.execute(
        "CREATE OR REPLACE VIEW difficulty AS SELECT i.dataset, i.split, i.idx, i.label, i.true_label, i.class_name, "
        "i.source, i.height, i.width, i.channels, s.* EXCLUDE (dataset, split, idx, label)"
        + (", st.* EXCLUDE (dataset, split, idx)" if stats else "")
        + " FROM instance_scores s JOIN instances i USING (dataset, split, idx)"
        + (" LEFT JOIN image_stats st USING (dataset, split, idx)" if stats else "")
    )
    for view, value in (
        ("trivial", "trivial"),
        ("in_between", "in-between"),
        ("impossible", "impossible"),
    ):
        con.execute(
            f"CREATE OR REPLACE VIEW {view} AS SELECT * FROM difficulty WHERE ddd = '{value}'"
        )
    con.execute(
        "CREATE OR REPLACE VIEW label_issues AS SELECT s.run, s.dataset, s.split, s.idx, s.label, "
        "i.class_name, s.suggested_label, "
        # a multilabel suggestion is a bitmask: the names of its set bits, '+'-joined
        "CASE WHEN d.multilabel THEN array_to_string(list_filter(d.class_names, "
        "lambda x, k: (s.suggested_label >> (k - 1)) & 1 = 1), '+') "
        "ELSE d.class_names[s.suggested_label + 1] END AS suggested_class, "
        "s.consensus, s.issue_score, s.flagged, s.aum, s.late_aum, s.accessibility, s.forgetting_events, "
        "i.true_label, i.source FROM instance_scores s JOIN instances i USING (dataset, split, idx) "
        "JOIN datasets d USING (dataset)"
    )
    shards = _has_log(ws)
    if shards:
        con.execute(f"CREATE OR REPLACE VIEW predictions AS {_predictions_sql(ws)}")
    for view, meaning in VIEWS.items():
        if view != "predictions" or shards:
            con.execute(f"COMMENT ON VIEW {view} IS '{meaning.replace(chr(39), chr(39) * 2)}'")


def _has_log(ws: Workspace) -> bool:
    return has_shards(ws.runs)


def _predictions_sql(ws: Workspace) -> str:
    """The SELECT behind the `predictions` view: every Parquet shard of the workspace's runs."""
    pattern = shards_glob(ws.runs).replace("'", "''")
    return (
        f"SELECT regexp_extract(filename, '{RUN_IN_SHARD_PATH}', 1) AS run, pass, split, "
        "CAST(member AS INTEGER) AS member, CAST(epoch AS INTEGER) AS epoch, idx, pred, p_true, "
        f"margin, el2n FROM (SELECT * FROM read_parquet('{pattern}', "
        # union_by_name: multilabel logs store pred as int32, the others as int16; logs older than
        # el2n lack it (NULL), and the empty SELECT gives the column when no shard has it
        "hive_partitioning = true, filename = true, union_by_name = true) "
        "UNION ALL BY NAME SELECT NULL::FLOAT AS el2n WHERE false)"
    )


def _local_predictions(con: duckdb.DuckDBPyConnection, ws: Workspace) -> None:
    """A workspace that was moved or copied still names the old log in its `predictions` view:
    shadow it, for this reader only, with a view over this workspace's own log."""
    row = con.execute(
        "SELECT sql FROM duckdb_views() WHERE view_name = 'predictions' AND NOT temporary"
    ).fetchone()
    here = shards_glob(ws.runs).replace("'", "''")
    if row is not None and here not in row[0] and _has_log(ws):
        con.execute(f"CREATE OR REPLACE TEMP VIEW predictions AS {_predictions_sql(ws)}")
