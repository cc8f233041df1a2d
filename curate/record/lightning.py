"""A PyTorch Lightning `Callback` that records one member's training dynamics with
`curate.Recorder`: an evaluation pass over the given loaders before the first training epoch
(epoch 0) and after every training epoch. Lightning is an optional extra (`pip install
'curate[lightning]'`); this module imports it, nothing else in curate does.

    rec = curate.Recorder(ws, run="resnet", dataset="cifar10", members=4, epochs=30)
    for m in range(4):
        trainer = L.Trainer(max_epochs=30, callbacks=[RecorderCallback(rec, m, eval_loaders)])
        trainer.fit(model_of(m), train_loader)
    rec.close()

Under DDP (several processes) every rank records its own share of each split by default
(sharded recording, `curate.record.recorder`): give the loaders a DistributedSampler, or plain
DataLoaders, which the pass shards itself (`curate.record.evalpass.shard_loader`). With
``sharded=False`` the global-zero process records alone, over the whole loaders. Call
``rec.close()`` after the fits, in every process: it reads what is on disk, and only rank 0 writes
the catalog rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

try:
    import lightning.pytorch as pl
except ImportError:  # the standalone package of older installs
    try:
        import pytorch_lightning as pl  # type: ignore[no-redef]
    except ImportError as e:
        raise ImportError(
            "curate.record.lightning needs PyTorch Lightning: pip install 'curate[lightning]'"
        ) from e

from curate.record.evalpass import default_unpack, record_pass
from curate.record.recorder import Recorder


class RecorderCallback(pl.Callback):
    """Record member `member` of `rec`'s run from a Lightning fit.

    Parameters
    ----------
    rec : the run's recorder (the caller closes it once every member is fitted).
    member : which member this fit trains, 0..M-1.
    loaders : split -> loader of evaluation batches (every instance once; unshuffled is fine).
    unpack : batch -> (inputs, idx); default: ``(x, ..., idx)`` tuples or dicts with ``idx``.
    forward : (module, inputs) -> logits; default ``module(inputs)``.
    sharded : under DDP, every rank records its share of each split (default); False: the
        global-zero process records the whole split while the others wait.

    Epoch e (1..E) is logged when Lightning's training epoch e - 1 (0-based) ends; parts already
    recorded (a resumed fit) are skipped.
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
        super().__init__()
        self.rec, self.member, self.loaders = rec, member, dict(loaders)
        self.unpack, self.forward, self.sharded = unpack, forward, sharded

    def _record(self, trainer, pl_module, epoch: int) -> None:
        world = int(trainer.world_size) if self.sharded else 1
        if world > 1 or trainer.is_global_zero:
            rank = int(trainer.global_rank) if world > 1 else 0
            record_pass(
                self.rec,
                pl_module,
                self.member,
                epoch,
                self.loaders,
                self.unpack,
                self.forward,
                rank=rank,
                world_size=world,
            )

    def on_fit_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == 0:
            self._record(trainer, pl_module, 0)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._record(trainer, pl_module, trainer.current_epoch + 1)
