"""Sharded recording: ranks of one DDP job each log their own share of a split (a
DistributedSampler's, padding included) and the part appears, once, when they cover the split.
A Lightning DDP fit on 2 CPU processes (gloo) records the score tables of the single-process fit;
bad inputs fail at the end of the pass, naming the split and the cause."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import ROOT, labels_only_ws
from test_record import assert_same_table

from curate.cli import main
from curate.errors import CurateError
from curate.record.recorder import Recorder

K, SIZES = 3, {"train": 101, "test": 51}  # odd sizes: a DistributedSampler over 2 ranks pads


@pytest.fixture()
def odd(tmp_path):
    """A labels-only dataset with odd-sized splits; the workspace's path."""
    return labels_only_ws(tmp_path, SIZES, K)


def fixed_logits(idx: np.ndarray, epoch: int) -> torch.Tensor:
    """Logits as a deterministic function of idx and epoch, the same in any batch or process."""
    i = idx.astype(np.float64)[:, None]
    z = np.sin(i * np.array([0.37, 0.11, 0.73]) + epoch) * (1 + epoch)
    return torch.from_numpy(z.astype(np.float32))


def shares(n: int, world: int) -> list[np.ndarray]:
    """What a DistributedSampler (shuffle=False, drop_last=False) gives each rank."""
    return [np.asarray(list(torch.utils.data.DistributedSampler(range(n), world, r, False)))
            for r in range(world)]  # fmt: skip


def test_ranks_without_a_group_merge_padded_shares(odd):
    recs = [Recorder(odd, run="r", dataset="odd", members=2, epochs=1) for _ in range(2)]
    for r, rec in enumerate(recs):
        rec.set_rank(r, 2)
    for e in (0, 1):
        for r, rec in enumerate(recs):
            for split, n in SIZES.items():
                for b in np.array_split(shares(n, 2)[r], 3):  # the pad repeats idx 0 on rank 1
                    rec.log(split, 0, e, b, fixed_logits(b, e))
            rec.end_pass(0, e)
            # the part appears once the last rank's file is in, not before
            assert all(rec.done(s, 0, e) for s in SIZES) == (r == 1)
    single = Recorder(odd, run="s", dataset="odd", members=2, epochs=1)
    for e in (0, 1):
        for split, n in SIZES.items():
            single.log(split, 0, e, np.arange(n), fixed_logits(np.arange(n), e))
    import pyarrow.parquet as pq

    from curate import runlog

    for split in SIZES:
        for e in (0, 1):
            r, s = (pq.read_table(runlog.shard_path(odd / "runs" / run, "eval", split, 0, e))
                    for run in ("r", "s"))  # fmt: skip
            assert r.equals(s)
    folder = odd / "runs" / "r" / "predictions/pass=eval/split=test/member=0/epoch=0"
    assert [p.name for p in folder.iterdir()] == ["part.parquet"]  # the rank files are gone
    assert (odd / "runs/r/progress/member=0.json").exists()


def test_a_dead_ranks_file_is_not_merged(odd):
    """Rank 1 wrote its share of pass (0, 0) and died before rank 0 did; the job is rerun with
    another model. The new rank 1 removes its old file on taking the rank, so rank 0's end of the
    pass waits for the new one and the part holds the new model's predictions only."""
    import pyarrow.parquet as pq

    import curate.record.recorder as recorder
    from curate import runlog

    dead = Recorder(odd, run="r", dataset="odd", members=2, epochs=1)
    dead.set_rank(1, 2)
    for split, n in SIZES.items():
        b = shares(n, 2)[1]
        dead.log(split, 0, 0, b, fixed_logits(b, 7))  # the model of the killed attempt
    dead.end_pass(0, 0)
    stale = runlog.rank_shard_path(odd / "runs" / "r", "eval", "train", 0, 0, 1, 2)
    assert stale.exists() and not all(dead.done(s, 0, 0) for s in SIZES)
    del dead  # killed; the rerun's processes begin after its files were written
    for split in SIZES:
        other = runlog.rank_shard_path(odd / "runs" / "r", "eval", split, 0, 0, 1, 2)
        os.utime(other, (recorder.process_start() - 60, recorder.process_start() - 60))
    recs = [Recorder(odd, run="r", dataset="odd", members=2, epochs=1) for _ in range(2)]
    recs[0].set_rank(0, 2)
    recs[1].set_rank(1, 2)
    assert not stale.exists()
    for r, rec in enumerate(recs):
        for split, n in SIZES.items():
            b = shares(n, 2)[r]
            rec.log(split, 0, 0, b, fixed_logits(b, 0))
        rec.end_pass(0, 0)
        assert all(rec.done(s, 0, 0) for s in SIZES) == (r == 1)  # rank 0 did not merge the old
    n = SIZES["train"]
    got = pq.read_table(runlog.shard_path(odd / "runs" / "r", "eval", "train", 0, 0))
    want = fixed_logits(np.arange(n), 0).numpy().argmax(1)
    assert np.array_equal(got.column("pred").to_numpy(), want)


STALE_IN_FORK = """
import sys, time
import numpy as np
from curate.record.recorder import Recorder
from curate import runlog
ws = sys.argv[1]
dead = Recorder(ws, run="f", dataset="odd", members=2, epochs=1)
dead.set_rank(1, 2)
for split, n in (("train", 101), ("test", 51)):
    b = np.arange(1, n, 2)
    dead.log(split, 0, 0, b, np.eye(3, dtype=np.float32)[b % 3])
dead.end_pass(0, 0)
stale = runlog.rank_shard_path(dead.run_dir, "eval", "train", 0, 0, 1, 2)
time.sleep(1.2)  # the kernel's start time of the child is whole boot seconds + ticks
import multiprocessing as mp
def child(q):
    rec = Recorder(ws, run="f", dataset="odd", members=2, epochs=1)
    rec.set_rank(1, 2)
    q.put(stale.exists())
q = mp.get_context("fork").Queue()
p = mp.get_context("fork").Process(target=child, args=(q,))
p.start(); kept = q.get(timeout=60); p.join(60)
print("kept" if kept else "removed")
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc and fork")
def test_a_forked_rank_removes_the_file_of_a_dead_one(odd):
    """A rank forked from a long-lived parent (a notebook, a sweep driver, ddp_fork) imported
    curate before the dead attempt wrote its file: its own start, not the import, decides."""
    out = subprocess.run(
        [sys.executable, "-c", STALE_IN_FORK, str(odd)], capture_output=True, text=True, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["removed"], out.stdout


def test_incomplete_part_raises_at_end_of_pass(odd):
    rec = Recorder(odd, run="short", dataset="odd", members=2, epochs=1)
    keep = np.arange(96)  # as drop_last=True with batches of 32 leaves 96 of 101
    rec.log("train", 0, 0, keep, fixed_logits(keep, 0))
    rec.log("test", 0, 0, np.arange(51), fixed_logits(np.arange(51), 0))
    with pytest.raises(
        CurateError, match=r"split train.*96 of the split's 101 idx.*drop_last=True"
    ):
        rec.end_pass(0, 0)
    assert not list(
        (odd / "runs" / "short").rglob("split=train/*/*/*.parquet")
    )  # nothing half-done
    rec.log("train", 0, 0, keep, fixed_logits(keep, 0))  # the rerun of the pass starts afresh


def test_sampler_share_without_sharding_raises_at_once(odd):
    """Rank 0's share of a DistributedSampler, recorded as if whole: refused when the next epoch
    starts (the plain loop's end of pass), naming the cause."""
    rec = Recorder(odd, run="half", dataset="odd", members=2, epochs=1)
    mine = shares(101, 2)[0]
    rec.log("train", 0, 0, mine, fixed_logits(mine, 0))
    with pytest.raises(CurateError, match=r"51 of the split's 101.*DistributedSampler"):
        rec.log("train", 0, 1, mine, fixed_logits(mine, 1))


def test_sharded_coverage_short_raises_on_the_last_rank(odd):
    recs = [Recorder(odd, run="gap", dataset="odd", members=2, epochs=1) for _ in range(2)]
    for r, rec in enumerate(recs):
        rec.set_rank(r, 2)
        for split, n in SIZES.items():
            b = shares(n, 2)[r]
            if (split, r) == ("test", 1):
                b = b[:-2]  # drops idx 49 and the pad (idx 0, which rank 0 gives)
            rec.log(split, 1, 0, b, fixed_logits(b, 0))
    recs[0].end_pass(1, 0)  # the other rank has not written yet: nothing to say
    with pytest.raises(CurateError, match=r"split test.*50 of the split's 51 idx .*by 2 ranks"):
        recs[1].end_pass(1, 0)


def test_disagreeing_duplicates_refused(odd):
    recs = [Recorder(odd, run="dis", dataset="odd", members=2, epochs=1) for _ in range(2)]
    for r, rec in enumerate(recs):
        rec.set_rank(r, 2)
        for split, n in SIZES.items():
            b = shares(n, 2)[r]
            z = fixed_logits(b, 0)
            if r == 1:
                z[b == 0] += torch.tensor([5.0, -5.0, 0.0])  # the padded idx 0, other weights
            rec.log(split, 0, 0, b, z)
    recs[0].end_pass(0, 0)
    with pytest.raises(CurateError, match=r"idx 0 was logged more than once .*different"):
        recs[1].end_pass(0, 0)
    # within one rank, a repeat must agree too
    rec = Recorder(odd, run="dis2", dataset="odd", members=2, epochs=1)
    rec.set_rank(0, 2)
    rec.log("test", 0, 0, np.arange(5), fixed_logits(np.arange(5), 0))
    rec.log("test", 0, 0, np.arange(3), fixed_logits(np.arange(3), 0))  # agrees: fine
    with pytest.raises(CurateError, match="logged twice with different predictions"):
        rec.log("test", 0, 0, np.arange(2), fixed_logits(np.arange(2), 1))


def test_close_on_nonzero_rank_reads_disk(odd, capsys):
    recs = [Recorder(odd, run="c", dataset="odd", members=2, epochs=1) for _ in range(3)]
    for r in (0, 1):
        recs[r].set_rank(r, 2)
    for m in (0, 1):
        for e in (0, 1):
            for r in (0, 1):
                for split, n in SIZES.items():
                    b = shares(n, 2)[r]
                    recs[r].log(split, m, e, b, fixed_logits(b, e))
                recs[r].end_pass(m, e)
    capsys.readouterr()
    # rank 0 (not the one that merged), and a parent process that logged nothing (ddp_spawn)
    for rec in (recs[0], recs[2], recs[1]):
        assert rec.close().complete
    assert "not recorded yet" not in capsys.readouterr().err
    con = duckdb.connect(str(odd / "catalog.duckdb"), read_only=True)
    try:
        assert con.execute("SELECT min(epochs_done) FROM members WHERE run='c'").fetchone() == (1,)
        # the parent (world 1, no group) registered last: still the 2 ranks that recorded it
        assert con.execute("SELECT world_size FROM runs WHERE run='c'").fetchone() == (2,)
    finally:
        con.close()


SCRIPT = """
import os, sys
import numpy as np
import torch
import lightning.pytorch as L
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

import curate
from curate.record.lightning import RecorderCallback

ws, run, devices = sys.argv[1], sys.argv[2], int(sys.argv[3])
SIZES = {"train": 101, "test": 51}
torch.set_num_threads(1)


# FIXED_LOGITS


class Member(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.net, self.k = torch.nn.Linear(1, 3), 0

    def on_train_epoch_start(self):
        self.k += 1  # the epoch the next evaluation pass records

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.cross_entropy(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def forward(module, x):  # fixed predictions: the test isolates the recording
    return fixed_logits(x[:, 0].numpy().astype(np.int64), module.k)


def loader(split):
    n = SIZES[split]
    ds = TensorDataset(torch.arange(n).float()[:, None], torch.arange(n))
    if devices == 1:
        return DataLoader(ds, batch_size=8)
    rank = int(os.environ.get("LOCAL_RANK", 0))
    return DataLoader(ds, batch_size=8, sampler=DistributedSampler(ds, 2, rank, shuffle=False))


train = DataLoader(TensorDataset(torch.randn(64, 1), torch.arange(64) % 3), batch_size=16)
evals = {s: loader(s) for s in SIZES}
rec = curate.Recorder(ws, run=run, dataset="odd", members=2, epochs=2)
for m in range(2):
    L.seed_everything(m)
    trainer = L.Trainer(
        max_epochs=2, accelerator="cpu", devices=devices,
        strategy="ddp" if devices > 1 else "auto", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
        callbacks=[RecorderCallback(rec, m, evals, forward=forward)],
    )
    trainer.fit(Member(), train)
res = rec.close()  # on every rank
print(f"closed rank={rec.rank} complete={res.complete}", flush=True)
"""


# the scripts' logits: the function above, as source
SCRIPT = SCRIPT.replace("# FIXED_LOGITS", inspect.getsource(fixed_logits))


def scores(ws: Path, run: str) -> dict[str, pd.DataFrame]:
    assert main(["score", run, "--workspace", str(ws)]) == 0
    con = duckdb.connect(str(ws / "catalog.duckdb"), read_only=True)
    out = {}
    try:
        for name in ("instance_scores", "epoch_metrics"):
            df = con.execute(f"SELECT * EXCLUDE (run) FROM {name} WHERE run = ?", [run]).df()
            keys = [c for c in ("split", "idx", "epoch") if c in df.columns]
            out[name] = df.sort_values(keys).reset_index(drop=True)
    finally:
        con.close()
    return out


@pytest.mark.slow  # two Lightning fits in subprocesses, one of them on 2 DDP ranks: ~30 s
def test_lightning_ddp_gloo_matches_single_process(odd, tmp_path):
    script = tmp_path / "fit.py"
    script.write_text(textwrap.dedent(SCRIPT))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = {}
    for run, devices in (("single", 1), ("ddp", 2)):
        res = subprocess.run([sys.executable, str(script), str(odd), run, str(devices)],
                             capture_output=True, text=True, cwd=ROOT, env=env, timeout=240)  # fmt: skip
        assert res.returncode == 0, res.stderr[-3000:]
        out[run] = res
    same_as_single_process(odd, out)


def same_as_single_process(ws: Path, out: dict[str, subprocess.CompletedProcess]) -> None:
    """Runs `single` and `ddp` (2 ranks) closed complete on every rank, and scored the same."""
    ddp = out["ddp"]
    assert "closed rank=0 complete=True" in out["single"].stdout
    assert "closed rank=0 complete=True" in ddp.stdout, ddp.stdout
    assert "closed rank=1 complete=True" in ddp.stdout, ddp.stdout
    assert "not recorded yet" not in ddp.stderr  # no false warning on any rank
    a, b = scores(ws, "single"), scores(ws, "ddp")
    for name in a:  # the same fixed logits: floats within rtol 1e-6 (summation order only)
        assert_same_table(a[name], b[name])
    con = duckdb.connect(str(ws / "catalog.duckdb"), read_only=True)
    try:
        assert con.execute("SELECT world_size FROM runs WHERE run = 'ddp'").fetchone() == (2,)
    finally:
        con.close()


HF_SCRIPT = """
import os, sys
import numpy as np
import torch
import transformers

import curate
from curate.record.hf import HFRecorderCallback

ws, run = sys.argv[1], sys.argv[2]
SIZES = {"train": 101, "test": 51}
torch.set_num_threads(1)


# FIXED_LOGITS


class Member(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net, self.k = torch.nn.Linear(1, 3), 0

    def forward(self, x, labels=None):
        logits = self.net(x)
        out = {"logits": logits}
        if labels is not None:
            out["loss"] = torch.nn.functional.cross_entropy(logits, labels)
        return out


class Epochs(transformers.TrainerCallback):
    def on_epoch_begin(self, args, state, control, model=None, **kwargs):
        model.k += 1  # the epoch the next evaluation pass records


def forward(model, inputs):  # fixed predictions: the test isolates the recording
    return fixed_logits(inputs["x"][:, 0].numpy().astype(np.int64), model.k)


class Rows(torch.utils.data.Dataset):
    def __init__(self, n, labels=None):
        self.n, self.labels = n, labels

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        y = int(self.labels[i]) if self.labels is not None else i % 3
        return {"x": torch.tensor([float(i)]), "labels": y, "idx": i}


def collate(items):
    return {k: torch.stack([torch.as_tensor(it[k]) for it in items]) for k in items[0]}


evals = {s: torch.utils.data.DataLoader(Rows(n), batch_size=8, collate_fn=collate)
         for s, n in SIZES.items()}  # plain loaders: the callback shards them per rank
rec = curate.Recorder(ws, run=run, dataset="odd", members=2, epochs=2)
for m in range(2):
    torch.manual_seed(m)
    args = transformers.TrainingArguments(
        output_dir=f"{ws}/hf-{run}-{m}", num_train_epochs=2, per_device_train_batch_size=16,
        report_to=[], save_strategy="no", use_cpu=True, disable_tqdm=True,
        remove_unused_columns=False, logging_strategy="no",
        ddp_backend="gloo" if "LOCAL_RANK" in os.environ else None,  # torchrun on CPUs
    )
    trainer = transformers.Trainer(
        model=Member(), args=args, train_dataset=Rows(64),
        data_collator=lambda items: {k: v for k, v in collate(items).items() if k != "idx"},
        callbacks=[Epochs(), HFRecorderCallback(rec, m, evals, forward=forward)],
    )
    trainer.train()
res = rec.close()  # on every rank
print(f"closed rank={rec.rank} complete={res.complete}", flush=True)
"""


HF_SCRIPT = HF_SCRIPT.replace("# FIXED_LOGITS", inspect.getsource(fixed_logits))


@pytest.mark.slow  # two Hugging Face trainings in subprocesses, one of them on 2 ranks: ~60 s
def test_hf_trainer_ddp_gloo_matches_single_process(odd, tmp_path):
    """`torchrun --nproc_per_node 2` of a Trainer with HFRecorderCallback: each rank records its
    share, and the scores equal those of the same training in one process."""
    pytest.importorskip("transformers")
    script = tmp_path / "hf_fit.py"
    script.write_text(textwrap.dedent(HF_SCRIPT))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node"]
    out = {}
    for run, launch in (("single", [sys.executable]), ("ddp", [*torchrun, "2"])):
        res = subprocess.run([*launch, str(script), str(odd), run],
                             capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)  # fmt: skip
        assert res.returncode == 0, res.stderr[-3000:]
        out[run] = res
    same_as_single_process(odd, out)


GROUP_SCRIPT = """
import json, sys, time
import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import curate
from curate.record import recorder

SIZES = {"train": 101, "test": 51}
# FIXED_LOGITS


def shares(n, world, r):
    return np.asarray(list(torch.utils.data.DistributedSampler(range(n), world, r, False)))


def rank_main(r, case, ws0, ws1, store, out):
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=r, world_size=2)
    recorder.WAIT_NOTE = 1.0
    ws = ws1 if case == "other-workspace" and r == 1 else ws0
    run = f"r{r}" if case == "other-run" else "g"
    result = "ok"
    try:
        rec = curate.Recorder(ws, run=run, dataset="odd", members=2, epochs=1, distributed=True)
        for split, n in SIZES.items():
            b = shares(n, 2, r)
            if case == "short" and r == 1:
                b = b[:5]  # a rank that logs only part of its share
            rec.log(split, 0, 0, b, fixed_logits(b, 0))
        if case == "late" and r == 1:
            time.sleep(4)  # rank 0 waits at end_pass meanwhile, and says so
        rec.end_pass(0, 0)
    except curate.CurateError as e:
        result = "error: " + str(e)
    with open(f"{out}.{r}", "w") as f:
        f.write(result)
    dist.destroy_process_group()


if __name__ == "__main__":
    case, ws0, ws1, store, out = sys.argv[1:]
    mp.spawn(rank_main, args=(case, ws0, ws1, store, out), nprocs=2)
"""
GROUP_SCRIPT = GROUP_SCRIPT.replace("# FIXED_LOGITS", inspect.getsource(fixed_logits))


@pytest.mark.parametrize("case", ["other-run", "other-workspace", "short", "late"])
def test_ranks_of_a_group_that_do_not_end_one_pass_are_told(odd, tmp_path, case):
    """Two gloo ranks: ranks naming other runs, or writing to other workspaces, once recorded
    nothing and said nothing (exit 0, the run just lacked its parts): now each rank raises one
    error and leaves no file of the pass. A rank waiting long at end_pass says so on stderr."""
    ws1 = odd
    if case == "other-workspace":
        (tmp_path / "second").mkdir()
        ws1 = labels_only_ws(tmp_path / "second", SIZES, K)
    script = tmp_path / "group.py"
    script.write_text(GROUP_SCRIPT)
    out = tmp_path / "result"
    res = subprocess.run(
        [sys.executable, str(script), case, str(odd), str(ws1), str(tmp_path / "store"), str(out)],
        capture_output=True, text=True, cwd=ROOT, timeout=240,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    results = [Path(f"{out}.{r}").read_text() for r in (0, 1)]
    hidden = [p for w in {odd, ws1} for p in (w / "runs").rglob(".rank-*")]
    if case == "late":
        assert results == ["ok", "ok"]
        assert "rank 0 of 2: waiting 1 s so far at end_pass(member 0, epoch 0)" in res.stderr
        for split in SIZES:
            assert (
                odd / f"runs/g/predictions/pass=eval/split={split}/member=0/epoch=0/part.parquet"
            ).exists()
    else:
        words = {
            "other-run": "the ranks ended different passes",
            "other-workspace": "share is missing",
            "short": "logged by 2 ranks together",
        }[case]
        assert all(r.startswith("error: ") and words in r for r in results), results
        assert not list((odd / "runs").rglob("part.parquet"))
    assert not hidden, hidden


def test_whole_parts_in_a_ddp_job_name_distributed_true(odd, monkeypatch):
    """Every rank of a torchrun job recording whole parts (distributed=True forgotten): the
    refusal names both ways to record under DDP, not only "another process"."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    first = Recorder(odd, run="w", dataset="odd", members=2, epochs=1)
    first.log("train", 0, 0, np.arange(3), fixed_logits(np.arange(3), 0))  # holds the part
    second = Recorder(odd, run="w", dataset="odd", members=2, epochs=1)
    with pytest.raises(CurateError, match="in use by process") as e:
        second.log("train", 0, 0, np.arange(3, 6), fixed_logits(np.arange(3, 6), 0))
    assert "one of 2 of a DDP job" in str(e.value) and "distributed=True" in str(e.value)
    monkeypatch.setenv("WORLD_SIZE", "1")
    with pytest.raises(CurateError) as e:
        second.log("train", 0, 0, np.arange(3, 6), fixed_logits(np.arange(3, 6), 0))
    assert "DDP" not in str(e.value)
