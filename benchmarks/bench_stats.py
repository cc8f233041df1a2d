"""Image statistics on the shared CIFAR-10 JPEG set.

(1) `curate stats` over all 60,000 images (every statistic, all cores): wall time (target < 3 min).
(2) Against a per-image, per-window loop (np.unique per 10 x 10 window, one image at a time, one
    process) on a 500-image sample: the entropy alone (target 50x) and the whole statistics pass
    (target 10x), ours on the same 500 images, in the same run.

    python benchmarks/bench_stats.py

Figures go to benchmarks/results/stats.json.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tarfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
TAR = ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"


def loop_entropy(img: np.ndarray) -> float:
    """The straightforward way: every window, np.unique, one at a time."""
    from curate.stats.definitions import grey

    g = grey(img)
    h, w = g.shape
    total, count = 0.0, 0
    for y in range(h - 9):
        for x in range(w - 9):
            _, c = np.unique(g[y : y + 10, x : x + 10], return_counts=True)
            p = c / 100
            total += float(-(p * np.log2(p)).sum())
            count += 1
    return total / count


def loop_all(img: np.ndarray) -> dict:
    """Every statistic, image by image, written plainly (scipy / skimage / OpenCV calls per image)."""
    import cv2
    from scipy import fft, ndimage
    from skimage.segmentation import felzenszwalb

    from curate.stats.definitions import grey

    g = grey(img)
    d = np.sort(np.abs(fft.dctn(g / 255, norm="ortho")).ravel())[::-1]
    k = int(np.argmax(np.sqrt(np.cumsum(d**2)) / np.linalg.norm(d) >= 0.9998)) + 1
    gx, gy = ndimage.sobel(g / 255, axis=1), ndimage.sobel(g / 255, axis=0)
    rg = img[..., 0].astype(float) - img[..., 1]
    yb = 0.5 * (img[..., 0].astype(float) + img[..., 1]) - img[..., 2]
    return {
        "entropy": loop_entropy(img),
        "dct_pct": 100 * k / g.size,
        "sobel": float(np.hypot(gx, gy).sum()),
        "segments": len(np.unique(felzenszwalb(img, scale=500, sigma=0.5, min_size=20))),
        "mean": g.mean(),
        "rms": (g / 255).std(),
        "colour": np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()),
        "jpeg": cv2.imencode(".jpg", img[..., ::-1].copy(), [cv2.IMWRITE_JPEG_QUALITY, 90])[1].size,
    }


def main() -> None:
    if not TAR.exists():
        sys.exit(f"{TAR} is absent: this benchmark needs the shared CIFAR-10 JPEG set")
    from curate.config import DatasetConfig
    from curate.data.ingest import ingest
    from curate.data.loader import import_ffcv
    from curate.data.sources import decode_image
    from curate.stats.compute import compute_stats, stats_of_images
    from curate.stats.definitions import mean_local_entropy_batch
    from curate.workspace import Workspace

    work = ROOT / "benchmarks" / ".work" / "stats"
    folder = work / "cifar10-jpeg"
    if not folder.exists():
        work.mkdir(parents=True, exist_ok=True)
        with tarfile.open(TAR) as t:
            t.extractall(work, filter="data")
    import_ffcv()
    ws = Workspace(work / "ws")
    ingest(DatasetConfig(format="imagefolder", source=str(folder), name="cifar10-jpeg"), ws)
    shutil.rmtree(ws.root / "stats", ignore_errors=True)
    results: dict = {"cpus": os.cpu_count()}

    t0 = time.perf_counter()
    n = compute_stats("cifar10-jpeg", ws)
    results["all_images"] = n
    results["all_stats_s"] = time.perf_counter() - t0
    print(
        f"(1) all statistics of {n} CIFAR-10 images: {results['all_stats_s']:.1f} s (target 180 s)"
    )

    files = sorted((folder / "train").rglob("*.jpg"))[::100][:500]
    images = [decode_image(str(f)) for f in files]
    stack = np.stack(images)
    t0 = time.perf_counter()
    ours_entropy = mean_local_entropy_batch(stack)
    t_ours_entropy = time.perf_counter() - t0
    t0 = time.perf_counter()
    base_entropy = np.array([loop_entropy(a) for a in images])
    t_base_entropy = time.perf_counter() - t0
    assert np.allclose(ours_entropy, base_entropy), "the two entropies disagree"
    t0 = time.perf_counter()
    stats_of_images(images)
    t_ours_all = time.perf_counter() - t0
    t0 = time.perf_counter()
    for a in images:
        loop_all(a)
    t_base_all = time.perf_counter() - t0
    results["sample"] = {
        "images": len(images),
        "entropy_ours_s": t_ours_entropy,
        "entropy_loop_s": t_base_entropy,
        "entropy_speedup": t_base_entropy / t_ours_entropy,
        "all_ours_s": t_ours_all,
        "all_loop_s": t_base_all,
        "all_speedup": t_base_all / t_ours_all,
    }
    print(
        f"(2) 500 images, one process each: entropy ours {t_ours_entropy:.2f} s vs per-window loop "
        f"{t_base_entropy:.1f} s = {t_base_entropy / t_ours_entropy:.0f}x (target 50x); whole pass ours "
        f"{t_ours_all:.2f} s vs loop {t_base_all:.1f} s = {t_base_all / t_ours_all:.1f}x (target 10x)"
    )
    out = ROOT / "benchmarks" / "results" / "stats.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
