"""torchvision's resnet18 on CIFAR-10 in a plain PyTorch loop, recorded with `curate.Recorder`.

The images never pass through curate: the script reads CIFAR-10 itself, registers the labels
alone (`curate ingest labels`), trains M members with its own loop (bf16/fp16 autocast and
channels_last on a GPU) and hands each evaluation batch to the recorder. Then score as usual:

    python pipelines/resnet18_cifar10_recorder.py --data DIR --workspace ws --members 4 --epochs 30
    curate score resnet18-cifar10 --workspace ws && curate label-issues resnet18-cifar10 ...

--data is torchvision's CIFAR-10 folder (holding cifar-10-batches-py), or an image folder
<root>/{train,test}/<class>/<NNNNN>.jpg whose file stems are the standard order (as
../shared/data/cifar10-jpeg), or that folder's .tar.gz. --subset N keeps the first N images of
each split (a quick CPU check: --subset 64 --epochs 1 --device cpu). Rerunning resumes: the
recorder skips the parts already written, each member restarts from its checkpoint.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from curate.data.labels_only import ingest_labels  # noqa: E402
from curate.record.recorder import Recorder  # noqa: E402
from curate.workspace import Workspace  # noqa: E402

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
MEAN = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1) * 255
STD = torch.tensor([0.2470, 0.2435, 0.2616]).view(1, 3, 1, 1) * 255


def read_cifar(path: Path, subset: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """split -> (images (N, 32, 32, 3) uint8, labels (N,)) in the standard order."""
    keep = subset or None
    if path.name.endswith((".tar.gz", ".tgz")):
        import io
        import tarfile

        from PIL import Image

        found: dict[str, dict[int, tuple[np.ndarray, int]]] = {"train": {}, "test": {}}
        with tarfile.open(path) as tar:
            for m in tar:
                parts = m.name.split("/")
                if not m.isfile() or len(parts) < 3 or parts[-3] not in found:
                    continue
                i = int(Path(parts[-1]).stem)
                if keep is not None and i >= keep:
                    continue
                img = Image.open(io.BytesIO(tar.extractfile(m).read())).convert("RGB")
                found[parts[-3]][i] = (np.asarray(img), CLASSES.index(parts[-2]))
        return {
            s: (np.stack([v[i][0] for i in sorted(v)]), np.array([v[i][1] for i in sorted(v)]))
            for s, v in found.items()
        }
    if (path / "train").is_dir():
        from PIL import Image

        out = {}
        for split in ("train", "test"):
            files = sorted(
                (int(f.stem), CLASSES.index(f.parent.name), f)
                for f in (path / split).glob("*/*")
                if f.parent.name in CLASSES
            )
            files = [r for r in files if keep is None or r[0] < keep]
            x = np.stack([np.asarray(Image.open(f).convert("RGB")) for _, _, f in files])
            out[split] = (x, np.array([c for _, c, _ in files]))
        return out
    from torchvision.datasets import CIFAR10

    out = {}
    for split in ("train", "test"):
        ds = CIFAR10(str(path), train=split == "train", download=False)
        out[split] = (ds.data[:keep], np.array(ds.targets)[:keep])
    return out


def register(ws: Workspace, name: str, data) -> None:
    """The labels (and nothing else) in the catalog: idx = position in the standard order."""
    import pandas as pd

    rows = [(s, i, CLASSES[int(y)]) for s, (_, ys) in data.items() for i, y in enumerate(ys)]
    csv = ws.root / "labels" / f"{name}.csv"
    csv.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=["split", "idx", "label"]).to_csv(csv, index=False)
    ingest_labels(ws, name, str(csv), classes=",".join(CLASSES), force=True)


def resnet18(device: torch.device) -> torch.nn.Module:
    """torchvision's resnet18 with the usual CIFAR stem (3x3 first convolution, no max-pool)."""
    from torchvision.models import resnet18 as tv_resnet18

    net = tv_resnet18(num_classes=10)
    net.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    net.maxpool = torch.nn.Identity()
    net = net.to(device)
    return net.to(memory_format=torch.channels_last) if device.type == "cuda" else net


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random crop with 4 pixels of padding and a random horizontal flip, on uint8 (B, C, H, W)."""
    b = x.shape[0]
    pad = F.pad(x, (4, 4, 4, 4))
    dy, dx = torch.randint(0, 9, (2, b), generator=gen).tolist()
    x = torch.stack([pad[i, :, dy[i] : dy[i] + 32, dx[i] : dx[i] + 32] for i in range(b)])
    flip = torch.rand(b, generator=gen) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1).to(x.device), x.flip(3), x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--data", required=True, help="CIFAR-10: torchvision folder, image folder or .tar.gz"
    )
    ap.add_argument("--workspace", default="workspace")
    ap.add_argument("--run", default="resnet18-cifar10")
    ap.add_argument("--dataset", default="cifar10-labels", help="catalog name for the labels")
    ap.add_argument("--members", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--eval-batch-size", type=int, default=1000)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--subset", type=int, default=0, help="first N images per split (0 = all)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    device = torch.device(args.device)
    cuda = device.type == "cuda"
    ws = Workspace.resolve(args.workspace)
    data = read_cifar(Path(args.data), args.subset)
    dataset = args.dataset if not args.subset else f"{args.dataset}-first{args.subset}"
    register(ws, dataset, data)
    x = {
        s: torch.from_numpy(v[0]).permute(0, 3, 1, 2).contiguous().to(device)
        for s, v in data.items()
    }
    y = {s: torch.from_numpy(v[1]).long().to(device) for s, v in data.items()}
    amp = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float16
    precision = ("amp-" + str(amp).split(".")[1]) if cuda else "fp32"
    rec = Recorder(ws, run=args.run, dataset=dataset, members=args.members, epochs=args.epochs,
                   arch="torchvision-resnet18", seed=args.seed, precision=precision)  # fmt: skip
    ckpt_dir = ws.run_dir(args.run) / "user-checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)

    def normalise(xb: torch.Tensor) -> torch.Tensor:
        xb = (xb.float() - MEAN.to(device)) / STD.to(device)
        return xb.contiguous(memory_format=torch.channels_last) if cuda else xb

    def evaluate(model: torch.nn.Module, m: int, epoch: int) -> None:
        # -- the Recorder in the user's evaluation pass: one call per batch --
        model.eval()
        with torch.inference_mode(), torch.autocast(device.type, dtype=amp, enabled=cuda):
            for split in x:
                for s in range(0, len(x[split]), args.eval_batch_size):
                    logits = model(normalise(x[split][s : s + args.eval_batch_size]))
                    idx = torch.arange(s, s + len(logits))
                    rec.log(split, m, epoch, idx, logits)
        model.train()

    n = len(y["train"])
    steps = max(1, n // args.batch_size)
    for m in range(args.members):
        start = rec.next_epoch(m)
        if start > args.epochs:
            continue  # this member is recorded in full
        torch.manual_seed(args.seed * 1000 + m)
        model = resnet18(device)
        opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4,
                              nesterov=True)  # fmt: skip
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, args.lr, total_steps=steps * args.epochs)
        scaler = torch.amp.GradScaler(enabled=cuda and amp == torch.float16)
        ckpt = ckpt_dir / f"member={m}.pt"
        if start > 0 and ckpt.exists():
            state = torch.load(ckpt, map_location=device, weights_only=True)
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["opt"])
            sched.load_state_dict(state["sched"])
            start = state["epoch"] + 1
        else:
            start = 0
        if start == 0:
            evaluate(model, m, 0)  # epoch 0: the untrained member
            start = 1
        gen = torch.Generator().manual_seed(args.seed * 1000 + m)
        for epoch in range(start, args.epochs + 1):
            t0 = time.perf_counter()
            model.train()
            order = torch.randperm(n, generator=torch.Generator().manual_seed(m * 10_000 + epoch))
            for t in range(steps):
                rows = order[t * args.batch_size : (t + 1) * args.batch_size].to(device)
                xb = normalise(augment(x["train"][rows], gen))
                with torch.autocast(device.type, dtype=amp, enabled=cuda):
                    loss = F.cross_entropy(model(xb), y["train"][rows])
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                sched.step()
            evaluate(model, m, epoch)
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(),
                        "sched": sched.state_dict(), "epoch": epoch}, ckpt)  # fmt: skip
            print(f"member {m} epoch {epoch}/{args.epochs}: loss {loss.item():.3f} "
                  f"({time.perf_counter() - t0:.1f} s)", flush=True)  # fmt: skip
    res = rec.close()
    print(f"run {args.run}: {'complete' if res.complete else f'{len(res.missing)} parts missing'};"
          f" next: curate score {args.run} --workspace {ws.root}")  # fmt: skip


if __name__ == "__main__":
    main()
