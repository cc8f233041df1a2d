"""Batch feeding: each member's training batches and every split's evaluation batches, either from
memory (raw and float storage: whole splits as tensors on the training device) or streamed from
the .beton by ffcv (JPEG storage, one member per loader).

Training batches of member m in epoch e (1-based) follow its own permutation
`default_rng(order_m + e - 1)` (as ffcv's RANDOM order) or, with a curriculum, its own draws from
the g(step) easiest instances; each member has its own augmentation draws. They come as
x (M_u, B, C, H, W), y (M_u, B), idx (M_u, B) for the unit's M_u members. Evaluation batches hold
every instance once, in file order, normalised, without augmentation: x (B, C, H, W), y (B,), idx (B,).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol

import torch

from curate import catalog
from curate.config import Recipe
from curate.curriculum import curriculum_batch
from curate.data.augment import augment, normalize
from curate.data.loader import DatasetInfo, LoaderSpec, make_loader
from curate.data.pixels import read_split
from curate.errors import CurateError
from curate.train.paced import Paced, load_paced
from curate.train.seeds import augment_generator, order_rng
from curate.workspace import Workspace

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class Feed(Protocol):
    in_shape: tuple[int, int, int]  # (C, H, W) of a training image
    steps_per_epoch: int  # optimiser steps per epoch (drop_last)
    paced: Paced | None

    def train_batches(self, members: list[int], epoch: int) -> Iterator[Batch]: ...

    def restrict(self, rows: torch.Tensor) -> None: ...

    def eval_batches(self, split: str) -> Iterable[Batch]: ...


def make_feed(
    info: DatasetInfo,
    ws: Workspace,
    recipe: Recipe,
    device: torch.device,
    seeds: dict[int, dict[str, int]],
) -> Feed:
    """In memory for raw and float storage, streamed for JPEG storage.

    Raises CurateError when a batch is larger than the train split.
    """
    if info.storage == "jpeg":
        feed: Feed = StreamFeed(info, ws, recipe, device, seeds)
        split_idx = lambda: catalog.split_labels(ws, info.name, "train")[0]  # noqa: E731
    else:
        feed = InMemoryFeed(info, recipe, device, seeds)
        split_idx = lambda: feed.splits["train"].idx.cpu().numpy()  # noqa: E731
    if feed.steps_per_epoch == 0:
        raise CurateError(
            f"loader.batch_size = {recipe.loader.batch_size} exceeds the {info.splits['train']} "
            "training instances; lower it"
        )
    t = recipe.train
    if t.subset:
        feed.restrict(subset_rows(t.subset, info.name, split_idx()))
    if t.curriculum:
        feed.paced = load_paced(t.curriculum, split_idx(), feed.steps_per_epoch, t.epochs)
    return feed


def subset_rows(path: str, dataset: str, split_idx) -> torch.Tensor:
    """Row positions in the train split of the idx a `train.subset` file lists (sorted)."""
    import numpy as np

    from curate.data.positions import find_positions
    from curate.prune import load_subset

    sub = load_subset(path, dataset, split_idx)
    return torch.from_numpy(np.sort(find_positions(split_idx, sub.idx)).astype(np.int64))


class InMemorySplit:
    """A whole split as one tensor (uint8 or float32, (N, C, H, W)) on the training device."""

    def __init__(self, info: DatasetInfo, split: str, device: torch.device):
        px = read_split(info, split)
        x = torch.from_numpy(px.images).permute(0, 3, 1, 2)  # (N, H, W, C) -> (N, C, H, W)
        self.x = x.contiguous(memory_format=torch.channels_last).to(device)
        self.y = torch.from_numpy(px.labels).to(device)
        self.idx = torch.from_numpy(px.idx).to(device)
        self.mean = torch.tensor(info.mean, dtype=torch.float32, device=device)
        self.std = torch.tensor(info.std, dtype=torch.float32, device=device)

    def __len__(self) -> int:
        return len(self.y)


class InMemoryFeed:
    """Every split held on the device; batches are gathered, augmented and normalised there."""

    def __init__(
        self,
        info: DatasetInfo,
        recipe: Recipe,
        device: torch.device,
        seeds: dict[int, dict[str, int]],
    ):
        self.splits = {s: InMemorySplit(info, s, device) for s in info.splits}
        self.loader_cfg, self.seeds, self.paced = recipe.loader, seeds, None
        self.in_shape = tuple(self.splits["train"].x.shape[1:])
        self.steps_per_epoch = len(self.splits["train"]) // recipe.loader.batch_size
        self.rows: torch.Tensor | None = None  # train on these rows only (train.subset)

    def restrict(self, rows: torch.Tensor) -> None:
        """Train on these row positions of the train split only; every split is still evaluated."""
        self.rows = rows.to(self.splits["train"].x.device)
        self.steps_per_epoch = len(rows) // self.loader_cfg.batch_size

    def train_batches(self, members: list[int], epoch: int) -> Iterator[Batch]:
        split, b, steps = self.splits["train"], self.loader_cfg.batch_size, self.steps_per_epoch
        n = len(split) if self.rows is None else len(self.rows)
        if self.paced is None:
            perms = [order_rng(self.seeds[m], epoch).permutation(n) for m in members]
        gens = [augment_generator(self.seeds[m], epoch) for m in members]
        flip, tr = self.loader_cfg.flip, self.loader_cfg.translate
        for t in range(steps):
            xs, ys, ids = [], [], []
            for j, (m, g) in enumerate(zip(members, gens, strict=True)):
                if self.paced is None:
                    rows = perms[j][t * b : (t + 1) * b]
                else:  # drawn from the g(step) easiest, seeded per member and step
                    step = (epoch - 1) * steps + t
                    p = self.paced
                    rows = curriculum_batch(p.order, step, b, p.pacing, self.seeds[m]["order"])
                rows = torch.from_numpy(rows).to(split.x.device)
                if self.rows is not None:
                    rows = self.rows[rows]
                x = augment(split.x[rows], g, flip, tr)
                xs.append(normalize(x, split.mean, split.std))
                ys.append(split.y[rows])
                ids.append(split.idx[rows])
            yield torch.stack(xs), torch.stack(ys), torch.stack(ids)

    def eval_batches(self, split: str) -> Iterator[Batch]:
        data, batch = self.splits[split], self.loader_cfg.eval_batch_size
        for s in range(0, len(data), batch):
            x = normalize(data.x[s : s + batch], data.mean, data.std)
            yield (
                x.contiguous(memory_format=torch.channels_last),
                data.y[s : s + batch],
                data.idx[s : s + batch],
            )


class StreamFeed:
    """ffcv loaders over the .betons: one training loader per member, one eval loader per split."""

    def __init__(
        self,
        info: DatasetInfo,
        ws: Workspace,
        recipe: Recipe,
        device: torch.device,
        seeds: dict[int, dict[str, int]],
    ):
        self.info, self.ws, self.cfg, self.device, self.seeds = (
            info,
            ws,
            recipe.loader,
            device,
            seeds,
        )
        self.paced: Paced | None = None
        self.in_shape = (3, recipe.loader.crop_size, recipe.loader.crop_size)
        self.steps_per_epoch = info.splits["train"] // recipe.loader.batch_size
        self._train: dict[int, object] = {}
        self._eval: dict[str, object] = {}
        self.rows = None  # train on these rows only (train.subset)

    def restrict(self, rows: torch.Tensor) -> None:
        """Train on these row positions of the .beton only; every split is still evaluated."""
        self.rows = rows.numpy()
        self.steps_per_epoch = len(rows) // self.cfg.batch_size

    def train_batches(self, members: list[int], epoch: int) -> Iterator[Batch]:
        if len(members) != 1:
            raise CurateError("streamed batches feed one member at a time; use strategy separate")
        loader = self._train_loader(members[0])
        loader.set_epoch(epoch - 1)
        for x, y, i in loader:
            yield x.unsqueeze(0), y.unsqueeze(0), i.unsqueeze(0)

    def eval_batches(self, split: str) -> Iterable[Batch]:
        if split not in self._eval:
            spec = LoaderSpec(cfg=self.cfg, device=self.device)
            self._eval[split] = make_loader(self.info.name, split, "eval", self.ws, spec)
        return self._eval[split]

    def _train_loader(self, member: int):
        if member not in self._train:
            seed = self.seeds[member]["order"]
            spec = LoaderSpec(cfg=self.cfg, seed=seed, indices=self.rows, device=self.device)
            loader = make_loader(self.info.name, "train", "train", self.ws, spec)
            if self.paced is not None:
                from curate.curriculum import ffcv_order

                inner = loader.loader
                inner.traversal_order = ffcv_order(
                    self.paced.order, self.cfg.batch_size, self.paced.pacing, seed
                )(inner)
            self._train[member] = loader
        return self._train[member]
