"""The source formats and their registry: `FORMATS` maps each `dataset.format` name to its reader,
`read_source` dispatches on it.

Each reader lives in its own module and imports only `curate.data.formats.base` (the shared
`Split`, `SourceData`, checksums, `resolve_source`, `decode_image`), never this package, so any
format module imports on its own. A new format is one module with a `read_<name>(cfg, ws)` returning
a `SourceData`, and one line in `FORMATS`.

Formats: digits, mnist, fashion-mnist, cifar10, cifar100, imagefolder, imagenet, kth-tips2b
(with scale, pose and illumination attributes), the synthetic controls gaussian-sigma, gabor,
gaussian-2class (docs/concepts.md#synthetic-controls), and voc (Pascal VOC, multilabel).
"""

from __future__ import annotations

from collections.abc import Callable

from curate.config import DatasetConfig
from curate.data.formats import cifar, digits, idx, imagefolder, imagenet, kth, synthetic, voc
from curate.data.formats.base import SourceData, Split, decode_image
from curate.workspace import Workspace

__all__ = ["FORMATS", "SourceData", "Split", "decode_image", "read_source"]

FORMATS: dict[str, Callable[[DatasetConfig, Workspace], SourceData]] = {
    "digits": digits.read_digits,
    "mnist": idx.read_mnist,
    "fashion-mnist": idx.read_fashion_mnist,
    "cifar10": cifar.read_cifar10,
    "cifar100": cifar.read_cifar100,
    "imagefolder": imagefolder.read_imagefolder,
    "imagenet": imagenet.read_imagenet,
    "kth-tips2b": kth.read_kth_tips2b,
    "gaussian-sigma": synthetic.read_gaussian_sigma,
    "gabor": synthetic.read_gabor,
    "gaussian-2class": synthetic.read_gaussian_2class,
    "voc": voc.read_voc,
}


def read_source(cfg: DatasetConfig, ws: Workspace) -> SourceData:
    """Read the source `cfg` names with its format's reader.

    Parameters
    ----------
    cfg : the dataset section of a recipe; `cfg.format` names the reader
    ws : the workspace (archives are unpacked and downloads land under its sources/)

    Returns
    -------
    SourceData
        per split, labels and images (or encoded files), and the checksum of the inputs
    """
    return FORMATS[cfg.format](cfg, ws)  # a DatasetConfig's format is one of FORMATS (config.py)
