"""Resuming a recorded member from its own state: `Recorder.save_state` / `load_state` keep the
user's training state with the log (atomically; a state counts once its epoch's parts are all
written), and a resumed member whose accuracy collapses gets a warning naming the likely cause."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import torch
from conftest import ROOT, labels_only_ws

from curate.record import recorder
from curate.record.recorder import Recorder, ResumedAccuracyWarning

K, SIZES = 3, {"train": 101, "test": 51}


@pytest.fixture()
def ws(tmp_path):
    return labels_only_ws(tmp_path, SIZES, K)


def good(n: int) -> torch.Tensor:
    """Logits predicting every label right (labels are idx % 3)."""
    return torch.nn.functional.one_hot(torch.arange(n) % K, K).float() * 5


def fresh(n: int) -> torch.Tensor:
    """An untrained model's logits: class 0 everywhere (chance accuracy)."""
    return torch.tensor([[1.0, 0.0, 0.0]]).repeat(n, 1)


def record_epoch(rec: Recorder, m: int, e: int, logits=good) -> None:
    for split, n in SIZES.items():
        rec.log(split, m, e, np.arange(n), logits(n))
    rec.end_pass(m, e)


def test_save_load_round_trip(ws):
    rec = Recorder(ws, run="st", dataset="odd", members=2, epochs=3)
    assert rec.load_state(0) is None
    s0 = {"model": {"w": torch.arange(4.0)}, "opt": {"lr": 0.1}, "epoch": 0}
    rec.save_state(0, 0, s0)
    assert rec.load_state(0) is None  # epoch 0's parts are not written yet
    record_epoch(rec, 0, 0)
    e, got = rec.load_state(0)
    assert e == 0 and torch.equal(got["model"]["w"], s0["model"]["w"]) and got["opt"] == s0["opt"]
    rec.save_state(0, 1, {"model": {"w": torch.ones(4)}})  # after training, before its pass
    assert rec.load_state(0)[0] == 0  # killed now, a rerun retrains epoch 1 from epoch 0's state
    record_epoch(rec, 0, 1)
    assert rec.load_state(0)[0] == 1
    rec.save_state(0, 2, {"model": {"w": torch.zeros(4)}})
    # states older than the last usable one are dropped; the usable one and newer ones stay
    assert [p.name for p in sorted((rec.run_dir / "state" / "member=0").iterdir())] == [
        "epoch=1.pt",
        "epoch=2.pt",
    ]
    assert Recorder(ws, run="st", dataset="odd", members=2, epochs=3).load_state(0)[0] == 1
    assert rec.load_state(1) is None


def test_kill_mid_save_leaves_the_previous_state(ws):
    rec = Recorder(ws, run="kill", dataset="odd", members=2, epochs=2)
    record_epoch(rec, 0, 0)
    record_epoch(rec, 0, 1)
    rec.save_state(0, 0, {"w": torch.arange(3.0)})
    script = textwrap.dedent(
        f"""
        import os, signal
        import torch
        from curate.record.recorder import Recorder

        class Killer:
            def __reduce__(self):
                os.kill(os.getpid(), signal.SIGKILL)  # dies while the state is being written

        rec = Recorder({str(ws)!r}, run="kill", dataset="odd", members=2, epochs=2)
        rec.save_state(0, 1, {{"w": torch.zeros(10_000), "then": Killer()}})
        """
    )
    res = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, timeout=120)
    assert res.returncode == -9, res.stderr[-2000:]
    e, state = Recorder(ws, run="kill", dataset="odd", members=2, epochs=2).load_state(0)
    assert e == 0 and torch.equal(state["w"], torch.arange(3.0))  # epoch 1's parts are there too
    folder = rec.run_dir / "state" / "member=0"
    assert not (folder / "epoch=1.pt").exists()
    # the killed save's temporary: removed by the next save of a later process (here: dated back
    # to before this one began), while one being written now by a live process stays
    (orphan,) = folder.glob(".epoch=1.pt.*.tmp")
    old = recorder.process_start() - 60
    os.utime(orphan, (old, old))
    live = folder / ".epoch=1.pt.live0000.pt.tmp"
    live.write_bytes(b"being written")
    rec.save_state(0, 1, {"w": torch.ones(3)})
    assert not orphan.exists() and live.exists()
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == ["epoch=1.pt"]


def test_resumed_fresh_model_warns(ws):
    rec = Recorder(ws, run="res", dataset="odd", members=2, epochs=3)
    for e in (0, 1):
        record_epoch(rec, 0, e)
        record_epoch(rec, 1, e)
    rec.close()
    again = Recorder(ws, run="res", dataset="odd", members=2, epochs=3)
    with pytest.warns(ResumedAccuracyWarning, match=r"member 0.*fell from 1.000.*rec.load_state"):
        record_epoch(again, 0, 2, fresh)  # a fresh model mixed into member 0's log
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResumedAccuracyWarning)
        record_epoch(again, 1, 2)  # member 1 restored properly: no warning
        record_epoch(again, 0, 3, fresh)  # not a resumed epoch: checked once per member


def test_sharded_state_written_by_rank_zero_only(ws):
    rec = Recorder(ws, run="sh", dataset="odd", members=2, epochs=1)
    rec.set_rank(1, 2)
    rec.save_state(0, 0, {"w": 1})
    assert not (rec.run_dir / "state").exists()


def test_state_without_torch_is_pickled_and_read_back(ws, monkeypatch):
    """The core install (no torch): a numpy state is pickled, read back as it was, also where torch
    is installed later; a torch-saved state read without torch is one clear error."""
    import curate.record.recorder as recorder
    from curate.errors import CurateError

    rec = Recorder(ws, run="np", dataset="odd", members=2, epochs=2)
    state = {"w": np.arange(5.0), "step": 7}
    monkeypatch.setattr(recorder, "_torch", lambda: None)
    rec.save_state(0, 0, state)
    record_epoch(rec, 0, 0, logits=lambda n: good(n).numpy())
    e, got = rec.load_state(0)
    assert e == 0 and np.array_equal(got["w"], state["w"]) and got["step"] == 7
    monkeypatch.undo()  # torch installed after all: the pickle still reads
    assert np.array_equal(rec.load_state(0)[1]["w"], state["w"])
    rec.save_state(0, 1, {"w": torch.ones(2)})  # saved with torch
    record_epoch(rec, 0, 1, logits=lambda n: good(n).numpy())
    monkeypatch.setattr(recorder, "_torch", lambda: None)
    with pytest.raises(CurateError, match="saved with torch, which is not installed here"):
        rec.load_state(0)


def test_state_format_is_read_from_the_first_bytes_and_damage_is_one_error(ws, monkeypatch):
    """A pickled state holding the bytes of a zip's end record (101010256 is b"PK\\x05\\x06" as a
    pickled int) is still a pickle; a truncated or empty state is one CurateError naming it."""
    import curate.record.recorder as recorder
    from curate.errors import CurateError

    rec = Recorder(ws, run="fmt", dataset="odd", members=2, epochs=2)
    monkeypatch.setattr(recorder, "_torch", lambda: None)
    state = {"seed": 101010256, "w": np.array([101010256], np.int32)}
    rec.save_state(0, 0, state)
    record_epoch(rec, 0, 0, logits=lambda n: good(n).numpy())
    assert rec.load_state(0)[1]["seed"] == 101010256
    monkeypatch.undo()
    assert rec.load_state(0)[1]["seed"] == 101010256  # with torch installed too
    path = rec.run_dir / "state" / "member=0" / "epoch=0.pt"
    for damaged in (path.read_bytes()[:10], b""):
        path.write_bytes(damaged)
        with pytest.raises(CurateError, match="is not a readable training state"):
            rec.load_state(0)
    rec.save_state(0, 0, {"w": torch.ones(3)})  # a torch.save file, truncated
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CurateError, match="is not a readable training state"):
        rec.load_state(0)
