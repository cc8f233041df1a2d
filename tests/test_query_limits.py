"""`curate query` and the app's SQL console within a time limit and a row limit: a never-ending query
is stopped and lets go of the catalog, a huge result is refused before it fills the memory, each with
one line saying which limit and how to raise it."""

from __future__ import annotations

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

from curate import catalog, explore
from curate.cli import main
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
    time.sleep(0.5)  # the query holds the catalog by now
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
    """Fetched a chunk at a time, the result has the same rows, columns and types as DuckDB's .df()."""
    sql = "SELECT * FROM predictions WHERE run = 'digits' ORDER BY ALL"
    with catalog.read(Workspace(scored)) as con:
        whole = con.execute(sql).df()
        bounded = run_limited(con, sql, (), Limits(seconds=60, rows=len(whole)))
        empty = run_limited(con, "SELECT * FROM instances WHERE false", (), Limits(rows=1))
        described = run_limited(con, "DESCRIBE instances", (), Limits(rows=100))
    assert len(whole) > 4 * 2048  # several chunks
    pd.testing.assert_frame_equal(bounded, whole)
    assert empty.empty and "class_name" in empty.columns
    assert "class_name" in set(described["column_name"])


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
