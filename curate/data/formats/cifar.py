"""The `cifar10` and `cifar100` formats: the official python-version pickles, read by an unpickler
that admits only plain containers and numpy arrays.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from curate.config import DatasetConfig
from curate.data.formats.base import SourceData, array_split, checksum_files, resolve_source
from curate.errors import CurateError
from curate.workspace import Workspace

_PICKLE_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("copy_reg", "_reconstructor"),
    ("copyreg", "_reconstructor"),
    ("__builtin__", "object"),
    ("builtins", "object"),
    ("_codecs", "encode"),
}


class _SafeUnpickler(pickle.Unpickler):
    """Unpickles only plain containers and numpy arrays: a CIFAR batch cannot run code."""

    def find_class(self, module: str, name: str):
        if (module, name) in _PICKLE_ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def load_pickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            obj = _SafeUnpickler(f, encoding="bytes").load()
    except Exception as e:  # noqa: BLE001 - any failure means "not a CIFAR pickle"
        raise CurateError(
            f"{path} is not a CIFAR python batch ({type(e).__name__}: {e}); "
            "use the official 'python version' files (cifar-10-batches-py/)"
        ) from None
    if not isinstance(obj, dict):
        raise CurateError(
            f"{path} is not a CIFAR python batch (holds {type(obj).__name__}, not a dict)"
        )
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _cifar_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    d = load_pickle(path)
    missing = [k for k in ("data", label_key) if k not in d]
    if missing:
        raise CurateError(
            f"{path} is not a CIFAR python batch: no key {missing[0]!r} (keys: "
            f"{', '.join(map(str, d))}); use the official 'python version' files"
        )
    data, labels = np.asarray(d["data"]), np.asarray(d[label_key], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3072 or data.dtype != np.uint8:
        raise CurateError(
            f"{path}: 'data' is {data.dtype} {data.shape}, CIFAR's is uint8 (N, 3072)"
        )
    if len(data) != len(labels):
        raise CurateError(
            f"{path}: {len(data)} images but {len(labels)} labels; the file is damaged"
        )
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def _read_cifar(cfg: DatasetConfig, ws: Workspace, fmt: str) -> SourceData:
    c10 = fmt == "cifar10"
    folder = "cifar-10-batches-py" if c10 else "cifar-100-python"
    if cfg.download and not cfg.source:
        from curate.extras import need

        need("train", "torchvision", what="--download")
        import torchvision

        root = ws.sources_dir() / fmt
        (torchvision.datasets.CIFAR10 if c10 else torchvision.datasets.CIFAR100)(
            str(root), download=True
        )
        base = root / folder
    else:
        base = resolve_source(cfg.source, fmt, f"the {folder}/ folder (or its .tar.gz)", ws)
        if (base / folder).is_dir():
            base = base / folder
    files = (
        {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
        if c10
        else {"train": ["train"], "test": ["test"]}
    )
    meta_name, names_key = ("batches.meta", "label_names") if c10 else ("meta", "fine_label_names")
    label_key = "labels" if c10 else "fine_labels"
    inputs = []
    for name in [meta_name] + sum(files.values(), []):
        if not (base / name).is_file():
            raise CurateError(
                f"{fmt}: {base / name} is missing; pass --source pointing at {folder}/ "
                f"(or use --download)"
            )
        inputs.append(base / name)
    meta = load_pickle(base / meta_name)
    if names_key not in meta:
        raise CurateError(f"{base / meta_name} has no {names_key!r}; it is not {fmt}'s meta file")
    classes = [n.decode() if isinstance(n, bytes) else str(n) for n in meta[names_key]]
    splits = []
    for split, names in files.items():
        parts = [_cifar_batch(base / n, label_key) for n in names]
        images = np.concatenate([p[0] for p in parts])
        labels = np.concatenate([p[1] for p in parts])
        if labels.max(initial=0) >= len(classes):
            raise CurateError(
                f"{fmt} {split}: label {labels.max()} >= {len(classes)} classes; wrong meta file?"
            )
        s = array_split(split, np.ascontiguousarray(images), labels, str(base / names[0]))
        if len(names) > 1:  # refs name the batch file each row came from
            s.refs = [
                f"{base / n}#{r}"
                for n, p in zip(names, parts, strict=True)
                for r in range(len(p[1]))
            ]
        splits.append(s)
    return SourceData(fmt, str(base), classes, splits, checksum_files(inputs, base))


def read_cifar10(cfg: DatasetConfig, ws: Workspace) -> SourceData:
    return _read_cifar(cfg, ws, "cifar10")


def read_cifar100(cfg: DatasetConfig, ws: Workspace) -> SourceData:
    return _read_cifar(cfg, ws, "cifar100")
