"""Bring your own model: `curate.Recorder` in a plain PyTorch loop writes the log `curate train`
writes (same network, seeds and data -> the same score tables), `curate import-log` of the saved
arrays gives them again, and every bad input is one clear error with nothing half-written."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import ROOT

from curate.cli import main
from curate.errors import CurateError
from curate.record.recorder import Recorder
from curate.train import predlog
from curate.workspace import Workspace

M, E = 3, 2
TRAIN = ["--set", "train.precision=fp32", "--set", "train.strategy=separate", "--arch", "mlp"]
TRAIN += ["--members", str(M), "--epochs", str(E), "--seed", "7", "--set", "loader.translate=0"]
TRAIN += ["--set", "loader.batch_size=128", "--set", "loader.eval_batch_size=1024"]


def table(ws: Path, name: str, run: str) -> pd.DataFrame:
    con = duckdb.connect(str(ws / "catalog.duckdb"), read_only=True)
    try:
        df = con.execute(f"SELECT * EXCLUDE (run) FROM {name} WHERE run = ?", [run]).df()
    finally:
        con.close()
    keys = [c for c in ("split", "idx", "epoch", "subset", "i", "j") if c in df.columns]
    return df.sort_values(keys).reset_index(drop=True)


def assert_same_table(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert list(a.columns) == list(b.columns) and len(a) == len(b) > 0
    for c in a.columns:
        x, y = a[c].to_numpy(), b[c].to_numpy()
        if x.dtype.kind == "f":
            # the logits are bit for bit the same: the tolerance covers float summation only
            np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-9, equal_nan=True, err_msg=c)
        elif x.dtype == object and any(isinstance(v, (list, np.ndarray)) for v in x):
            for u, v in zip(x, y, strict=True):  # list columns (histograms)
                np.testing.assert_allclose(np.asarray(u, float), np.asarray(v, float), rtol=1e-6)
        else:
            assert (pd.isna(a[c]) == pd.isna(b[c])).all(), c
            assert (a[c][~pd.isna(a[c])] == b[c][~pd.isna(b[c])]).all(), c


def plain_loop(ws: Path, run: str, save: Path) -> None:
    """What a user writes: their own data tensors, model, optimiser, schedule and epoch loop, with
    the Recorder in the evaluation pass. Same network (curate's mlp), seeds and data as
    `curate train ... --arch mlp --seed 7` with the separate learner."""
    import torch.nn.functional as F

    from curate.data.loader import dataset_info
    from curate.data.pixels import read_split
    from curate.train.models import build_model
    from curate.train.seeds import member_seeds

    info = dataset_info("digits", Workspace(ws))
    mean = torch.tensor(info.mean).view(1, -1, 1, 1)
    std = torch.tensor(info.std).view(1, -1, 1, 1)
    data = {}
    for split in info.splits:
        px = read_split(info, split)
        x = (torch.from_numpy(px.images).permute(0, 3, 1, 2).float() - mean) / std
        data[split] = (x, torch.from_numpy(px.labels), px.idx)
    batch, steps = 128, len(data["train"][1]) // 128
    rec = Recorder(ws, run=run, dataset="digits", members=M, epochs=E, arch="mlp", seed=7)

    def evaluate(model, m, e):
        model.eval()
        with torch.inference_mode():
            for split, (x, _, idx) in data.items():
                starts = list(range(0, len(x), 1024))
                for s in reversed(starts):  # any batch order
                    logits = model(x[s : s + 1024]).float()
                    rec.log(split, m, e, idx[s : s + 1024], logits)
                    order = np.arange(s, min(s + 1024, len(x)))
                    np.save(save / f"{split}_rows_m{m}_e{e}_{s}.npy", logits.numpy())
                    np.save(save / f"{split}_ids_m{m}_e{e}_{s}.npy", idx[order])

    for m in range(M):
        seeds = member_seeds(7, m)
        torch.manual_seed(seeds["init"])
        model = build_model("mlp", (1, 8, 8), 10, 0, True)
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
        total = steps * E
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda t, total=total: 0.5 * (1 + math.cos(math.pi * min(1.0, t / total)))
        )
        evaluate(model, m, 0)
        x, y, _ = data["train"]
        for e in range(1, E + 1):
            torch.manual_seed(seeds["dropout"] + e)
            model.train()
            perm = np.random.default_rng(seeds["order"] + e - 1).permutation(len(y))
            for t in range(steps):
                rows = torch.from_numpy(perm[t * batch : (t + 1) * batch])
                loss = F.cross_entropy(model(x[rows]).float(), y[rows])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
            evaluate(model, m, e)
    assert rec.close().complete


def to_import_scheme(save: Path, out: Path) -> None:
    """The plain loop's batches as the files `curate import-log` reads: the train split shuffled
    with its `train_idx.npy`, the test split in the split's own order."""
    out.mkdir()
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        perm = None
        for m in range(M):
            for e in range(E + 1):
                parts = sorted(save.glob(f"{split}_rows_m{m}_e{e}_*.npy"))
                starts = [int(p.stem.rsplit("_", 1)[1]) for p in parts]
                order = np.argsort(starts)
                logits = np.concatenate([np.load(parts[i]) for i in order])
                ids = np.concatenate(
                    [np.load(save / f"{split}_ids_m{m}_e{e}_{starts[i]}.npy") for i in order]
                )
                if split == "train":
                    perm = rng.permutation(len(ids)) if perm is None else perm
                    logits, ids = logits[perm], ids[perm]
                    np.save(out / "train_idx.npy", ids)
                np.save(out / f"{split}_m{m}_e{e}.npy", logits)


@pytest.mark.slow  # trains 3 members twice and scores three runs: about a minute
def test_plain_loop_with_recorder_equals_curate_train_and_import_log(digits_ws, tmp_path):
    ws = str(digits_ws)
    assert main(["train", "digits", "--run-name", "byo-ref", "--workspace", ws, *TRAIN]) == 0
    save = tmp_path / "batches"
    save.mkdir()
    plain_loop(digits_ws, "byo-own", save)
    to_import_scheme(save, tmp_path / "arrays")
    cmd = ["import-log", "byo-imp", "--dataset", "digits", "--dir", str(tmp_path / "arrays")]
    assert main([*cmd, "--workspace", ws]) == 0
    for run in ("byo-ref", "byo-own", "byo-imp"):
        assert main(["score", run, "--workspace", ws]) == 0
    for name in ("instance_scores", "epoch_metrics", "error_consistency"):
        ref = table(digits_ws, name, "byo-ref")
        assert_same_table(ref, table(digits_ws, name, "byo-own"))
        assert_same_table(ref, table(digits_ws, name, "byo-imp"))
    # the shards themselves: same rows, same predictions (p_true, margin to float rounding)
    for split in ("train", "test"):
        a = pd.read_parquet(predlog.shard_path(digits_ws / "runs/byo-ref", "eval", split, 2, E))
        b = pd.read_parquet(predlog.shard_path(digits_ws / "runs/byo-own", "eval", split, 2, E))
        assert (a["idx"] == b["idx"]).all() and (a["pred"] == b["pred"]).all()
        assert a.dtypes.equals(b.dtypes)
        np.testing.assert_allclose(a["p_true"], b["p_true"], rtol=1e-6)  # float32 rounding
    runs = duckdb.connect(str(digits_ws / "catalog.duckdb"), read_only=True)
    try:
        rows = runs.execute(
            "SELECT run, members, epochs, strategy, dataset FROM runs WHERE run LIKE 'byo-%' "
            "ORDER BY run"
        ).fetchall()
        done = runs.execute(
            "SELECT DISTINCT epochs_done FROM members WHERE run = 'byo-own'"
        ).fetchall()
    finally:
        runs.close()
    assert rows == [
        ("byo-imp", M, E, "recorder", "digits"),
        ("byo-own", M, E, "recorder", "digits"),
        ("byo-ref", M, E, "separate", "digits"),
    ]
    assert done == [(E,)]
    # label-issues and report read the recorded run unchanged
    assert main(["label-issues", "byo-own", "--workspace", ws, "--top", "3"]) == 0
    assert main(["report", "byo-own", "--workspace", ws, "--out", str(tmp_path / "rep")]) == 0
    assert (tmp_path / "rep" / "index.html").exists() or any((tmp_path / "rep").iterdir())


# ----------------------------------------------------------------------------- a labels-only dataset


@pytest.fixture()
def lws(tmp_path) -> Path:
    """A dataset registered from labels alone: train 0..9 (idx 0..9), test idx 100..104."""
    rows = [("train", i, i % 3) for i in range(10)] + [("test", 100 + i, i % 3) for i in range(5)]
    pd.DataFrame(rows, columns=["split", "idx", "label"]).to_csv(tmp_path / "l.csv", index=False)
    ws = tmp_path / "ws"
    args = ["ingest", "labels", "--labels", str(tmp_path / "l.csv"), "--name", "toy"]
    assert main([*args, "--classes", "a,b,c", "--workspace", str(ws)]) == 0
    return ws


def log_all(rec: Recorder, rng, members=2, epochs=1, batch=4):
    for m in range(members):
        for e in range(epochs + 1):
            for split, ids in (("train", np.arange(10)), ("test", np.arange(100, 105))):
                ids = rng.permutation(ids)
                for s in range(0, len(ids), batch):
                    rec.log(
                        split,
                        m,
                        e,
                        ids[s : s + batch],
                        rng.normal(size=(len(ids[s : s + batch]), 3)),
                    )


def test_labels_only_dataset_records_and_scores(lws, capsys):
    rec = Recorder(lws, run="r", dataset="toy", members=2, epochs=1)
    log_all(rec, np.random.default_rng(1))
    assert rec.close().complete
    assert main(["score", "r", "--workspace", str(lws)]) == 0
    n = duckdb.connect(str(lws / "catalog.duckdb"), read_only=True)
    try:
        assert n.execute("SELECT count(*) FROM instance_scores WHERE run = 'r'").fetchone()[0] == 15
        assert (
            n.execute("SELECT storage FROM datasets WHERE dataset = 'toy'").fetchone()[0] == "none"
        )
    finally:
        n.close()
    for cmd in (["stats", "toy"], ["train", "toy"]):
        assert main([*cmd, "--workspace", str(lws)]) == 2
        assert "registered from labels alone" in capsys.readouterr().err
    from curate.explore import thumbnails

    with pytest.raises(CurateError, match="no images"):
        thumbnails(Workspace(lws), "toy", "train", [0])


def test_a_recording_never_closed_scores_with_a_note_and_the_report_names_close(
    lws, tmp_path, capsys
):
    """Every part logged, close() forgotten: `curate score` scores it and says the run is not
    finished; `curate report` refuses it naming close(), not `curate train` (which did not make
    it and may not be installed). close() then finishes it."""
    log_all(Recorder(lws, run="open", dataset="toy", members=2, epochs=1), np.random.default_rng(2))
    assert main(["score", "open", "--workspace", str(lws)]) == 0
    err = capsys.readouterr().err
    assert "note: run 'open' is not finished (its recording was never closed)" in err, err
    assert main(["report", "open", "--workspace", str(lws), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "close() on a curate.Recorder" in err, err
    assert "curate train" not in err
    assert Recorder(lws, run="open", dataset="toy", members=2, epochs=1).close().complete
    assert main(["score", "open", "--workspace", str(lws)]) == 0
    assert "not finished" not in capsys.readouterr().err


def test_logits_numpy_torch_any_order_same_part(lws):
    """A part is written once every idx came exactly once; numpy and torch inputs agree."""
    z = np.random.default_rng(0).normal(size=(10, 3)).astype(np.float32)
    a = Recorder(lws, run="a", dataset="toy", members=2, epochs=1, splits=["train"])
    a.log("train", 0, 0, np.arange(10), z)
    b = Recorder(lws, run="b", dataset="toy", members=2, epochs=1, splits=["train"])
    order = np.array([9, 3, 0, 5, 1, 8, 2, 7, 4, 6])
    b.log("train", 0, 0, torch.from_numpy(order[:3]), torch.from_numpy(z[order[:3]]))
    path = predlog.shard_path(lws / "runs" / "b", "eval", "train", 0, 0)
    assert not path.exists()  # not visible until complete
    b.log("train", 0, 0, order[3:], z[order[3:]].astype(np.float64))
    ta = pd.read_parquet(predlog.shard_path(lws / "runs" / "a", "eval", "train", 0, 0))
    tb = pd.read_parquet(path)
    assert ta.equals(tb)
    assert list(ta["idx"]) == list(range(10))
    y = np.arange(10) % 3
    assert (ta["pred"].to_numpy() == z.argmax(1)).all()
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    np.testing.assert_allclose(ta["p_true"], p[np.arange(10), y], rtol=1e-5)  # float32 softmax
    others = np.where(np.eye(3, dtype=bool)[y], -np.inf, z).max(1)
    np.testing.assert_allclose(ta["margin"], z[np.arange(10), y] - others, rtol=1e-5, atol=1e-6)


def test_multilabel_logits(lws):
    """A multilabel dataset (class sets as bitmasks): pred is the bitmask of z > 0, int32."""
    con = duckdb.connect(str(lws / "catalog.duckdb"))
    con.execute("UPDATE datasets SET multilabel = true WHERE dataset = 'toy'")
    con.execute("UPDATE instances SET label = (idx % 4) + 1 WHERE dataset = 'toy'")  # sets 1..4
    con.close()
    z = np.random.default_rng(2).normal(size=(10, 3)).astype(np.float32)
    rec = Recorder(lws, run="ml", dataset="toy", members=2, epochs=1, splits=["train"])
    rec.log("train", 1, 1, np.arange(10), z)
    t = pd.read_parquet(predlog.shard_path(lws / "runs" / "ml", "eval", "train", 1, 1))
    assert str(t["pred"].dtype) == "int32"
    assert (t["pred"].to_numpy() == ((z > 0) * np.array([1, 2, 4])).sum(1)).all()
    y = np.arange(10) % 4 + 1
    sign = np.where((y[:, None] >> np.arange(3)) & 1, 1.0, -1.0)
    p = (1 / (1 + np.exp(-sign * z))).prod(1)
    np.testing.assert_allclose(t["p_true"], p, rtol=1e-5)  # float32 log-sigmoid sum


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "call, needle",
    [
        (
            lambda r: r.log("train", 0, 0, np.arange(2), np.array([[0, np.nan, 1], [0, 1, 2.0]])),
            "NaN",
        ),
        (
            lambda r: r.log("train", 0, 0, np.arange(2), np.zeros((2, 4))),
            "4 classes, the dataset has 3",
        ),
        (
            lambda r: r.log("train", 0, 0, np.array([3, 42]), np.zeros((2, 3))),
            "idx 42 is not in split",
        ),
        (lambda r: r.log("test", 0, 0, np.array([100, 100]), np.zeros((2, 3))), "appears twice"),
        (lambda r: r.log("train", 2, 0, np.arange(2), np.zeros((2, 3))), "member 2 is outside"),
        (lambda r: r.log("train", True, 0, np.arange(2), np.zeros((2, 3))), "True: give a whole"),
        (lambda r: r.log("train", 0, 1.0, np.arange(2), np.zeros((2, 3))), "1.0: give a whole"),
        (
            lambda r: r.log("train", 0, 0, np.arange(2), np.full((2, 3), np.inf, np.longdouble)),
            "NaN or infinite",  # long double: once torch's own TypeError
        ),
        (
            lambda r: r.log("train", 0, 0, np.array([2**63], np.uint64), np.zeros((1, 3))),
            "idx 9223372036854775808 is beyond",
        ),
        (lambda r: r.log("train", 0, 2, np.arange(2), np.zeros((2, 3))), "epoch 2 is outside"),
        (lambda r: r.log("val", 0, 0, np.arange(2), np.zeros((2, 3))), "has no such split"),
        (lambda r: r.log("train", 0, 0, np.arange(3), np.zeros((2, 3))), r"shape \(B, C\)"),
    ],
)
def test_bad_batches_are_refused_and_nothing_kept(lws, call, needle):
    rec = Recorder(lws, run="bad", dataset="toy", members=2, epochs=1)
    rec.log("train", 0, 0, np.array([0, 1]), np.zeros((2, 3)))
    with pytest.raises(CurateError, match=needle):
        call(rec)
    rec.log("train", 0, 0, np.arange(2, 10), np.zeros((8, 3)))  # the part goes on as before
    assert rec.done("train", 0, 0)


@pytest.mark.parametrize("torch_installed", [True, False])
@pytest.mark.parametrize(
    "z, needle",
    [
        (np.array([[0, 1e300, 1], [0, 1, 2.0]]), "NaN or infinite"),  # finite in float64 only
        (
            np.array([[3e38, -3e38, -3e38], [0, 1, 2]], np.float32),
            "too large to score",
        ),  # |margin| 6e38
    ],
)
def test_logits_beyond_float32_are_refused(lws, monkeypatch, torch_installed, z, needle):
    """Logits are recorded in float32: a value or a difference it cannot hold is refused like a NaN,
    with or without torch, and the part goes on as before."""
    from curate.record import recorder

    if not torch_installed:
        monkeypatch.setattr(recorder, "_torch", lambda: None)
    rec = Recorder(lws, run="big", dataset="toy", members=2, epochs=1)
    with pytest.raises(CurateError, match=needle):
        rec.log("train", 0, 0, np.arange(2), z)
    rec.log("train", 0, 0, np.arange(10), np.zeros((10, 3)))
    assert rec.done("train", 0, 0)
    t = pd.read_parquet(predlog.shard_path(lws / "runs" / "big", "eval", "train", 0, 0))
    assert np.isfinite(t[["p_true", "margin", "el2n"]].to_numpy()).all()


@pytest.mark.parametrize("torch_installed", [True, False])
def test_probabilities_given_as_logits_are_warned_of_once(lws, monkeypatch, torch_installed):
    """Softmax outputs passed where logits go would be softmaxed twice: the first batch says so;
    logits, even small ones, do not warn."""
    import warnings

    from curate.record import recorder

    if not torch_installed:
        monkeypatch.setattr(recorder, "_torch", lambda: None)
    p = np.random.default_rng(0).dirichlet(np.ones(3), size=10)
    rec = Recorder(lws, run="probs", dataset="toy", members=2, epochs=1)
    with pytest.warns(recorder.ProbabilitiesWarning, match="like softmax probabilities"):
        rec.log("train", 0, 0, np.arange(5), p[:5])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rec.log("train", 0, 0, np.arange(5, 10), p[5:])  # once per recorder
        other = Recorder(lws, run="logits", dataset="toy", members=2, epochs=1)
        other.log("train", 0, 0, np.arange(10), np.log(p) + 0.3)  # logits in [-3, 0.3]
        hard = Recorder(lws, run="hard", dataset="toy", members=2, epochs=1)
        hard.log("train", 0, 0, np.arange(10), np.eye(3)[np.arange(10) % 3])  # one-hot rows


def test_logged_twice_across_batches(lws):
    rec = Recorder(lws, run="twice", dataset="toy", members=2, epochs=1)
    rec.log("train", 0, 0, np.arange(5), np.zeros((5, 3)))
    with pytest.raises(CurateError, match="idx 4 was already logged"):
        rec.log("train", 0, 0, np.array([5, 4]), np.zeros((2, 3)))
    rec.log("train", 0, 0, np.arange(5, 10), np.zeros((5, 3)))
    assert rec.done("train", 0, 0)


def test_recorder_arguments(lws):
    with pytest.raises(CurateError, match="members = 1"):
        Recorder(lws, run="x", dataset="toy", members=1, epochs=1)
    with pytest.raises(CurateError, match="not in"):
        Recorder(lws, run="x", dataset="nope", members=2, epochs=1)
    with pytest.raises(CurateError, match="split 'val'"):
        Recorder(lws, run="x", dataset="toy", members=2, epochs=1, splits=["val"])
    Recorder(lws, run="x", dataset="toy", members=2, epochs=1).close()
    with pytest.raises(CurateError, match=r"other settings \(differs in: train.epochs\)"):
        Recorder(lws, run="x", dataset="toy", members=2, epochs=3)


def test_scoring_names_missing_parts(lws, capsys):
    rec = Recorder(lws, run="gap", dataset="toy", members=2, epochs=2)
    rng = np.random.default_rng(0)
    for m, e in [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]:  # member 1's epoch 2 never logged
        for split, ids in (("train", np.arange(10)), ("test", np.arange(100, 105))):
            rec.log(split, m, e, ids, rng.normal(size=(len(ids), 3)))
    rec.log("test", 1, 2, np.arange(100, 103), rng.normal(size=(3, 3)))  # a part half logged
    res = rec.close()
    assert res.missing == [("train", 1, 2), ("test", 1, 2)]
    assert "2 parts not recorded yet" in capsys.readouterr().err
    assert main(["score", "gap", "--workspace", str(lws)]) == 2
    err = capsys.readouterr().err
    assert "lacks 2 parts" in err and "split train member 1 epoch 2" in err
    assert "split test member 1 epoch 2" in err and "--epochs 1..1" in err
    assert main(["score", "gap", "--workspace", str(lws), "--epochs", "1"]) == 0  # the prefix


def test_two_recorders_on_one_part(lws):
    a = Recorder(lws, run="two", dataset="toy", members=2, epochs=1)
    b = Recorder(lws, run="two", dataset="toy", members=2, epochs=1)
    a.log("train", 0, 0, np.arange(3), np.zeros((3, 3)))
    with pytest.raises(CurateError, match=r"part \(split train, member 0, epoch 0\).*in use"):
        b.log("train", 0, 0, np.arange(3, 10), np.zeros((7, 3)))
    b.log("train", 1, 0, np.arange(10), np.zeros((10, 3)))  # another part: fine
    a.log("train", 0, 0, np.arange(3, 10), np.zeros((7, 3)))
    assert a.done("train", 0, 0) and b.done("train", 1, 0)


SCRIPT = """
import sys, time, numpy as np
from curate.record.recorder import Recorder
rec = Recorder(sys.argv[1], run="killed", dataset="toy", members=2, epochs=1)
rng = np.random.default_rng(0)
for m in range(2):
    for e in range(2):
        for split, ids in (("train", np.arange(10)), ("test", np.arange(100, 105))):
            if rec.done(split, m, e):
                continue
            for s in range(0, len(ids), 2):
                rec.log(split, m, e, ids[s:s + 2], rng.normal(size=(len(ids[s:s + 2]), 3)))
                if m == 1 and split == "train" and s == 4 and sys.argv[2] == "stop":
                    print("half", flush=True)
                    time.sleep(60)
rec.close()
print("done", flush=True)
"""


def test_killed_recorder_resumes(lws, tmp_path):
    script = tmp_path / "loop.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.Popen(
        [sys.executable, str(script), str(lws), "stop"], stdout=subprocess.PIPE, env=env, text=True
    )
    assert p.stdout.readline().strip() == "half"
    run = lws / "runs" / "killed"
    written = sorted(run.glob("predictions/*/*/*/*/part.parquet"))
    assert len(written) == 4  # member 0's four parts; member 1's train part is in progress
    # while it holds the part, another recorder is refused
    other = Recorder(lws, run="killed", dataset="toy", members=2, epochs=1)
    with pytest.raises(CurateError, match="in use by process"):
        other.log("train", 1, 0, np.arange(10), np.zeros((10, 3)))
    other.close()
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    before = {q: q.stat().st_mtime_ns for q in written}
    time.sleep(0.01)
    out = subprocess.run(
        [sys.executable, str(script), str(lws), "go"], capture_output=True, env=env, text=True
    )
    assert out.stdout.strip() == "done", out.stderr
    assert {q: q.stat().st_mtime_ns for q in written} == before  # complete parts kept as they were
    assert len(list(run.glob("predictions/*/*/*/*/part.parquet"))) == 8
    assert not list(run.glob("predictions/**/*.tmp")) and not list(run.glob("**/*.lock"))
    assert predlog.last_done_epoch(run, 1) == 1


def test_log_on_complete_part_is_a_no_op(lws):
    rec = Recorder(lws, run="again", dataset="toy", members=2, epochs=1, splits=["train"])
    rec.log("train", 0, 0, np.arange(10), np.zeros((10, 3)))
    path = predlog.shard_path(lws / "runs" / "again", "eval", "train", 0, 0)
    stamp = path.stat().st_mtime_ns
    rec2 = Recorder(lws, run="again", dataset="toy", members=2, epochs=1, splits=["train"])
    assert rec2.done("train", 0, 0) and rec2.next_epoch(0) == 1 and rec2.next_epoch(1) == 0
    rec2.log("train", 0, 0, np.arange(10), np.ones((10, 3)))  # skipped: already written
    rec2.log("train", 0, 0, np.arange(10), np.ones((10, 3)))
    assert path.stat().st_mtime_ns == stamp


# ----------------------------------------------------------------------------- import-log


def test_import_log_stacked_probs_and_errors(lws, tmp_path, capsys):
    rng = np.random.default_rng(3)
    z = rng.normal(size=(2, 2, 10, 3)).astype(np.float32)  # (M, E + 1, N, C)
    p = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    d = tmp_path / "arrays"
    d.mkdir()
    np.save(d / "train.npy", p)
    torch.save({"probs": torch.from_numpy(p[:, :, :5])}, d / "test.pt")
    ws = ["--workspace", str(lws)]
    assert main(["import-log", "imp", "--dataset", "toy", "--dir", str(d), *ws]) == 0
    rec = Recorder(lws, run="direct", dataset="toy", members=2, epochs=1)
    for m in range(2):
        for e in range(2):
            rec.log("train", m, e, np.arange(10), z[m, e])
            rec.log("test", m, e, np.arange(100, 105), z[m, e, :5])
    rec.close()
    for split in ("train", "test"):
        a = pd.read_parquet(predlog.shard_path(lws / "runs/imp", "eval", split, 1, 1))
        b = pd.read_parquet(predlog.shard_path(lws / "runs/direct", "eval", split, 1, 1))
        assert (a["pred"] == b["pred"]).all()
        np.testing.assert_allclose(a["p_true"], b["p_true"], rtol=1e-5)  # log(softmax) round trip
    bad = tmp_path / "bad"
    bad.mkdir()
    np.save(bad / "val_m0_e0.npy", z[0, 0])
    assert main(["import-log", "x", "--dataset", "toy", "--dir", str(bad), *ws]) == 2
    assert "split 'val' is not in the dataset" in capsys.readouterr().err
    (bad / "val_m0_e0.npy").unlink()
    np.save(bad / "train_m0_e0.npy", z[0, 0])
    np.save(bad / "train_m1_e1.npy", z[0, 0][:, :2])
    assert main(["import-log", "y", "--dataset", "toy", "--dir", str(bad), *ws]) == 2
    assert "2 classes, the dataset has 3" in capsys.readouterr().err
    np.save(bad / "train_m1_e1.npy", z[0, 0])
    assert main(["import-log", "y", "--dataset", "toy", "--dir", str(bad), *ws]) == 2
    err = capsys.readouterr().err
    assert "2 parts have no array" in err and "train_m0_e1" in err and "train_m1_e0" in err
    np.save(bad / "foo.npy", z[0, 0])
    assert main(["import-log", "z", "--dataset", "toy", "--dir", str(bad), *ws]) == 2
    assert "does not follow the scheme" in capsys.readouterr().err


def test_train_by_ingested_name(digits_ws, tmp_path, capsys):
    """`curate ingest digits --labels FILE --name N` then `curate train N`: no --set needed."""
    from curate import catalog

    idx, lab = catalog.split_labels(Workspace(digits_ws), "digits", "train")
    noisy = lab.copy()
    noisy[:50] = (noisy[:50] + 1) % 10
    np.save(tmp_path / "noisy.npy", noisy)
    ws = ["--workspace", str(digits_ws)]
    args = ["ingest", "digits", "--labels", str(tmp_path / "noisy.npy"), "--name", "dnoisy"]
    assert main([*args, *ws]) == 0
    assert main(["train", "dnoisy", "--members", "2", "--epochs", "1", *ws]) == 0
    con = duckdb.connect(str(digits_ws / "catalog.duckdb"), read_only=True)
    try:
        assert con.execute("SELECT dataset FROM runs WHERE run = 'dnoisy'").fetchone() == (
            "dnoisy",
        )
    finally:
        con.close()
    assert main(["train", "no-such-thing", *ws]) == 2
    assert "no dataset ingested" in capsys.readouterr().err


def test_ingest_labels_bad_input(tmp_path, capsys):
    ws = ["--workspace", str(tmp_path / "ws")]
    csv = tmp_path / "l.csv"
    csv.write_text("split,idx,label\ntrain,0,cat\ntrain,1,dog\ntest,0,dog\n")

    def refused(*args: str) -> str:
        assert main(["ingest", "labels", *args, *ws]) == 2
        return capsys.readouterr().err

    assert "needs --name" in refused("--labels", str(csv))
    assert "needs --labels" in refused("--name", "x")
    (tmp_path / "dup.csv").write_text("split,idx,label\ntrain,0,cat\ntrain,0,dog\n")
    assert "train idx 0 is listed twice" in refused(
        "--labels", str(tmp_path / "dup.csv"), "--name", "x"
    )
    assert "unknown class 'dog'" in refused(
        "--labels", str(csv), "--name", "x", "--classes", "cat,cow"
    )
    (tmp_path / "p.csv").write_text("split,idx,path\ntrain,7,/a.jpg\n")
    err = refused("--labels", str(csv), "--paths", str(tmp_path / "p.csv"), "--name", "x")
    assert "train idx 7 has no label" in err
    cat = tmp_path / "ws" / "catalog.duckdb"
    if cat.exists():  # nothing registered by the refusals
        con = duckdb.connect(str(cat), read_only=True)
        assert con.execute("SELECT count(*) FROM datasets").fetchone() == (0,)
        con.close()
    assert main(["ingest", "labels", "--labels", str(csv), "--name", "x", *ws]) == 0
    csv.write_text("split,idx,label\ntrain,0,dog\ntrain,1,dog\ntest,0,dog\n")
    assert "--force to replace it" in refused("--labels", str(csv), "--name", "x")
    assert main(["ingest", "labels", "--labels", str(csv), "--name", "x", "--force", *ws]) == 0
    con = duckdb.connect(str(tmp_path / "ws" / "catalog.duckdb"), read_only=True)
    try:
        assert con.execute("SELECT class_names FROM datasets").fetchall() == [(["dog"],)]
    finally:
        con.close()


def test_ingest_labels_from_npz(tmp_path):
    np.savez(tmp_path / "l.npz", train=np.array([2, 0, 1, 2]), val=np.array([1, 1]))
    ws = tmp_path / "ws"
    args = ["ingest", "labels", "--labels", str(tmp_path / "l.npz"), "--name", "n"]
    assert main([*args, "--workspace", str(ws)]) == 0
    con = duckdb.connect(str(ws / "catalog.duckdb"), read_only=True)
    try:
        assert con.execute("SELECT splits, counts, class_names FROM datasets").fetchone() == (
            ["train", "val"],
            [4, 2],
            ["0", "1", "2"],
        )
        rows = con.execute("SELECT split, idx, label FROM instances ORDER BY split, idx").fetchall()
    finally:
        con.close()
    assert rows == [("train", 0, 2), ("train", 1, 0), ("train", 2, 1), ("train", 3, 2),
                    ("val", 0, 1), ("val", 1, 1)]  # fmt: skip


def test_a_run_of_some_splits_scores_those(lws):
    rec = Recorder(lws, run="tr", dataset="toy", members=2, epochs=1, splits=["train"])
    rng = np.random.default_rng(4)
    for m in range(2):
        for e in range(2):
            rec.log("train", m, e, rng.permutation(10), rng.normal(size=(10, 3)))
    assert rec.close().complete
    assert main(["score", "tr", "--workspace", str(lws)]) == 0
    con = duckdb.connect(str(lws / "catalog.duckdb"), read_only=True)
    try:
        got = con.execute(
            "SELECT split, count(*) FROM instance_scores WHERE run = 'tr' GROUP BY split"
        ).fetchall()
    finally:
        con.close()
    assert got == [("train", 10)]
