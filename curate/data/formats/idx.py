"""The IDX formats `mnist` and `fashion-mnist`: the official IDX files (gzipped or not), or a
torchvision download into the workspace.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from curate.config import DatasetConfig
from curate.data.formats.base import SourceData, array_split, checksum_files, require_path
from curate.errors import CurateError
from curate.workspace import Workspace

MNIST_CLASSES = [str(k) for k in range(10)]
FASHION_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path: Path) -> np.ndarray:
    """Parse one IDX file (gzipped or not): magic 0x0000 0x08 ndim, big-endian int32 dims, uint8 data."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise CurateError(
            f"cannot read {path} ({e}); is the file complete? Re-download it"
        ) from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise CurateError(
            f"{path} is not an IDX file of unsigned bytes (bad magic number); "
            "use the official MNIST files"
        )
    ndim = raw[3]
    if ndim == 0 or len(raw) < 4 + 4 * ndim:
        raise CurateError(
            f"{path} is truncated or corrupt: its header announces {ndim} dimensions but the file "
            f"holds {len(raw)} bytes; re-download it"
        )
    dims = np.frombuffer(raw, ">i4", count=ndim, offset=4)
    expected = int(np.prod(dims))
    data = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim)
    if data.size != expected:
        raise CurateError(
            f"{path} is truncated: header says {tuple(dims)} = {expected} bytes, file holds "
            f"{data.size}; re-download it"
        )
    return data.reshape(tuple(int(d) for d in dims))


def _find_idx(root: Path, stem: str, fmt: str) -> Path:
    for folder in (root, root / "raw", root / "MNIST" / "raw", root / "FashionMNIST" / "raw"):
        for name in (stem, stem + ".gz"):
            if (folder / name).is_file():
                return folder / name
    raise CurateError(
        f"{fmt}: no {stem}[.gz] under {root} (looked in ., raw/, MNIST/raw/, FashionMNIST/raw/); "
        "pass --source pointing at the folder holding the official IDX files"
    )


def _read_idx_dataset(
    cfg: DatasetConfig, ws: Workspace, fmt: str, classes: list[str]
) -> SourceData:
    if cfg.download and not cfg.source:
        from curate.extras import need

        need("train", "torchvision", what="--download")
        import torchvision

        root = ws.sources_dir() / fmt
        cls = torchvision.datasets.MNIST if fmt == "mnist" else torchvision.datasets.FashionMNIST
        for train in (True, False):
            cls(str(root), train=train, download=True)
        cfg_root = root
    else:
        cfg_root = require_path(cfg.source, fmt, "the folder with the IDX files")
    splits, inputs = [], []
    for name, (img_stem, lab_stem) in IDX_FILES.items():
        img_path, lab_path = _find_idx(cfg_root, img_stem, fmt), _find_idx(cfg_root, lab_stem, fmt)
        images, labels = read_idx(img_path), read_idx(lab_path)
        if images.ndim != 3 or labels.ndim != 1:
            raise CurateError(
                f"{img_path} / {lab_path}: expected images (N, H, W) and labels (N,), got "
                f"{images.shape} and {labels.shape}; the images and labels files are swapped?"
            )
        if len(images) != len(labels):
            raise CurateError(
                f"{img_path} holds {len(images)} images but {lab_path} holds {len(labels)} labels; "
                "use matching files"
            )
        if labels.max(initial=0) >= len(classes):
            raise CurateError(
                f"{lab_path} has label {labels.max()} >= {len(classes)} classes; not {fmt}"
            )
        splits.append(array_split(name, images[..., None], labels, str(img_path)))
        inputs += [img_path, lab_path]
    return SourceData(fmt, str(cfg_root), classes, splits, checksum_files(inputs))


def read_mnist(cfg: DatasetConfig, ws: Workspace) -> SourceData:
    return _read_idx_dataset(cfg, ws, "mnist", MNIST_CLASSES)


def read_fashion_mnist(cfg: DatasetConfig, ws: Workspace) -> SourceData:
    return _read_idx_dataset(cfg, ws, "fashion-mnist", FASHION_CLASSES)
