"""Parameterised reads of the catalog for the library's own queries.

Values always travel as `?` parameters. A name that has to be written into the SQL text (a column
chosen by the user) is checked against the relation's actual columns first, then quoted.
"""

from __future__ import annotations

import duckdb
import pandas as pd

from curate import catalog
from curate.errors import CurateError
from curate.workspace import Workspace


def fetch(ws: Workspace, sql: str, params: list | tuple = ()) -> pd.DataFrame:
    """Run one read-only statement with `?` parameters; return a pandas DataFrame.

    The connection is `catalog.Reader`'s sandbox, held only while the statement runs. Bad SQL, a write,
    a second statement or a file outside the workspace's prediction log is a CurateError.
    """
    with catalog.read(ws) as con:
        try:
            return con.execute(sql, list(params)).df()
        except duckdb.PermissionException as e:
            raise CurateError(
                f"not allowed: {_first_line(e)}. Queries read the catalog and the prediction log "
                f"under {ws.root / 'runs'}, no other file"
            ) from None
        except duckdb.Error as e:
            raise CurateError(
                f"SQL error: {_first_line(e)}. Check the statement; `curate query --tables` "
                "lists tables and columns"
            ) from None


def _first_line(e: BaseException) -> str:
    return (str(e).splitlines() or [type(e).__name__])[0]


def columns(ws: Workspace, relation: str) -> list[str]:
    """The column names of a table or view of the catalog (`relation` is a name from code)."""
    con = catalog.read(ws)
    try:
        return relation_columns(con, relation)
    finally:
        con.close()


def relation_columns(con: duckdb.DuckDBPyConnection, relation: str) -> list[str]:
    """columns() on an open connection."""
    return [
        r[0]
        for r in con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE database_name = current_database() "
            "AND schema_name = 'main' AND table_name = ? ORDER BY column_index",
            [relation],
        ).fetchall()
    ]


def quote_column(name: str, allowed: list[str]) -> str:
    """`name` as a quoted SQL identifier, once it is known to be one of `allowed` (the relation's
    actual columns); ValueError otherwise."""
    if name not in allowed:
        raise ValueError(f"{name!r} is not a column")
    return '"' + name.replace('"', '""') + '"'
