"""The run log's contract (`curate.runlog`): the manifest and its old layouts, the one definition of
`train_seconds` and `world_size` whoever records the run (`curate train`, `curate.Recorder`,
`curate import-log`), the `predictions` view, and a subset named by a relative path."""

from __future__ import annotations

import json
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate import catalog, runlog
from curate.cli import main
from curate.errors import CurateError
from curate.record.recorder import Recorder
from curate.scores.score import run_info
from curate.train.rundir import prepare_run_dir, run_identity
from curate.workspace import Workspace

TRAIN_IDENTITY = {  # a run.json as `curate train` wrote it before layout 2 (abridged)
    "dataset": "digits",
    "loader": {"batch_size": 64, "flip": False},
    "train": {"arch": "mlp", "members": 4, "epochs": 2, "seed": 0, "lr": 0.05, "log_splits": []},
}
RECORDER_LAYOUT_1 = {  # a run.json as curate.Recorder wrote it before layout 2
    "dataset": "toy",
    "loader": {},
    "train": {"arch": "custom", "members": 2, "epochs": 1},
    "splits": ["train", "test"],
    "recorder": {"seed": 7},
}


def rows(ws: Path, sql: str, params=()) -> list[tuple]:
    con = duckdb.connect(str(Path(ws) / "catalog.duckdb"), read_only=True)
    try:
        return con.execute(sql, list(params)).fetchall()
    finally:
        con.close()


# ----------------------------------------------------------------------------- the manifest


@pytest.mark.parametrize(
    "manifest",
    [
        runlog.Manifest.from_identity(
            {**TRAIN_IDENTITY, "train": {**TRAIN_IDENTITY["train"], "log_splits": ("test",)}}
        ),
        runlog.Manifest("toy", 2, 1, "custom", splits=("train", "test"), origin="recorder"),
        runlog.Manifest("toy", 3, 4, "imported", splits=["test"], origin="import", seed=None),
    ],
    ids=["train", "recorder", "import"],
)
def test_the_manifest_round_trips(tmp_path, manifest):
    assert runlog.Manifest.from_json(json.loads(json.dumps(manifest.to_json()))) == manifest
    runlog.write_manifest(tmp_path / "run", manifest)
    assert runlog.load_manifest(tmp_path / "run") == manifest
    on_disk = json.loads((tmp_path / "run" / "run.json").read_text())
    assert on_disk["layout"] == 2 and on_disk["origin"] == manifest.origin
    assert on_disk["train"]["members"] == manifest.members  # where `curate train` always had it
    assert runlog.prepare_run(tmp_path / "run", manifest) == []  # the same run: accepted


def test_two_processes_starting_one_run_at_once_agree_on_its_settings(tmp_path, monkeypatch):
    """Both find no run.json, both write theirs: only the first is created, the second compares
    with it (the ranks of a DDP job declaring other epochs were once both accepted)."""
    from curate.runlog import manifest as mf

    ours = runlog.Manifest("toy", 2, 2, "custom", splits=("train",), origin="recorder")
    theirs = runlog.Manifest("toy", 2, 3, "custom", splits=("train",), origin="recorder")
    run = tmp_path / "run"
    real = mf.load_manifest
    calls = []

    def racing(run_dir):  # the other process creates the run between our look and our write
        calls.append(run_dir)
        if len(calls) == 1:
            assert mf._create_manifest(run_dir, theirs)
            return None
        return real(run_dir)

    monkeypatch.setattr(mf, "load_manifest", racing)
    assert runlog.prepare_run(run, ours) == ["train.epochs"]
    assert real(run) == theirs and [p.name for p in run.iterdir()] == ["run.json"]
    assert not mf._create_manifest(run, ours) and real(run) == theirs


def test_a_trained_manifest_keeps_the_identity_and_its_splits():
    m = runlog.Manifest.from_identity(TRAIN_IDENTITY)
    assert (m.dataset, m.members, m.epochs, m.arch, m.seed) == ("digits", 4, 2, "mlp", 0)
    assert m.splits is None and not m.recorded  # log_splits empty: every split
    assert m.identity() == TRAIN_IDENTITY  # runs.recipe, key for key
    assert list(m.identity()["train"]) == list(TRAIN_IDENTITY["train"])  # and in order


def test_an_old_trainer_run_json_loads_and_resumes(tmp_path, monkeypatch):
    ws = Workspace(tmp_path / "ws")
    from curate.config import Recipe

    recipe = Recipe()
    old = run_identity(recipe, "digits")
    del old["train"]["features"]  # written before train.features existed (it is at its default)
    ws.run_dir("old").mkdir(parents=True)
    (ws.run_dir("old") / "run.json").write_text(json.dumps(old))
    before = (ws.run_dir("old") / "run.json").read_text()
    m = runlog.load_manifest(ws.run_dir("old"))
    assert m.origin == "train" and m.members == recipe.train.members and m.splits is None
    assert prepare_run_dir(ws, "old", run_identity(recipe, "digits")) == ws.run_dir("old")
    assert (ws.run_dir("old") / "run.json").read_text() == before  # read, never rewritten
    other = run_identity(Recipe(train=type(recipe.train)(lr=0.5)), "digits")
    with pytest.raises(CurateError, match=r"differs in: train\.lr\)"):
        prepare_run_dir(ws, "old", other)


def test_an_old_recorder_run_json_loads(tmp_path):
    run = tmp_path / "rec"
    run.mkdir()
    (run / "run.json").write_text(json.dumps(RECORDER_LAYOUT_1))
    m = runlog.load_manifest(run)
    assert (m.origin, m.dataset, m.members, m.epochs, m.arch, m.seed) == (
        "recorder",
        "toy",
        2,
        1,
        "custom",
        7,
    )
    assert m.splits == ("train", "test") and m.recorded and m.loader == {} and m.train == {}
    new = runlog.Manifest(
        "toy", 2, 1, "custom", splits=("train", "test"), origin="recorder", seed=7
    )
    assert m == new and runlog.prepare_run(run, new) == []
    (run / "import.json").write_text(
        "{}"
    )  # an import of that version: import-log's record beside it
    assert runlog.load_manifest(run).origin == "import"
    # what a trainer finds in a recorded run's folder: named, not guessed
    assert runlog.differences(m, runlog.Manifest.from_identity(TRAIN_IDENTITY))[0] == (
        "made by curate.Recorder"
    )


@pytest.mark.parametrize(
    "text, words",
    [("{not json", "not a run manifest"), ('{"layout": 3, "dataset": "x"}', "newer curate")],
)
def test_a_broken_or_newer_run_json_is_one_error(tmp_path, text, words):
    (tmp_path / "run.json").write_text(text)
    with pytest.raises(CurateError, match=words):
        runlog.load_manifest(tmp_path)
    assert runlog.load_manifest(tmp_path / "absent") is None


def test_an_old_recorder_layout_is_scored_by_its_splits(lws):
    run = Workspace(lws).run_dir("legacy")
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({**RECORDER_LAYOUT_1, "splits": ["test"]}))
    info = run_info(Workspace(lws), "legacy")
    assert (info.dataset, info.members, info.splits) == ("toy", 2, ["test"])
    manifest = runlog.load_manifest(run)
    assert manifest.missing_parts(run) == [("test", m, e) for m in (0, 1) for e in (0, 1)]
    with pytest.raises(CurateError, match="lacks 4 parts"):  # 2 members x epochs 0..1, by name
        runlog.check_complete(run)


# ----------------------------------------------------------------------------- train_seconds


def test_member_seconds_share_a_fused_epoch_and_keep_a_lone_one():
    fused = {
        m: {str(e): {"seconds": 8.0, "unit": "fused-0-3"} for e in (0, 1, 2)} for m in range(4)
    }
    alone = {4: {"0": {"seconds": 1.0, "unit": "member-4"}, "1": {"seconds": 3.0}}}
    got = runlog.member_seconds(fused | alone)
    assert got == {0: 6.0, 1: 6.0, 2: 6.0, 3: 6.0, 4: 4.0}
    assert sum(got.values()) == 3 * 8.0 + 4.0  # every second once


@pytest.fixture()
def lws(tmp_path) -> Path:
    """A dataset registered from labels alone: train idx 0..9, test idx 100..104, classes a, b, c."""
    data = [("train", i, i % 3) for i in range(10)] + [("test", 100 + i, i % 3) for i in range(5)]
    pd.DataFrame(data, columns=["split", "idx", "label"]).to_csv(tmp_path / "l.csv", index=False)
    ws = tmp_path / "ws"
    args = ["ingest", "labels", "--labels", str(tmp_path / "l.csv"), "--name", "toy"]
    assert main([*args, "--classes", "a,b,c", "--workspace", str(ws)]) == 0
    return ws


SPLITS = {"train": np.arange(10), "test": np.arange(100, 105)}


def record(ws: Path, run: str, members: int = 2, epochs: int = 2, pause: float = 0.0) -> float:
    """Record `run` epoch by epoch, every member within each epoch (`pause` s of "training" per
    member and epoch); the wall time from the Recorder's start to its last part."""
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    rec = Recorder(ws, run=run, dataset="toy", members=members, epochs=epochs, arch="mlp", seed=3)
    for e in range(epochs + 1):
        for m in range(members):
            time.sleep(pause if e else 0.0)
            for split, ids in SPLITS.items():
                rec.log(split, m, e, ids, rng.normal(size=(len(ids), 3)))
    wall = time.perf_counter() - t0
    rec.close()
    return wall


def test_recorded_seconds_are_counted_once(lws, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    wall = record(lws, "byo", pause=0.05)
    (total, world), *_ = rows(lws, "SELECT train_seconds, world_size FROM runs WHERE run = 'byo'")
    members = [r[0] for r in rows(lws, "SELECT train_seconds FROM members WHERE run = 'byo'")]
    assert total == pytest.approx(sum(members))
    # epoch by epoch, each member's time is its own pauses, not the whole round's: no double count
    assert 4 * 0.05 <= total <= wall
    assert all(s >= 2 * 0.05 for s in members)
    assert world == 1


def test_world_size_is_the_job_s_whoever_records(lws, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "3")  # as torchrun sets it, before any process group
    assert runlog.world_size() == 3
    record(lws, "ranks", epochs=1)
    assert rows(lws, "SELECT world_size FROM runs WHERE run = 'ranks'") == [(3,)]
    monkeypatch.delenv("WORLD_SIZE")
    assert runlog.world_size() == 1


def test_an_imported_log_has_no_time_and_no_processes(lws, tmp_path):
    rng = np.random.default_rng(1)
    arrays = tmp_path / "arrays"
    arrays.mkdir()
    for split, ids in SPLITS.items():
        np.save(arrays / f"{split}.npy", rng.normal(size=(2, 2, len(ids), 3)).astype(np.float32))
    args = ["import-log", "imp", "--dataset", "toy", "--dir", str(arrays), "--workspace", str(lws)]
    assert main(args) == 0
    assert rows(lws, "SELECT train_seconds, world_size, strategy FROM runs WHERE run = 'imp'") == [
        (None, None, "recorder")
    ]
    assert rows(lws, "SELECT DISTINCT train_seconds FROM members WHERE run = 'imp'") == [(None,)]
    assert runlog.load_manifest(Workspace(lws).run_dir("imp")).origin == "import"


@pytest.mark.slow  # trains 2 fused members for 2 epochs on digits and records a run beside them
def test_train_and_recorder_fill_the_same_columns_alike(digits_ws, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    ws = str(digits_ws)
    args = ["--workspace", ws, "--set", "train.members=2", "--set", "train.epochs=2"]
    args += ["--strategy", "fused", "--arch", "mlp", "--set", "train.precision=fp32"]
    assert main(["train", "digits", "--run", "fz", *args]) == 0
    prog = runlog.read_progress(Path(ws) / "runs" / "fz", 0)["epochs"]
    unit_seconds = sum(r["seconds"] for r in prog.values())  # the fused unit's wall time
    members = rows(ws, "SELECT member, train_seconds FROM members WHERE run = 'fz' ORDER BY 1")
    assert [s for _, s in members] == pytest.approx([unit_seconds / 2] * 2)  # shared, not doubled
    # the same columns from curate.Recorder on the same dataset, members one after the other
    idx = {s: np.asarray(v) for s, v in catalog_idx(digits_ws).items()}
    rec = Recorder(ws, run="own", dataset="digits", members=2, epochs=2, arch="mlp", seed=0)
    rng = np.random.default_rng(0)
    for m in range(2):
        for e in range(3):
            for split, ids in idx.items():
                rec.log(split, m, e, ids, rng.normal(size=(len(ids), 10)))
    rec.close()
    cols = "members, epochs, arch, seed, world_size, train_seconds, precision"
    fz, own = (rows(ws, f"SELECT {cols} FROM runs WHERE run = ?", [r])[0] for r in ("fz", "own"))
    assert fz[:5] == own[:5] == (2, 2, "mlp", 0, 1)
    for run, row in (("fz", fz), ("own", own)):
        per_member = rows(ws, "SELECT sum(train_seconds) FROM members WHERE run = ?", [run])
        assert row[5] == pytest.approx(per_member[0][0])  # runs = the sum of its members
        done = rows(ws, "SELECT DISTINCT epochs_done FROM members WHERE run = ?", [run])
        assert done == [(2,)]
    recipe = json.loads(rows(ws, "SELECT recipe FROM runs WHERE run = 'fz'")[0][0])
    assert recipe == runlog.load_manifest(Path(ws) / "runs" / "fz").identity()


def catalog_idx(ws: Path) -> dict[str, np.ndarray]:
    with catalog.read(Workspace(ws)) as con:
        df = con.execute("SELECT split, idx FROM instances WHERE dataset = 'digits'").df()
    return {s: g["idx"].to_numpy() for s, g in df.groupby("split")}


# ----------------------------------------------------------------------------- the predictions view


def old_shard(ws: Path) -> None:
    """Run `old`, one shard as logs were written before el2n existed (no such column)."""
    old = Workspace(ws).run_dir("old")
    runlog.write_manifest(old, runlog.Manifest("toy", 2, 1, "x", ("test",), origin="recorder"))
    shard = runlog.shard_path(old, runlog.EVAL, "test", 0, 0)
    shard.parent.mkdir(parents=True)
    columns = {"idx": pa.array([100], pa.int32()), "pred": pa.array([0], pa.int16())}
    columns |= {"p_true": pa.array([0.5], pa.float32()), "margin": pa.array([0.1], pa.float32())}
    pq.write_table(pa.table(columns), shard)


def test_the_predictions_view_has_el2n(lws):
    record(lws, "byo", epochs=1)
    old_shard(lws)
    with catalog.write(Workspace(lws)):
        pass  # a writer refreshes the views
    with catalog.read(Workspace(lws)) as con:
        cols = [r[0] for r in con.execute("DESCRIBE predictions").fetchall()]
        got = con.execute(
            "SELECT run, count(el2n), count(*) FROM predictions GROUP BY run ORDER BY run"
        ).fetchall()
        doc = con.execute(
            "SELECT comment FROM duckdb_views() WHERE view_name = 'predictions'"
        ).fetchone()[0]
    assert cols[-1] == "el2n" and "el2n" in doc
    assert got == [("byo", 2 * 2 * 15, 2 * 2 * 15), ("old", 0, 1)]  # NULL in the old shard


def test_the_view_works_when_no_shard_has_el2n(lws):
    old_shard(lws)
    with catalog.write(Workspace(lws)):
        pass
    with catalog.read(Workspace(lws)) as con:
        assert con.execute("SELECT run, idx, el2n FROM predictions").fetchall() == [
            ("old", 100, None)
        ]


# ----------------------------------------------------------------------------- --subset rel.npy


@pytest.mark.slow  # prunes a scored run and trains 2 members for 1 epoch on half of it
def test_a_relative_subset_path_is_stored_absolute(small_scored_ws, tmp_path, monkeypatch):
    ws = str(small_scored_ws)
    monkeypatch.chdir(tmp_path)
    prune = ["prune", "digits", "--keep", "0.5", "--strategy", "random", "--out", "half.npy"]
    assert main([*prune, "--workspace", ws]) == 0
    args = ["--workspace", ws, "--set", "train.members=2", "--set", "train.epochs=1"]
    assert main(["train", "digits", "--run", "rel", "--subset", "half.npy", *args]) == 0
    ((info,),) = rows(ws, "SELECT subset_info FROM runs WHERE run = 'rel'")
    path = json.loads(info)["path"]
    assert Path(path).is_absolute() and Path(path) == tmp_path / "half.npy"
