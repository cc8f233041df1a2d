"""A Hugging Face `transformers.TrainerCallback` that records one member's training dynamics with
`curate.Recorder`: an evaluation pass over the given loaders when training begins (epoch 0) and at
the end of every epoch. transformers is an optional extra; only this module imports it.

    rec = curate.Recorder(ws, run="vit", dataset="mydata", members=4, epochs=3)
    for m in range(4):
        trainer = Trainer(model=model_of(m), args=args, train_dataset=train,
                          callbacks=[HFRecorderCallback(rec, m, eval_loaders)])
        trainer.train()
    rec.close()

Batches are dicts (as a `DataCollator` gives them) with an ``idx`` entry; ``labels`` is left out of
the forward call, and the output's ``.logits`` is logged. Under several processes (accelerate,
torchrun) every rank records its own share of each split by default (sharded recording, as
`curate.record.lightning` does); ``sharded=False``: the main process records the whole split.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

try:
    from transformers import TrainerCallback
except ImportError as e:
    raise ImportError("curate.record.hf needs transformers: pip install 'curate[hf]'") from e

from curate.record.evalpass import default_unpack, record_pass
from curate.record.recorder import Recorder


class HFRecorderCallback(TrainerCallback):
    """Record member `member` of `rec`'s run from a `transformers.Trainer`.

    Parameters
    ----------
    rec : the run's recorder (the caller closes it once every member is trained).
    member : which member this Trainer trains, 0..M-1.
    loaders : split -> iterable of evaluation batches (dicts with ``idx``), every instance once.
    unpack, forward : as in `curate.record.evalpass.record_pass`.
    sharded : under several processes, every rank records its share (default); False: the main
        process records the whole split.

    Epoch e is ``round(state.epoch)`` at the end of each training epoch (the Trainer counts
    epochs from 0 and reports 1.0 after the first).
    """

    def __init__(
        self,
        rec: Recorder,
        member: int,
        loaders: Mapping[str, Iterable],
        unpack: Callable[[Any], tuple[Any, Any]] = default_unpack,
        forward: Callable | None = None,
        sharded: bool = True,
    ) -> None:
        self.rec, self.member, self.loaders = rec, member, dict(loaders)
        self.unpack, self.forward, self.sharded = unpack, forward, sharded

    def _record(self, args, state, model, epoch: int) -> None:
        if model is None:
            return
        world = int(args.world_size) if self.sharded else 1
        if world > 1 or state.is_world_process_zero:
            rank = int(args.process_index) if world > 1 else 0
            record_pass(
                self.rec,
                model,
                self.member,
                epoch,
                self.loaders,
                self.unpack,
                self.forward,
                rank=rank,
                world_size=world,
            )

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if not state.epoch:
            self._record(args, state, model, 0)

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        self._record(args, state, model, int(round(state.epoch)))
