"""`curate ingest labels` on hostile or careless input: every refusal is one `error:` line naming
the problem and the fix, exit code 2, and the workspace byte for byte as it was."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import resource
import subprocess
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from conftest import catalog_rows

from curate import catalog
from curate.cli import main
from curate.workspace import Workspace


def _ingest(ws: Path, labels: Path, *args: str) -> int:
    return main(["ingest", "labels", "--labels", str(labels), *args, "--workspace", str(ws)])


def _csv(path: Path, rows: list[tuple], header: str = "split,idx,label") -> Path:
    path.write_text(header + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    return path


def _tree(ws: Path) -> dict[str, str]:
    """Every file and folder under the workspace -> its content's hash ("dir" for a folder)."""
    return {
        str(p.relative_to(ws)): "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(ws.rglob("*"))
    }


def _refused(capsys, code: int, *needles: str) -> str:
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    for n in needles:
        assert n in err, err
    return err


@pytest.fixture()
def toy(tmp_path, capsys) -> Path:
    """A workspace holding `toy`, registered from labels alone: train idx 0..5, test idx 10..12."""
    rows = [("train", i, i % 3) for i in range(6)] + [("test", 10 + i, i % 3) for i in range(3)]
    ws = tmp_path / "ws"
    assert _ingest(ws, _csv(tmp_path / "toy.csv", rows), "--name", "toy") == 0
    capsys.readouterr()
    return ws


def _labels_of(ws: Path, name: str) -> list[tuple]:
    return catalog_rows(
        ws,
        f"SELECT split, idx, label, class_name FROM instances WHERE dataset = '{name}' "
        "ORDER BY split DESC, idx",
    )


@contextmanager
def _address_space_capped(extra: int = 2**30):
    """Cap this process's address space at its current size + `extra` bytes, so that an allocation
    proportional to a huge class id fails at once instead of exhausting the machine."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[0])
    old = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (pages * os.sysconf("SC_PAGE_SIZE") + extra, old[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, old)


# ------------------------------------------------------------------ 1. class ids far beyond the data


@pytest.mark.parametrize("form", ["csv 1e9", "csv 2**40", "npz 2**40"])
def test_huge_class_id_is_refused_before_any_allocation(toy, tmp_path, capsys, form):
    kind, value = form.split()
    label = 10**9 if value == "1e9" else 2**40
    if kind == "csv":
        f = _csv(tmp_path / "big.csv", [("train", 0, 0), ("train", 1, label)])
    else:
        f = tmp_path / "big.npz"
        np.savez(f, train=np.array([0, label], np.int64))
    before = _tree(toy)
    with _address_space_capped():
        code = _ingest(toy, f, "--name", "big")
    err = _refused(capsys, code, str(label), "out of range", "0..1048575", "2**20")
    assert "class names" in err  # the fix: number the classes 0..K-1 or name them
    assert _tree(toy) == before


# ------------------------------------------------------------------ 2. split names


@pytest.mark.parametrize("split", ["../../x", "a/b", ".hidden", "a\\b", "=2+5", "v%41l"])
def test_split_names_are_checked_like_run_names(toy, tmp_path, capsys, split):
    f = _csv(tmp_path / "s.csv", [("train", 0, 0), (split, 0, 1)])
    before = _tree(toy)
    _refused(capsys, _ingest(toy, f, "--name", "s"), repr(split), "a name becomes a folder")
    assert _tree(toy) == before


def test_split_names_of_an_npz_are_checked(toy, tmp_path, capsys):
    np.savez(tmp_path / "s.npz", **{"train": np.zeros(3, int), "../../x": np.zeros(2, int)})
    before = _tree(toy)
    _refused(capsys, _ingest(toy, tmp_path / "s.npz", "--name", "s"), "'../../x'", "folder")
    assert _tree(toy) == before


# ------------------------------------------------------------------ 3. idx beyond int32


def test_idx_from_2_to_the_31_is_refused_not_wrapped(toy, tmp_path, capsys):
    f = _csv(tmp_path / "i.csv", [("train", 0, 0), ("train", 2**31, 1)])
    before = _tree(toy)
    _refused(capsys, _ingest(toy, f, "--name", "i"), "2147483648", "line 3", "below 2**31")
    assert _tree(toy) == before
    # the largest 32-bit idx is kept as it is
    f = _csv(tmp_path / "j.csv", [("train", 0, 0), ("train", 2**31 - 1, 1)])
    assert _ingest(toy, f, "--name", "j") == 0
    assert [r[1] for r in _labels_of(toy, "j")] == [0, 2**31 - 1]


# ------------------------------------------------------------------ 4. integers or names, not both


def test_a_class_name_among_integers_is_refused(toy, tmp_path, capsys):
    rows = [("train", i, i % 3) for i in range(6)] + [("train", 6, "cat")]
    f = _csv(tmp_path / "m.csv", rows)
    before = _tree(toy)
    _refused(capsys, _ingest(toy, f, "--name", "m"), "'cat' (line 8)", "mix", "every label")
    assert _tree(toy) == before


def test_integral_floats_are_the_integers_other_numbers_are_refused(toy, tmp_path, capsys):
    rows = [("train", 0, "0"), ("train", 1, "0.0"), ("train", 2, "1.0"), ("train", 3, "2")]
    assert _ingest(toy, _csv(tmp_path / "f.csv", rows), "--name", "f") == 0
    assert [r[2] for r in _labels_of(toy, "f")] == [0, 0, 1, 2]
    assert catalog_rows(toy, "SELECT class_names FROM datasets WHERE dataset = 'f'") == [
        (["0", "1", "2"],)
    ]
    before = _tree(toy)
    f = _csv(tmp_path / "g.csv", [("train", 0, "0"), ("train", 1, "0.5")])
    _refused(capsys, _ingest(toy, f, "--name", "g"), "'0.5' (line 3)", "not a class index")
    assert _tree(toy) == before


# ------------------------------------------------------------------ 5. --paths


def test_duplicate_idx_in_paths_is_refused(toy, tmp_path, capsys):
    f = _csv(tmp_path / "p.csv", [("train", i, i % 2) for i in range(3)])
    p = _csv(
        tmp_path / "paths.csv",
        [("train", 0, "a.jpg"), ("train", 1, "b.jpg"), ("train", 1, "c.jpg")],
        header="split,idx,path",
    )
    before = _tree(toy)
    code = _ingest(toy, f, "--paths", str(p), "--name", "p")
    _refused(capsys, code, "--paths", "train idx 1 is listed twice", "lines 3 and 4")
    assert _tree(toy) == before


# ------------------------------------------------------------------ 6. --force over recorded runs


def test_force_names_the_runs_it_would_invalidate(toy, tmp_path, capsys):
    with catalog.write(Workspace(toy)) as con:
        con.execute(
            "INSERT INTO runs (run, dataset) VALUES ('finished', 'toy'), ('elsewhere', 'x')"
        )
    (toy / "runs" / "recording").mkdir(parents=True)  # a Recorder not closed yet
    (toy / "runs" / "recording" / "run.json").write_text(json.dumps({"dataset": "toy"}))
    rows = [("train", i, (i + 1) % 3) for i in range(6)] + [("test", 10, 0)]
    f = _csv(tmp_path / "new.csv", rows)
    before = _tree(toy)
    for flags in ((), ("--force",), ("--invalidate-runs",)):
        err = _refused(
            capsys, _ingest(toy, f, "--name", "toy", *flags), "finished, recording", "invalidate"
        )
        assert "--force --invalidate-runs" in err and "elsewhere" not in err
        assert _tree(toy) == before
    assert _ingest(toy, f, "--name", "toy", "--force", "--invalidate-runs") == 0
    assert "finished, recording" in capsys.readouterr().out
    assert [r[2] for r in _labels_of(toy, "toy")] == [1, 2, 0, 1, 2, 0, 0]
    with pytest.raises(SystemExit):
        main(["ingest", "--help"])
    assert "--invalidate-runs" in capsys.readouterr().out


# ------------------------------------------------------------------ 7. tracebacks -> one error line


def test_header_only_labels_file(toy, tmp_path, capsys):
    before = _tree(toy)
    f = _csv(tmp_path / "h.csv", [])
    _refused(capsys, _ingest(toy, f, "--name", "h"), "no labels below the header", "one row")
    assert _tree(toy) == before


def test_a_23_digit_label(toy, tmp_path, capsys):
    before = _tree(toy)
    f = _csv(tmp_path / "d.csv", [("train", 0, 0), ("train", 1, "12345678901234567890123")])
    _refused(capsys, _ingest(toy, f, "--name", "d"), "'12345678901234567890123'", "out of range")
    assert _tree(toy) == before


@contextmanager
def _read_only(ws: Path, monkeypatch):
    """The workspace made read-only: a read-only bind mount of it where this machine allows one
    (yields the mount), else its files' write bits cleared, and for root (who writes through
    those) os.open and os.mkdir failing under it as on a read-only mount (yields `ws`)."""
    ro = ws.parent / "ro"
    ro.mkdir()
    if subprocess.run(["mount", "--bind", str(ws), str(ro)], capture_output=True).returncode == 0:
        try:
            subprocess.run(["mount", "-o", "remount,bind,ro", str(ro)], check=True)
            yield ro
        finally:
            subprocess.run(["umount", str(ro)], check=True)
        return
    if os.geteuid() == 0:

        def refuse(real):
            def call(path, *args, **kwargs):
                if str(path).startswith(str(ws)):
                    raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
                return real(path, *args, **kwargs)

            return call

        monkeypatch.setattr(os, "open", refuse(os.open))
        monkeypatch.setattr(os, "mkdir", refuse(os.mkdir))
    modes = {p: p.stat().st_mode for p in [ws, *ws.rglob("*")]}
    for p in modes:
        p.chmod(p.stat().st_mode & ~0o222)
    try:
        yield ws
    finally:
        for p, mode in modes.items():
            p.chmod(mode)


def test_read_only_workspace(toy, tmp_path, capsys, monkeypatch):
    f = _csv(tmp_path / "r.csv", [("train", 0, 0), ("train", 1, 1)])
    with _read_only(toy, monkeypatch) as ws:
        before = _tree(ws)
        code = _ingest(ws, f, "--name", "r")
        _refused(capsys, code, f"cannot write in the workspace {ws}", "writable", "--workspace")
        assert _tree(ws) == before


def test_more_class_names_than_classes_can_be_is_refused(tmp_path, capsys):
    """1.2 million distinct class names (a column of ids, not classes) are refused like 2**20+."""
    f = tmp_path / "many.csv"
    f.write_text("split,idx,label\n" + "".join(f"train,{i},c{i}\n" for i in range(2**20 + 1)))
    assert (
        main(
            [
                "ingest",
                "labels",
                "--labels",
                str(f),
                "--name",
                "m",
                "--workspace",
                str(tmp_path / "ws"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("error:") and "at most 1,048,576" in err and err.count("\n") == 1


def test_files_that_are_no_csv_of_labels_are_refused_unread(toy, tmp_path, capsys):
    """A 1 GB sparse file (NUL bytes) once took 7.5 to 18 GB and gave an error line of a
    gigabyte; a FIFO given as --labels or --paths, or a --classes path that does not exist (once
    taken as the one class's name), is one short line too; nothing is read into memory first."""
    sparse = tmp_path / "sparse.csv"
    with open(sparse, "wb") as f:
        f.write(b"split,idx,label\ntrain,0,0\n")
        f.truncate(2**30)
    fifo = tmp_path / "fifo.csv"
    os.mkfifo(fifo)
    ok = _csv(tmp_path / "ok.csv", [("train", 0, 0), ("train", 1, 1)])
    before = _tree(toy)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    for args, words in (
        ([sparse], "a NUL byte at byte 26"),
        ([fifo], "not a regular file"),
        ([ok, "--paths", str(fifo)], "--paths"),
        ([ok, "--classes", str(tmp_path / "nope.txt")], "--classes"),
    ):
        _refused(capsys, _ingest(toy, args[0], "--name", "n", *args[1:]), words)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - peak < 256 * 2**20
    assert _tree(toy) == before
