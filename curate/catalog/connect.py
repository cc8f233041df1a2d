"""Connections to the catalog: the one writer (a transaction, migrating the schema once per
version), the sandboxed read-only `Reader`, and the bounded wait while another process holds it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import duckdb

from curate import __version__
from curate.catalog.schema import migrate
from curate.catalog.views import _local_predictions, refresh_views
from curate.errors import CurateError
from curate.workspace import Workspace, pid_running


def git_revision() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def version_info() -> dict[str, str | None]:
    return {"version": __version__, "git_rev": git_revision()}


def ensure_schema(con: duckdb.DuckDBPyConnection, ws: Workspace | None = None) -> None:
    """Migrate the tables when needed (see `migrate`) and, given the workspace, refresh the views."""
    migrate(con)
    if ws is not None:
        refresh_views(con, ws)


# How long a stage waits for a catalog another process holds (the app between two queries, a
# `curate query`, another stage) before it gives up; seconds, `$CURATE_CATALOG_TIMEOUT` overrides.
BUSY_TIMEOUT = 120.0
# In a query worker (`curate.query_worker`): the process that asked for the query. A catalog it holds
# itself for writing will not be released while it waits for the answer.
ASKING_PID: int | None = None
SELF_WAIT = 5.0  # s a reader waits for a catalog its own process (or the asking one) holds


def busy_timeout() -> float:
    """Seconds a stage waits for a busy catalog: `$CURATE_CATALOG_TIMEOUT`, else `BUSY_TIMEOUT`
    (also for a value that is not a finite number >= 0)."""
    try:
        value = float(os.environ.get("CURATE_CATALOG_TIMEOUT", BUSY_TIMEOUT))
    except ValueError:
        return BUSY_TIMEOUT
    return value if 0 <= value < float("inf") else BUSY_TIMEOUT  # nan, negative: the default


def _connect_waiting(ws: Workspace, what: str, **kwargs) -> duckdb.DuckDBPyConnection:
    """duckdb.connect, waiting (bounded, with one message) while another process holds the file."""
    started, told = time.monotonic(), False
    deadline = started + busy_timeout()
    while True:
        try:
            return duckdb.connect(str(ws.catalog), **kwargs)
        except duckdb.IOException as e:
            msg = str(e)
            if "lock" not in msg.lower():
                raise CurateError(f"cannot open the catalog {ws.catalog} {what}: {msg}") from None
            holder = re.search(r"PID (\d+)", msg)
            who = f"process {holder.group(1)}" if holder else "another process"
            if (
                holder
                and int(holder.group(1)) in (os.getpid(), ASKING_PID)
                and time.monotonic() > started + SELF_WAIT
            ):  # held longer than a stage's write takes, by a process waiting for this reader
                raise CurateError(
                    f"the catalog {ws.catalog} has been open for writing in this same process "
                    f"({who}) for {SELF_WAIT:g} s: a `with catalog.write(...)` block around this "
                    "query, or a stage in another thread; close it or let it finish, then rerun"
                ) from None
            if time.monotonic() > deadline:
                raise CurateError(
                    f"the catalog {ws.catalog} is still held by {who} after "
                    f"{busy_timeout():.0f} s; stop it (the app? another curate command?) and "
                    "rerun, or raise $CURATE_CATALOG_TIMEOUT"
                ) from None
            if not told:
                print(
                    f"the catalog {ws.catalog} is busy ({who}); waiting up to "
                    f"{busy_timeout():.0f} s to open it {what}",
                    file=sys.stderr,
                )
                told = True
            time.sleep(0.1)


def _rollback_quietly(con: duckdb.DuckDBPyConnection) -> None:
    try:
        con.execute("ROLLBACK")
    except duckdb.Error:
        pass  # a failed COMMIT has already ended the transaction; keep the first error


@contextmanager
def write(ws: Workspace):
    """Open the catalog for writing, inside one transaction: all of the block's changes or none.

    Waits (up to `$CURATE_CATALOG_TIMEOUT` seconds) while a reader or another stage holds the file.
    """
    ws.root.mkdir(parents=True, exist_ok=True)
    con = _connect_waiting(ws, "for writing")
    try:
        ensure_schema(con, ws)
        con.execute("BEGIN TRANSACTION")
        try:
            yield con
            con.execute("COMMIT")
        except BaseException:
            _rollback_quietly(con)
            raise
    finally:
        con.close()


def check_writable(ws: Workspace) -> None:
    """Open and close the catalog for writing: a stage that will record its result checks first.

    A workspace without a catalog has nothing to check (the stage's own inputs are missing).
    """
    if ws.catalog.exists():
        with write(ws):
            pass


class Reader:
    """A read-only catalog connection that can do nothing else.

    The connection itself is sandboxed by DuckDB (`read_only`, no external access except the
    workspace's `runs/` folder, where the prediction log lives, no extensions, configuration
    locked); on top, every call runs exactly one SELECT statement, as DuckDB's parser classifies
    it, so neither COPY nor ATTACH, SET, PRAGMA, INSTALL or LOAD gets through. Close it (or use it
    as a context manager) as soon as the query is done: while it is open, no stage can write.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection):
        self._con = con

    def execute(self, sql: str, params: list | tuple | dict | None = None):
        """Run one SELECT; returns the DuckDB connection, ready for .df(), .fetchall(), ..."""
        check_select(self._con, sql)
        return self._con.execute(sql, params) if params else self._con.execute(sql)

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_READ_ONLY_KINDS = ("SELECT",)


def check_select(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Raise a CurateError unless `sql` is exactly one SELECT statement (DuckDB's own parse)."""
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as e:
        raise CurateError(
            f"SQL error: {str(e).splitlines()[0]}. Check the statement; "
            "`curate query --tables` lists tables and columns"
        ) from None
    if len(statements) != 1:
        raise CurateError(f"one statement per query, got {len(statements)}; run them one at a time")
    kind = statements[0].type.name
    if kind not in _READ_ONLY_KINDS:
        raise CurateError(
            f"not allowed: a {kind} statement. Queries here are read-only: one SELECT (or WITH "
            "... SELECT, DESCRIBE, SUMMARIZE) over the catalog; no COPY, ATTACH, SET, PRAGMA, "
            "INSTALL, LOAD or writes. Tables are written by the curate stages"
        )


READER_MEMORY = "4GB"


def read(ws: Workspace) -> Reader:
    """Open the catalog read-only and sandboxed (see `Reader`); a clear error when there is none."""
    if not ws.catalog.exists():
        raise CurateError(
            f"no catalog at {ws.catalog}; ingest a dataset first (`curate ingest FORMAT`, or "
            "`curate ingest labels --labels FILE` for labels alone), or pass the right --workspace"
        )
    con = _connect_waiting(ws, "for reading", read_only=True)
    try:
        _sandbox(con, ws)
        _local_predictions(con, ws)
    except BaseException:
        con.close()
        raise
    return Reader(con)


def _sandbox(con: duckdb.DuckDBPyConnection, ws: Workspace) -> None:
    """No file access but the prediction log under runs/ (and the catalog itself), then lock it."""
    try:
        con.execute("SET autoinstall_known_extensions = false")
        con.execute("SET autoload_known_extensions = false")
        con.execute("SET temp_directory = ?", [str(_spill_directory(ws))])
        con.execute("SET allowed_directories = ?", [[str(ws.root / "runs") + "/"]])
        con.execute("SET enable_external_access = false")
        con.execute("SET enable_progress_bar = false")  # a query worker's stderr is a log
        # any SQL a reader runs stays within this much memory (DuckDB spills sorts and joins to
        # disk past it, or ends the query with an error); 24 GiB machines run several readers
        con.execute(f"SET memory_limit = '{READER_MEMORY}'")
        con.execute("SET lock_configuration = true")
    except duckdb.InvalidInputException:
        # a second reader in this process shares the first one's database instance, already locked
        ext, locked = con.execute(
            "SELECT current_setting('enable_external_access'), current_setting('lock_configuration')"
        ).fetchone()
        if ext or not locked:
            raise CurateError(
                f"the catalog {ws.catalog} is open for writing in this process; close it first"
            ) from None


def _spill_directory(ws: Workspace) -> Path:
    """Where this process's readers spill (sorts, joins past the memory limit): a folder of its own
    beside the catalog, `catalog.duckdb.tmp-reader-<host>-<pid namespace>-<pid>`, which DuckDB
    creates only when it spills and removes when it closes. Readers of several processes never share one (DuckDB
    instances sharing a folder can delete each other's files). The folders of this host's processes
    that no longer run (killed while spilling) are removed here; another host's or another pid
    namespace's (a workspace on a shared disk, a container) are left alone."""
    import shutil

    prefix = spill_prefix(ws)
    for old in ws.catalog.parent.glob(prefix + "*"):
        pid = old.name.removeprefix(prefix)
        if pid.isdigit() and int(pid) != os.getpid() and not pid_running(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    return ws.catalog.parent / f"{prefix}{os.getpid()}"


def spill_prefix(ws: Workspace) -> str:
    """`catalog.duckdb.tmp-reader-<host>-<pid namespace>-`: the spill folders of this host's
    processes (in this pid namespace) are this followed by their pid."""
    import socket

    host = re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname())[:64] or "host"
    try:  # containers sharing a host name do not share pids
        host += "-" + re.sub(r"\D", "", os.readlink("/proc/self/ns/pid"))
    except OSError:
        pass
    return f"{ws.catalog.name}.tmp-reader-{host}-"


def split_labels(ws: Workspace, dataset: str, split: str, column: str = "label"):
    """(idx, label) int64 arrays of a split, in idx order (the row order of its .beton);
    column="true_label" gives the source's own labels instead."""
    import numpy as np

    if column not in ("label", "true_label"):
        raise ValueError(column)
    con = read(ws)
    try:
        df = con.execute(
            f"SELECT idx, {column} AS label FROM instances WHERE dataset = ? AND split = ? "
            "ORDER BY idx",  # column is one of two constants
            [dataset, split],
        ).df()
    finally:
        con.close()
    return df["idx"].to_numpy(np.int64), df["label"].to_numpy(np.int64)
