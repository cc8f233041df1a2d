"""Image statistics on the shared CIFAR-10 JPEG set.

(1) `curate stats` over all 60,000 images (every statistic, all cores): wall time (target < 3 min).
(2) Against a per-image, per-window loop (np.unique per 10 x 10 window, one image at a time, one
    process) on a 500-image sample: the entropy alone (target 50x) and the whole statistics pass
    (target 10x), ours on the same 500 images, in the same run.
(3) `edge_strength_pmi` alone (`--pmi`, figures to benchmarks/results/stats_pmi.json): the 60,000
    CIFAR-10 JPEGs in a process pool over all cores (target < 10 min; by default a seeded sample of
    3,000 images extrapolated to 60,000, `--pmi-full` for all of them), one 500 x 375 image (a
    mosaic of 48 Tiny-ImageNet images: no Pascal VOC image is available offline) at full resolution
    and as the statistics pass sees it (shrunk to 256), and a direct port (Python loops over pairs
    and kernels, sparse matrices, one filter call per eigenvector and orientation) on a few CIFAR
    images, checked to give the same values. Also the seed-to-seed reliability of the statistic.

    python benchmarks/bench_stats.py            # (1) and (2)
    python benchmarks/bench_stats.py --pmi      # (3)

Figures go to benchmarks/results/stats.json (and stats_pmi.json).
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
    """Every statistic, image by image, written plainly (scipy / skimage / OpenCV calls per image).
    `edge_strength_pmi` is curate's own function on both sides (its direct port is timed in (3))."""
    import cv2
    from scipy import fft, ndimage
    from skimage.segmentation import felzenszwalb

    from curate.stats import pmi
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
        "pmi": pmi.edge_strength_pmi(pmi.shrink(img), seed=0),
    }


def direct_port(img: np.ndarray, seed: int = 0) -> float:
    """edge_strength_pmi written plainly: Python loops over every pixel pair and every kernel for the
    KDE, a sparse affinity matrix, sparse DNCuts and eigsh/eigh, one filter call per eigenvector and
    orientation. Same features and same kernel sampling as ours, so the same value."""
    from scipy import linalg, ndimage, sparse

    from curate.stats import pmi

    x = img.astype(np.float64) / 255.0
    h, w = (x.shape[0] + 1) // 2, (x.shape[1] + 1) // 2
    feats = pmi.features(x)
    rng = np.random.default_rng(seed)
    i, j = pmi.local_pairs(h, w)
    aff = np.ones(len(i))
    bw = pmi.BANDWIDTH
    for f in feats:
        kern = pmi.sample_kernels(f, rng)
        flat = f.reshape(-1, 3)
        norm = (4 / 3 * bw) ** 3

        def k(u, c):
            v = 1.0
            for a, b in zip(u, c, strict=True):
                z = (a - b) / bw
                if abs(z) >= 1:
                    return 0.0
                v *= 1 - z * z
            return v

        marg = [
            sum(0.5 * k(flat[p], c[:3]) + 0.5 * k(flat[p], c[3:]) for c in kern)
            / (len(kern) * norm)
            for p in range(len(flat))
        ]
        for t in range(len(i)):
            a, b = flat[i[t]].copy(), flat[j[t]].copy()
            if a[0] <= b[0]:
                a[0], b[0] = b[0], a[0]
            joint = sum(k(a, c[:3]) * k(b, c[3:]) for c in kern) / (len(kern) * norm * norm)
            aff[t] *= (100 + joint / 2) ** 1.25 / (marg[i[t]] * marg[j[t]] + 100)
    n = h * w
    wm = sparse.coo_matrix((aff, (i, j)), shape=(n, n)).tocsr()
    wm = (wm + wm.T).tocsc()
    bs, rows, cols = [], h, w
    for _ in range(2):
        keep = [r * cols + c for r in range(rows) for c in range(cols) if r % 2 and c % 2]
        a_sub = wm[:, keep].T.tocsr()
        d = np.asarray(a_sub.sum(axis=0)).ravel() + np.finfo(float).eps
        b = (a_sub @ sparse.diags(1 / d)).T.tocsr()
        wm = (a_sub @ b).tocsc()
        bs.append(b)
        rows, cols = rows // 2, cols // 2
    m = wm.shape[0]
    kk = min(100, m)
    deg = np.asarray(wm.sum(axis=0)).ravel()
    vals, vecs = linalg.eigh(
        np.diag(deg) - wm.toarray() + 1e-10 * np.eye(m), np.diag(deg), subset_by_index=[0, kk - 1]
    )
    vecs = vecs / np.abs(vecs).max(axis=0)
    for b in bs[::-1]:
        vecs = b @ vecs
    xw = vecs[:, 1:] - vecs[:, 1:].mean(axis=0)
    ev, v = np.linalg.eigh(xw.T @ xw / len(xw))
    xw = xw @ v @ np.diag(1 / np.sqrt(np.maximum(ev, np.finfo(float).tiny))) @ v.T
    energy = np.zeros((8, h, w))
    for e in range(xw.shape[1]):
        vec = xw[:, e].reshape(h, w)
        vec = (vec - vec.min()) / (vec.max() - vec.min()) / np.sqrt(vals[e + 1])
        for o in range(8):
            f = pmi.oe_filter(np.pi / 8 * (o + 1))
            energy[o] += np.abs(ndimage.convolve(vec, f, mode="reflect"))
    return float((energy * pmi.border_suppressor(h, w)).max(axis=0).sum())


def _pmi_chunk(images: list[np.ndarray]) -> list[float]:
    import numba
    from threadpoolctl import threadpool_limits

    from curate.stats import pmi

    numba.set_num_threads(1)  # as the statistics pass: the pool supplies the parallelism
    with threadpool_limits(1):
        t0 = time.process_time()
        values = [pmi.edge_strength_pmi(a, seed=0) for a in images]
        return values, time.process_time() - t0


def bench_pmi(full: bool) -> None:
    import functools

    print_ = functools.partial(print, flush=True)
    import io
    from concurrent.futures import ProcessPoolExecutor

    from PIL import Image
    from threadpoolctl import threadpool_limits

    from curate.stats import pmi

    with tarfile.open(
        TAR
    ) as t:  # one pass in archive order: a gzip stream cannot seek back cheaply
        names = sorted(m.name for m in t.getmembers() if m.isfile())
    n_all = len(names)
    wanted = set(
        names if full else (names[k] for k in np.random.default_rng(0).choice(n_all, 3000, False))
    )
    found = {}
    with tarfile.open(TAR) as t:
        for m in t:
            if m.name in wanted:
                found[m.name] = np.asarray(
                    Image.open(io.BytesIO(t.extractfile(m).read())).convert("RGB")
                )
    images = [found[n] for n in sorted(found)]
    results: dict = {"cpus": os.cpu_count(), "load_average_at_start": os.getloadavg()}
    _pmi_chunk(images[:2])  # compile (numba cache) before timing
    import numba

    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)  # the single large image: all cores
    workers = os.cpu_count() or 1
    chunks = [images[s : s + 250] for s in range(0, len(images), 250)]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(workers) as pool:
        done = list(pool.map(_pmi_chunk, chunks))
    wall = time.perf_counter() - t0
    values = np.concatenate([np.array(v) for v, _ in done])
    cpu = sum(
        c for _, c in done
    )  # CPU seconds of the workers: what the machine's load does not inflate
    results["cifar10"] = {
        "images_timed": len(images),
        "sampled": not full,
        "sample_seed": None if full else 0,
        "workers": workers,
        "wall_s": wall,
        "all_60000_s": wall * n_all / len(images),
        "extrapolated": not full,
        "per_image_ms_per_core": 1000 * wall * workers / len(images),
        "cpu_s": cpu,
        "per_image_cpu_ms": 1000 * cpu / len(images),
        "all_60000_on_idle_cores_s": cpu * n_all / len(images) / workers,
        "mean": float(values.mean()),
        "std": float(values.std()),
    }
    print_(
        f"(3a) edge_strength_pmi of {len(images)} CIFAR-10 images, {workers} processes: {wall:.1f} s"
        f" -> {n_all} images {results['cifar10']['all_60000_s']:.0f} s"
        f"{' (extrapolated)' if not full else ''} (target 600 s); {1000 * cpu / len(images):.1f} CPU-ms"
        f" per image, i.e. {cpu * n_all / len(images) / workers:.0f} s on {workers} idle cores"
    )
    with threadpool_limits(1):
        sub = images[:500]
        s0 = np.array([pmi.edge_strength_pmi(a, seed=0) for a in sub])
        s1 = np.array([pmi.edge_strength_pmi(a, seed=1) for a in sub])
        from scipy import stats as st

        results["cifar10"]["seed0_vs_seed1"] = {
            "images": len(sub),
            "pearson": float(np.corrcoef(s0, s1)[0, 1]),
            "spearman": float(st.spearmanr(s0, s1)[0]),
            "mean_abs_rel_diff": float(np.mean(np.abs(s0 - s1) / ((s0 + s1) / 2))),
        }
        print_(f"(3b) seed 0 vs seed 1 on 500 images: {results['cifar10']['seed0_vs_seed1']}")

        big_tar = ROOT.parent / "shared" / "data" / "imagenet-mini.tar.gz"
        tiles = []
        with tarfile.open(big_tar) as t:
            for m in t:  # the first 48 train images in archive order
                if m.name.endswith(".JPEG") and "/train/" in m.name and len(tiles) < 48:
                    tiles.append(
                        np.asarray(Image.open(io.BytesIO(t.extractfile(m).read())).convert("RGB"))
                    )
        mosaic = np.concatenate(
            [np.concatenate(tiles[r * 8 : (r + 1) * 8], axis=1) for r in range(6)], axis=0
        )[:375, :500]
        t0 = time.perf_counter()
        v_full = pmi.edge_strength_pmi(mosaic)
        t_full = time.perf_counter() - t0
        t0 = time.perf_counter()
        v_shrunk = pmi.edge_strength_pmi(pmi.shrink(mosaic))
        t_shrunk = time.perf_counter() - t0
        results["500x375"] = {
            "image": "mosaic of 48 Tiny-ImageNet train images (6 x 8 tiles of 64 x 64, cropped)",
            "full_resolution_s": t_full,
            "value": v_full,
            "stats_pass_shrunk_to_256_s": t_shrunk,
            "value_shrunk": v_shrunk,
        }
        print_(
            f"(3c) one 500 x 375 image: {t_full:.1f} s at full resolution, {t_shrunk:.2f} s shrunk to 256"
        )

        few = images[:3]
        t0 = time.perf_counter()
        ours = [pmi.edge_strength_pmi(a, seed=0) for a in few]
        t_ours = time.perf_counter() - t0
        t0 = time.perf_counter()
        port = [direct_port(a, seed=0) for a in few]
        t_port = time.perf_counter() - t0
    assert np.allclose(ours, port, rtol=1e-6), (ours, port)
    results["direct_port"] = {
        "images": len(few),
        "ours_s": t_ours,
        "port_s": t_port,
        "speedup": t_port / t_ours,
        "values_equal_rtol": 1e-6,
    }
    print_(
        f"(3d) {len(few)} CIFAR-10 images, one process: ours {t_ours:.3f} s, direct port "
        f"{t_port:.1f} s = {t_port / t_ours:.0f}x, same values"
    )
    out = ROOT / "benchmarks" / "results" / "stats_pmi.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print_(f"wrote {out}")


def main() -> None:
    if not TAR.exists():
        sys.exit(f"{TAR} is absent: this benchmark needs the shared CIFAR-10 JPEG set")
    from curate.config import DatasetConfig
    from curate.data.formats.base import decode_image
    from curate.data.ingest import ingest
    from curate.data.loader import import_ffcv
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
    if "--pmi" in sys.argv or "--pmi-full" in sys.argv:
        if not TAR.exists():
            sys.exit(f"{TAR} is absent: this benchmark needs the shared CIFAR-10 JPEG set")
        bench_pmi(full="--pmi-full" in sys.argv)
    else:
        main()
