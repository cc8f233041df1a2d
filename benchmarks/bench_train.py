"""End-to-end ensemble training with the per-epoch prediction log, against the way the papers' code
works, and the FLOP/s of our training step against this machine's matmul peak.

(1) M = 8 LeNet-5 members on MNIST (../shared/data/mnist), E epochs, with the eval pass on train
    and test after every epoch (and at epoch 0). Ours: `curate train` (fused members, in-memory
    data from the .beton, Parquet log). Baseline: a Python loop over members, each a standard
    PyTorch training with a DataLoader over the images as PNG files (PIL, 2 workers), predictions
    logged per batch into Python lists and pickled each epoch. Target: at least 3x.
(2) GFLOP/s of a small-stvgg training step on 32x32 (forward + backward + SGD, FLOPs counted by
    torch's FlopCounterMode) against a 4096 x 4096 fp32 matmul. Target: at least 50 %.

    python benchmarks/bench_train.py [--epochs 2] [--members 8]

Figures go to benchmarks/results/train.json.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
MNIST = ROOT.parent / "shared" / "data" / "mnist"


def write_pngs(folder: Path) -> None:
    """MNIST as PNG files <split>/<class>/<idx>.png: the input the papers' loaders read."""
    from PIL import Image

    from curate.data.formats.idx import read_idx

    if (folder / ".complete").exists():
        return
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = read_idx(MNIST / f"{prefix}-images-idx3-ubyte.gz")
        labels = read_idx(MNIST / f"{prefix}-labels-idx1-ubyte.gz")
        for k in range(10):
            (folder / split / str(k)).mkdir(parents=True, exist_ok=True)
        for i, (a, y) in enumerate(zip(images, labels, strict=True)):
            Image.fromarray(a).save(folder / split / str(y) / f"{i:05d}.png")
    (folder / ".complete").write_text("ok")


def baseline(folder: Path, members: int, epochs: int, batch: int, log_dir: Path) -> float:
    """The papers' way: one member after another, DataLoader over PIL files, per-batch Python logging."""
    import torch
    import torchvision
    from torchvision import transforms as T

    from curate.train.models import build_model

    tf = T.Compose([T.ToTensor(), T.Normalize((0.1307,), (0.3081,))])
    train = torchvision.datasets.ImageFolder(str(folder / "train"), transform=tf, loader=_grey)
    test = torchvision.datasets.ImageFolder(str(folder / "test"), transform=tf, loader=_grey)
    log_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for m in range(members):
        torch.manual_seed(m)
        model = build_model("lenet5", (1, 28, 28), 10)
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
        dl = torch.utils.data.DataLoader(
            train, batch_size=batch, shuffle=True, num_workers=2, drop_last=True
        )

        def evaluate(epoch):
            model.eval()
            record = {}
            for name, ds in (("train", train), ("test", test)):
                preds, probs = [], []
                with torch.no_grad():
                    for x, y in torch.utils.data.DataLoader(ds, batch_size=1024, num_workers=2):
                        out = model(x)
                        preds += out.argmax(1).tolist()
                        probs += torch.softmax(out, 1).gather(1, y[:, None])[:, 0].tolist()
                record[name] = (preds, probs)
            with open(log_dir / f"member{m}_epoch{epoch}.pkl", "wb") as f:
                pickle.dump(record, f)

        evaluate(0)
        for epoch in range(1, epochs + 1):
            model.train()
            for x, y in dl:
                opt.zero_grad()
                torch.nn.functional.cross_entropy(model(x), y).backward()
                opt.step()
            evaluate(epoch)
    return time.perf_counter() - t0


def _grey(path):
    from PIL import Image

    with Image.open(path) as im:
        return im.convert("L")


def ours(ws_root: Path, members: int, epochs: int, batch: int) -> float:
    from curate.config import load_recipe
    from curate.data.ingest import ingest
    from curate.data.loader import import_ffcv
    from curate.train.run import train
    from curate.workspace import Workspace

    import_ffcv()
    ws = Workspace(ws_root)
    recipe = load_recipe(
        "mnist",
        [
            f"dataset.source={json.dumps(str(MNIST))}",
            f"train.members={members}",
            f"train.epochs={epochs}",
            'train.arch="lenet5"',
            f"loader.batch_size={batch}",
            "train.lr=0.05",
            'train.schedule="constant"',
        ],
    )
    ingest(recipe.dataset, ws)
    shutil.rmtree(ws.run_dir("bench"), ignore_errors=True)
    t0 = time.perf_counter()
    train(recipe, ws, run="bench", quiet=True)
    return time.perf_counter() - t0


def flops(members: int) -> dict:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from curate.train.fused import FusedEnsemble
    from curate.train.models import build_model

    torch.set_num_threads(os.cpu_count() or 1)
    a = torch.randn(4096, 4096)
    b = torch.randn(4096, 4096)
    a @ b
    reps, t0 = 5, time.perf_counter()
    for _ in range(reps):
        a @ b
    peak = 2 * 4096**3 * reps / (time.perf_counter() - t0) / 1e9
    out = {"matmul_peak_gflops": peak}
    for label, m_count, batch in (
        ("single member, batch 256", 1, 256),
        (f"{members} fused members, batch 128", members, 128),
    ):
        mods = []
        for m in range(m_count):
            torch.manual_seed(m)
            mods.append(build_model("small-stvgg", (3, 32, 32), 10))
        model = (FusedEnsemble(mods) if m_count > 1 else mods[0]).to(
            memory_format=torch.channels_last
        )
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        shape = (m_count, batch, 3, 32, 32) if m_count > 1 else (batch, 3, 32, 32)
        x = torch.randn(*shape)
        if m_count == 1:
            x = x.contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, 10, (m_count, batch) if m_count > 1 else (batch,))

        def step():
            logits = model(x)
            loss = (
                sum(torch.nn.functional.cross_entropy(logits[:, j], y[j]) for j in range(m_count))
                if m_count > 1
                else torch.nn.functional.cross_entropy(logits, y)
            )
            opt.zero_grad()
            loss.backward()
            opt.step()

        # FLOPs of one member's step at this batch, counted by torch, times the members: the fused model does
        # exactly the members' arithmetic (counting the grouped model itself is not trusted)
        torch.manual_seed(0)
        single = build_model("small-stvgg", (3, 32, 32), 10).to(memory_format=torch.channels_last)
        xs = torch.randn(batch, 3, 32, 32).contiguous(memory_format=torch.channels_last)
        with FlopCounterMode(display=False) as counter:
            torch.nn.functional.cross_entropy(single(xs), torch.randint(0, 10, (batch,))).backward()
        f = counter.get_total_flops() * m_count + 4 * sum(
            p.numel() for p in model.parameters()
        )  # + SGD
        for _ in range(2):
            step()
        reps, t0 = 10, time.perf_counter()
        for _ in range(reps):
            step()
        gflops = f * reps / (time.perf_counter() - t0) / 1e9
        out[label] = {"gflops": gflops, "fraction_of_peak": gflops / peak}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--members", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--work", default=str(ROOT / "benchmarks" / ".work" / "train"))
    args = ap.parse_args()
    work = Path(args.work)
    # every figure of the JSON comes from this one run: nothing is carried over from an earlier one,
    # and the load average says whether anything else was running beside it
    load_before = os.getloadavg()[0]
    if load_before > 0.5:
        print(f"warning: load average {load_before:.1f} before starting: timings will be noisy")
    results: dict = {
        "cpus": os.cpu_count(),
        "members": args.members,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "load_average_before": load_before,
    }
    if not MNIST.exists():
        sys.exit(f"{MNIST} is absent: this benchmark needs the shared MNIST files")
    write_pngs(work / "mnist-png")
    t_ours = ours(work / "ws", args.members, args.epochs, args.batch_size)
    print(f"ours: {t_ours:.1f} s")
    t_base = baseline(
        work / "mnist-png", args.members, args.epochs, args.batch_size, work / "baseline-log"
    )
    print(f"baseline: {t_base:.1f} s")
    results.update({"ours_s": t_ours, "baseline_s": t_base, "speedup": t_base / t_ours})
    print(
        f"(1) {args.members} x LeNet-5 on MNIST, {args.epochs} epochs + per-epoch eval log: ours "
        f"{t_ours:.1f} s, papers' way {t_base:.1f} s: {t_base / t_ours:.1f}x (target 3x)"
    )
    f = flops(args.members)
    results["flops"] = f
    for k, v in f.items():
        if isinstance(v, dict):
            print(
                f"(2) small-stvgg training step, {k}: {v['gflops']:.1f} GFLOP/s = "
                f"{v['fraction_of_peak']:.0%} of the {f['matmul_peak_gflops']:.1f} GFLOP/s matmul "
                "peak (target 50 %)"
            )
    results["load_average_after"] = os.getloadavg()[0]
    out = ROOT / "benchmarks" / "results" / "train.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
