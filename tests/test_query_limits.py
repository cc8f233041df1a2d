"""`curate query` and the app's SQL console within a time limit and a row limit: a never-ending query
is stopped and lets go of the catalog, a huge result is refused before it fills the memory, each with
one line saying which limit and how to raise it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import pandas as pd
import pytest
from conftest import ROOT

from curate import catalog, explore, query_worker, sql
from curate.cli import main
from curate.errors import CurateError
from curate.sql import Limits, QueryLimitError, run_limited
from curate.workspace import Workspace

# 1797^4 (about 1e13) rows to count: a forgotten join condition, never done in a test's lifetime
CROSS_JOIN = "SELECT count(*) FROM instances a, instances b, instances c, instances d"
ENDLESS = [CROSS_JOIN, "SELECT count(*) FROM range(1000000000000000)"]
HUGE = "SELECT * FROM range(1000000000)"  # 1e9 rows, 8 GB as one int64 column
WRITER = """
import sys
from curate import catalog
from curate.workspace import Workspace
print("ready", flush=True)
sys.stdin.readline()
with catalog.write(Workspace(sys.argv[1])) as con:
    con.execute("SELECT 1")
"""


@pytest.fixture()
def scored(small_scored_ws, tmp_path) -> Path:
    """A private copy of a scored workspace."""
    ws = tmp_path / "ws"
    shutil.copytree(small_scored_ws, ws)
    return ws


def query(ws: Path, capsys, *args: str) -> tuple[int, str, str, float]:
    """`curate query ARGS --workspace ws`: exit code, stdout, stderr and seconds taken."""
    t0 = time.monotonic()
    rc = main(["query", *args, "--workspace", str(ws)])
    out, err = capsys.readouterr()
    return rc, out, err, time.monotonic() - t0


def one_error(err: str) -> str:
    """The one `error:` line of stderr, no traceback."""
    lines = [x for x in err.splitlines() if x.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def writer(ws: Path, wait: float) -> subprocess.Popen:
    """Another process that opens the catalog for writing (waiting up to `wait` s) once told to."""
    env = {**os.environ, "CURATE_CATALOG_TIMEOUT": str(wait)}
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(ws)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert proc.stdout.readline().strip() == "ready"
    return proc


def held(ws: Path) -> bool:
    """A query worker of this process has the catalog open (seen in /proc, without touching it)."""
    target = str(ws / "catalog.duckdb")
    for pid in _worker_pids(os.getpid()):
        try:
            if any(os.readlink(fd) == target for fd in Path(f"/proc/{pid}/fd").iterdir()):
                return True
        except OSError:
            continue
    return False


def writes_at_once(ws: Path) -> bool:
    """A writer in another process opens the catalog without waiting (a stage would get in)."""
    proc = writer(ws, 0)
    _, err = proc.communicate("go\n", timeout=60)
    assert proc.returncode == 0, err
    return "busy" not in err


@pytest.mark.parametrize("sql", ENDLESS, ids=["cross-join", "range"])
def test_timeout_stops_a_never_ending_query_and_frees_the_catalog(scored, capsys, sql):
    rc, out, err, seconds = query(scored, capsys, sql, "--timeout", "1")
    assert rc == 2 and out == ""
    line = one_error(err)
    assert "time limit of 1 s" in line and "--timeout SECONDS" in line, line
    assert seconds < 10  # 1 s and the catalog's opening, on a busy machine
    assert writes_at_once(scored)  # the connection was closed: nothing of the query holds it


def test_a_writer_waiting_for_a_never_ending_query_gets_in(scored, capsys):
    """The stage that once gave up behind a runaway query: it waits, then writes."""
    stage = writer(scored, 60)
    result = {}
    thread = threading.Thread(
        target=lambda: result.update(
            rc=main(["query", CROSS_JOIN, "--timeout", "3"] + ["--workspace", str(scored)])
        )
    )
    t0 = time.monotonic()
    thread.start()
    while not held(scored):  # until the query (its worker started) holds the catalog
        assert time.monotonic() - t0 < 2.5, "the query never held the catalog"
        time.sleep(0.02)
    _, err = stage.communicate("go\n", timeout=60)
    thread.join(60)
    assert stage.returncode == 0, err
    assert "busy" in err  # it did wait for the query ...
    assert time.monotonic() - t0 < 20  # ... until its limit, not its own timeout of 60 s
    assert result.get("rc") == 2
    assert "time limit of 3 s" in one_error(capsys.readouterr().err)


@pytest.mark.parametrize("fmt", ["table", "csv", "json"])
def test_max_rows_refuses_a_huge_result_at_once(scored, capsys, fmt):
    tracemalloc.start()
    try:
        rc, out, err, seconds = query(scored, capsys, HUGE, "--max-rows", "1000", "--format", fmt)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert rc == 2 and out == ""
    line = one_error(err)
    assert "more than 1,000 rows" in line and "--max-rows N" in line and "LIMIT" in line, line
    assert seconds < 10
    assert peak < 64 * 2**20  # a few chunks of 2,048 rows, not 8 GB


def test_max_rows_is_checked_before_anything_is_written(scored, tmp_path, capsys):
    target = tmp_path / "result.csv"
    rc, out, err, _ = query(scored, capsys, HUGE, "--max-rows", "1000", "--out", str(target))
    assert rc == 2 and "more than 1,000 rows" in one_error(err)
    assert not target.exists()


def test_a_result_of_exactly_max_rows_is_whole(scored, capsys):
    sql = "SELECT range AS i FROM range(5000)"  # three chunks of 2,048 rows
    rc, out, err, _ = query(scored, capsys, sql, "--max-rows", "5000", "--format", "csv")
    assert rc == 0, err
    assert out.split() == ["i"] + [str(i) for i in range(5000)]
    rc, _, err, _ = query(scored, capsys, sql, "--max-rows", "4999", "--format", "csv")
    assert rc == 2 and "more than 4,999 rows" in one_error(err)


def test_the_default_limits(scored, capsys, monkeypatch):
    """Without the flags: 60 s and a million rows; a bigger result is refused, not a MemoryError."""
    import curate.query

    assert (curate.query.TIMEOUT, curate.query.MAX_ROWS) == (60, 1_000_000)
    rc, out, err, _ = query(scored, capsys, "SELECT range FROM range(1000001)", "--format", "csv")
    assert rc == 2 and out == ""
    assert "more than 1,000,000 rows" in one_error(err)
    monkeypatch.setattr(curate.query, "TIMEOUT", 1.0)  # the default is what the parser applies
    rc, out, err, seconds = query(scored, capsys, CROSS_JOIN)
    assert rc == 2 and "time limit of 1 s" in one_error(err) and seconds < 10
    with pytest.raises(SystemExit):
        main(["query", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())  # argparse wraps the lines
    assert "default 60" in help_text and "default 1,000,000" in help_text


@pytest.mark.parametrize(
    "flags, needle",
    [
        (["--timeout", "0"], "--timeout 0"),
        (["--timeout", "-5"], "--timeout -5"),
        (["--timeout", "nan"], "--timeout nan"),
        (["--timeout", "inf"], "--timeout inf"),
        (["--max-rows", "0"], "--max-rows 0"),
    ],
)
def test_limits_that_cannot_be_are_refused(scored, capsys, flags, needle):
    rc, out, err, _ = query(scored, capsys, "SELECT 1", *flags)
    assert rc == 2 and out == "" and needle in one_error(err)


def test_a_bounded_result_equals_the_unbounded_one(scored):
    """Fetched a chunk at a time, here or in a worker process, the result has the same rows, columns
    and types as DuckDB's .df()."""
    sql = "SELECT * FROM predictions WHERE run = 'digits' ORDER BY ALL"
    typed = (
        "SELECT 1::HUGEINT AS h, 1.5::DECIMAL(9, 2) AS d, [1, 2] AS l, {'a': 1} AS s, "
        "TIMESTAMP '2026-01-01 00:00:00' AS t, DATE '2026-01-02' AS day, NULL AS n, 'x' AS v"
    )
    with catalog.read(Workspace(scored)) as con:
        whole = con.execute(sql).df()
        typed_whole = con.execute(typed).df()
        bounded = run_limited(con, sql, (), Limits(seconds=60, rows=len(whole)))
        empty = run_limited(con, "SELECT * FROM instances WHERE false", (), Limits(rows=1))
        described = run_limited(con, "DESCRIBE instances", (), Limits(rows=100))
    assert len(whole) > 4 * 2048  # several chunks
    pd.testing.assert_frame_equal(bounded, whole)
    assert empty.empty and "class_name" in empty.columns
    assert "class_name" in set(described["column_name"])
    limits = Limits(seconds=60, rows=len(whole))
    pd.testing.assert_frame_equal(query_worker.query(scored, sql, (), limits), whole)
    pd.testing.assert_frame_equal(query_worker.query(scored, typed, (), limits), typed_whole)
    worker_empty = query_worker.query(scored, "SELECT * FROM instances WHERE false", (), limits)
    pd.testing.assert_frame_equal(worker_empty, empty)


def test_the_memory_of_a_result_is_bounded_too(scored):
    """Rows wider than expected: refused at the byte limit, however few rows there are."""
    sql = "SELECT repeat('x', 1000) || range AS s FROM range(50000)"  # about 50 MB of strings
    limits = Limits(rows=1_000_000, max_bytes=2**20)
    with catalog.read(Workspace(scored)) as con:
        with pytest.raises(QueryLimitError, match="passed 1 MiB in memory"):
            run_limited(con, sql, (), limits)


def test_console_stops_at_its_time_limit_and_frees_the_catalog(scored):
    t0 = time.monotonic()
    with pytest.raises(QueryLimitError) as e:
        explore.call(str(scored), "sql_console", CROSS_JOIN, 1.0)
    assert time.monotonic() - t0 < 10
    assert "time limit of 1 s" in str(e.value) and "'time limit (s)'" in str(e.value)
    assert "\n" not in str(e.value)
    assert writes_at_once(scored)  # the app's process lives on; its connection is closed


def test_console_refuses_a_huge_result_at_once(scored):
    tracemalloc.start()
    t0 = time.monotonic()
    try:
        with pytest.raises(QueryLimitError) as e:
            explore.call(str(scored), "sql_console", HUGE, 30.0, 1000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.monotonic() - t0 < 10 and peak < 64 * 2**20
    assert "more than 1,000 rows" in str(e.value) and "'row limit'" in str(e.value)
    assert (explore.CONSOLE_TIMEOUT, explore.CONSOLE_MAX_ROWS) == (30, 100_000)
    df = explore.call(str(scored), "sql_console", "SELECT * FROM range(100000)")
    assert len(df) == 100_000  # the default row limit, reached but not passed
    with pytest.raises(QueryLimitError, match="more than 100,000 rows"):
        explore.call(str(scored), "sql_console", "SELECT * FROM range(100001)")


def test_console_page_sets_both_limits(scored, monkeypatch):
    """The app's SQL console: its two settings reach the query, and a hit limit is one message."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("CURATE_WORKSPACE", str(scored))
    at = AppTest.from_file(str(ROOT / "app" / "app.py"), default_timeout=120)
    at.run()
    at.sidebar.radio[0].set_value("SQL console").run()
    assert not at.exception, at.exception
    limit = {x.label: x for x in at.number_input}
    assert limit["time limit (s)"].value == 30 and limit["row limit"].value == 100_000
    limit["time limit (s)"].set_value(1)
    at.text_area[0].set_value(CROSS_JOIN)
    t0 = time.monotonic()
    at.button[0].click().run()
    assert time.monotonic() - t0 < 30 and not at.exception
    assert "time limit of 1 s" in at.error[0].value
    {x.label: x for x in at.number_input}["row limit"].set_value(1000)
    at.text_area[0].set_value(HUGE)
    at.button[0].click().run()
    assert "more than 1,000 rows" in at.error[0].value and "'row limit'" in at.error[0].value
    at.text_area[0].set_value("SELECT count(*) AS n FROM instances")
    at.button[0].click().run()
    assert not at.error and at.dataframe[0].value["n"][0] == 1797


# a few rows of 100 MB each: DuckDB builds them outside its memory_limit, 10 GB in one vector
BUILDS_HUGE_VALUES = "SELECT length(repeat('x', 100000000) || range) AS n FROM range(100)"


def rss_peak() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def test_a_query_building_huge_values_is_stopped_at_its_memory_limit(scored):
    """The statement runs in a worker process, killed past its memory: this process never holds it,
    the catalog is free at once, and the next query gets a fresh worker."""
    if not Path("/proc/self/statm").exists():
        pytest.skip("the worker's memory is read from /proc (Linux)")
    before = rss_peak()
    t0 = time.monotonic()
    with pytest.raises(QueryLimitError) as e:
        query_worker.query(scored, BUILDS_HUGE_VALUES, (), Limits(seconds=60, max_memory=2**30))
    assert time.monotonic() - t0 < 30
    assert "more than 1.0 GiB of memory" in str(e.value) and "\n" not in str(e.value)
    assert rss_peak() - before < 256 * 2**20  # not here: 10 GB were asked for
    assert writes_at_once(scored)
    n = query_worker.query(scored, "SELECT count(*) AS n FROM instances", (), Limits(seconds=60))
    assert n["n"][0] == 1797


def test_the_console_and_the_filter_run_within_the_memory_limit(scored, monkeypatch):
    if not Path("/proc/self/statm").exists():
        pytest.skip("the worker's memory is read from /proc (Linux)")
    monkeypatch.setattr(explore, "CONSOLE_MEMORY", 2**30)
    with pytest.raises(QueryLimitError, match="more than 1.0 GiB of memory"):
        explore.call(str(scored), "sql_console", BUILDS_HUGE_VALUES)
    subset = explore.Subset(where="length(repeat('x', 100000000) || idx) > 0")
    clause, params = explore.subset_where("digits", "test", subset)
    for name, args in (("subset_count", ()), ("subset_page", (0,))):
        with pytest.raises(QueryLimitError, match="more than 1.0 GiB of memory"):
            explore.call(str(scored), name, clause, params, *args)
    assert writes_at_once(scored)


def test_the_filter_of_the_app_stops_at_the_console_time_limit(scored, monkeypatch):
    """The explorer's free WHERE clause once ran unbounded in the app's own process."""
    monkeypatch.setattr(explore, "CONSOLE_TIMEOUT", 1.0)
    where = "(SELECT count(*) FROM instances a, instances b, instances c, instances d) > 0"
    clause, params = explore.subset_where("digits", "test", explore.Subset(where=where))
    t0 = time.monotonic()
    with pytest.raises(QueryLimitError) as e:
        explore.call(str(scored), "subset_count", clause, params)
    assert time.monotonic() - t0 < 10
    assert "time limit of 1 s" in str(e.value) and "raise" not in str(e.value)
    assert writes_at_once(scored)
    subset = explore.Subset(["impossible"], where="accessibility < 0.5")
    clause, params = explore.subset_where("digits", "test", subset)
    n = explore.call(str(scored), "subset_count", clause, params)
    page = explore.call(str(scored), "subset_page", clause, params, 0)
    with catalog.read(Workspace(scored)) as con:
        assert n == explore.subset_count(con, clause, params)
        pd.testing.assert_frame_equal(page, explore.subset_page(con, clause, params, 0))
    with pytest.raises(CurateError, match="SQL error"):
        explore.call(str(scored), "subset_count", "nope =", [])


def test_a_worker_that_dies_is_one_error_and_the_next_query_works(scored):
    """Killed from outside while idle: replaced unseen. Killed during a query: one line."""
    limits = Limits(seconds=60)
    query_worker.query(scored, "SELECT 1", (), limits)
    for worker in list(query_worker._idle):
        os.kill(worker.proc.pid, 9)  # not reaped: it may still look alive when the query comes
    assert query_worker.query(scored, "SELECT 42 AS a", (), limits)["a"][0] == 42

    def kill_soon():
        time.sleep(1.0)
        for pid in _worker_pids(os.getpid()):
            os.kill(pid, 9)

    threading.Thread(target=kill_soon, daemon=True).start()
    with pytest.raises(CurateError) as e:
        query_worker.query(scored, CROSS_JOIN, (), limits)
    assert "ended unexpectedly" in str(e.value) and "\n" not in str(e.value)
    assert writes_at_once(scored)
    assert query_worker.query(scored, "SELECT 7 AS a", (), limits)["a"][0] == 7


def _worker_pids(parent: int) -> list[int]:
    """The query workers whose parent is `parent`."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == parent and b"curate.query_worker" in cmdline:
            pids.append(int(stat.parent.name))
    return pids


QUERY_AND_WAIT = """
import sys
from curate.query import run_query
from curate.workspace import Workspace
print("go", flush=True)
run_query(Workspace(sys.argv[1]), sys.argv[2], timeout=600)
"""


@pytest.mark.skipif(not Path("/proc").exists(), reason="finds the worker in /proc")
def test_a_killed_curate_query_takes_its_worker_with_it(scored):
    """SIGKILL of the process that asked: its worker stops within seconds, the catalog is free."""
    proc = subprocess.Popen(
        [sys.executable, "-c", QUERY_AND_WAIT, str(scored), CROSS_JOIN],
        stdout=subprocess.PIPE,
        cwd=ROOT,
    )
    assert proc.stdout.readline().strip() == b"go"
    deadline = time.monotonic() + 30
    while not (workers := _worker_pids(proc.pid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert workers, "no worker started"
    time.sleep(1.0)  # the query is running
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 15
    while Path(f"/proc/{workers[0]}").exists() and time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{workers[0]}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            break
        if state == "Z":
            break
        time.sleep(0.1)
    else:
        assert not Path(f"/proc/{workers[0]}").exists(), "the worker outlived its parent"
    assert writes_at_once(scored)


def test_the_worker_never_imports_from_the_users_folder(scored, tmp_path, monkeypatch):
    """A duckdb.py or pandas.py where the user stands is not what the worker imports."""
    here = tmp_path / "here"
    here.mkdir()
    for name in ("duckdb", "pandas", "curate"):
        (here / f"{name}.py").write_text(f"open({str(tmp_path / 'imported')!r}, 'w')\n")
    monkeypatch.chdir(here)
    for worker in query_worker._idle:
        worker.close()
    query_worker._idle.clear()
    assert query_worker.query(scored, "SELECT 3 AS a", (), Limits(seconds=60))["a"][0] == 3
    assert not (tmp_path / "imported").exists()


def fresh_workers() -> None:
    """Forget the idle workers: the next query starts a new one (with this test's environment)."""
    with query_worker._lock:
        for worker in query_worker._idle:
            worker.close()
        query_worker._idle.clear()


def test_paths_in_the_sql_are_the_callers(scored, capsys, monkeypatch):
    """A relative path in the statement is relative to where `curate query` runs, as in DuckDB."""
    monkeypatch.chdir(scored.parent)
    sql = f"SELECT count(*) AS n FROM read_parquet('{scored.name}/runs/**/*.parquet')"
    with catalog.read(Workspace(scored)) as con:
        want = con.execute(sql.replace(f"'{scored.name}/", f"'{scored}/")).fetchone()[0]
    rc, out, err, _ = query(scored, capsys, sql, "--format", "csv")
    assert rc == 0, err
    assert out.split() == ["n", str(want)] and want > 0


HOLDER = """
import sys, time
from curate import catalog
from curate.workspace import Workspace
with catalog.write(Workspace(sys.argv[1])) as con:
    print("holding", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def test_a_query_waiting_for_the_catalog_says_so(scored, capsys):
    """The worker's "busy" line reaches the caller's stderr, and the query then runs."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(scored), "2"], stdout=subprocess.PIPE, cwd=ROOT
    )
    assert holder.stdout.readline().strip() == b"holding"
    rc, out, err, _ = query(
        scored, capsys, "SELECT count(*) AS n FROM instances", "--format", "csv"
    )
    holder.wait(60)
    assert rc == 0 and out.split() == ["n", "1797"], err
    assert "is busy" in err and "waiting up to" in err, err


def test_a_query_while_this_process_writes_the_catalog_fails_at_once(scored):
    t0 = time.monotonic()
    with catalog.write(Workspace(scored)):
        with pytest.raises(CurateError, match="open for writing in this same process"):
            query_worker.query(scored, "SELECT 1", (), Limits(seconds=60))
    assert time.monotonic() - t0 < 20  # 5 s, not the catalog's 120 s wait


def test_whatever_prints_at_start_up_stays_out_of_the_result(scored, tmp_path, monkeypatch):
    """A sitecustomize (or .pth) that prints on stdout as the interpreter starts."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text("print('hello from sitecustomize')\n")
    monkeypatch.setenv("PYTHONPATH", f"{site}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    fresh_workers()
    try:
        df = query_worker.query(scored, "SELECT 5 AS a", (), Limits(seconds=60))
    finally:
        fresh_workers()
    assert df["a"][0] == 5


def test_the_worker_stops_itself_at_its_memory_limit(scored, monkeypatch):
    """The worker's own watch, without the parent's (a parent whose other threads hold the
    interpreter cannot look in time)."""
    if not Path("/proc/self/statm").exists():
        pytest.skip("the worker's memory is read from /proc (Linux)")
    real = query_worker._rss
    monkeypatch.setattr(query_worker, "_rss", lambda pid: None if pid != "self" else real(pid))
    with pytest.raises(QueryLimitError, match="more than 1.0 GiB of memory"):
        query_worker.query(scored, BUILDS_HUGE_VALUES, (), Limits(seconds=60, max_memory=2**30))
    assert writes_at_once(scored)


def test_at_most_two_queries_run_at_once(scored):
    """Four console queries at once: two workers run them, the others wait for a slot."""
    assert query_worker.MAX_BUSY == 2
    errors = []

    def one():
        try:
            query_worker.query(scored, CROSS_JOIN, (), Limits(seconds=2))
        except QueryLimitError as e:
            errors.append(str(e))

    query_worker.query(scored, "SELECT 1", (), Limits(seconds=60))  # one worker warm
    threads = [threading.Thread(target=one) for _ in range(4)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(errors) == 4 and all("time limit of 2 s" in e for e in errors)
    assert time.monotonic() - t0 >= 4  # two rounds of 2 s
    assert len(query_worker._idle) <= query_worker.KEEP


def test_wide_rows_within_the_limits_come_whole(scored):
    """About 210 MB of 6.7 KB rows under a 256 MiB result limit and a 1 GiB memory limit: streamed
    in small chunks, not refused."""
    sql = "SELECT repeat('x', 6700) || range AS s FROM range(32768)"
    limits = Limits(seconds=120, max_bytes=256 * 2**20, max_memory=2**30)
    df = query_worker.query(scored, sql, (), limits)
    assert len(df) == 32768 and df["s"].str.len().min() == 6701


def test_a_worker_is_kept_after_an_answer_and_replaced_after_a_kill(scored):
    """Bad SQL, a row limit, a time limit the worker enforced itself: it answered and is reused.
    Killed at its memory limit: a new one takes the next query."""
    fresh_workers()
    limits = Limits(seconds=60, rows=10)
    query_worker.query(scored, "SELECT 1", (), limits)
    (first,) = [w.proc.pid for w in query_worker._idle]
    with pytest.raises(CurateError, match="SQL error"):
        sql.fetch(Workspace(scored), "SELECT * FROM nope", (), limits)
    with pytest.raises(QueryLimitError, match="more than 10 rows"):
        query_worker.query(scored, "SELECT * FROM range(11)", (), limits)
    with pytest.raises(QueryLimitError, match="time limit of 1 s"):
        query_worker.query(scored, CROSS_JOIN, (), Limits(seconds=1))
    assert [w.proc.pid for w in query_worker._idle] == [first]
    if Path("/proc/self/statm").exists():
        with pytest.raises(QueryLimitError, match="GiB of memory"):
            query_worker.query(scored, BUILDS_HUGE_VALUES, (), Limits(seconds=60, max_memory=2**30))
        assert first not in [w.proc.pid for w in query_worker._idle]
        assert query_worker.query(scored, "SELECT 2 AS a", (), limits)["a"][0] == 2


def test_a_worker_that_never_reaches_the_catalog_is_stopped(scored, monkeypatch):
    """Stopped (SIGSTOP) before it opens the catalog: the caller does not wait for ever."""
    import signal

    monkeypatch.setattr(query_worker, "START", 1.0)
    monkeypatch.setenv("CURATE_CATALOG_TIMEOUT", "0")
    fresh_workers()
    query_worker.query(scored, "SELECT 1", (), Limits(seconds=60))
    (worker,) = query_worker._idle
    os.kill(worker.proc.pid, signal.SIGSTOP)
    t0 = time.monotonic()
    with pytest.raises(CurateError, match="did not reach the catalog"):
        query_worker.query(scored, "SELECT 1", (), Limits(seconds=60))
    assert time.monotonic() - t0 < 15
    assert worker.proc.poll() is not None  # killed, not left stopped


def test_deep_and_nested_values(scored):
    """Deeply nested lists pickle (the worker's recursion limit); nested values count towards the
    result's size (pandas' own count misses what is inside a list)."""
    deep = "SELECT " + "[" * 300 + "1" + "]" * 300 + " AS d"
    with catalog.read(Workspace(scored)) as con:
        want = con.execute(deep).df()
    got = query_worker.query(scored, deep, (), Limits(seconds=60))

    def depth(x) -> tuple[int, object]:
        n = 0
        while hasattr(x, "__len__") and len(x) == 1:
            x, n = x[0], n + 1
        return n, x

    assert depth(got["d"][0]) == depth(want["d"][0]) == (300, 1)
    nested = "SELECT list(range) AS l FROM range(2000000)"  # one row, one 16 MB list
    with pytest.raises(QueryLimitError, match="passed 1 MiB"):
        query_worker.query(scored, nested, (), Limits(seconds=60, max_bytes=2**20))
    with pytest.raises(CurateError, match="plain values"):
        query_worker.query(scored, "SELECT ?", [threading.Lock()], Limits(seconds=60))


def test_each_process_spills_to_a_folder_of_its_own(scored):
    """Readers of two processes never share DuckDB's temporary folder; a dead process's is removed."""
    from curate.catalog.connect import spill_prefix

    prefix = spill_prefix(Workspace(scored))
    dead = scored / f"{prefix}999999999"  # above any pid_max
    dead.mkdir()
    (dead / "duckdb_temp_block-1.block").write_bytes(b"spilled by a killed worker")
    alive = scored / f"{prefix}{os.getppid()}"
    elsewhere = scored / "catalog.duckdb.tmp-reader-another.host-999999999"  # another host's
    for d in (alive, elsewhere):
        d.mkdir()
    with catalog.read(Workspace(scored)) as con:
        where = con.execute("SELECT current_setting('temp_directory')").fetchone()[0]
    assert where == str(scored / f"{prefix}{os.getpid()}") and not Path(where).exists()
    assert not dead.exists() and alive.exists() and elsewhere.exists()
    sql_text = "SELECT current_setting('temp_directory') AS t"
    worker_dir = query_worker.query(scored, sql_text, (), Limits(seconds=60))["t"][0]
    assert worker_dir.startswith(str(scored / prefix)) and worker_dir != where


CLOSED_STD = """
import os, sys
os.close(0)
os.close(1)  # started with stdin and stdout closed: new pipes get these numbers first
from curate import query_worker
from curate.sql import Limits
df = query_worker.query(sys.argv[1], "SELECT 41 + 1 AS a", (), Limits(seconds=30))
open(sys.argv[2], "w").write(str(df["a"][0]))
"""


def test_a_caller_with_its_standard_streams_closed(scored, tmp_path):
    out = tmp_path / "out.txt"
    res = subprocess.run([sys.executable, "-c", CLOSED_STD, str(scored), str(out)],
                         capture_output=True, cwd=ROOT, timeout=120)  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    assert out.read_text() == "42"


def test_a_removed_working_folder_and_no_stderr(scored, tmp_path, monkeypatch, capsys):
    """Run from a folder deleted since, with sys.stderr gone (pythonw, a daemon): the query runs,
    the worker's lines are drained, and an interrupt sent to the process group spares the worker."""
    import signal

    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    monkeypatch.setattr(sys, "stderr", None)
    fresh_workers()
    for _ in range(2):
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(scored), "1"], stdout=subprocess.PIPE, cwd=ROOT
        )
        assert holder.stdout.readline().strip() == b"holding"
        df = query_worker.query(scored, "SELECT count(*) AS n FROM instances", (), Limits(60))
        holder.wait(60)
        assert df["n"][0] == 1797  # and the worker's "busy" line went nowhere, harmlessly
    (worker,) = query_worker._idle
    os.kill(worker.proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole process group
    time.sleep(0.5)
    assert worker.alive()


def test_uuids_as_json(scored, capsys):
    rc, out, err, _ = query(scored, capsys, "SELECT uuid() AS u, 1 AS a", "--format", "json")
    assert rc == 0, err
    assert len(json.loads(out)[0]["u"]) == 36
