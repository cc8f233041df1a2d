"""Hardening of `curate import-log`, `curate evaluate`, `--subset` files and `curate.CurateError`:
a refused or interrupted import leaves the workspace as it was, an import records a checksum of
its arrays (the same arrays again change nothing, other arrays are refused unless --replace),
unusable inputs are one `error:` line and exit 2, never a traceback or a silent truncation."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from conftest import ROOT

from curate.cli import main
from curate.commands import training
from curate.commands.record import INTERRUPTED
from curate.locks import exclusive
from curate.record import recorder as recorder_module
from curate.record.recorder import Recorder
from curate.train import predlog

M, E = 2, 1  # members, last epoch of the arrays below


def ingest_toy(ws: Path) -> Path:
    """A dataset registered from labels alone: train idx 0..9, test idx 100..104, classes a, b, c."""
    rows = [("train", i, i % 3) for i in range(10)] + [("test", 100 + i, i % 3) for i in range(5)]
    labels = ws.parent / "labels.csv"
    pd.DataFrame(rows, columns=["split", "idx", "label"]).to_csv(labels, index=False)
    args = ["ingest", "labels", "--labels", str(labels), "--name", "toy", "--classes", "a,b,c"]
    assert main([*args, "--workspace", str(ws)]) == 0
    return ws


@pytest.fixture(scope="module")
def _toy(tmp_path_factory) -> Path:
    return ingest_toy(tmp_path_factory.mktemp("toy") / "ws")


@pytest.fixture()
def lws(_toy, tmp_path) -> Path:
    """A fresh copy of the toy workspace (ingested once per module)."""
    return Path(shutil.copytree(_toy, tmp_path / "ws"))


def logits(seed: int) -> dict[str, np.ndarray]:
    """(M, E + 1, N, 3) float32 logits per split."""
    rng = np.random.default_rng(seed)
    return {
        s: rng.normal(size=(M, E + 1, n, 3)).astype(np.float32)
        for s, n in (("train", 10), ("test", 5))
    }


def stacked(folder: Path, z: dict[str, np.ndarray]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split, a in z.items():
        np.save(folder / f"{split}.npy", a)
    return folder


def per_epoch(folder: Path, z: dict[str, np.ndarray]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split, a in z.items():
        for m in range(M):
            for e in range(E + 1):
                np.save(folder / f"{split}_m{m}_e{e}.npy", a[m, e])
    return folder


def import_log(ws: Path, run: str, folder: Path, *extra: str) -> int:
    args = ["import-log", run, "--dataset", "toy", "--dir", str(folder), "--workspace", str(ws)]
    return main([*args, *extra])


def one_error(capsys, *words: str) -> str:
    """The command's stderr: exactly one line, `error: ...`, holding every word."""
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    for w in words:
        assert w in err, (w, err)
    return err


def trace(ws: Path, run: str) -> dict[str, int]:
    """Rows naming `run` in every catalog table with a run column (only the non-zero counts)."""
    con = duckdb.connect(str(ws / "catalog.duckdb"), read_only=True)
    try:
        cols = con.execute(
            "SELECT c.table_name, c.column_name FROM information_schema.columns c JOIN "
            "information_schema.tables t USING (table_name) WHERE t.table_type = 'BASE TABLE' "
            "AND c.column_name IN ('run', 'run_a', 'run_b')"
        ).fetchall()
        counts = {
            f"{t}.{c}": con.execute(
                f'SELECT count(*) FROM "{t}" WHERE "{c}" = ?', [run]
            ).fetchone()[0]
            for t, c in cols
        }
    finally:
        con.close()
    return {k: v for k, v in counts.items() if v}


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under `folder`: its bytes and modification time."""
    return {
        str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def runs_row(ws: Path, run: str) -> tuple:
    con = duckdb.connect(str(ws / "catalog.duckdb"), read_only=True)
    try:
        return con.execute("SELECT * FROM runs WHERE run = ?", [run]).fetchone()
    finally:
        con.close()


def assert_nothing_imported(ws: Path, run: str) -> None:
    assert not (ws / "runs" / run).exists()
    assert not (ws / "runs" / ".import").exists()  # the staging folder is gone too
    assert trace(ws, run) == {}


# ----------------------------------------------------------------------------- 1. all or nothing


def _missing_part(d: Path, monkeypatch) -> None:
    (d / "test_m1_e0.npy").unlink()


def _bad_last_part(d: Path, monkeypatch) -> None:
    np.save(d / "test_m1_e1.npy", np.zeros((5, 2), np.float32))  # 2 classes, the dataset has 3


def _interrupted(d: Path, monkeypatch) -> None:
    from curate.record import importlog

    real, calls = importlog._as_logits, []

    def interrupt(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # two parts written, then Ctrl-C
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(importlog, "_as_logits", interrupt)


def _catalog_write_fails(d: Path, monkeypatch) -> None:
    def fail(rec):
        raise KeyboardInterrupt  # as the runs row is being written

    monkeypatch.setattr(recorder_module, "record_recorded_run", fail)


@pytest.mark.parametrize(
    "break_it, code, words",
    [
        (_missing_part, 2, ["1 parts have no array", "test_m1_e0", "nothing was imported"]),
        (_bad_last_part, 2, ["2 classes, the dataset has 3"]),
        (_interrupted, 130, []),
        (_catalog_write_fails, 130, []),
    ],
    ids=["missing-part", "bad-last-part", "interrupted", "catalog-write-fails"],
)
def test_failed_import_registers_nothing(lws, tmp_path, capsys, monkeypatch, break_it, code, words):
    d = per_epoch(tmp_path / "arrays", logits(0))
    break_it(d, monkeypatch)
    capsys.readouterr()
    assert import_log(lws, "imp", d) == code
    err = capsys.readouterr().err
    assert "rerun to finish" not in err
    if code == 2:
        assert err.startswith("error: ") and err.count("\n") == 1, err
        assert all(w in err for w in words), err
    assert_nothing_imported(lws, "imp")


def test_failed_replace_keeps_the_earlier_run(lws, tmp_path, capsys, monkeypatch):
    assert import_log(lws, "imp", stacked(tmp_path / "a", logits(0))) == 0
    before, row = snapshot(lws / "runs" / "imp"), runs_row(lws, "imp")
    other = per_epoch(tmp_path / "b", logits(1))
    (other / "train_m0_e1.npy").unlink()
    capsys.readouterr()
    assert import_log(lws, "imp", other, "--replace") == 2
    one_error(capsys, "train_m0_e1", "nothing was imported")
    assert snapshot(lws / "runs" / "imp") == before and runs_row(lws, "imp") == row
    np.save(other / "train_m0_e1.npy", logits(1)["train"][0, 1])
    _catalog_write_fails(other, monkeypatch)
    assert import_log(lws, "imp", other, "--replace") == 130
    assert snapshot(lws / "runs" / "imp") == before and runs_row(lws, "imp") == row
    assert not (lws / "runs" / ".import").exists()


def test_a_killed_imports_staging_folder_is_cleared(lws, tmp_path):
    """SIGKILL leaves the staging folder; the next import removes it, this run's and any other
    run's whose lock no process holds (a live command's is kept: see
    test_any_import_clears_what_a_killed_import_left)."""
    staging = lws / "runs" / ".import"
    (staging / "imp.k1ll3d_x" / "new").mkdir(parents=True)
    (staging / "imp.b.k1ll3d_x").mkdir()  # a staging folder of run 'imp.b', whose import is gone
    assert import_log(lws, "imp", stacked(tmp_path / "a", logits(0))) == 0
    assert not staging.exists()
    assert sorted(p.name for p in (lws / "runs").iterdir()) == ["imp"]  # no lock file left


# ----------------------------------------------------------------------------- 2. a checksum


def test_same_arrays_again_change_nothing_other_arrays_are_refused(lws, tmp_path, capsys):
    run = lws / "runs" / "imp"
    z = logits(0)
    assert import_log(lws, "imp", stacked(tmp_path / "a", z)) == 0
    before, row = snapshot(run), runs_row(lws, "imp")
    # the same arrays, even saved the other way (one file per part): nothing is written
    assert import_log(lws, "imp", per_epoch(tmp_path / "same", z)) == 0
    assert "nothing changed" in capsys.readouterr().out
    assert snapshot(run) == before and runs_row(lws, "imp") == row
    # other arrays: refused, naming the run, what differs and both ways out; nothing written
    changed = {s: a.copy() for s, a in z.items()}
    changed["train"][1, 1, 4] += 1.0
    assert import_log(lws, "imp", stacked(tmp_path / "b", changed)) == 2
    one_error(
        capsys, "run 'imp'", "the arrays differ from the ones imported", "--replace", "new run name"
    )
    assert snapshot(run) == before and runs_row(lws, "imp") == row
    # the same arrays under other settings: refused too, naming the setting
    assert import_log(lws, "imp", tmp_path / "a", "--arch", "resnet") == 2
    one_error(capsys, "run 'imp'", "--arch differs")
    # --replace: the new log, and the scores of the old one are gone
    assert main(["score", "imp", "--workspace", str(lws)]) == 0
    assert trace(lws, "imp").get("instance_scores.run") == 15
    capsys.readouterr()
    assert import_log(lws, "imp", tmp_path / "b", "--replace") == 0
    assert "replaced" in capsys.readouterr().out
    shard = predlog.shard_path(run, "eval", "train", 1, 1)
    new = pd.read_parquet(shard)
    assert snapshot(run) != before and "instance_scores.run" not in trace(lws, "imp")
    assert trace(lws, "imp") == {"runs.run": 1, "members.run": M}
    rec = Recorder(lws, run="direct", dataset="toy", members=M, epochs=E)
    for split, a in changed.items():
        for m in range(M):
            for e in range(E + 1):
                rec.log(split, m, e, rec.data.splits[split].idx, a[m, e])
    rec.close()
    direct = pd.read_parquet(predlog.shard_path(lws / "runs" / "direct", "eval", "train", 1, 1))
    np.testing.assert_array_equal(new["p_true"], direct["p_true"])
    # and the replacement is now what "the same arrays" means
    assert import_log(lws, "imp", tmp_path / "b") == 0
    assert "nothing changed" in capsys.readouterr().out


def test_a_run_without_a_checksum_is_not_overwritten(lws, tmp_path, capsys):
    rec = Recorder(lws, run="mine", dataset="toy", members=M, epochs=E)
    z = logits(0)
    for split, a in z.items():
        for m in range(M):
            for e in range(E + 1):
                rec.log(split, m, e, rec.data.splits[split].idx, a[m, e])
    rec.close()
    before = snapshot(lws / "runs" / "mine")
    assert import_log(lws, "mine", stacked(tmp_path / "a", z)) == 2
    one_error(capsys, "run 'mine'", "no checksum", "--replace")
    assert snapshot(lws / "runs" / "mine") == before
    assert import_log(lws, "mine", tmp_path / "a", "--replace") == 0
    assert (lws / "runs" / "mine" / "import.json").exists()
    # a run `curate train` made is never replaced by an import
    trained = lws / "runs" / "trained"
    trained.mkdir()
    (trained / "run.json").write_text('{"dataset": "toy", "train": {"members": 2}}')
    assert import_log(lws, "trained", tmp_path / "a", "--replace") == 2
    one_error(capsys, "run 'trained'", "made by `curate train`", "another run name")
    assert [p.name for p in trained.iterdir()] == ["run.json"]


# ----------------------------------------------------------------------------- 3. real numbers only


@pytest.mark.parametrize(
    "make, word",
    [
        (lambda a: a.astype(np.complex64) + 1j, "complex"),
        (lambda a: a.astype(str), "text"),  # numbers written as text
        (lambda a: np.full(a.shape, "cat"), "text"),
    ],
    ids=["complex", "numeric-text", "words"],
)
@pytest.mark.parametrize("layout", [stacked, per_epoch])
def test_complex_and_text_outputs_are_refused(lws, tmp_path, capsys, make, word, layout):
    z = logits(0)
    d = layout(tmp_path / "a", {"train": make(z["train"]), "test": z["test"]})
    capsys.readouterr()
    assert import_log(lws, "imp", d) == 2
    one_error(capsys, word, "not real numbers", "float array")
    assert_nothing_imported(lws, "imp")


# ----------------------------------------------------------------------------- 4. read-only workspace


def test_read_only_workspace(lws, tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    d = stacked(tmp_path / "a", logits(0))
    mounted = subprocess.run(["mount", "--bind", str(lws), str(ro)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(
            f"cannot bind-mount a read-only workspace here: {mounted.stderr.decode().strip()}"
        )
    try:
        remount = ["mount", "-o", "remount,bind,ro", str(ro)]
        if subprocess.run(remount, capture_output=True).returncode != 0:
            pytest.skip("cannot remount the workspace read-only here")
        capsys.readouterr()
        assert import_log(ro, "imp", d) == 2
        one_error(capsys, "cannot write in the workspace", "writable", "--workspace")
    finally:
        subprocess.run(["umount", str(ro)], check=True)
    assert_nothing_imported(lws, "imp")


# ----------------------------------------------------------------------------- 5. evaluate


@pytest.fixture(scope="module")
def scored(tmp_path_factory) -> Path:
    """A toy workspace with run `imp` imported and scored."""
    tmp = tmp_path_factory.mktemp("scored")
    ws = ingest_toy(tmp / "ws")
    assert import_log(ws, "imp", stacked(tmp / "a", logits(0))) == 0
    assert main(["score", "imp", "--workspace", str(ws)]) == 0
    return ws


def evaluate(ws: Path, ref: Path, *extra: str) -> int:
    return main(["evaluate", "imp", "--reference", str(ref), "--workspace", str(ws), *extra])


def stored(ws: Path) -> int:
    con = duckdb.connect(str(ws / "catalog.duckdb"), read_only=True)
    try:
        return con.execute("SELECT count(*) FROM reference_agreement").fetchone()[0]
    finally:
        con.close()


def test_evaluate_refuses_a_non_numeric_reference_column(scored, tmp_path, capsys):
    ref = tmp_path / "r.csv"
    pd.DataFrame({"idx": range(10), "kind": ["easy", "hard"] * 5}).to_csv(ref, index=False)
    capsys.readouterr()
    assert evaluate(scored, ref) == 2
    one_error(capsys, "column 'kind'", "'easy'", "not numbers or booleans", "--column")
    assert stored(scored) == 0


@pytest.mark.parametrize(
    "values, words",
    [
        (np.full(5, 1 + 2j), "real numbers or booleans"),  # once only a ComplexWarning
        (np.full(5, np.nan), "no finite value"),  # once NaN results stored, exit 0
        (np.array([np.inf, -np.inf, np.inf, np.nan, -np.inf]), "no finite value"),
    ],
    ids=["complex", "all-nan", "all-inf"],
)
def test_evaluate_refuses_references_with_nothing_to_compare(
    scored, tmp_path, capsys, values, words
):
    ref = tmp_path / "r.npy"
    np.save(ref, values)
    capsys.readouterr()
    assert evaluate(scored, ref, "--split", "test") == 2
    one_error(capsys, words)
    assert stored(scored) == 0


@pytest.mark.parametrize(
    "idx", [[0.5, 1.5, 2, 3], ["0", "1", "two", "3"]], ids=["fractions", "text"]
)
def test_evaluate_refuses_idx_that_are_not_whole_numbers(scored, tmp_path, capsys, idx):
    ref = tmp_path / "r.csv"
    pd.DataFrame({"idx": idx, "c": [0.1, 0.2, 0.3, 0.4]}).to_csv(ref, index=False)
    capsys.readouterr()
    assert evaluate(scored, ref) == 2
    shown = "0.5, 1.5" if isinstance(idx[0], float) else "'two'"
    one_error(capsys, "column idx", "not whole numbers", shown, "integer idx")
    assert stored(scored) == 0


def test_evaluate_takes_true_false_with_empty_cells(scored, tmp_path, capsys):
    ref = tmp_path / "r.csv"
    flags = ["true", "false", "", "true", "false", "false", "true", "false", "true", "false"]
    pd.DataFrame({"idx": range(10), "wrong": flags}).to_csv(ref, index=False)
    assert evaluate(scored, ref) == 0
    assert "on 9 instances" in capsys.readouterr().out


# ----------------------------------------------------------------------------- 6. --subset


@pytest.mark.parametrize("content", [b"", b"\x93NUMPY\x01\x00"], ids=["0-bytes", "truncated"])
def test_train_refuses_an_empty_subset_file(digits_ws, tmp_path, capsys, content):
    sub = tmp_path / "empty.npy"
    sub.write_bytes(content)
    capsys.readouterr()
    args = ["train", "digits", "--run", "sub", "--subset", str(sub), "--workspace", str(digits_ws)]
    assert main([*args, "--set", "train.members=2", "--set", "train.epochs=1"]) == 2
    one_error(capsys, str(sub), "empty" if not content else "unreadable", "write it again")
    assert not (digits_ws / "runs" / "sub").exists()


# ----------------------------------------------------------------------------- 7. curate.CurateError


def test_curate_error_is_importable_from_curate_and_import_stays_light():
    from curate import CurateError
    from curate.errors import CurateError as Original

    assert CurateError is Original
    code = (
        "import sys, curate; from curate import CurateError; "
        "print(sorted(m for m in ('numpy', 'pandas', 'torch', 'duckdb', 'pyarrow') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    ).stdout
    assert out.strip() == "[]"


# ----------------------------------------------------------------------------- 8. bounds


def header_only(path: Path, shape: tuple[int, ...], descr: str = "<f4") -> None:
    """A .npy whose header declares `shape` of `descr` and that holds no data at all."""
    with open(path, "wb") as f:
        header = {"descr": descr, "fortran_order": False, "shape": shape}
        np.lib.format.write_array_header_1_0(f, header)


@pytest.mark.parametrize(
    "extra, name, words",
    [
        (["--members", "1000000000000"], None, ["hold 2 members", "give --members 2 or fewer"]),
        (["--epochs", "1000000000000"], None, ["hold epochs 0..1", "give --epochs 1 or fewer"]),
        (
            [],
            "train_m99999999999999999999_e1.npy",
            ["_m99999999999999999999_e1.npy: member 99999999999999999999 is out of bounds"],
        ),
        (
            [],
            "train_m0_e100001.npy",
            ["e100001.npy: epoch 100001 is out of bounds", "epochs 0..100000"],
        ),
        ([], "train_m999_e100000.npy", ["1000 members x epochs 0..100000", "out of bounds"]),
        ([], "train_m7_e1.npy", ["23 parts have no array", "train_m2_e0", "and 17 more"]),
    ],
    ids=["--members", "--epochs", "member-in-name", "epoch-in-name", "parts", "gap"],
)
def test_members_and_epochs_beyond_the_files_are_refused_at_once(
    lws, tmp_path, capsys, extra, name, words
):
    """Members or epochs beyond what the files hold, or beyond the bounds (1000 members, epochs
    0..100000, 10^6 parts), are one error line before anything in their proportion is made."""
    d = per_epoch(tmp_path / "a", logits(0))
    if name:
        shutil.copy(d / "train_m0_e1.npy", d / name)
    capsys.readouterr()
    start = time.perf_counter()
    assert import_log(lws, "imp", d, *extra) == 2
    assert time.perf_counter() - start < 10
    one_error(capsys, *extra, *words)
    assert_nothing_imported(lws, "imp")


def test_a_stacked_header_claiming_huge_members_is_refused_unread(lws, tmp_path, capsys):
    d = stacked(tmp_path / "a", logits(0))
    header_only(d / "train.npy", (10**12, 2, 10, 3))
    capsys.readouterr()
    assert import_log(lws, "imp", d) == 2
    one_error(capsys, "1000000000000 members x epochs 0..1 is out of bounds", "at most 1000")
    assert_nothing_imported(lws, "imp")


# ----------------------------------------------------------------------------- 9. regular files


@pytest.mark.parametrize("make, what", [(os.mkfifo, "a FIFO"), (os.mkdir, "a folder")])
def test_a_fifo_in_the_folder_is_refused_never_opened(lws, tmp_path, capsys, make, what):
    d = per_epoch(tmp_path / "a", logits(0))
    (d / "train_m0_e0.npy").unlink()
    make(d / "train_m0_e0.npy")
    os.mkfifo(d / "notes")  # not named like an array: skipped, never opened

    def hang(signum, frame):
        raise TimeoutError("import-log opened the FIFO and waits on a writer")

    old = signal.signal(signal.SIGALRM, hang)
    signal.alarm(20)
    try:
        capsys.readouterr()
        assert import_log(lws, "imp", d) == 2
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    one_error(capsys, "train_m0_e0.npy", what, "not a regular file", "never opens")
    assert_nothing_imported(lws, "imp")
    shutil.rmtree(d / "train_m0_e0.npy") if what == "a folder" else os.unlink(d / "train_m0_e0.npy")
    np.save(d / "train_m0_e0.npy", logits(0)["train"][0, 0])
    assert import_log(lws, "imp", d) == 0  # the FIFO `notes` beside is left alone


# ----------------------------------------------------------------------------- 10. headers first


def _save_obj(p: Path) -> None:
    np.save(p, np.array([[{"a": 1}] * 3] * 10, dtype=object), allow_pickle=True)


@pytest.mark.parametrize(
    "layout, name, make, words",
    [
        (
            per_epoch,
            "train_m0_e0.npy",
            lambda p: header_only(p, (10, 3145728)),
            ["3145728 classes"],
        ),
        (per_epoch, "train_m0_e0.npy", lambda p: np.save(p, np.zeros((11, 3))), ["11 rows", "10"]),
        (per_epoch, "train_m1_e1.npy", lambda p: header_only(p, (10, 3)), ["truncated"]),
        (per_epoch, "train_m0_e0.npy", _save_obj, ["objects", "not real numbers"]),
        (per_epoch, "train_idx.npy", lambda p: np.save(p, np.arange(9)), ["9 idx", "10 instances"]),
        (stacked, "train.npy", lambda p: header_only(p, (2, 2, 10, 3)), ["truncated", "480 bytes"]),
        (stacked, "train.npy", lambda p: header_only(p, (2, 2, 10**9, 3)), ["1000000000 rows"]),
    ],
    ids=["classes", "rows", "truncated", "objects", "idx-length", "stacked-truncated", "stacked-n"],
)
def test_headers_are_checked_before_any_data_is_read(
    lws, tmp_path, capsys, layout, name, make, words
):
    d = layout(tmp_path / "a", logits(0))
    make(d / name)
    capsys.readouterr()
    assert import_log(lws, "imp", d) == 2
    one_error(capsys, name, *words)
    assert_nothing_imported(lws, "imp")


def test_a_compressed_bomb_is_refused_from_its_header(lws, tmp_path, capsys):
    """An .npz whose member inflates to 168 MB: refused for its class count, from the member's
    header, with a few MB of memory (nothing inflated but the header)."""
    d = stacked(tmp_path / "a", logits(0))
    (d / "train.npy").unlink()
    np.savez_compressed(d / "train.npz", np.zeros((2, 2, 10, 2**20), np.float32))
    assert (d / "train.npz").stat().st_size < 2**20
    capsys.readouterr()
    tracemalloc.start()
    try:
        assert import_log(lws, "imp", d) == 2
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    one_error(capsys, "train.npz", "1048576 classes, the dataset has 3")
    assert peak < 32 * 2**20, f"{peak / 2**20:.0f} MB"
    assert_nothing_imported(lws, "imp")


def test_a_stacked_npz_is_read_slice_by_slice_with_its_idx(lws, tmp_path):
    """A stacked .npz (its idx inside, rows shuffled) imports as the per-epoch files do."""
    z = logits(0)
    assert import_log(lws, "ref", per_epoch(tmp_path / "ref", z)) == 0
    d = tmp_path / "npz"
    d.mkdir()
    order = np.random.default_rng(1).permutation(10)
    np.savez_compressed(d / "train.npz", logits=z["train"][:, :, order], idx=order)
    np.save(d / "test.npy", z["test"])
    assert import_log(lws, "npz", d) == 0
    for m in range(M):
        for e in range(E + 1):
            a = pd.read_parquet(predlog.shard_path(lws / "runs/ref", "eval", "train", m, e))
            b = pd.read_parquet(predlog.shard_path(lws / "runs/npz", "eval", "train", m, e))
            pd.testing.assert_frame_equal(a, b)


# ----------------------------------------------------------------------------- 11. killed imports

SLOW_IMPORT = """
import sys, time
from curate.record import importlog
real, calls = importlog._as_logits, []
def slow(*args):
    calls.append(1)
    if len(calls) == 2:  # one part staged: say so, then wait for the signal
        print("staging", flush=True)
        time.sleep(60)
    return real(*args)
importlog._as_logits = slow
from curate.cli import main
sys.exit(main(sys.argv[1:]))
"""


def signalled_import(ws: Path, run: str, folder: Path, sig: int) -> tuple[int, str]:
    """Run `curate import-log` in a process, send it `sig` once a part is staged: (code, stderr)."""
    args = ["import-log", run, "--dataset", "toy", "--dir", str(folder), "--workspace", str(ws)]
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_IMPORT, *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        if line.strip() != "staging":
            proc.kill()
            pytest.fail(f"the import did not start staging: {line}{proc.communicate()[1]}")
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err


def test_any_import_clears_what_a_killed_import_left(lws, tmp_path):
    """SIGKILL leaves runs/.import/<run>.<random>/ and runs/.<run>.lock; the next import, of any
    run, removes both (the run's lock is free: its process is gone), but not the staging folder
    of a command still running (its run's lock held)."""
    runs, d = lws / "runs", per_epoch(tmp_path / "a", logits(0))
    code, _ = signalled_import(lws, "k", d, signal.SIGKILL)
    assert code == -signal.SIGKILL
    left = [p.name for p in (runs / ".import").iterdir()]
    assert (
        len(left) == 1
        and left[0].startswith("k.")
        and (runs / ".import" / left[0] / "new").is_dir()
    )
    assert (runs / ".k.lock").exists() and not (runs / "k").exists()
    with exclusive(runs / ".busy.lock", "run 'busy'", "wait"):  # a live import of run 'busy'
        (runs / ".import" / "busy.abcd1234").mkdir()
        assert import_log(lws, "other", d) == 0
        assert [p.name for p in (runs / ".import").iterdir()] == ["busy.abcd1234"]
    assert not (runs / ".k.lock").exists() and trace(lws, "k") == {}
    assert import_log(lws, "k", d) == 0  # the killed run imports as if nothing had happened
    assert not (runs / ".import").exists()
    assert sorted(p.name for p in runs.iterdir()) == ["k", "other"]


def test_sigterm_unwinds_an_import(lws, tmp_path):
    """SIGTERM unwinds like Ctrl-C: nothing is left (no staging folder, no lock file), the
    import's own message, exit 143."""
    code, err = signalled_import(lws, "k", per_epoch(tmp_path / "a", logits(0)), signal.SIGTERM)
    assert code == 128 + signal.SIGTERM, err
    assert err == INTERRUPTED + "\n"
    assert_nothing_imported(lws, "k")
    assert list((lws / "runs").iterdir()) == []


def test_a_replace_killed_between_its_renames_is_put_back(lws, tmp_path):
    """Killed between moving the old run aside and the new one in: the next import puts the old
    run back where it was; killed after both moves: the new log stays and is registered."""
    assert import_log(lws, "imp", stacked(tmp_path / "a", logits(0))) == 0
    before, row = snapshot(lws / "runs" / "imp"), runs_row(lws, "imp")
    aside = lws / "runs" / ".import" / "imp.k1ll3d_x"
    aside.mkdir(parents=True)
    os.replace(lws / "runs" / "imp", aside / "old")
    assert import_log(lws, "other", tmp_path / "a") == 0
    assert snapshot(lws / "runs" / "imp") == before and runs_row(lws, "imp") == row
    assert not (lws / "runs" / ".import").exists()
    # killed after both renames, before the catalog's rows: the new log stays, registered
    aside.mkdir(parents=True)
    shutil.copytree(lws / "runs" / "imp", aside / "old")
    con = duckdb.connect(str(lws / "catalog.duckdb"))
    con.execute("DELETE FROM members WHERE run = 'imp'")
    con.execute("DELETE FROM runs WHERE run = 'imp'")
    con.close()
    assert import_log(lws, "other", tmp_path / "a") == 0
    assert snapshot(lws / "runs" / "imp") == before
    again = runs_row(lws, "imp")  # as before but the time of registering (finished_at)
    assert sum(a != b for a, b in zip(again, row, strict=True)) <= 1
    assert trace(lws, "imp") == {"runs.run": 1, "members.run": M}
    assert not (lws / "runs" / ".import").exists()


def test_ctrl_c_says_an_import_starts_over_other_commands_resume(
    lws, tmp_path, capsys, monkeypatch
):
    d = per_epoch(tmp_path / "a", logits(0))
    _interrupted(d, monkeypatch)
    capsys.readouterr()
    assert import_log(lws, "imp", d) == 130
    err = capsys.readouterr().err
    assert err == INTERRUPTED + "\n" and "from the start" in err and "does not resume" in err
    assert_nothing_imported(lws, "imp")

    def interrupt(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "cmd_score", interrupt)
    assert main(["score", "imp", "--workspace", str(lws)]) == 130
    assert capsys.readouterr().err == "interrupted; rerun the same command to resume\n"


# ----------------------------------------------------------------------------- 12. --kind auto

# scores of rounded probabilities against the exact ones: bfloat16 keeps each probability within
# 2^-9 relative, 3 decimals within 5e-4 absolute; with every probability >= 0.024 (logits within
# +-1.5, 3 classes) confidence and EL2N move by at most ~2 x 2^-9 x p and 3 x 5e-4 (after
# renormalising), a margin log(p_y / p_j) by at most 2 x 5e-4 / 0.024 = 0.042 nats
TOL_P = 5e-3  # confidence, EL2N
TOL_AUM = 0.05  # nats


def exact_probs(seed: int = 5) -> dict[str, np.ndarray]:
    """(M, E + 1, N, 3) float64 probabilities, each >= 0.024 (softmax of logits within +-1.5)."""
    rng = np.random.default_rng(seed)
    out = {}
    for s, n in (("train", 10), ("test", 5)):
        z = np.clip(rng.normal(size=(M, E + 1, n, 3)), -1.5, 1.5)
        e = np.exp(z)
        out[s] = e / e.sum(-1, keepdims=True)
    return out


def save_bf16(folder: Path, z: dict[str, np.ndarray]) -> Path:
    """Stacked .pt files of bfloat16 tensors."""
    torch = pytest.importorskip("torch")
    folder.mkdir(parents=True)
    for s, a in z.items():
        torch.save(torch.from_numpy(a.astype(np.float32)).bfloat16(), folder / f"{s}.pt")
    return folder


def renormalised(a: np.ndarray) -> np.ndarray:
    r = np.round(a, 3)
    return r / r.sum(-1, keepdims=True)


def instance_scores(ws: Path, run: str) -> pd.DataFrame:
    assert main(["score", run, "--workspace", str(ws)]) == 0
    con = duckdb.connect(str(ws / "catalog.duckdb"), read_only=True)
    try:
        return con.execute(
            "SELECT split, idx, confidence, el2n, aum FROM instance_scores WHERE run = ? "
            "ORDER BY split, idx",
            [run],
        ).df()
    finally:
        con.close()


def kind_line(capsys) -> str:
    """The one `kind:` line the command printed."""
    lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("kind:")]
    assert len(lines) == 1, lines
    return lines[0]


def test_auto_reads_rounded_probabilities_as_probabilities(lws, tmp_path, capsys):
    """bf16, 3-decimal and renormalised probabilities (rows off 1 by up to ~2e-3, beyond the
    1e-3 auto used to allow) are probabilities, and score as the exact ones within TOL_P/TOL_AUM."""
    p = exact_probs()
    assert import_log(lws, "exact", stacked(tmp_path / "exact", p)) == 0
    assert kind_line(capsys) == (
        "kind: probs (--kind auto: every value in [0, 1] and every row sums to 1 within 0.01)"
    )
    want = instance_scores(lws, "exact")
    three = {s: np.round(a, 3) for s, a in p.items()}
    assert max(np.abs(a.sum(-1) - 1).max() for a in three.values()) > 1e-3
    for run, d in (
        ("bf16", save_bf16(tmp_path / "bf16", p)),
        ("decimals", stacked(tmp_path / "decimals", three)),
        (
            "renormalised",
            per_epoch(tmp_path / "renorm", {s: renormalised(a) for s, a in p.items()}),
        ),
    ):
        capsys.readouterr()
        assert import_log(lws, run, d) == 0, run
        assert kind_line(capsys).startswith("kind: probs (--kind auto: every value in [0, 1]"), run
        got = instance_scores(lws, run)
        assert (got[["split", "idx"]] == want[["split", "idx"]]).all().all()
        for col, tol in (("confidence", TOL_P), ("el2n", TOL_P), ("aum", TOL_AUM)):
            np.testing.assert_allclose(got[col], want[col], atol=tol, rtol=0, err_msg=(run, col))


def test_the_kind_used_is_printed(lws, tmp_path, capsys):
    d = stacked(tmp_path / "a", logits(0))
    capsys.readouterr()
    assert import_log(lws, "imp", d) == 0
    assert (
        kind_line(capsys)
        == f"kind: logits (--kind auto: values outside [0, 1] in {d}/train.npy[0, 0])"
    )
    assert import_log(lws, "imp", d) == 0  # unchanged: the kind is said all the same
    assert kind_line(capsys).startswith("kind: logits (--kind auto")
    p = stacked(tmp_path / "p", exact_probs())
    assert import_log(lws, "p", p, "--kind", "probs") == 0
    assert kind_line(capsys) == "kind: probs (--kind probs)"
    assert json.loads((lws / "runs/imp/import.json").read_text())["kind_used"] == "logits"


def _sigmoids(z):
    return {s: 1 / (1 + np.exp(-a)) for s, a in z.items()}


def _mixed(z):
    return {"train": exact_probs()["train"], "test": z["test"]}


@pytest.mark.parametrize(
    "make, words",
    [
        (_sigmoids, ["every value lies in [0, 1], but rows of", "miss a sum of 1 by up to"]),
        (_mixed, ["train.npy[0, 0] looks like probabilities", "test.npy[0, 0] has values outside"]),
    ],
    ids=["rows-not-summing-to-1", "probs-and-logits"],
)
def test_auto_refuses_what_it_cannot_tell(lws, tmp_path, capsys, make, words):
    d = stacked(tmp_path / "a", make(logits(0)))
    capsys.readouterr()
    assert import_log(lws, "imp", d) == 2
    one_error(capsys, "--kind auto", *words, "--kind logits or --kind probs")
    assert_nothing_imported(lws, "imp")
    assert import_log(lws, "imp", d, "--kind", "logits") == 0
    assert kind_line(capsys) == "kind: logits (--kind logits)"


def test_the_probability_floor_bounds_the_margin(lws, tmp_path, capsys):
    """Rounded probabilities with exact zeros: floored at 1e-4 / C, so a margin is +-ln(C * 1e4)
    (10.309 nats for 3 classes), p_true = 1 / (1 + 2e-4 / 3) for a one-hot row on its label."""
    labels = np.arange(10) % 3
    right = np.eye(3)[labels]  # train rows 0..4: all the mass on the label
    wrong = np.eye(3)[(labels + 1) % 3]  # rows 5..9: none on it
    rows = np.where((np.arange(10) < 5)[:, None], right, wrong)
    z = {
        "train": np.broadcast_to(rows, (M, E + 1, 10, 3)).copy(),
        "test": np.full((M, E + 1, 5, 3), 1 / 3),
    }
    assert import_log(lws, "imp", stacked(tmp_path / "a", z)) == 0
    assert kind_line(capsys).startswith("kind: probs")
    bound = np.log(3 / 1e-4)
    assert abs(bound - 10.30895) < 1e-5  # ln(30000), by hand; a floor of 1e-12 allowed 27.6
    floor = 1e-4 / 3
    for m in range(M):
        for e in range(E + 1):
            part = pd.read_parquet(predlog.shard_path(lws / "runs/imp", "eval", "train", m, e))
            part = part.sort_values("idx")
            sign = np.where(part["idx"] < 5, 1.0, -1.0)
            np.testing.assert_allclose(part["margin"], sign * bound, rtol=1e-5)
            p_true = np.where(part["idx"] < 5, 1, floor) / (1 + 2 * floor)
            np.testing.assert_allclose(part["p_true"], p_true, rtol=1e-5)
    aum = instance_scores(lws, "imp").query("split == 'train'")
    np.testing.assert_allclose(aum["aum"], np.where(aum["idx"] < 5, bound, -bound), rtol=1e-5)


def test_a_record_from_before_the_kind_used(lws, tmp_path, capsys):
    """An import recorded before import.json kept the kind used: the same arrays again are
    unchanged when --kind auto decides as it did, refused (naming --replace) when it did not
    (rows summing to 0.996: logits then, probabilities now)."""
    p = exact_probs()
    for run, arrays, same in (
        ("same", p, True),
        ("scaled", {s: a * 0.996 for s, a in p.items()}, False),
    ):
        d = stacked(tmp_path / run, arrays)
        assert import_log(lws, run, d) == 0
        record = lws / "runs" / run / "import.json"
        old = json.loads(record.read_text())
        assert old.pop("kind_used") == "probs"
        record.write_text(json.dumps(old))
        capsys.readouterr()
        if same:
            assert import_log(lws, run, d) == 0
            assert "nothing changed" in capsys.readouterr().out
            continue
        assert import_log(lws, run, d) == 2
        one_error(
            capsys, f"run {run!r}", "read these arrays as logits", "now read as probabilities"
        )
        assert import_log(lws, run, d, "--replace") == 0
        assert "replaced" in capsys.readouterr().out


def test_pt_files_without_torch_name_the_extra(lws, tmp_path, capsys, monkeypatch):
    """A .pt log where torch is not installed: one line naming the extra that reads it (and that
    .npy / .npz need none), nothing imported."""
    from curate import extras

    folder = save_bf16(tmp_path / "pt", logits(5))
    real = extras.installed
    monkeypatch.setattr(extras, "installed", lambda m: m != "torch" and real(m))
    assert import_log(lws, "no-torch", folder) == 2
    one_error(capsys, "needs torch", "pip install 'curate[train]'", ".npy and .npz need no torch")
    assert_nothing_imported(lws, "no-torch")
