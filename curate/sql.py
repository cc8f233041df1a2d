"""Parameterised reads of the catalog for the library's own queries, and the bounded run of a user's
query (`curate query`, the app's SQL console): a time limit, a row limit and memory limits. A
user's query runs in a worker process (`curate.query_worker`), which is what bounds the memory the
statement itself takes; the functions here run inside it.

Values always travel as `?` parameters. A name that has to be written into the SQL text (a column
chosen by the user) is checked against the relation's actual columns first, then quoted.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import duckdb
import pandas as pd

from curate import catalog
from curate.errors import CurateError
from curate.workspace import Workspace

# The most memory a bounded result may take as a DataFrame (pandas' deep count), whatever its row
# count: a million rows of a per-image table take well under 1 GiB; wider rows are refused here
# instead of ending in a MemoryError.
MAX_RESULT_BYTES = 2 * 2**30

# About how much memory one chunk of a streamed result takes: wide rows come fewer at a time, so that
# the copies of a chunk in flight (DuckDB's, the DataFrame, its pickle) stay small
CHUNK_BYTES = 16 * 2**20

# The most resident memory the worker running a user's query may take. DuckDB keeps its sorts, joins
# and aggregates within the reader's 4 GB `memory_limit` (spilling to disk past it), but not the
# values an expression builds (`repeat('x', 10^9)`, a huge `string_agg`): those are what this stops.
# 6 GiB: the 4 GB, a chunk of the result, and the interpreter with pandas and DuckDB loaded.
MAX_QUERY_MEMORY = 6 * 2**30


class QueryLimitError(CurateError):
    """A user's query stopped by its time, row or memory limit; the message says how to raise it."""


@dataclass(frozen=True)
class Limits:
    """How long a user's query may run and how large its result may be.

    Attributes
    ----------
    seconds : float or None
        Wall-clock limit of the query, execution and fetching (not the wait for a busy catalog);
        when it passes, DuckDB is interrupted and the connection closed. None: no limit.
    rows : int or None
        The most rows the result may have; the row after them ends the query. None: no limit.
    raise_seconds, raise_rows : str
        How the user raises each limit (a flag, a setting), named in the message.
    max_bytes : int
        The most memory the result may take as a DataFrame.
    max_memory : int
        The most resident memory the worker process running the query may take (Linux; elsewhere
        only DuckDB's own `memory_limit` holds).
    """

    seconds: float | None = None
    rows: int | None = None
    raise_seconds: str | None = "--timeout SECONDS"
    raise_rows: str = "--max-rows N"
    max_bytes: int = MAX_RESULT_BYTES
    max_memory: int = MAX_QUERY_MEMORY


def time_limit_message(seconds: float, raise_seconds: str | None) -> str:
    """The one line of a query stopped at its time limit."""
    how = f" or raise the limit with {raise_seconds}" if raise_seconds else ""
    return (
        f"the query ran past its time limit of {seconds:g} s and was stopped; narrow it (WHERE, "
        f"LIMIT, fewer joins){how}"
    )


def memory_limit_message(max_memory: int) -> str:
    """The one line of a query stopped at its memory limit."""
    return (
        f"the query took more than {max_memory / 2**30:,.1f} GiB of memory and was stopped: it "
        "builds values too large to hold (a repeat(), a string_agg or list() over many rows?) or "
        "very wide rows. Narrow it: fewer or shorter values, fewer columns or rows (WHERE, LIMIT)"
    )


def fetch(
    ws: Workspace, sql: str, params: list | tuple = (), limits: Limits | None = None
) -> pd.DataFrame:
    """Run one read-only statement with `?` parameters; return a pandas DataFrame.

    The connection is `catalog.Reader`'s sandbox, held only while the statement runs. Bad SQL, a write,
    a second statement or a file outside the workspace's prediction log is a CurateError. Given
    `limits` (a user's query), the statement runs in a worker process within them
    (`curate.query_worker.query`); without, it runs here, unbounded (the library's own reads).
    """
    try:
        if limits is not None:
            from curate import query_worker

            return query_worker.query(ws.root, sql, params, limits)
        with catalog.read(ws) as con:
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


def run_limited(
    con, sql: str, params: list | tuple = (), limits: Limits = Limits()
) -> pd.DataFrame:
    """Run `sql` on an open reader within `limits` (all but `max_memory`, which only a worker process
    can hold); its result as a DataFrame (empty for no result).

    Parameters
    ----------
    con : catalog.Reader or duckdb.DuckDBPyConnection
        The open connection; the caller closes it (which releases the catalog).
    sql, params : the statement and its `?` parameters
    limits : the time, row and memory limits

    Returns
    -------
    pd.DataFrame
        At most `limits.rows` rows; DuckDB's own errors (bad SQL, refused reads) pass through.

    Raises
    ------
    QueryLimitError
        When a limit is hit: the time limit interrupts the query; rows are fetched a chunk at a
        time, so no more than one chunk past the row limit is ever held.
    """
    deadline = Deadline(getattr(con, "_con", con), limits.seconds)  # Reader wraps the connection
    try:
        return concat(list(iter_limited(con, sql, params, limits)))
    except duckdb.Error:
        if deadline.fired:
            raise QueryLimitError(
                time_limit_message(limits.seconds, limits.raise_seconds)
            ) from None
        raise
    finally:
        deadline.end()


def concat(chunks: list[pd.DataFrame]) -> pd.DataFrame:
    """The chunks of `iter_limited` as one DataFrame (the first chunk alone carries the columns of an
    empty result)."""
    if not chunks:
        return pd.DataFrame()
    rows = [c for c in chunks if len(c)] or chunks[:1]
    return rows[0] if len(rows) == 1 else pd.concat(rows, ignore_index=True)


def iter_limited(con, sql: str, params: list | tuple = (), limits: Limits = Limits()):
    """The result of `sql` on an open reader, a chunk (DataFrame) at a time, refused once past the row
    or byte limit of `limits` (the time limit is the caller's). Yields nothing for a statement
    without a result, and one empty chunk (the columns and their types) for an empty result."""
    cur = con.execute(sql, list(params))
    if cur.description is None:
        return
    rows = limits.rows
    most = 16 if rows is None else min(16, max(1, rows // 2048))  # 2,048 rows a vector
    vectors, n, size = 1, 0, 0  # one vector first, then as many as make about CHUNK_BYTES
    while True:
        chunk = cur.fetch_df_chunk(vectors)
        if chunk.empty:
            if n == 0:
                yield chunk  # no rows: the columns and their types
            return
        n += len(chunk)
        if rows is not None and n > rows:
            raise QueryLimitError(
                f"the result has more than {rows:,} rows, the row limit; add LIMIT (or WHERE, "
                f"GROUP BY) to the query, or raise the limit with {limits.raise_rows}"
            )
        chunk_bytes = int(chunk.memory_usage(deep=True).sum())
        size += chunk_bytes
        per_vector = chunk_bytes / vectors
        vectors = int(min(most, max(1, CHUNK_BYTES // max(per_vector, 1))))
        if size > limits.max_bytes:
            raise QueryLimitError(
                f"the result passed {limits.max_bytes / 2**20:,.0f} MiB in memory at {n:,} rows; "
                "select fewer or narrower columns, or fewer rows (LIMIT, WHERE)"
            )
        yield chunk


class Deadline:
    """Interrupts the query running on `con` once `seconds` have passed, and again every 0.1 s (an
    interrupt that lands between two steps of the query is not lost) until ended."""

    def __init__(self, con: duckdb.DuckDBPyConnection, seconds: float | None):
        self._con, self._lock, self._ended = con, threading.Lock(), threading.Event()
        self.fired = False
        self._thread = None
        if seconds is not None:
            self._thread = threading.Thread(target=self._run, args=(seconds,), daemon=True)
            self._thread.start()

    def _run(self, seconds: float) -> None:
        wait = seconds
        while not self._ended.wait(wait):
            with self._lock:  # never after end(): the connection may be closed by then
                if self._ended.is_set():
                    return
                self.fired = True
                self._con.interrupt()
            wait = 0.1

    def end(self) -> None:
        """The query is over: no interrupt from now on."""
        with self._lock:
            self._ended.set()


def _first_line(e: BaseException) -> str:
    return (str(e).splitlines() or [type(e).__name__])[0]


def condition(where: str, flag: str = "--where") -> str:
    """A user's filter as one parenthesised condition to AND into a statement: it must parse as a
    single SQL expression (DuckDB's own parser), so `1=1) OR (1=1` or `...) ORDER BY idx LIMIT 5
    --` cannot close the parenthesis and widen or reshape the statement around it. The text is
    kept as written, a line break before the closing parenthesis ending any trailing comment."""
    try:
        duckdb.SQLExpression(where)
    except (duckdb.Error, TypeError, ValueError) as e:
        raise CurateError(
            f"{flag} {where!r} is not one SQL condition ({_first_line(e)}); give a condition on "
            "the columns of difficulty, e.g. \"ddd <> 'impossible'\""
        ) from None
    return f"({where}\n)"


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
