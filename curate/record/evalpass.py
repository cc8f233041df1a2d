"""The evaluation pass the training-loop callbacks run: every instance of every split through the
model once, in eval mode without gradients, each batch handed to the `Recorder`; the pass ends with
`Recorder.end_pass`, which raises at once when a split was not covered.

Under DDP (`world_size` > 1) the pass is sharded: each rank evaluates its own share and the ranks'
rows are merged into each part (`curate.record.recorder`). A loader that already has a
DistributedSampler is used as it is; a plain `torch.utils.data.DataLoader` over a sized dataset is
rebuilt with a DistributedSampler of this rank (unshuffled, the same batch size, workers and
collate function); any other iterable is evaluated whole on every rank (correct, not faster)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

from curate.record.recorder import Recorder


def default_unpack(batch: Any) -> tuple[Any, Any]:
    """(inputs, idx) of a batch: a tuple or list ``(x, ..., idx)`` (idx last), or a dict with
    ``idx`` (the inputs are the rest of the dict, less ``labels``/``label``/``y``)."""
    if isinstance(batch, Mapping):
        if "idx" not in batch:
            raise KeyError("the batch dict has no 'idx'; give each instance's catalog idx")
        rest = {k: v for k, v in batch.items() if k not in ("idx", "labels", "label", "y")}
        return rest, batch["idx"]
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        return batch[0], batch[-1]
    raise TypeError("a batch must be (x, ..., idx) or a dict with 'idx'; pass unpack=")


def _to(x: Any, device: torch.device) -> Any:
    if isinstance(x, torch.Tensor):
        return x.to(device, non_blocking=True)
    if isinstance(x, Mapping):
        return {k: _to(v, device) for k, v in x.items()}
    return x


def shard_loader(loader: Iterable, rank: int, world_size: int) -> Iterable:
    """`loader` as rank `rank` of `world_size` should evaluate it (see the module docstring)."""
    from torch.utils.data import DataLoader, DistributedSampler

    if not isinstance(loader, DataLoader) or isinstance(loader.sampler, DistributedSampler):
        return loader
    ds = loader.dataset
    if not hasattr(ds, "__len__") or isinstance(ds, torch.utils.data.IterableDataset):
        return loader
    sampler = DistributedSampler(ds, num_replicas=world_size, rank=rank, shuffle=False)
    return DataLoader(
        ds,
        batch_size=loader.batch_size or 1,
        sampler=sampler,
        num_workers=loader.num_workers,
        collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory,
        drop_last=False,
    )


def record_pass(
    rec: Recorder,
    model: torch.nn.Module,
    member: int,
    epoch: int,
    loaders: Mapping[str, Iterable],
    unpack: Callable[[Any], tuple[Any, Any]] = default_unpack,
    forward: Callable[[torch.nn.Module, Any], torch.Tensor] | None = None,
    rank: int = 0,
    world_size: int = 1,
) -> bool:
    """Log `model` as `member` at `epoch` on every split of `loaders`; False when already done.

    Parameters
    ----------
    rec : the run's recorder.
    model : the member's model (its train/eval mode is restored afterwards).
    member, epoch : the part's member and epoch (0 = before training).
    loaders : split -> iterable of batches, each instance once (no shuffling needed).
    unpack : batch -> (inputs, idx).
    forward : (model, inputs) -> logits (B, C); default ``model(inputs)``, or ``model(**inputs)``
        for dict inputs, taking ``.logits`` when the output has it.
    rank, world_size : this process's rank among the DDP processes; world_size > 1 records sharded
        (every rank must call this), 1 records whole parts in this process.

    Raises
    ------
    CurateError : a split the pass did not cover (`Recorder.end_pass`), or bad input to `log`.
    """
    rec.set_rank(rank, world_size)
    todo = [s for s in loaders if not rec.done(s, member, epoch)]
    if not todo:
        return False
    if world_size > 1:
        loaders = {s: shard_loader(loaders[s], rank, world_size) for s in todo}
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for split in todo:
                for batch in loaders[split]:
                    inputs, idx = unpack(batch)
                    inputs = _to(inputs, device)
                    if forward is not None:
                        out = forward(model, inputs)
                    else:
                        out = model(**inputs) if isinstance(inputs, Mapping) else model(inputs)
                    out = out["logits"] if isinstance(out, Mapping) else getattr(out, "logits", out)
                    rec.log(split, member, epoch, idx, out)
    finally:
        model.train(was_training)
    rec.end_pass(member, epoch, todo)
    return True
