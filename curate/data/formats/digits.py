"""The `digits` format: scikit-learn's 8x8 handwritten digits, split train/test by a seeded,
stratified draw.
"""

from __future__ import annotations

import numpy as np

from curate.config import DatasetConfig
from curate.data.formats.base import SourceData, array_split, checksum_arrays, stratified_split
from curate.workspace import Workspace


def read_digits(cfg: DatasetConfig, ws: Workspace) -> SourceData:
    """scikit-learn's 8x8 digits; 0..16 mapped losslessly to uint8 by round(v * 255 / 16)."""
    from curate.extras import need

    need("train", "sklearn", what="the digits format")
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.rint(d.images * (255 / 16)).astype(np.uint8)[..., None]  # (1797, 8, 8, 1)
    labels = d.target.astype(np.int64)
    test = stratified_split(labels, cfg.test_fraction, cfg.split_seed)
    splits = []
    for name, mask in (("train", ~test), ("test", test)):
        rows = np.flatnonzero(mask)
        splits.append(array_split(name, images[rows], labels[rows], "sklearn:digits", rows))
    return SourceData(
        "digits",
        "sklearn.datasets.load_digits",
        [str(k) for k in range(10)],
        splits,
        checksum_arrays(images, labels, test),
    )
