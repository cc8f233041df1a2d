"""`curate stats <dataset>`: every image statistic for every instance, into the `image_stats` table.

Pixels come from the original, uncropped images: for raw and float storage the .beton holds them
bit for bit; for JPEG storage (resized at ingest) the source files are decoded again. Work is split
into chunks of instances, computed in a process pool (all cores), each chunk written as its own
Parquet part, so an interrupted run resumes and memory stays flat; under torchrun, ranks take
every world-size-th chunk and rank 0 writes the table.

`edge_strength_pmi` (curate.stats.pmi) samples its kernel pairs with seed 0 for every image, so a
value does not depend on chunking or workers; each worker runs single-threaded (BLAS and numba), the
pool supplies the parallelism.

Rules for awkward images: grey images are statistics of their one channel (colourfulness 0);
RGBA/palette images were converted to RGB at ingest; images smaller than the 10 x 10 window get
no entropy (NULL, with the reason in `stats_note`); images larger than 128 x 128 are resized for
entropy and DCT; larger than 1024 on a side are shrunk for segmentation, larger than 256 for
`edge_strength_pmi`; float data (e.g.
gaussian-2class) is mapped to 0..255 by the split's minimum and maximum.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from curate import __version__, catalog
from curate.cores import usable_cores
from curate.data.formats.base import decode_image
from curate.data.loader import dataset_info
from curate.data.pixels import read_split_uint8
from curate.errors import CurateError
from curate.stats import definitions as sd
from curate.stats import pmi
from curate.workspace import Workspace, atomic_path

STATS = sd.STATS
CHUNK = 2048


def stats_of_images(images: list[np.ndarray], pmi_boundaries: bool = True) -> pd.DataFrame:
    """Every statistic of a list of uint8 (H, W, C) images; batched where all share one small size.
    Without `pmi_boundaries`, `edge_strength_pmi` is left NaN (not computed)."""
    n = len(images)
    out = {k: np.full(n, np.nan) for k in STATS}
    note = np.full(n, None, dtype=object)
    shapes = {a.shape for a in images}
    if len(shapes) == 1 and max(next(iter(shapes))[:2]) <= sd.RESIZE:
        stack = np.stack(images)
        out["mean_local_entropy"] = sd.mean_local_entropy_batch(stack)
        out["dct_pct"] = sd.dct_pct_batch(sd.grey(stack))
        out["edge_strength_sobel"] = sd.edge_strength_sobel_batch(stack)
        g = sd.grey(stack)
        out["mean_grey"] = g.mean(axis=(1, 2))
        out["rms_contrast"] = (g / 255.0).std(axis=(1, 2))
        out["colourfulness"] = sd.colourfulness_batch(stack)
    else:
        for i, a in enumerate(images):
            out["mean_local_entropy"][i] = sd.mean_local_entropy(a)
            out["dct_pct"][i] = sd.dct_pct(a)
            out["edge_strength_sobel"][i] = sd.edge_strength_sobel(a)
            out["mean_grey"][i] = sd.mean_grey(a)
            out["rms_contrast"][i] = sd.rms_contrast(a)
    batched = not np.isnan(out["colourfulness"]).any()
    for i, a in enumerate(images):
        out["segment_count"][i] = sd.segment_count(a)
        if pmi_boundaries:
            out["edge_strength_pmi"][i] = pmi.edge_strength_pmi(pmi.shrink(a), seed=0)
        if not batched:
            out["colourfulness"][i] = sd.colourfulness(a)
        out["jpeg_bytes"][i] = sd.jpeg_bytes(a)
        out["jpeg_bits_per_pixel"][i] = 8 * out["jpeg_bytes"][i] / (a.shape[0] * a.shape[1])
        if min(a.shape[:2]) < sd.WINDOW:
            note[i] = (
                f"{a.shape[0]}x{a.shape[1]} is smaller than the 10x10 entropy window: no entropy"
            )
    df = pd.DataFrame(out)
    df["segment_count"] = df["segment_count"].astype("int64")
    df["jpeg_bytes"] = df["jpeg_bytes"].astype("int64")
    df["stats_note"] = note
    return df


def _chunk_job(job: dict) -> pd.DataFrame:
    import numba
    from threadpoolctl import threadpool_limits

    # one thread per worker: small BLAS calls on many threads contend for the cores the pool uses
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        with threadpool_limits(1):
            return _chunk_job_1(job)
    finally:
        numba.set_num_threads(threads)


def _chunk_job_1(job: dict) -> pd.DataFrame:
    if job["files"] is not None:
        images = []
        for f in job["files"]:
            try:
                images.append(decode_image(f))
            except ValueError as e:
                raise CurateError(
                    f"cannot read {f} for statistics ({e}); it was readable at ingest: restore it "
                    "or re-ingest with --force"
                ) from None
    else:
        images = list(job["pixels"])
    df = stats_of_images(images, job["pmi"])
    df.insert(0, "idx", job["idx"].astype(np.int32))
    return df


def _fingerprint(info, pmi_boundaries: bool) -> str:
    what = [__version__, info.name, info.storage, info.splits, list(STATS)]
    if not pmi_boundaries:
        what.append("no edge_strength_pmi")
    return hashlib.blake2b(json.dumps(what).encode(), digest_size=8).hexdigest()


def _reset_if_stale(root: Path, fp: str, rank: int) -> None:
    """Remove the parts of another version or dataset build, then stamp `root` with `fp`."""
    stamp = root / "fingerprint"
    if stamp.exists() and stamp.read_text() != fp and rank == 0:
        import shutil

        shutil.rmtree(root)  # parts of another version or dataset build: recompute
    root.mkdir(parents=True, exist_ok=True)
    stamp.write_text(fp)


def _instances(dataset: str, ws: Workspace) -> pd.DataFrame:
    """The catalog's (split, idx, source) rows of `dataset`, ordered by split and idx."""
    con = catalog.read(ws)
    try:
        return con.execute(
            "SELECT split, idx, source FROM instances WHERE dataset = ? ORDER BY split, idx",
            [dataset],
        ).df()
    finally:
        con.close()


def _plan_chunks(
    info, inst: pd.DataFrame, root: Path, pmi_boundaries: bool, world: int, rank: int
) -> tuple[list[Path], list[tuple[dict, Path]]]:
    """Every part file of the run, and this rank's unfinished (job, part) pairs, in order."""
    parts, mine, k = [], [], 0
    for split in info.splits:
        rows = inst[inst["split"] == split]
        if info.storage == "jpeg":
            idx, files, pixels = rows["idx"].to_numpy(), rows["source"].tolist(), None
        else:
            px = read_split_uint8(info, split)  # float data: scaled by the split's range
            idx, pixels, files = px.idx, px.images, None
        for c, s in enumerate(range(0, len(idx), CHUNK)):
            part = root / split / f"part-{c:05d}.parquet"
            parts.append(part)
            if k % world == rank and not part.exists():  # finished parts are kept: resume
                mine.append(
                    (
                        {
                            "idx": idx[s : s + CHUNK],
                            "files": None if files is None else files[s : s + CHUNK],
                            "pixels": None if pixels is None else pixels[s : s + CHUNK],
                            "pmi": pmi_boundaries,
                        },
                        part,
                    )
                )
            k += 1
    return parts, mine


def _run_chunks(
    mine: list[tuple[dict, Path]], workers: int, total: int, desc: str, disable: bool
) -> None:
    """Compute and write each (job, part) pair: in `workers` processes, serially for 1 worker or chunk."""
    with tqdm(total=total, desc=desc, unit="img", disable=disable) as bar:

        def done(df, part):
            with atomic_path(part, ".parquet") as tmp:
                df.to_parquet(tmp, index=False)
            bar.update(len(df))

        if workers == 1 or len(mine) <= 1:
            for j, part in mine:
                done(_chunk_job(j), part)
        else:
            with ProcessPoolExecutor(workers) as pool:
                for (_, part), df in zip(
                    mine, pool.map(_chunk_job, [j for j, _ in mine]), strict=True
                ):
                    done(df, part)


def _barrier(world: int) -> None:
    """Wait for every torchrun rank (gloo) to finish its parts; nothing on a single process."""
    if world > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("gloo")
        dist.barrier()


def _write_table(dataset: str, info, root: Path, parts: list[Path], ws: Workspace) -> int:
    """Replace `dataset`'s rows of `image_stats` by its parts; returns the number of rows."""
    missing = [str(p) for p in parts if not p.exists()]
    if missing:
        raise CurateError(
            f"statistics parts are missing ({missing[0]}, ...); rerun `curate stats {dataset}`"
        )
    frames = []
    for split in info.splits:
        for part in sorted((root / split).glob("part-*.parquet")):
            df = pd.read_parquet(part)
            df.insert(0, "split", split)
            frames.append(df)
    stats_frame = pd.concat(frames, ignore_index=True)
    stats_frame.insert(0, "dataset", dataset)
    with catalog.write(ws) as con:
        con.execute("DELETE FROM image_stats WHERE dataset = ?", [dataset])
        # by name: a catalog made before a statistic existed has that column last
        catalog.insert_frame(con, "image_stats", stats_frame)
    return len(stats_frame)


def compute_stats(
    dataset: str, ws: Workspace, workers: int = 0, quiet: bool = False, pmi: bool = True
) -> int:
    """Compute (or resume) the statistics of every split; returns the number of instances.

    `pmi = False` leaves `edge_strength_pmi` NULL (score.pmi, `curate stats --no-pmi`): it costs
    more than every other statistic together (seconds per image at ImageNet sizes)."""
    info = dataset_info(dataset, ws)
    world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    root = ws.root / "stats" / dataset
    _reset_if_stale(root, _fingerprint(info, pmi), rank)
    inst = _instances(dataset, ws)
    parts, mine = _plan_chunks(info, inst, root, pmi, world, rank)
    workers = workers or usable_cores()
    total = sum(len(j["idx"]) for j, _ in mine)
    _run_chunks(mine, workers, total, f"stats {dataset}", quiet or rank != 0)
    _barrier(world)
    if rank != 0:
        return total
    return _write_table(dataset, info, root, parts, ws)


def reference(ws: Workspace, dataset: str | None = None, bins: int = 20) -> dict:
    """Histogram data of every statistic per dataset: {dataset: {stat: {"edges": [...], "counts": [...]}}}."""
    con = catalog.read(ws)
    try:
        df = con.execute(
            "SELECT * FROM image_stats" + (" WHERE dataset = ?" if dataset else ""),
            [dataset] if dataset else [],
        ).df()
    finally:
        con.close()
    if df.empty:
        raise CurateError(
            f"no image statistics{' for ' + dataset if dataset else ''}; run `curate stats DATASET` first"
        )
    out: dict = {}
    for name, g in df.groupby("dataset"):
        out[name] = {}
        for s in STATS:
            v = g[s].dropna().to_numpy(dtype=float)
            if not len(v):
                out[name][s] = {"n": 0}
                continue
            counts, edges = np.histogram(v, bins=bins)
            out[name][s] = {
                "n": int(len(v)),
                "mean": float(v.mean()),
                "std": float(v.std()),
                "min": float(v.min()),
                "max": float(v.max()),
                "edges": edges.tolist(),
                "counts": counts.tolist(),
            }
    return out


def format_reference(ref: dict) -> str:
    lines = []
    bars = " ▁▂▃▄▅▆▇█"
    for name, stats in ref.items():
        lines.append(f"{name}")
        for s, h in stats.items():
            if not h.get("n"):
                lines.append(f"  {s:<22} (no values)")
                continue
            peak = max(h["counts"]) or 1
            spark = "".join(bars[int(round(c / peak * 8))] for c in h["counts"])
            lines.append(
                f"  {s:<22} {spark}  {h['min']:.4g} .. {h['max']:.4g}  mean {h['mean']:.4g}  n {h['n']}"
            )
    return "\n".join(lines)
