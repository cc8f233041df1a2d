"""Ingest and training-loader throughput on the shared CIFAR-10 JPEG set (60,000 images).

(a) ingest time for all 60,000 images (decode, check, write .betons and catalog rows), from the
    unpacked image folder;
(b) images per second of our training loader (ffcv, seeded random order, random crop with 4-pixel
    padding, horizontal flip, normalise) against a torch DataLoader over the same image folder
    (PIL decode, torchvision transforms, 2 workers) with the same augmentation, in the same run.
    Target: at least 10x.

    python benchmarks/bench_loader.py [--epochs 2]

Figures go to benchmarks/results/loader.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
TAR = ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--epochs", type=int, default=2, help="timed epochs of our loader (after one warm-up)"
    )
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--work", default=str(ROOT / "benchmarks" / ".work" / "loader"))
    args = ap.parse_args()
    if not TAR.exists():
        sys.exit(f"{TAR} is absent: this benchmark needs the shared CIFAR-10 JPEG set")
    work = Path(args.work)
    folder = work / "cifar10-jpeg"
    if not folder.exists():
        work.mkdir(parents=True, exist_ok=True)
        with tarfile.open(TAR) as t:
            t.extractall(work, filter="data")
    results: dict = {"cpus": os.cpu_count(), "batch_size": args.batch_size}

    import torch

    from curate.config import DatasetConfig, LoaderConfig
    from curate.data.ingest import ingest
    from curate.data.loader import LoaderSpec, import_ffcv, make_loader
    from curate.workspace import Workspace

    import_ffcv()  # numba's import cost (~12 s) is not ingest's
    ws = Workspace(work / "ws")
    shutil.rmtree(ws.root, ignore_errors=True)
    t0 = time.perf_counter()
    res = ingest(DatasetConfig(format="imagefolder", source=str(folder), name="cifar10-jpeg"), ws)
    results["ingest_s"] = time.perf_counter() - t0
    results["ingest_images"] = sum(res.counts.values())
    print(
        f"(a) ingest of {results['ingest_images']} JPEGs: {results['ingest_s']:.1f} s "
        f"({results['ingest_images'] / results['ingest_s']:.0f} images/s)"
    )

    cfg = LoaderConfig(batch_size=args.batch_size, translate=4, flip=True)
    ours = make_loader("cifar10-jpeg", "train", "train", ws, LoaderSpec(cfg=cfg, seed=0))
    torch.set_num_threads(os.cpu_count() or 1)
    for _ in ours:  # warm-up epoch: numba compiles the pipeline
        pass
    n, t0 = 0, time.perf_counter()
    for _ in range(args.epochs):
        for x, y, i in ours:
            n += len(y)
    ours_ips = n / (time.perf_counter() - t0)
    results["ours_images_per_s"] = ours_ips

    import torchvision
    from torchvision import transforms as T

    info = json.loads((ws.dataset_dir("cifar10-jpeg") / "dataset.json").read_text())
    mean = [m / 255 for m in info["mean"]]
    std = [s / 255 for s in info["std"]]
    tf = T.Compose(
        [
            T.RandomCrop(32, padding=4),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(mean, std),
        ]
    )
    ds = torchvision.datasets.ImageFolder(str(folder / "train"), transform=tf)
    dl = torch.utils.data.DataLoader(
        ds,
        batch_size=args.batch_size,
        shuffle=True,
        num_workers=2,
        drop_last=True,
        persistent_workers=True,
    )
    it = iter(dl)
    next(it)  # start the workers before timing
    n, t0 = 0, time.perf_counter()
    for x, y in it:
        n += len(y)
    base_ips = n / (time.perf_counter() - t0)
    results["baseline_images_per_s"] = base_ips
    results["speedup"] = ours_ips / base_ips
    print(
        f"(b) training loader: ours {ours_ips:,.0f} images/s, torch DataLoader (PIL, 2 workers) "
        f"{base_ips:,.0f} images/s: {ours_ips / base_ips:.1f}x (target 10x)"
    )
    out = ROOT / "benchmarks" / "results" / "loader.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
