"""Read-only SQL over the catalog, for `curate query` and the app."""

from __future__ import annotations

from curate import catalog
from curate.errors import CurateError
from curate.sql import Limits, fetch
from curate.workspace import Workspace

# `curate query`'s limits. 60 s: a scan of a large prediction log takes seconds, and a query that is
# still running after a minute has gone wrong (a cross join, a forgotten filter); it stays well below
# the 120 s a stage waits for the catalog, so a waiting stage always gets its turn. A million rows:
# every per-image table of CIFAR or ImageNet-val, well under 1 GiB in memory; the same limit on the
# terminal, where a table shows 200 of them anyway.
TIMEOUT = 60.0
MAX_ROWS = 1_000_000


def run_query(
    ws: Workspace,
    sql: str,
    fmt: str = "table",
    out: str | None = None,
    force: bool = False,
    timeout: float | None = TIMEOUT,
    max_rows: int | None = MAX_ROWS,
) -> str:
    """Run one read-only statement of the user's; its result as text, or written to `out`.

    Parameters
    ----------
    ws : the workspace whose catalog is read
    sql : the statement (one SELECT, see `catalog.Reader`)
    fmt : table, csv, json or parquet (parquet needs `out`)
    out, force : the file to write instead, and whether it may replace one curate did not write
    timeout : seconds the query may run before it is stopped (None: no limit)
    max_rows : the most rows the result may have (None: no limit)

    Returns
    -------
    str
        The result as text, or a line saying where it was written.

    Raises
    ------
    CurateError
        Bad or refused SQL; `curate.sql.QueryLimitError` when a limit is hit.
    """
    if fmt == "parquet" and not out:
        raise CurateError("--format parquet writes a file: add --out FILE.parquet")
    if out:
        from curate.outputs import check_file

        check_file(out, force)  # before the query runs: a refused --out costs nothing
    df = fetch(ws, sql, limits=Limits(seconds=timeout, rows=max_rows))
    if out:
        from curate.outputs import csv_writer, write_file

        writers = {
            "parquet": lambda p: df.to_parquet(p, index=False),
            "json": lambda p: df.to_json(
                p, orient="records", lines=False, date_format="iso", default_handler=str
            ),
            "csv": csv_writer(df),
            "table": lambda p: p.write_text(df.to_string(index=False) + "\n"),
        }
        target = write_file(out, writers[fmt], force=force, by="curate query")
        return f"wrote {len(df)} rows to {target}"
    if fmt == "csv":  # escaped like a file: it is often redirected into one
        from curate.outputs import csv_safe

        return csv_safe(df).to_csv(index=False).rstrip("\n")
    if fmt == "json":
        return df.to_json(orient="records", date_format="iso", default_handler=str)  # UUIDs
    if df.empty:
        return f"(no rows; columns: {', '.join(df.columns)})"
    import pandas as pd

    with pd.option_context(
        "display.max_rows", 200, "display.width", 200, "display.max_columns", 50
    ):
        return df.to_string(index=False, max_rows=200)


def list_tables(ws: Workspace) -> str:
    with catalog.read(ws) as con:
        rows = con.execute(
            "SELECT table_name, column_name, data_type, comment FROM duckdb_columns() "
            "WHERE database_name = current_database() AND schema_name = 'main' ORDER BY table_name, column_index"
        ).fetchall()
        views = {
            r[0]
            for r in con.execute(
                "SELECT view_name FROM duckdb_views() WHERE NOT internal"
            ).fetchall()
        }
    lines, current = [], None
    for table, col, typ, comment in rows:
        if table != current:
            current = table
            lines.append(f"\n{table} ({'view' if table in views else 'table'})")
        meaning = comment or (catalog.column_doc(table, col) or "")
        lines.append(f"  {col:<28} {typ:<12} {meaning}")
    return "\n".join(lines).lstrip("\n")
