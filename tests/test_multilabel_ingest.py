"""`curate ingest labels --multilabel`: label sets from a CSV (cat+dog) or K-hot arrays, stored as
Pascal VOC's are (bitmask, exact-match correctness); a '+' in a single-label file is refused."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from curate import catalog
from curate.cli import main
from curate.record.recorder import Recorder
from curate.workspace import Workspace


def rows(ws, sql):
    with catalog.read(Workspace(ws)) as con:
        return con.execute(sql).fetchall()


def ingest(ws, labels, *extra) -> int:
    return main(
        [
            "ingest",
            "labels",
            "--labels",
            str(labels),
            "--name",
            "ml",
            "--workspace",
            str(ws),
            *extra,
        ]
    )


def test_csv_label_sets_become_bitmasks(tmp_path, capsys):
    """Classes are the sorted names (bird, cat, dog): cat+dog = 2 + 4 = 6, bird = 1, '' = 0."""
    f = tmp_path / "labels.csv"
    f.write_text(
        "split,idx,label\ntrain,0,cat+dog\ntrain,1,bird\ntrain,2,dog + cat\ntrain,3,\n"
        "test,0,bird+cat+dog\n"
    )
    assert ingest(tmp_path / "ws", f, "--multilabel") == 0, capsys.readouterr().err
    got = rows(
        tmp_path / "ws",
        "SELECT split, idx, label, class_name FROM instances WHERE dataset='ml' ORDER BY split, idx",
    )
    assert got == [
        ("test", 0, 7, "bird+cat+dog"),
        ("train", 0, 6, "cat+dog"),
        ("train", 1, 1, "bird"),
        ("train", 2, 6, "cat+dog"),
        ("train", 3, 0, ""),
    ]
    ((ml, names),) = rows(
        tmp_path / "ws", "SELECT multilabel, class_names FROM datasets WHERE dataset='ml'"
    )
    assert ml is True and names == ["bird", "cat", "dog"]


def test_khot_npz_and_class_names(tmp_path, capsys):
    """K-hot rows [1,0,1] = 1 + 4 = 5 and [0,1,0] = 2, with --classes naming the columns."""
    f = tmp_path / "labels.npz"
    np.savez(f, train=np.array([[1, 0, 1], [0, 1, 0]], np.uint8), test=np.array([[1, 1, 1]]))
    assert ingest(tmp_path / "ws", f, "--multilabel", "--classes", "a,b,c") == 0
    got = rows(
        tmp_path / "ws",
        "SELECT split, idx, label, class_name FROM instances WHERE dataset='ml' ORDER BY split, idx",
    )
    assert got == [("test", 0, 7, "a+b+c"), ("train", 0, 5, "a+c"), ("train", 1, 2, "b")]


def test_recorded_logits_are_scored_by_exact_match(tmp_path):
    """A run recorded against the registered sets: pred is the bitmask of z > 0, correct only on an
    exact match (cat+dog predicted as cat is wrong)."""
    f = tmp_path / "labels.csv"
    f.write_text("split,idx,label\ntrain,0,cat+dog\ntrain,1,bird\ntrain,2,cat\n")
    assert ingest(tmp_path / "ws", f, "--multilabel") == 0
    z = np.array([[-1, 2, 3], [1, -1, -1], [-1, 1, 1]], np.float32)  # {cat,dog}, {bird}, {cat,dog}
    right = np.array([[-1, 2, 3], [1, -1, -1], [-1, 1, -1]], np.float32)  # every set exactly
    rec = Recorder(tmp_path / "ws", run="r", dataset="ml", members=2, epochs=1, splits=["train"])
    for epoch in (0, 1):
        rec.log("train", 0, epoch, np.arange(3), z)
        rec.log("train", 1, epoch, np.arange(3), right)
    rec.close()
    assert main(["score", "r", "--workspace", str(tmp_path / "ws")]) == 0
    got = rows(
        tmp_path / "ws",
        "SELECT idx, final_correct FROM instance_scores WHERE run='r' AND split='train' ORDER BY idx",
    )
    assert got == [(0, 2), (1, 2), (2, 1)]  # member 0 misses idx 2 by one class


@pytest.mark.parametrize(
    "content, flags, words",
    [
        ("split,idx,label\ntrain,0,cat+dog\ntrain,1,cat\n", [], "--multilabel"),
        ("split,idx,label\ntrain,0,cat+1\n", ["--multilabel"], "mix class indices and class names"),
        ("split,idx,label\ntrain,0,cat++dog\n", ["--multilabel"], "empty class"),
        ("split,idx,label\ntrain,0,0+31\n", ["--multilabel"], "at most 31 classes"),
        ("split,idx,label\ntrain,0,a+b\n", ["--multilabel", "--classes", "a"], "unknown class"),
    ],
)
def test_bad_label_sets_are_refused(content, flags, words, tmp_path, capsys):
    f = tmp_path / "labels.csv"
    f.write_text(content)
    ws = tmp_path / "ws"
    assert ingest(ws, f, *flags) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and words in err and err.count("\n") == 1, err
    assert not (ws / "catalog.duckdb").exists() or not rows(
        ws, "SELECT * FROM datasets WHERE dataset='ml'"
    )


@pytest.mark.parametrize(
    "array, words",
    [
        (np.array([[0, 2, 1]]), "only 0 and 1"),
        (np.array([0, 1, 1]), "shape (N, K)"),
        (np.ones((2, 32), np.uint8), "at most 31"),
    ],
)
def test_bad_khot_arrays_are_refused(array, words, tmp_path, capsys):
    f = tmp_path / "labels.npy"
    np.save(f, array)
    assert ingest(tmp_path / "ws", f, "--multilabel") == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and words in err and err.count("\n") == 1, err


def test_multilabel_is_part_of_the_identity(tmp_path, capsys):
    """The same file registered as single-label first is not 'up to date' as multilabel."""
    f = tmp_path / "labels.csv"
    f.write_text("split,idx,label\ntrain,0,1\ntrain,1,2\n")
    assert ingest(tmp_path / "ws", f) == 0
    digest = hashlib.sha256(f.read_bytes()).hexdigest()
    assert ingest(tmp_path / "ws", f, "--multilabel") == 2
    assert "already registered from other labels" in capsys.readouterr().err
    assert hashlib.sha256(f.read_bytes()).hexdigest() == digest
