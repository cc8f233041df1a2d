"""The synthetic controls `gaussian-sigma`, `gabor` and `gaussian-2class` (docs/concepts.md, Synthetic
controls): images drawn from seeded generators, one per split.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from curate.config import DatasetConfig
from curate.data.formats.base import SourceData, array_split, checksum_arrays
from curate.workspace import Workspace


def _sizes(cfg: DatasetConfig, classes: int, train: int, test: int) -> tuple[int, int, int]:
    return cfg.num_classes or classes, cfg.train_per_class or train, cfg.test_per_class or test


def _synthetic(fmt: str, cfg: DatasetConfig, classes: list[str], make: Callable) -> SourceData:
    """`make(rng, label_array) -> images`, called per split with its own seeded generator."""
    splits = []
    per = {"train": cfg.train_per_class, "test": cfg.test_per_class}
    for s, (name, n) in enumerate(per.items()):
        rng = np.random.default_rng([cfg.seed, s])
        labels = np.repeat(np.arange(len(classes)), n)
        images = make(rng, labels)
        splits.append(array_split(name, images, labels, f"synthetic:{fmt}"))
    return SourceData(
        fmt,
        "synthetic",
        classes,
        splits,
        checksum_arrays(*[x for sp in splits for x in (sp.images, sp.labels)]),
    )


def read_gaussian_sigma(cfg: DatasetConfig, ws: Workspace) -> SourceData:
    """Class i = 1..C: every pixel and channel N(128, sigma = i), clipped and rounded to uint8 (Meding B.7)."""
    c, tr, te = _sizes(cfg, 100, 500, 50)
    cfg = _with(cfg, num_classes=c, train_per_class=tr, test_per_class=te)
    size = cfg.image_size

    def make(rng, labels):
        sigma = (labels + 1).astype(np.float32)[:, None, None, None]
        x = rng.standard_normal((len(labels), size, size, 3), dtype=np.float32) * sigma + 128
        return np.clip(np.rint(x), 0, 255).astype(np.uint8)

    return _synthetic("gaussian-sigma", cfg, [f"sigma={i}" for i in range(1, c + 1)], make)


def gabor_patch(
    size: int,
    channel: int,
    theta_deg: float,
    sigma: float,
    wavelength: float,
    cx: float,
    cy: float,
    phase: float,
) -> np.ndarray:
    """One (size, size, 3) uint8 image: grey 128, a Gabor patch modulating one channel."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    t = np.deg2rad(theta_deg)
    xr = (x - cx) * np.cos(t) + (y - cy) * np.sin(t)
    yr = -(x - cx) * np.sin(t) + (y - cy) * np.cos(t)
    g = np.exp(-(xr**2 + yr**2) / (2 * sigma**2)) * np.cos(2 * np.pi * xr / wavelength + phase)
    img = np.full((size, size, 3), 128.0)
    img[..., channel] += 127 * g
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


GABOR_ORIENTATIONS = (45, 90, 135, 180)


def read_gabor(cfg: DatasetConfig, ws: Workspace) -> SourceData:
    """12 classes = 3 colour channels x base orientations 45/90/135/180; each image's orientation is
    base + U(-30, 30) degrees, so neighbouring classes overlap; size and position vary (Hacohen C)."""
    _, tr, te = _sizes(cfg, 12, 100, 20)
    cfg = _with(cfg, train_per_class=tr, test_per_class=te)
    size = cfg.image_size
    names = [f"{ch}-{o}deg" for ch in ("red", "green", "blue") for o in GABOR_ORIENTATIONS]

    def make(rng, labels):
        out = np.empty((len(labels), size, size, 3), np.uint8)
        for i, k in enumerate(labels):
            ch, o = divmod(int(k), len(GABOR_ORIENTATIONS))
            out[i] = gabor_patch(
                size,
                ch,
                GABOR_ORIENTATIONS[o] + rng.uniform(-30, 30),
                sigma=rng.uniform(2, size / 5),
                wavelength=rng.uniform(4, 8),
                cx=rng.uniform(size / 4, 3 * size / 4),
                cy=rng.uniform(size / 4, 3 * size / 4),
                phase=rng.uniform(0, 2 * np.pi),
            )
        return out

    return _synthetic("gabor", cfg, names, make)


def read_gaussian_2class(cfg: DatasetConfig, ws: Workspace) -> SourceData:
    """Class 0 ~ N(0, I), class 1 ~ N(0.1, I) in 3072 dimensions, shaped 32x32x3, float32 (Hacohen C)."""
    _, tr, te = _sizes(cfg, 2, 2500, 500)
    cfg = _with(cfg, train_per_class=tr, test_per_class=te)
    size = cfg.image_size

    def make(rng, labels):
        x = rng.standard_normal((len(labels), size, size, 3), dtype=np.float32)
        return x + np.float32(0.1) * labels.astype(np.float32)[:, None, None, None]

    return _synthetic("gaussian-2class", cfg, ["mean=0", "mean=0.1"], make)


def _with(cfg: DatasetConfig, **kw) -> DatasetConfig:
    return dataclasses.replace(cfg, **kw)
