"""`curate label-issues`: a run's likely wrong labels as a ranked list to review, with image paths."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from curate import catalog
from curate.errors import CurateError
from curate.workspace import Workspace

COLUMNS = (
    "split, idx, label, class_name, suggested_label, suggested_class, consensus, issue_score, "
    "flagged, aum, late_aum, accessibility, forgetting_events, true_label, source"
)


def label_issue_list(
    ws: Workspace, run: str, split: str = "train", top: int | None = None, every: bool = False
) -> pd.DataFrame:
    """The run's labels in review order, highest issue_score first.

    Parameters
    ----------
    run : a scored run.
    split : the split to review.
    top : at most this many rows (None: all).
    every : every instance, not only the flagged ones.
    """
    if top is not None and top < 1:
        raise CurateError(f"--top {top}: give a positive number of rows")
    with catalog.read(ws) as con:
        have = con.execute(
            "SELECT DISTINCT split FROM instance_scores WHERE run = ?", [run]
        ).fetchall()
        if not have:
            runs = [
                r[0] for r in con.execute("SELECT DISTINCT run FROM instance_scores").fetchall()
            ]
            raise CurateError(
                f"run {run!r} has no scores (scored runs: {', '.join(sorted(runs)) or 'none'}); "
                f"run `curate score {run}` first"
            )
        if (split,) not in have:
            raise CurateError(
                f"run {run!r} has no split {split!r}; choose --split from "
                f"{', '.join(sorted(s for (s,) in have))}"
            )
        # late_aum came with the present issue_score and flagged: a run scored before them (or a
        # catalog no newer curate has written to yet) holds another definition, or none
        if (
            not catalog.has_columns(con, "label_issues", "late_aum")
            or con.execute(
                "SELECT count(*) FROM instance_scores WHERE run = ? AND late_aum IS NULL", [run]
            ).fetchone()[0]
        ):
            raise CurateError(
                f"run {run!r} was scored by an older curate, before the present label-issue "
                f"signals; rescore it: curate score {run}"
            )
        sql = (
            f"SELECT {COLUMNS} FROM label_issues WHERE run = ? AND split = ?"
            + ("" if every else " AND flagged")
            + " ORDER BY issue_score DESC, idx"
            + (" LIMIT ?" if top else "")
        )
        return con.execute(sql, [run, split] + ([top] if top else [])).df()


def write_list(df: pd.DataFrame, out: str, force: bool = False) -> Path:
    """The list as CSV at `out`, written whole or not at all, formula-looking cells escaped; never
    over a file curate did not write (unless `force`) nor the workspace's files."""
    from curate.outputs import csv_writer, write_file

    return write_file(out, csv_writer(df), force=force, by="curate label-issues")
