"""Training: architectures, schedules, fused == separate, reproducibility, resume, torchrun, bad input."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from conftest import ROOT, free_port

from curate import catalog
from curate.cli import main
from curate.config import TrainConfig, load_recipe
from curate.workspace import Workspace

# fp32 pinned: these tests compare logs to logs at fp32 tolerances, and `auto` picks bf16 on a CPU
# with AVX512-BF16 or AMX
FAST = ["--set", "train.epochs=3", "--set", "train.members=4", "--set", "train.precision=fp32"]


def read_log(run_dir: Path, pass_: str = "eval") -> dict:
    out = {}
    for p in sorted(
        (run_dir / "predictions").glob(f"pass={pass_}/split=*/member=*/epoch=*/part.parquet")
    ):
        key = tuple(part.split("=", 1)[1] for part in p.parts[-4:-1])
        out[key] = pq.read_table(p).to_pandas()
    return out


def assert_same_log(a: dict, b: dict) -> None:
    assert a.keys() == b.keys() and len(a) > 0
    for k in a:
        assert a[k].equals(b[k]), k


# ----------------------------------------------------------------------------- pure parts


@pytest.mark.parametrize(
    "arch, shape",
    [
        ("mlp", (1, 8, 8)),
        ("lenet5", (1, 28, 28)),
        ("lenet5", (3, 32, 32)),
        ("small-stvgg", (3, 32, 32)),
        ("stvgg", (3, 32, 32)),
        ("linear-stvgg", (3, 32, 32)),
        ("fastconv", (3, 32, 32)),
        ("fastconv", (3, 56, 56)),
        ("fastconv", (1, 8, 8)),
        ("resnet18-cifar", (3, 32, 32)),
        ("resnet18", (3, 64, 64)),
        ("resnet50", (3, 64, 64)),
        ("densenet121", (3, 64, 64)),
        ("vgg16", (3, 64, 64)),
    ],
)
def test_architectures_give_logits(arch, shape):
    from curate.train.models import build_model

    model = build_model(arch, shape, 7).eval()
    with torch.no_grad():
        assert model(torch.zeros(2, *shape)).shape == (2, 7)


def test_fastconv_is_small():
    from curate.train.models import SEQUENTIAL_ARCHS, build_model

    assert "fastconv" in SEQUENTIAL_ARCHS
    n = sum(p.numel() for p in build_model("fastconv", (3, 32, 32), 10).parameters())
    assert 200_000 < n < 400_000  # width 32
    n16 = sum(p.numel() for p in build_model("fastconv", (3, 32, 32), 10, width=16).parameters())
    assert n16 < n / 3


def test_linear_stvgg_has_no_nonlinearity():
    from curate.train.models import build_model

    torch.manual_seed(0)
    model = build_model("linear-stvgg", (3, 32, 32), 5, dropout=False).eval().double()
    a, b = (
        torch.randn(1, 3, 32, 32, dtype=torch.float64),
        torch.randn(1, 3, 32, 32, dtype=torch.float64),
    )
    zero = model(torch.zeros_like(a))
    # affine: f(a + b) - f(0) = (f(a) - f(0)) + (f(b) - f(0))
    assert torch.allclose(model(a + b) - zero, (model(a) - zero) + (model(b) - zero), atol=1e-9)


def test_schedules_by_hand():
    from curate.train.schedule import lr_factor

    cos = TrainConfig(schedule="cosine", epochs=4)
    assert lr_factor(0, 10, cos) == pytest.approx(1.0, abs=1e-12)  # cos(0) = 1
    assert lr_factor(20, 10, cos) == pytest.approx(0.5)  # half way: cos(pi/2) = 0
    assert lr_factor(40, 10, cos) == pytest.approx(0.0)
    step = TrainConfig(schedule="step", epochs=90, step_size=30, gamma=0.1)  # Meding's ResNet-18
    assert [lr_factor(e * 5, 5, step) for e in (0, 29, 30, 59, 60, 89)] == pytest.approx(
        [1, 1, 0.1, 0.1, 0.01, 0.01]
    )
    st = TrainConfig(schedule="stvgg", epochs=100)  # 0.05 divided by 1.8 every 20 epochs
    assert lr_factor(19, 1, st) == pytest.approx(1, abs=1e-12)  # 1.8 ** 0, rounding only
    assert lr_factor(20, 1, st) == pytest.approx(1 / 1.8)
    assert lr_factor(45, 1, st) == pytest.approx(1 / 1.8**2)
    one = TrainConfig(schedule="onecycle", epochs=10)
    assert lr_factor(0, 10, one) == pytest.approx(1 / 25) and lr_factor(
        30, 10, one
    ) == pytest.approx(1.0)
    assert lr_factor(99, 10, one) < 1e-3
    warm = TrainConfig(schedule="cosine", epochs=10, warmup_epochs=1)
    assert lr_factor(4, 10, warm) == pytest.approx(0.5)


def test_logit_stats_by_hand():
    from curate.train.logits import logit_stats

    logits = torch.tensor([[[2.0, 1.0, 0.0]], [[0.0, 3.0, 1.0]]])  # (B=2, M=1, K=3)
    y = torch.tensor([0, 2])
    pred, p_true, margin = logit_stats(logits, y)
    assert pred.tolist() == [[0, 1]]
    assert margin.tolist() == [[1.0, -2.0]]  # 2 - 1; 1 - 3
    e = np.exp
    assert p_true[0].tolist() == pytest.approx([e(2) / (e(2) + e(1) + 1), e(1) / (1 + e(3) + e(1))])


def test_member_seeds_differ_and_are_stable():
    from curate.train.seeds import member_seeds

    a = [member_seeds(0, m) for m in range(4)]
    assert a == [member_seeds(0, m) for m in range(4)]
    assert len({s["init"] for s in a}) == 4 and len({s["order"] for s in a}) == 4
    assert member_seeds(1, 0) != a[0]


@pytest.mark.parametrize(
    "arch, shape",
    [
        ("mlp", (1, 8, 8)),
        ("lenet5", (1, 28, 28)),
        ("small-stvgg", (3, 16, 16)),
        ("fastconv", (3, 16, 16)),
    ],
)
def test_fused_trains_exactly_like_separate_members(arch, shape):
    """Same seeds, same batches (each member its own), float64: the fused model and the members agree."""
    from curate.train.fused import FusedEnsemble
    from curate.train.models import build_model
    from curate.train.schedule import make_optimizer
    from curate.train.seeds import member_seeds

    m_count, k = 3, 5
    members = []
    for m in range(m_count):
        torch.manual_seed(member_seeds(0, m)["init"])
        members.append(build_model(arch, shape, k, dropout=False).double())
    fused = FusedEnsemble(copy.deepcopy(members))
    cfg = TrainConfig(epochs=1, lr=0.1, schedule="cosine")
    opt_f, sch_f = make_optimizer(fused.parameters(), cfg, 4)
    opts = [make_optimizer(mem.parameters(), cfg, 4) for mem in members]
    g = torch.Generator().manual_seed(0)
    for _ in range(4):
        x = torch.randn(m_count, 16, *shape, generator=g, dtype=torch.float64)
        y = torch.randint(0, k, (m_count, 16), generator=g)
        out = fused(x)
        loss = sum(torch.nn.functional.cross_entropy(out[:, j], y[j]) for j in range(m_count))
        opt_f.zero_grad()
        loss.backward()
        opt_f.step()
        sch_f.step()
        for j, (mem, (opt, sch)) in enumerate(zip(members, opts, strict=True)):
            lj = torch.nn.functional.cross_entropy(mem(x[j]), y[j])
            opt.zero_grad()
            lj.backward()
            opt.step()
            sch.step()
    fused.eval()
    for mem in members:
        mem.eval()
    xe = torch.randn(8, *shape, generator=g, dtype=torch.float64)
    separate = torch.stack([mem(xe) for mem in members], 1)
    assert torch.allclose(fused.forward_shared(xe), separate, atol=1e-10, rtol=0)
    # training changed the weights: the comparison is not of two untouched initialisations
    torch.manual_seed(member_seeds(0, 0)["init"])
    fresh = build_model(arch, shape, k, dropout=False).double().eval()
    assert not torch.allclose(fresh(xe), separate[:, 0])


# ----------------------------------------------------------------------------- runs


def train_cli(ws: Path, *args: str) -> int:
    return main(["train", "digits", "--workspace", str(ws), *args])


def test_same_recipe_same_log_bit_for_bit(digits_ws):
    assert train_cli(digits_ws, "--run", "rep-a", *FAST) == 0
    assert train_cli(digits_ws, "--run", "rep-b", *FAST) == 0
    a, b = read_log(digits_ws / "runs" / "rep-a"), read_log(digits_ws / "runs" / "rep-b")
    assert len(a) == 4 * 4 * 2  # members x epochs 0..3 x splits
    assert_same_log(a, b)
    # members really differ: different initial weights and orders
    ep = a[("train", "0", "3")], a[("train", "1", "3")]
    assert not ep[0]["p_true"].equals(ep[1]["p_true"])
    # epoch 0 is the untrained model: near chance
    assert (a[("test", "0", "0")]["pred"] == 0).mean() < 0.9

    con = catalog.read(Workspace(digits_ws))
    rows = con.execute(
        "SELECT member, epochs_done FROM members WHERE run='rep-a' ORDER BY member"
    ).fetchall()
    assert rows == [(m, 3) for m in range(4)]


def test_separate_strategy_matches_fused_closely(digits_ws):
    assert train_cli(digits_ws, "--run", "rep-a", *FAST) == 0
    assert train_cli(digits_ws, "--run", "sep", "--strategy", "separate", *FAST) == 0
    a, b = read_log(digits_ws / "runs" / "rep-a"), read_log(digits_ws / "runs" / "sep")
    assert a.keys() == b.keys() and len(a) == 4 * 4 * 2  # members x epochs 0..3 x splits
    for k in a:  # fp32, different summation order: equal to rounding
        assert np.allclose(a[k]["p_true"], b[k]["p_true"], atol=2e-3), k
        assert (a[k]["pred"] == b[k]["pred"]).mean() > 0.98


def test_train_forward_pass_logged(digits_ws):
    assert train_cli(digits_ws, "--run", "fwd", "--set", "train.log_train_pass=true", *FAST) == 0
    fwd = read_log(digits_ws / "runs" / "fwd", "train-forward")
    assert set(k[2] for k in fwd) == {"1", "2", "3"}  # training epochs only
    shard = fwd[("train", "2", "1")]
    assert (
        len(shard) == (1438 // 64) * 64
        and shard["idx"].is_unique
        and shard["idx"].is_monotonic_increasing
    )


@pytest.mark.slow
def test_kill_and_resume_gives_the_same_log(digits_ws, tmp_path):
    assert (
        train_cli(
            digits_ws,
            "--run",
            "whole",
            "--set",
            "train.epochs=6",
            "--set",
            "train.members=4",
            "--strategy",
            "separate",
            "--set",
            "train.precision=fp32",  # the same precision whatever the CPU: logs compared bit for bit
        )
        == 0
    )
    cmd = [
        sys.executable,
        "-m",
        "curate",
        "train",
        "digits",
        "--workspace",
        str(digits_ws),
        "--run",
        "killed",
        "--set",
        "train.epochs=6",
        "--set",
        "train.members=4",
        "--strategy",
        "separate",
        "--set",
        "train.precision=fp32",  # as the uninterrupted run
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    progress = digits_ws / "runs" / "killed" / "progress" / "member=1.json"
    deadline = time.time() + 120
    while time.time() < deadline and not progress.exists():  # member 0 done, member 1 under way
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert progress.exists(), "the run finished no epoch of member 1 before the deadline"
    from curate.train.predlog import last_done_epoch

    assert last_done_epoch(digits_ws / "runs" / "killed", 3) < 6  # killed before the end
    assert (
        train_cli(
            digits_ws,
            "--run",
            "killed",
            "--set",
            "train.epochs=6",
            "--set",
            "train.members=4",
            "--strategy",
            "separate",
            "--set",
            "train.precision=fp32",  # the same precision whatever the CPU: logs compared bit for bit
        )
        == 0
    )
    assert_same_log(read_log(digits_ws / "runs" / "whole"), read_log(digits_ws / "runs" / "killed"))


class _Killed(BaseException):
    """Stands in for SIGKILL at an exact point; BaseException so nothing on the way catches it."""


@pytest.mark.parametrize("marks_before_kill", [0, 1])
def test_killed_between_checkpoint_and_progress_resumes(digits_ws, monkeypatch, marks_before_kill):
    # the kill lands after epoch 2's shards and checkpoint are written, with `marks_before_kill`
    # of the unit's 4 members recorded as done: the rerun must find epoch 1's checkpoint
    from curate.train import predlog

    real, calls = predlog.mark_epoch_done, []

    def mark(run_dir, member, epoch, record):
        if epoch == 2:
            if len(calls) == marks_before_kill:
                raise _Killed
            calls.append(member)
        real(run_dir, member, epoch, record)

    assert train_cli(digits_ws, "--run", "rep-a", *FAST) == 0
    run = f"cut-{marks_before_kill}"
    monkeypatch.setattr(predlog, "mark_epoch_done", mark)
    with pytest.raises(_Killed):
        train_cli(digits_ws, "--run", run, *FAST)
    monkeypatch.setattr(predlog, "mark_epoch_done", real)
    assert sorted(p.name for p in (digits_ws / "runs" / run / "checkpoints").rglob("*.pt")) == [
        "epoch=1.pt",
        "epoch=2.pt",
    ]
    assert train_cli(digits_ws, "--run", run, *FAST) == 0
    assert [p.name for p in (digits_ws / "runs" / run / "checkpoints").rglob("*.pt")] == [
        "epoch=3.pt"
    ]
    assert_same_log(read_log(digits_ws / "runs" / "rep-a"), read_log(digits_ws / "runs" / run))


@pytest.mark.slow
def test_torchrun_two_processes_gloo(digits_ws):
    assert train_cli(digits_ws, "--run", "rep-a", *FAST) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        f"--master_port={free_port()}",
        "-m",
        "curate",
        "train",
        "digits",
        "--workspace",
        str(digits_ws),
        "--run-name",
        "ddp",
        "--device",
        "cpu",
        *FAST,
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    a, b = read_log(digits_ws / "runs" / "rep-a"), read_log(digits_ws / "runs" / "ddp")
    # every member's shards, written by the rank that trained it
    assert a.keys() == b.keys() and len(a) == 4 * 4 * 2  # members x epochs 0..3 x splits
    for k in a:
        assert np.allclose(a[k]["p_true"], b[k]["p_true"], atol=2e-3), k

    con = catalog.read(Workspace(digits_ws))
    assert con.execute("SELECT world_size, members FROM runs WHERE run='ddp'").fetchall() == [
        (2, 4)
    ]


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--arch", "resnet9000"], "unknown architecture 'resnet9000'"),
        (["--set", "train.epoch=3"], "unknown recipe key train.epoch"),
        (["--epochs", "0"], "train.epochs = 0"),
        (["--members", "1"], "at least 2 members"),
        (["--set", "train.lr=fast"], "train.lr = 'fast'"),
    ],
)
def test_bad_train_input(digits_ws, capsys, args, needle):
    assert train_cli(digits_ws, "--run", "bad", *args) == 2
    assert needle in capsys.readouterr().err
    assert not (digits_ws / "runs" / "bad" / "predictions").exists()


def test_dataset_not_ingested(tmp_path, capsys):
    assert main(["train", "mnist", "--workspace", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "not ingested" in err and "curate ingest mnist" in err


def test_run_folder_with_other_recipe_is_kept(digits_ws, capsys):
    assert train_cli(digits_ws, "--run", "rep-a", *FAST) == 0
    before = read_log(digits_ws / "runs" / "rep-a")
    assert (
        train_cli(
            digits_ws,
            "--run",
            "rep-a",
            "--set",
            "train.epochs=3",
            "--set",
            "train.members=4",
            "--set",
            "train.lr=0.2",
        )
        == 2
    )
    assert "different recipe" in capsys.readouterr().err
    assert_same_log(before, read_log(digits_ws / "runs" / "rep-a"))


def test_recipes_in_pipelines_load():
    from curate.config import PIPELINES

    names = sorted(p.stem for p in PIPELINES.glob("*.toml"))
    assert "digits" in names
    for n in names:
        load_recipe(n)


def test_jpeg_dataset_streams_from_ffcv_member_by_member(tmp_path):
    """Large-image datasets are not held in memory: each member reads its own ffcv loader."""
    from test_ingest import _imagenet_tree

    _imagenet_tree(tmp_path / "ILSVRC", flat_val=True)
    ws = tmp_path / "ws"
    over = [
        "--set",
        "dataset.source=" + repr(str(tmp_path / "ILSVRC")).replace("'", '"'),
        "--set",
        "loader.crop_size=16",
        "--set",
        "loader.batch_size=2",
        "--set",
        "loader.flip=true",
    ]
    # ingest reads [dataset] only: the [loader] keys are for train
    assert main(["ingest", "imagenet", "--workspace", str(ws), *over[:2]]) == 0
    assert (
        main(
            [
                "train",
                "imagenet-mini",
                "--workspace",
                str(ws),
                "--run",
                "jpeg",
                "--arch",
                "mlp",
                "--members",
                "2",
                "--epochs",
                "2",
                *over,
            ]
        )
        == 0
    )
    log = read_log(ws / "runs" / "jpeg")
    assert len(log) == 2 * 3 * 2  # members x epochs 0..2 x splits (train, val)
    assert sorted(log[("val", "1", "2")]["idx"]) == [0, 1, 2, 3]

    con = catalog.read(Workspace(ws))
    assert con.execute("SELECT strategy FROM runs WHERE run = 'jpeg'").fetchall() == [("separate",)]


@pytest.mark.parametrize(
    "arch, shape",
    [
        ("mlp", (1, 8, 8)),
        ("lenet5", (3, 32, 32)),
        ("small-stvgg", (3, 32, 32)),
        ("fastconv", (3, 32, 32)),
    ],
)
def test_shared_input_pass_equals_each_member_on_its_copy(arch, shape):
    """The eval pass runs the first layer once, dense, over the stacked filters, and folds each
    BatchNorm into the conv before it: the same logits as every member on its own copy of the
    batch (float64, so only the summation order may differ)."""
    from curate.train.fused import FusedEnsemble
    from curate.train.models import build_model

    torch.manual_seed(0)
    members = [build_model(arch, shape, 10).double().eval() for _ in range(3)]
    for mem in members:  # trained-looking running statistics and affine parameters
        for bn in mem.modules():
            if isinstance(bn, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d):
                bn.running_mean.normal_()
                bn.running_var.uniform_(0.5, 2.0)
                bn.weight.data.normal_()
                bn.bias.data.normal_()
    fused = FusedEnsemble(members).double().eval()
    x = torch.randn(5, *shape, dtype=torch.float64)
    with torch.inference_mode():
        shared = fused.forward_shared(x)  # (B, M, K)
        each = torch.stack([mem(x) for mem in members], 1)
    assert shared.shape == (5, 3, 10)
    assert torch.allclose(shared, each, atol=1e-10)


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity on this platform")
def test_all_cores_means_the_cores_this_process_may_use():
    """threads = 0 under `taskset -c <one core>` (or a Slurm step of one core): torch gets 1 thread,
    not one per core of the machine."""
    from curate.cores import usable_cores

    mask = os.sched_getaffinity(0)
    assert usable_cores() == len(mask)
    code = (
        f"import os; os.sched_setaffinity(0, {{{min(mask)}}}); import torch; "
        "from curate.cores import usable_cores; from curate.train.placement import place; "
        "place('cpu', 0); print(usable_cores(), torch.get_num_threads())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "1"]


def test_a_checkpoint_save_removes_the_temporary_of_a_killed_one(tmp_path):
    """A save killed midway (an earlier process) leaves `.epoch=E.pt.*.tmp`; the next save removes
    it, and leaves one a live process is writing."""
    from curate.train import checkpoints
    from curate.workspace import process_start

    folder = tmp_path / "checkpoints" / "m0"
    folder.mkdir(parents=True)
    dead, live = folder / ".epoch=2.pt.dead1234.tmp", folder / ".epoch=2.pt.live1234.tmp"
    dead.write_bytes(b"half a checkpoint")
    live.write_bytes(b"being written")
    os.utime(dead, (process_start() - 60, process_start() - 60))
    checkpoints.save(tmp_path, "m0", 2, {"w": torch.ones(2)})
    assert not dead.exists() and live.exists()
    assert torch.equal(checkpoints.load(tmp_path, "m0", 2)["w"], torch.ones(2))
