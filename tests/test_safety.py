"""Pointed at real data by a hostile or unlucky user: read-only that holds, readers that do not block
writers, a full disk, killed processes, bad values. Each case reproduces what once went wrong."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import numpy as np
import pytest
from conftest import ROOT, free_port, stop_process, write_idx

from curate import catalog, explore
from curate.cli import main
from curate.errors import CurateError
from curate.workspace import Workspace


def digest(path: Path) -> str:
    return hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()


@pytest.fixture()
def scored(small_scored_ws, tmp_path) -> Path:
    """A private copy of a scored workspace: these tests try to destroy it."""
    ws = tmp_path / "ws"
    shutil.copytree(small_scored_ws, ws)
    return ws


def query(ws: Path, sql: str, capsys) -> tuple[int, str, str]:
    rc = main(["query", sql, "--workspace", str(ws)])
    out, err = capsys.readouterr()
    return rc, out, err


def one_error(err: str) -> str:
    """The one `error:` line of stderr (progress messages may stand before it, no traceback)."""
    lines = [x for x in err.splitlines() if x.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# ----------------------------------------------------------------------------- read-only


def test_query_statements_that_reach_the_file_system_are_refused(scored, tmp_path, capsys):
    catalog_file, beton = scored / "catalog.duckdb", scored / "datasets" / "digits" / "train.beton"
    other = tmp_path / "other.duckdb"
    con = duckdb.connect(str(other))
    con.execute("CREATE TABLE instances AS SELECT 1 AS a")
    con.close()
    secret = tmp_path / "secret.txt"
    secret.write_text("do not read\n")
    shard = next((scored / "runs").glob("*/predictions/*/*/*/*/part.parquet"))
    before = {p: digest(p) for p in (catalog_file, beton, other, shard)}
    cases = {
        f"COPY (SELECT 'junk') TO '{catalog_file}' (FORMAT csv)": "COPY",
        f"COPY (SELECT 'junk') TO '{beton}' (FORMAT csv)": "COPY",
        f"COPY (SELECT 1) TO '{shard}' (FORMAT parquet)": "COPY",  # inside the readable log
        f"ATTACH '{other}' AS o (READ_ONLY false)": "ATTACH",
        f"ATTACH '{other}' AS o (READ_ONLY false); DELETE FROM o.instances": "one statement",
        f"SELECT * FROM read_text('{secret}')": "not allowed",
        f"SELECT * FROM read_text('{scored}/runs/../../secret.txt')": "not allowed",
        "SELECT * FROM read_text('/etc/passwd')": "not allowed",
        "SELECT * FROM glob('/etc/*')": "not allowed",
        "SELECT 1; SELECT 2": "one statement",
        "SET enable_external_access = true": "SET",
        "SET allowed_directories = ['/']": "SET",
        "PRAGMA enable_profiling": "PRAGMA",
        "INSTALL httpfs": "LOAD",
        "LOAD httpfs": "LOAD",
        "DELETE FROM instances": "DELETE",
        "CREATE TABLE x AS SELECT 1": "CREATE",
        f"EXPORT DATABASE '{scored}/runs/dump'": "EXPORT",
        "EXPLAIN ANALYZE SELECT 1": "EXPLAIN",
    }
    for sql, needle in cases.items():
        rc, out, err = query(scored, sql, capsys)
        assert rc == 2, (sql, out, err)
        line = one_error(err)
        assert needle in line, (sql, line)
        assert "do not read" not in out + err
    assert {p: digest(p) for p in before} == before  # nothing was touched
    assert not (scored / "runs" / "dump").exists()
    rc, out, _ = query(scored, "SELECT count(*) AS n FROM instances", capsys)
    assert rc == 0 and "1797" in out  # the catalog still answers


def test_query_reads_the_catalog_and_the_prediction_log(scored, capsys):
    rc, out, err = query(
        scored,
        "SELECT count(*) AS n FROM predictions WHERE run = 'digits' AND epoch = 0 AND split = 'test'",
        capsys,
    )
    assert rc == 0, err
    assert str(4 * 359) in out  # 4 members, 359 test images
    shard = next((scored / "runs").glob("*/predictions/*/*/*/*/part.parquet"))
    rc, out, err = query(scored, f"SELECT count(*) AS n FROM read_parquet('{shard}')", capsys)
    assert rc == 0, err
    rc, out, err = query(scored, "DESCRIBE instances", capsys)
    assert rc == 0 and "class_name" in out


def test_a_moved_workspace_reads_its_own_log(small_scored_ws, tmp_path, capsys):
    """The catalog's `predictions` view names the old folder; a reader uses its own log instead."""
    moved = tmp_path / "moved"
    shutil.copytree(small_scored_ws, moved)
    rc, out, err = query(
        moved, "SELECT count(DISTINCT member) AS m FROM predictions WHERE run = 'digits'", capsys
    )
    assert rc == 0, err
    assert "4" in out


@pytest.mark.parametrize("name", ["ws[1]", "ws?", "ws*", "ws\\"])
def test_a_workspace_path_duckdb_reads_as_a_pattern_is_refused(
    small_scored_ws, tmp_path, capsys, name
):
    """`[1]` matched no file of the log and `?` split the catalog's path; `*` would also read the
    log of every sibling folder it matches. Each is one error line naming the character, before
    anything is written."""
    from curate.errors import CurateError
    from curate.workspace import Workspace

    moved = tmp_path / name
    shutil.copytree(small_scored_ws, moved)
    before = sorted(p.name for p in moved.iterdir())
    with pytest.raises(CurateError, match="DuckDB reads as a file pattern"):
        Workspace(moved)
    capsys.readouterr()
    for args in (["query", "SELECT 1"], ["score", "digits"], ["ingest", "digits"]):
        assert main([*args, "--workspace", str(moved)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: workspace") and err.count("\n") == 1, err
        assert name[-1] in err.splitlines()[0].split("holds")[1]
    assert sorted(p.name for p in moved.iterdir()) == before


def test_a_workspace_path_with_the_logs_folder_names_reads_its_own_log(
    small_scored_ws, tmp_path, capsys
):
    """A folder split=zz above the workspace once labelled every row of `predictions` split zz
    (DuckDB reads key=value from every folder of a path): refused. A workspace under a folder
    runs/x/predictions/ once labelled every row run x: the run is read from the end of the path."""
    from curate.errors import CurateError
    from curate.workspace import Workspace

    with pytest.raises(CurateError, match="folder 'split=zz'"):
        Workspace(tmp_path / "split=zz" / "ws")
    ws = tmp_path / "runs" / "x" / "predictions" / "ws"
    shutil.copytree(small_scored_ws, ws)
    assert main(["score", "digits", "--workspace", str(ws)]) == 0  # the view is written anew
    capsys.readouterr()
    sql = "SELECT DISTINCT run, split FROM predictions ORDER BY split"
    assert main(["query", sql, "--format", "csv", "--workspace", str(ws)]) == 0
    assert capsys.readouterr().out.split() == ["run,split", "digits,test", "digits,train"]


def test_app_console_has_the_same_walls(scored, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("do not read\n")
    catalog_file = scored / "catalog.duckdb"
    before = digest(catalog_file)
    for sql in (
        f"COPY (SELECT 1) TO '{catalog_file}' (FORMAT csv)",
        f"SELECT * FROM read_text('{secret}')",
        f"ATTACH '{tmp_path / 'x.duckdb'}' AS x",
        "SELECT 1; SELECT 2",
    ):
        with pytest.raises(CurateError):
            explore.call(str(scored), "sql_console", sql)
    assert digest(catalog_file) == before and not (tmp_path / "x.duckdb").exists()
    # the subset explorer's free WHERE clause: one condition (refused before any reader), and
    # what passes goes through the same reader
    with pytest.raises(CurateError, match="not one SQL condition"):
        explore.subset_where("digits", "test", explore.Subset(where="1=1; SELECT 1"))
    where = f"idx IN (SELECT 1 FROM read_text('{secret}'))"
    clause, params = explore.subset_where("digits", "test", explore.Subset(where=where))
    with pytest.raises(CurateError):
        explore.call(str(scored), "subset_count", clause, params)
    df = explore.call(str(scored), "sql_console", "SELECT count(*) AS n FROM instances")
    assert int(df["n"][0]) == 1797


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a socket listening on `port`, from /proc/net/tcp{,6}."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            local, state = row.split()[1], row.split()[3]
            addr, p = local.split(":")
            if state == "0A" and int(p, 16) == port:  # 0A = LISTEN
                found.add(addr)
    return found


@pytest.mark.slow
def test_app_serves_on_loopback_only_by_default(scored):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "curate", "app", "--workspace", str(scored), "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not listening_addresses(port):
            time.sleep(0.5)
        addrs = listening_addresses(port)
        assert addrs, "the app never listened"
        assert addrs <= {"0100007F"}, addrs  # 127.0.0.1 only, not 0.0.0.0 or ::
    finally:
        stop_process(proc)  # SIGKILL too leaves no server behind, the server being proc itself
    # stopping `curate app` stopped the server: nothing listens on the port any more
    deadline = time.time() + 10
    while time.time() < deadline and listening_addresses(port):
        time.sleep(0.2)
    assert not listening_addresses(port), "the server outlived `curate app`"


def test_app_address_is_explicit(scored, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(os, "execve", lambda path, cmd, env: calls.append((cmd, env)))
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    assert main(["app", "--workspace", str(scored)]) == 0
    cmd, env = calls[-1]
    assert cmd[cmd.index("--server.address") + 1] == "127.0.0.1"
    assert cmd[cmd.index("run") + 1] == str(ROOT / "app" / "app.py")
    # the app imports this checkout's curate first, then what PYTHONPATH held
    assert env["PYTHONPATH"].split(os.pathsep) == [str(ROOT), "/elsewhere"]
    assert "warning" not in capsys.readouterr().err
    assert main(["app", "--workspace", str(scored), "--address", "0.0.0.0"]) == 0
    cmd, _ = calls[-1]
    assert cmd[cmd.index("--server.address") + 1] == "0.0.0.0"
    assert "exposes the explorer" in capsys.readouterr().err


# ----------------------------------------------------------------------------- readers and writers


def hold_catalog(ws: Path, seconds: float, read_only: bool = True) -> subprocess.Popen:
    """Another process holding the catalog open (as the app once did), for `seconds`."""
    code = textwrap.dedent(
        f"""
        import duckdb, sys, time
        con = duckdb.connect({str(ws / "catalog.duckdb")!r}, read_only={read_only})
        print("holding", flush=True)
        time.sleep({seconds})
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "holding"
    return proc


def writer_can_open(ws: Path) -> bool:
    code = f"import duckdb; duckdb.connect({str(ws / 'catalog.duckdb')!r}).close()"
    return subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def test_readers_hold_the_catalog_only_while_a_query_runs(scored, capsys):
    explore.call(str(scored), "runs")
    explore.call(str(scored), "sql_console", "SELECT 1")
    assert query(scored, "SELECT 1", capsys)[0] == 0
    assert writer_can_open(scored)


def test_a_writer_waits_for_a_busy_catalog(scored, capsys):
    holder = hold_catalog(scored, 2.0)
    t0 = time.time()
    with catalog.write(Workspace(scored)) as con:
        con.execute("DELETE FROM skipped WHERE dataset = 'nothing'")
    assert time.time() - t0 >= 1.0  # it waited for the reader to let go ...
    holder.wait(10)
    assert "busy" in capsys.readouterr().err  # ... and said so


def test_a_writer_gives_up_after_the_timeout(scored, monkeypatch):
    monkeypatch.setenv("CURATE_CATALOG_TIMEOUT", "1")
    holder = hold_catalog(scored, 30.0)
    try:
        with pytest.raises(CurateError, match="still held by process"):
            with catalog.write(Workspace(scored)):
                pass
    finally:
        holder.kill()
        holder.wait()


def test_score_waits_for_a_query_in_progress(scored, capsys):
    holder = hold_catalog(scored, 1.5)
    assert main(["score", "digits", "--tol", "1", "--workspace", str(scored)]) == 0
    holder.wait(10)


def test_train_that_cannot_record_its_run_says_so_before_training(scored, monkeypatch, capsys):
    monkeypatch.setenv("CURATE_CATALOG_TIMEOUT", "1")
    holder = hold_catalog(scored, 60.0)
    try:
        t0 = time.time()
        rc = main(
            ["train", "digits", "--run-name", "blocked", "--members", "2", "--epochs", "1"]
            + ["--workspace", str(scored)]
        )
        assert rc == 2 and time.time() - t0 < 30
        assert "still held by process" in one_error(capsys.readouterr().err)
        assert not (scored / "runs" / "blocked" / "predictions").exists()
    finally:
        holder.kill()
        holder.wait()


def test_two_trains_of_one_run_the_second_is_refused_at_once(scored, capsys):
    code = textwrap.dedent(
        f"""
        import time
        from pathlib import Path
        from curate.locks import run_lock
        with run_lock(Path({str(scored / "runs" / "twice")!r})):
            print("locked", flush=True)
            time.sleep(60)
        """
    )
    other = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    try:
        assert other.stdout.readline().strip() == "locked"
        t0 = time.time()
        rc = main(["train", "digits", "--run-name", "twice", "--workspace", str(scored)])
        assert rc == 2 and time.time() - t0 < 10
        line = one_error(capsys.readouterr().err)
        assert "run 'twice' is in use by process" in line and str(other.pid) in line
        assert not (scored / "runs" / "twice" / "predictions").exists()
    finally:
        other.kill()
        other.wait()


# ----------------------------------------------------------------------------- faults


@pytest.fixture()
def small_disk(tmp_path):
    """A tmpfs of a few MiB at tmp_path/disk (root only; skipped where it cannot be mounted)."""

    def mount(size: str) -> Path:
        where = tmp_path / "disk"
        where.mkdir(exist_ok=True)
        res = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
            capture_output=True,
        )
        if res.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {res.stderr.decode().strip()}")
        mounted.append(where)
        return where

    mounted: list[Path] = []
    yield mount
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def curate(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "curate", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,  # a hang fails the test instead of stalling the suite
    )


def fill(disk: Path, leave: int) -> Path:
    """Fill `disk` up to `leave` bytes free."""
    filler = disk / "filler"
    free = shutil.disk_usage(disk).free
    with open(filler, "wb") as f:
        f.write(b"\0" * max(0, free - leave))
    return filler


def test_full_disk_during_ingest_is_a_clean_error(small_disk):
    disk = small_disk("3m")
    res = curate("ingest", "gaussian-2class", "--workspace", str(disk / "ws"), timeout=120)
    assert res.returncode == 2, res.stderr[-2000:]
    assert "no space left on the disk holding" in res.stderr
    assert "Traceback" not in res.stderr
    left = [p.name for p in (disk / "ws" / "datasets").iterdir()]
    assert not [n for n in left if n.endswith(".tmp") or n == "gaussian-2class"], left


@pytest.mark.slow
def test_full_disk_during_train_and_score_then_resume(small_disk):
    disk = small_disk("64m")
    ws = str(disk / "ws")
    assert curate("ingest", "digits", "--workspace", ws).returncode == 0
    args = ["--run-name", "r", "--members", "2", "--epochs", "3", "--workspace", ws]
    filler = fill(disk, 150_000)
    res = curate("train", "digits", *args)
    assert res.returncode == 2, res.stderr[-2000:]
    assert "no space left on the disk holding" in res.stderr and "Traceback" not in res.stderr
    assert not list(Path(ws).rglob("*.tmp"))  # nothing half-written
    filler.unlink()
    res = curate("train", "digits", *args)
    assert res.returncode == 0, res.stderr[-2000:]  # resumed once space was free

    filler = fill(disk, 20_000)
    res = curate("score", "r", "--workspace", ws)
    assert res.returncode == 2, res.stderr[-2000:]
    assert "no space left on the disk holding" in res.stderr and "Traceback" not in res.stderr
    assert "rollback" not in res.stderr.lower()
    filler.unlink()
    rows = "SELECT count(*) AS n FROM instance_scores WHERE run = 'r'"
    rc = curate("query", rows, "--format", "csv", "--workspace", ws)
    assert rc.returncode == 0 and rc.stdout.split() == ["n", "0"]  # nothing half-written
    res = curate("score", "r", "--workspace", ws)
    assert res.returncode == 0, res.stderr[-2000:]
    rc = curate("query", "SELECT count(*) FROM instance_scores WHERE run = 'r'", "--workspace", ws)
    assert rc.returncode == 0 and str(1438 + 359) in rc.stdout


def test_a_killed_ingest_leaves_nothing_a_rerun_keeps(tmp_path, capsys):
    ws = tmp_path / "ws"
    datasets = ws / "datasets"
    stale = datasets / ".digits.ab12cd34.tmp"
    other = datasets / ".digits-2.ab12cd34.tmp"  # another dataset's: not ours to remove
    for d in (stale, other):
        (d).mkdir(parents=True)
        (d / "train.beton").write_bytes(b"\0" * 1000)
    assert main(["ingest", "digits", "--workspace", str(ws)]) == 0
    assert not stale.exists() and other.exists()


def test_small_datasets_are_small_on_disk(digits_ws):
    size = sum(p.stat().st_size for p in (digits_ws / "datasets" / "digits").glob("*.beton"))
    pixels = 1797 * 8 * 8
    assert size < 20 * pixels, size  # was ~40 MB: whole 8 MiB pages for 115 KB of pixels


def test_two_ingests_of_one_dataset(tmp_path, capsys):
    from curate.locks import dataset_lock

    ws = tmp_path / "ws"
    with dataset_lock(ws / "datasets" / "digits"):
        code = f"from curate.cli import main; raise SystemExit(main(['ingest', 'digits', '--workspace', {str(ws)!r}]))"
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 2 and "dataset 'digits' is in use by process" in res.stderr


# ----------------------------------------------------------------------------- bad values


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--set", "train.lr=-1"], "train.lr = -1.0: must be > 0"),
        (["--set", "train.weight_decay=-5"], "train.weight_decay = -5.0: must be >= 0"),
        (["--set", "loader.batch_size=0"], "loader.batch_size = 0: must be >= 1"),
        (["--set", "train.momentum=1.5"], "train.momentum = 1.5: must be < 1"),
        (["--set", "train.schedule=wild"], "train.schedule = 'wild': choose one of"),
        (["--epochs", "3", "--set", "train.epochs=abc"], "give train.epochs two values"),
        (["--set", "train.lr_min=1"], "exceeds train.lr"),
        (["--set", "dataset.name=../escape"], "a name becomes a folder"),
        (["--run-name", "../escape"], "a name becomes a folder"),
    ],
)
def test_bad_values_leave_no_run_behind(digits_ws, tmp_path, capsys, args, needle):
    ws = tmp_path / "ws"
    shutil.copytree(digits_ws, ws)
    rc = main(["train", "digits", "--run-name", "v", *args, "--workspace", str(ws)])
    assert rc == 2
    assert needle in one_error(capsys.readouterr().err)
    assert not (ws / "runs" / "v").exists() and not (tmp_path / "escape").exists()


def test_a_valid_rerun_after_a_bad_value_is_not_refused(digits_ws, tmp_path, capsys):
    ws = tmp_path / "ws"
    shutil.copytree(digits_ws, ws)
    common = ["train", "digits", "--run-name", "v", "--members", "2", "--epochs", "1"]
    assert main(common + ["--set", "train.lr=-1", "--workspace", str(ws)]) == 2
    assert main(common + ["--workspace", str(ws)]) == 0, capsys.readouterr().err


def test_the_same_value_twice_is_fine(digits_ws, tmp_path):
    from curate.config import load_recipe

    r = load_recipe("digits", ["train.epochs=3"], {"train.epochs": ("--epochs", 3)})
    assert r.train.epochs == 3


def test_recipe_file_with_bad_values(tmp_path):
    from curate.config import load_recipe

    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nmembers = 2\nepochs = 2\nlr = 0\n")
    with pytest.raises(CurateError, match="train.lr = 0.0: must be > 0"):
        load_recipe(str(bad))
    bad.write_text("train = 3\n")
    with pytest.raises(CurateError, match=r"section \[train\] must be a table"):
        load_recipe(str(bad))


def test_mnist_label_file_with_a_short_header(tmp_path, capsys):
    src = tmp_path / "mnist"
    src.mkdir()
    rng = np.random.default_rng(0)
    write_idx(src / "train-images-idx3-ubyte", rng.integers(0, 255, (4, 28, 28)))
    write_idx(src / "t10k-images-idx3-ubyte", rng.integers(0, 255, (4, 28, 28)))
    write_idx(src / "t10k-labels-idx1-ubyte", np.arange(4))
    (src / "train-labels-idx1-ubyte").write_bytes(bytes([0, 0, 8, 1, 0, 0]))  # 6 bytes
    rc = main(["ingest", "mnist", "--source", str(src), "--workspace", str(tmp_path / "ws")])
    assert rc == 2
    line = one_error(capsys.readouterr().err)
    assert "train-labels-idx1-ubyte" in line and "truncated or corrupt" in line


def test_messages_name_real_flags(digits_ws, tmp_path, capsys):
    ws = tmp_path / "ws"
    shutil.copytree(digits_ws, ws)
    common = ["train", "digits", "--run-name", "v", "--members", "2", "--workspace", str(ws)]
    assert main(common + ["--epochs", "1"]) == 0
    capsys.readouterr()
    assert main(common + ["--epochs", "2"]) == 2
    line = one_error(capsys.readouterr().err)
    assert "different recipe" in line and "--run-name NEW_NAME" in line


# ----------------------------------------------------------------------------- precision


def test_auto_precision_follows_the_cpu_flags(tmp_path):
    import torch

    from curate.train.precision import choose_precision, cpu_flags

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert choose_precision("auto", cpu, {"avx2", "fma"}) == "fp32"  # no bf16 units: stays fp32
    assert choose_precision("auto", cpu, set()) == "fp32"
    assert choose_precision("auto", cpu, {"avx512f", "avx512_bf16"}) == "bf16"
    assert choose_precision("auto", cpu, {"amx_tile", "amx_bf16"}) == "bf16"
    assert choose_precision("auto", cuda, set()) == "bf16"
    assert choose_precision("fp32", cuda, {"amx_bf16"}) == "fp32"  # an explicit choice wins
    assert choose_precision("bf16", cpu, set()) == "bf16"
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 fma\n\nprocessor\t: 1\n")
    assert cpu_flags(info) == {"fpu", "sse2", "avx2", "fma"}
    assert cpu_flags(tmp_path / "absent") == set()


def test_the_precision_is_recorded_with_the_run(small_scored_ws):
    import torch

    from curate.train.precision import choose_precision

    con = catalog.read(Workspace(small_scored_ws))
    try:
        (got,) = con.execute("SELECT precision FROM runs WHERE run = 'digits'").fetchone()
    finally:
        con.close()
    assert got == choose_precision("auto", torch.device("cpu"))


def test_an_older_catalog_gains_new_columns(tmp_path):
    ws = Workspace(tmp_path)
    con = duckdb.connect(str(ws.catalog))  # raw: a catalog as an older curate made it
    con.execute("CREATE TABLE runs (run VARCHAR PRIMARY KEY, dataset VARCHAR)")
    con.execute("INSERT INTO runs VALUES ('old', 'digits')")
    con.close()
    with catalog.write(ws) as con:
        cols = [r[0] for r in con.execute("DESCRIBE runs").fetchall()]
        assert "precision" in cols
        assert con.execute("SELECT run, precision FROM runs").fetchall() == [("old", None)]


def test_a_lock_leaves_no_file_and_can_be_taken_again(tmp_path):
    from curate.locks import run_lock

    run_dir = tmp_path / "runs" / "r"
    for _ in range(2):
        with run_lock(run_dir):
            assert (tmp_path / "runs" / ".r.lock").read_text().strip() == str(
                __import__("os").getpid()
            )
            with pytest.raises(CurateError, match="in use by process"):
                with run_lock(run_dir):  # flock is per open file: refused in one process too
                    pass
        assert not list((tmp_path / "runs").iterdir())


def test_query_out_cannot_replace_the_workspace_files(scored, capsys):
    catalog = scored / "catalog.duckdb"
    before = digest(catalog)
    for target in (
        catalog,
        scored / "runs" / "x.csv",
        scored / "datasets" / "digits" / "train.beton",
    ):
        rc = main(
            [
                "query",
                "SELECT 1",
                "--format",
                "csv",
                "--out",
                str(target),
                "--workspace",
                str(scored),
            ]
        )
        assert rc == 2 and "inside the workspace" in one_error(capsys.readouterr().err)
    assert digest(catalog) == before and not (scored / "runs" / "x.csv").exists()


@pytest.mark.parametrize("value", ["nan", "-5", "inf", "soon"])
def test_a_bad_catalog_timeout_falls_back_to_the_default(monkeypatch, value):
    monkeypatch.setenv("CURATE_CATALOG_TIMEOUT", value)
    assert catalog.connect.busy_timeout() == catalog.BUSY_TIMEOUT


@pytest.mark.parametrize(
    "args, words",
    [
        (["prune", "digits", "--keep", "0.5", "--strategy", "ccs", "--seed", "-1"], "--seed: -1"),
        (["curriculum", "digits", "--seed", "-1"], "--seed: -1 is outside"),
        (["pairs", "digits", "--n", "-1"], "--n: -1 is outside 1.."),
        (["pairs", "digits", "--train-trials", "-2"], "--train-trials: -2"),
        (["label-issues", "digits", "--top", "99999999999999999999"], "--top: 99,999"),
        (["prune", "digits", "--keep", ""], "--keep: invalid float value"),
        (["train", "digits", "--members", "99999999999"], "must be <= 1000"),
        (
            ["train", "digits", "--seed", "99999999999999999999"],
            "train.seed = 99999999999999999999",
        ),
        (["stats", "digits", "--workers", "-1"], "--workers: -1 is outside 0.."),
    ],
)
def test_bad_numbers_are_one_line_before_any_work(scored, tmp_path, capsys, args, words):
    """Once tracebacks (a negative seed, a --top past int64), silent nonsense (-1 test trials) or
    a training that grew without bound (99,999,999,999 members); argparse's refusals were a usage
    block: now each is one `error:` line, exit code 2, nothing written."""
    out = tmp_path / "out" / ("o" if args[0] == "pairs" else "o.npy")
    extra = ["--out", str(out)] if args[0] in ("prune", "curriculum", "pairs") else []
    before = sorted(p.name for p in (scored / "runs").iterdir())
    capsys.readouterr()
    try:
        rc = main([*args, *extra, "--workspace", str(scored)])
    except SystemExit as e:  # the command line's own refusal
        rc = e.code
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: "), err
    assert err.count("\n") == 1 and words in err, err
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in (scored / "runs").iterdir()) == before
