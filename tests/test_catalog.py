"""The catalog package: inserts by column name whatever the order of a frame's or a table's
columns, the schema version that makes migrations run once, and catalogs of an older curate."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from curate import catalog
from curate.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]


def _value(sql_type: str, k: int):
    """A value of `sql_type` that differs from column to column (k = the column's position)."""
    base = sql_type.removesuffix("[]")
    one = {
        "VARCHAR": f"v{k}",
        "JSON": f'{{"k": {k}}}',
        "INTEGER": 100 + k,
        "BIGINT": 10_000_000_000 + k,
        "USMALLINT": k + 1,
        "DOUBLE": k + 0.25,
        "BOOLEAN": k % 2 == 0,
        "TIMESTAMP": pd.Timestamp("2026-01-02 03:04:05") + pd.Timedelta(seconds=k),
    }[base]
    return [one, one] if sql_type.endswith("[]") else one


def _row(table: str) -> dict:
    return {c: _value(t, k) for k, (c, t, _) in enumerate(catalog.SCHEMA[table])}


def _read_back(con, table: str) -> dict:
    cols = [c for c, _, _ in catalog.SCHEMA[table]]
    # JSON comes back as text; compare it as text
    got = con.execute(f"SELECT {', '.join(cols)} FROM {table}").fetchall()
    assert len(got) == 1, got
    return dict(zip(cols, got[0], strict=True))


def _expected(table: str) -> dict:
    row = _row(table)
    return {c: (v.to_pydatetime() if isinstance(v, pd.Timestamp) else v) for c, v in row.items()}


def test_a_frame_with_reversed_columns_round_trips(tmp_path):
    ws = Workspace(tmp_path)
    with catalog.write(ws) as con:
        for table in catalog.SCHEMA:  # every table the package writes
            frame = pd.DataFrame([_row(table)])
            assert catalog.insert_frame(con, table, frame[frame.columns[::-1]]) == 1
    with catalog.read(ws) as con:
        got = {table: _read_back(con, table) for table in catalog.SCHEMA}
    assert got == {table: _expected(table) for table in catalog.SCHEMA}


def test_a_table_with_reordered_columns_round_trips(tmp_path):
    """A migrated table has its late columns at its end: its physical order is not SCHEMA's."""
    ws = Workspace(tmp_path)
    con = duckdb.connect(str(ws.catalog))  # tables laid out by hand, in reverse
    for table, cols in catalog.SCHEMA.items():
        con.execute(f"CREATE TABLE {table} ({', '.join(f'{c} {t}' for c, t, _ in cols[::-1])})")
    con.close()
    with catalog.write(ws) as con:
        for table, cols in catalog.SCHEMA.items():
            physical = [r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()]
            assert physical == [c for c, _, _ in cols[::-1]]  # still reversed after migrating
            catalog.insert_frame(con, table, pd.DataFrame([_row(table)]))
    with catalog.read(ws) as con:
        got = {table: _read_back(con, table) for table in catalog.SCHEMA}
    assert got == {table: _expected(table) for table in catalog.SCHEMA}


def test_insert_frame_fills_now_and_refuses_undeclared_columns(tmp_path):
    ws = Workspace(tmp_path)
    row = {c: v for c, v in _row("runs").items() if c != "finished_at"}
    with catalog.write(ws) as con:
        catalog.insert_frame(con, "runs", pd.DataFrame([row]), now=("finished_at",))
        with pytest.raises(ValueError, match="not in its schema"):
            catalog.insert_frame(con, "runs", pd.DataFrame([{"run": "x", "typo": 1}]))
        with pytest.raises(ValueError, match="now"):
            catalog.insert_frame(con, "runs", pd.DataFrame([_row("runs")]), now=("finished_at",))
        with pytest.raises(ValueError, match="not a catalog table"):
            catalog.insert_frame(con, "nope", pd.DataFrame([{"a": 1}]))
    with catalog.read(ws) as con:
        (stamp,) = con.execute("SELECT finished_at FROM runs").fetchone()
    assert stamp is not None


def test_every_write_of_the_package_goes_through_insert_frame():
    """No positional INSERT ... VALUES anywhere in curate/ but the one insert_frame."""
    offenders = []
    for path in sorted((ROOT / "curate").rglob("*.py")):
        text = path.read_text()
        for m in re.finditer(r"INSERT\s+(OR\s+REPLACE\s+)?INTO\s+(\w+|\{)", text):
            if path.name == "schema.py" and m.group(2) in ("{", catalog.META_TABLE.split()[0]):
                continue  # insert_frame itself, and the version row
            offenders.append(f"{path.relative_to(ROOT)}: {m.group(0)}")
        offenders += [
            f"{path.relative_to(ROOT)}: executemany" for _ in re.finditer("executemany", text)
        ]
    assert offenders == []


# ----------------------------------------------------------------------------- schema version


class _Counting:
    """A connection that counts the statements it runs (migrate only calls execute)."""

    def __init__(self, con):
        self.con, self.statements = con, 0

    def execute(self, *args):
        self.statements += 1
        return self.con.execute(*args)


def test_migrations_run_once_per_version(tmp_path):
    ws = Workspace(tmp_path)
    with catalog.write(ws):  # a new catalog: every statement, then the version row
        pass
    with catalog.read(ws) as con:
        got = con.execute("SELECT value FROM catalog_meta WHERE key = 'schema_version'").fetchone()
    assert got == (str(catalog.SCHEMA_VERSION),)
    with catalog.write(ws) as con:
        counting = _Counting(con)
        assert catalog.migrate(counting) is False
        assert counting.statements == 2  # duckdb_tables() and the meta row; none of the 455
    con = duckdb.connect(str(ws.catalog))
    con.execute("DELETE FROM catalog_meta")
    counting = _Counting(con)
    assert catalog.migrate(counting) is True
    assert counting.statements > len(catalog.create_statements())
    con.close()


def test_a_catalog_of_the_previous_curate_opens_and_migrates(tmp_path):
    """What main made before the version row: every table, no catalog_meta; and an older one still,
    with a `runs` table of two columns."""
    ws = Workspace(tmp_path)
    con = duckdb.connect(str(ws.catalog))  # raw: the catalog as the previous curate made it
    for stmt in catalog.create_statements():
        con.execute(stmt)
    con.execute("ALTER TABLE runs DROP COLUMN precision")  # a column added later
    con.execute("INSERT INTO runs (run, dataset) VALUES ('old', 'digits')")
    con.close()
    with catalog.write(ws) as con:
        assert catalog.stored_version(con) == (catalog.SCHEMA_VERSION, catalog.schema_digest())
        cols = [r[0] for r in con.execute("DESCRIBE runs").fetchall()]
        assert cols[-1] == "precision"
        assert con.execute("SELECT run, dataset FROM runs").fetchall() == [("old", "digits")]
    # the version row deleted (as by hand): the next write migrates again and writes it back
    con = duckdb.connect(str(ws.catalog))
    con.execute("DELETE FROM catalog_meta")
    con.execute("ALTER TABLE members DROP COLUMN train_seconds")
    con.close()
    with catalog.write(ws) as con:
        assert catalog.stored_version(con) == (catalog.SCHEMA_VERSION, catalog.schema_digest())
        assert catalog.has_columns(con, "members", "train_seconds")


def test_a_changed_schema_migrates_even_without_a_version_bump(tmp_path, monkeypatch):
    ws = Workspace(tmp_path)
    with catalog.write(ws):
        pass
    extra = [*catalog.SCHEMA["runs"], ("note", "VARCHAR", "a column added without a bump")]
    monkeypatch.setitem(catalog.SCHEMA, "runs", extra)
    with catalog.write(ws) as con:
        assert catalog.has_columns(con, "runs", "note")
        assert catalog.stored_version(con)[1] == catalog.schema_digest()


def test_a_migration_block_runs_once(tmp_path, monkeypatch):
    ws = Workspace(tmp_path)
    with catalog.write(ws) as con:
        con.execute("INSERT INTO runs (run) VALUES ('a')")
    bumped = catalog.SCHEMA_VERSION + 1
    monkeypatch.setattr(catalog.schema, "SCHEMA_VERSION", bumped)
    monkeypatch.setitem(
        catalog.MIGRATIONS, bumped, ["UPDATE runs SET arch = coalesce(arch, '') || 'x'"]
    )
    for _ in range(2):
        with catalog.write(ws):
            pass
    with catalog.read(ws) as con:
        assert con.execute("SELECT arch FROM runs").fetchall() == [("x",)]  # once, not twice
        assert con.execute(
            "SELECT value FROM catalog_meta WHERE key = 'schema_version'"
        ).fetchone() == (str(bumped),)


def test_every_migration_block_is_within_the_schema_version():
    """A block numbered above SCHEMA_VERSION would run again at the next bump."""
    assert all(1 <= v <= catalog.SCHEMA_VERSION for v in catalog.MIGRATIONS)
    assert catalog.SCHEMA_VERSION >= 1 and isinstance(catalog.SCHEMA_VERSION, int)
