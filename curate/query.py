"""Read-only SQL over the catalog, for `curate query` and the app."""

from __future__ import annotations

from pathlib import Path

from curate import catalog
from curate.errors import CurateError
from curate.sql import fetch
from curate.workspace import Workspace, atomic_path


def run_query(ws: Workspace, sql: str, fmt: str = "table", out: str | None = None) -> str:
    df = fetch(ws, sql)
    if fmt == "parquet" and not out:
        raise CurateError("--format parquet writes a file: add --out FILE.parquet")
    if out:
        target = Path(out)
        if target.exists() and target.is_dir():
            raise CurateError(f"--out {target} is a folder; give a file path")
        refuse_workspace_file(ws, target)
        with atomic_path(target) as tmp:
            if fmt == "parquet":
                df.to_parquet(tmp, index=False)
            elif fmt == "json":
                df.to_json(tmp, orient="records", lines=False, date_format="iso")
            elif fmt == "csv":
                df.to_csv(tmp, index=False)
            else:
                tmp.write_text(df.to_string(index=False) + "\n")
        return f"wrote {len(df)} rows to {target}"
    if fmt == "csv":
        return df.to_csv(index=False).rstrip("\n")
    if fmt == "json":
        return df.to_json(orient="records", date_format="iso")
    if df.empty:
        return f"(no rows; columns: {', '.join(df.columns)})"
    import pandas as pd

    with pd.option_context(
        "display.max_rows", 200, "display.width", 200, "display.max_columns", 50
    ):
        return df.to_string(index=False, max_rows=200)


def refuse_workspace_file(ws: Workspace, target: Path) -> None:
    """--out may not replace what the stages wrote: the catalog, datasets, sources or runs."""
    t = target.expanduser().absolute().resolve()
    root = ws.root.resolve()
    guarded = [root / "catalog.duckdb", root / "catalog.duckdb.wal"]
    inside = [root / d for d in ("datasets", "sources", "runs")]
    if t in guarded or any(t.is_relative_to(d) for d in inside):
        raise CurateError(
            f"--out {target} would overwrite the workspace's own files; write the result "
            "elsewhere (e.g. --out result.csv)"
        )


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
