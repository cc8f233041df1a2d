"""The loader factory: `make_loader(dataset, split, mode, spec=LoaderSpec(...))` over a dataset's .beton.

mode "train": seeded random order (a new permutation per epoch) with the recipe's augmentation;
mode "eval": sequential, every instance exactly once (`drop_last=False`), deterministic
preprocessing. Both yield `(images, labels, idx)`: float32 (B, C, H, W) normalised images, int64
labels and int64 instance ids. Tensors are fresh each batch (safe to keep).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from curate.config import LoaderConfig
from curate.cores import usable_cores
from curate.data.augment import augment, normalize
from curate.errors import CurateError
from curate.workspace import Workspace

# The compiled pipelines of every JPEG loader made in this process, kept until it exits. ffcv
# compiles its JPEG decoder (a numba dispatcher) anew for each loader; when such a dispatcher is
# garbage-collected while the interpreter runs, numba's finalizer fails on its own overload table
# and prints "Exception ignored ... KeyError" (one traceback per decoder). At exit numba skips
# those finalizers, so holding the compiled code (not the loaders or their buffers) until then
# removes the cause of that noise.
_JPEG_PIPELINES: list = []

IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)


def import_ffcv():
    """Import ffcv without letting it pin torch to one thread."""
    threads = torch.get_num_threads()
    import ffcv  # noqa: F401  (numba compiles on first import: ~12 s)

    torch.set_num_threads(threads)
    return ffcv


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    storage: str  # raw-uint8 | float32 | jpeg
    shape: tuple[int, int, int] | None  # H, W, C for raw/float storage
    class_names: list[str]
    splits: dict[str, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    path: Path
    # labels are class-set bitmasks (bit k = class k), trained with BCE on K-hot targets
    multilabel: bool = False

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def beton(self, split: str) -> Path:
        return self.path / f"{split}.beton"


def dataset_info(dataset: str, workspace: Workspace | str | None = None) -> DatasetInfo:
    """Read what ingest recorded beside the .betons; a clear error if the dataset is not ingested."""
    ws = workspace if isinstance(workspace, Workspace) else Workspace.resolve(workspace)
    meta = ws.dataset_dir(dataset) / "dataset.json"
    if not meta.exists():
        from curate.data.labels_only import no_pixels_error

        labels_only = no_pixels_error(ws, dataset)  # registered from labels alone: no images
        if labels_only is not None:
            raise labels_only
        have = sorted(
            p.name for p in (ws.root / "datasets").glob("*") if (p / "dataset.json").exists()
        )
        raise CurateError(
            f"dataset {dataset!r} is not ingested in {ws.root} (have: {', '.join(have) or 'none'}); "
            f"run `curate ingest {dataset} --workspace {ws.root}` first"
        )
    m = json.loads(meta.read_text())
    return DatasetInfo(
        name=m["dataset"],
        storage=m["storage"],
        shape=tuple(m["shape"]) if m["shape"] else None,
        class_names=m["class_names"],
        splits=m["splits"],
        mean=tuple(m["mean"]),
        std=tuple(m["std"]),
        path=meta.parent,
        multilabel=bool(m.get("multilabel", False)),  # absent in datasets ingested before VOC
    )


class Batches:
    """Iterable over (images, labels, idx); re-iterate for the next epoch."""

    def __init__(
        self,
        loader,
        info: DatasetInfo,
        mode: str,
        cfg: LoaderConfig,
        seed: int,
        device: torch.device,
    ):
        self.loader, self.info, self.mode, self.cfg = loader, info, mode, cfg
        self.seed, self.device, self.epoch = seed, torch.device(device), 0
        self.mean = torch.tensor(info.mean, dtype=torch.float32)
        self.std = torch.tensor(info.std, dtype=torch.float32)
        self.flip = cfg.flip and mode == "train"
        self.translate = cfg.translate if mode == "train" and info.storage != "jpeg" else 0

    def __len__(self) -> int:
        return len(self.loader)

    def set_epoch(self, epoch: int) -> None:
        """Epochs count from 0; epoch e of mode train uses order seed + e, as ffcv's RANDOM does."""
        self.epoch = epoch

    def __iter__(self):
        gen = torch.Generator().manual_seed(int(self.seed) * 1_000_003 + self.epoch)
        threads = torch.get_num_threads()
        self.loader.next_epoch = self.epoch  # ffcv's permutation for this epoch
        it = iter(self.loader)
        torch.set_num_threads(threads)  # ffcv sets torch threads to its worker count
        for images, labels, idx in it:
            x = images.permute(0, 3, 1, 2)  # (B, H, W, C) -> (B, C, H, W), a channels_last view
            # ffcv reuses its buffers: every tensor yielded here is a fresh copy
            x = augment(x.to(self.device, non_blocking=True), gen, self.flip, self.translate)
            x = (
                normalize(x, self.mean, self.std)
                if self.cfg.normalize
                else x.to(torch.float32, copy=True)
            )
            y = labels.reshape(-1).to(self.device, torch.int64, copy=True)
            yield x, y, idx.reshape(-1).to(self.device, torch.int64, copy=True)
        self.epoch += 1


@dataclass(frozen=True)
class LoaderSpec:
    """How `make_loader` reads a split: augmentation and batch sizes, order seed, rows, device.

    Attributes
    ----------
    cfg : batch sizes and augmentation (the recipe's [loader]); None = LoaderConfig()
    seed : order and augmentation seed (train mode)
    batch_size : overrides cfg's batch size of the mode
    indices : optional subset of rows (positions in the .beton) to load
    device : where the batches are placed
    """

    cfg: LoaderConfig | None = None
    seed: int = 0
    batch_size: int | None = None
    indices: np.ndarray | None = None
    device: str | torch.device = "cpu"


def make_loader(
    dataset: str,
    split: str,
    mode: str,
    workspace: Workspace | str | None = None,
    spec: LoaderSpec = LoaderSpec(),
) -> Batches:
    """A loader over one split of an ingested dataset.

    Parameters
    ----------
    dataset, split : names as ingested (`curate query "SELECT * FROM datasets"`).
    mode : "train" (seeded random order, augmentation) or "eval" (sequential, all instances once).
    workspace : the workspace (default $CURATE_WORKSPACE or ./workspace).
    spec : the loader settings, order seed, row subset and device (`LoaderSpec`).

    Returns
    -------
    Batches yielding (images float32 (B, C, H, W), labels int64 (B,), idx int64 (B,)).
    """
    seed, batch_size, indices, device = spec.seed, spec.batch_size, spec.indices, spec.device
    if mode not in ("train", "eval"):
        raise CurateError(f"loader mode {mode!r}; choose train or eval")
    cfg = spec.cfg or LoaderConfig()
    info = dataset_info(dataset, workspace)
    if split not in info.splits:
        raise CurateError(
            f"dataset {dataset!r} has no split {split!r}; splits: {', '.join(info.splits)}"
        )
    import_ffcv()
    from ffcv.fields.basics import IntDecoder
    from ffcv.fields.ndarray import NDArrayDecoder
    from ffcv.fields.rgb_image import CenterCropRGBImageDecoder, RandomResizedCropRGBImageDecoder
    from ffcv.loader import Loader, OrderOption
    from ffcv.transforms import ToTensor

    if info.storage == "jpeg":
        s = cfg.crop_size
        decoder = (
            RandomResizedCropRGBImageDecoder((s, s), scale=(cfg.crop_min_scale, 1.0))
            if mode == "train"
            else CenterCropRGBImageDecoder((s, s), ratio=cfg.crop_ratio)
        )
    else:
        decoder = NDArrayDecoder()
    workers = cfg.workers or usable_cores()
    loader = Loader(
        str(info.beton(split)),
        batch_size=batch_size or (cfg.batch_size if mode == "train" else cfg.eval_batch_size),
        num_workers=workers,
        os_cache=cfg.os_cache,
        order=OrderOption.RANDOM if mode == "train" else OrderOption.SEQUENTIAL,
        seed=int(seed),
        indices=None if indices is None else np.asarray(indices),
        drop_last=mode == "train",
        pipelines={
            "image": [decoder, ToTensor()],
            "label": [IntDecoder(), ToTensor()],
            "idx": [IntDecoder(), ToTensor()],
        },
    )
    if info.storage == "jpeg":
        _JPEG_PIPELINES.append(loader.code)
    return Batches(loader, info, mode, cfg, seed, torch.device(device))
