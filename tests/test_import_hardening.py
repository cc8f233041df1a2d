"""Hardening of `curate import-log`, `curate evaluate`, `--subset` files and `curate.CurateError`:
a refused or interrupted import leaves the workspace as it was, an import records a checksum of
its arrays (the same arrays again change nothing, other arrays are refused unless --replace),
unusable inputs are one `error:` line and exit 2, never a traceback or a silent truncation."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from conftest import ROOT

from curate.cli import main
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
    """SIGKILL leaves the staging folder; the next import of that run removes it (only its own)."""
    staging = lws / "runs" / ".import"
    (staging / "imp.k1ll3d_x" / "new").mkdir(parents=True)
    (staging / "imp.b.k1ll3d_x").mkdir()  # a staging folder of run 'imp.b': not this run's
    assert import_log(lws, "imp", stacked(tmp_path / "a", logits(0))) == 0
    assert [p.name for p in staging.iterdir()] == ["imp.b.k1ll3d_x"]


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
