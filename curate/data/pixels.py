"""A split's pixels as ingest stored them, read from its .beton with numpy (no ffcv import).

The one reader behind in-memory training, image statistics and thumbnails, and the one rule that
maps float pixels to 0..255 for statistics and display: by the minimum and maximum of the whole
split, so an image looks and measures the same whichever page or chunk it is read with.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from curate.data.beton import read_arrays, read_metadata
from curate.data.loader import DatasetInfo
from curate.data.positions import find_positions
from curate.errors import CurateError


@dataclass(frozen=True)
class SplitPixels:
    """Rows of one split: idx (N,) int64, labels (N,) int64, images (N, H, W, C) uint8 or float32."""

    idx: np.ndarray
    labels: np.ndarray
    images: np.ndarray


def read_split(info: DatasetInfo, split: str, idx=None) -> SplitPixels:
    """The stored pixels of a raw or float split, bit for bit.

    Parameters
    ----------
    info : the dataset (`dataset_info`).
    split : a split of it.
    idx : instance ids to read, in the order wanted; None reads every row in file order.

    Returns
    -------
    SplitPixels with images in the stored dtype: uint8 for raw storage, float32 for float storage.
    """
    if info.storage == "jpeg":
        raise CurateError(
            f"dataset {info.name!r} stores JPEGs resized at ingest; decode the source files instead"
        )
    path = info.beton(split)
    meta = read_metadata(path)
    if idx is None:
        rows = np.arange(len(meta))
    else:
        rows = find_positions(meta["idx"], np.asarray(idx, dtype=np.int64))
        if np.any(rows < 0):
            missing = np.asarray(idx)[rows < 0]
            raise CurateError(
                f"split {split!r} of {info.name!r} has no instance {int(missing[0])}; "
                "was the dataset re-ingested since?"
            )
    dtype = "float32" if info.storage == "float32" else "uint8"
    images = read_arrays(path, rows, info.shape, dtype, meta=meta)
    return SplitPixels(
        meta["idx"][rows].astype(np.int64), meta["label"][rows].astype(np.int64), images
    )


@functools.lru_cache(maxsize=16)
def _range_of_file(path: str, mtime_ns: int, shape: tuple[int, ...]) -> tuple[float, float]:
    meta = read_metadata(path)
    x = read_arrays(path, np.arange(len(meta)), shape, "float32", meta=meta)
    return float(x.min()), float(x.max())


def pixel_range(info: DatasetInfo, split: str) -> tuple[float, float]:
    """(minimum, maximum) over every pixel of a float split; (0, 255) for raw storage."""
    if info.storage != "float32":
        return 0.0, 255.0
    path = info.beton(split)
    return _range_of_file(str(path), path.stat().st_mtime_ns, tuple(info.shape))


def to_uint8(images: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """uint8 images unchanged; float images mapped from [lo, hi] to 0..255 and rounded."""
    if images.dtype == np.uint8:
        return images
    x = (images - lo) / max(hi - lo, 1e-12) * 255
    return np.rint(x).astype(np.uint8)


def read_split_uint8(info: DatasetInfo, split: str, idx=None) -> SplitPixels:
    """read_split with images as uint8 (H, W, C): float splits scaled by the whole split's range."""
    px = read_split(info, split, idx)
    if px.images.dtype == np.uint8:
        return px
    if idx is None:  # every row is at hand: its range is the split's
        lo, hi = float(px.images.min()), float(px.images.max())
    else:
        lo, hi = pixel_range(info, split)
    return SplitPixels(px.idx, px.labels, to_uint8(px.images, lo, hi))
