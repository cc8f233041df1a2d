"""The evaluation pass the training-loop callbacks run: every instance of every split through the
model once, in eval mode without gradients, each batch handed to the `Recorder`."""

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


def record_pass(
    rec: Recorder,
    model: torch.nn.Module,
    member: int,
    epoch: int,
    loaders: Mapping[str, Iterable],
    unpack: Callable[[Any], tuple[Any, Any]] = default_unpack,
    forward: Callable[[torch.nn.Module, Any], torch.Tensor] | None = None,
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
    """
    todo = [s for s in loaders if not rec.done(s, member, epoch)]
    if not todo:
        return False
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
    return True
