"""A PyTorch Lightning `Callback` that records one member's training dynamics with
`curate.Recorder`: an evaluation pass over the given loaders before the first training epoch
(epoch 0) and after every training epoch. Lightning is an optional extra (`pip install
lightning`); this module imports it, nothing else in curate does.

    rec = curate.Recorder(ws, run="resnet", dataset="cifar10", members=4, epochs=30)
    for m in range(4):
        trainer = L.Trainer(max_epochs=30, callbacks=[RecorderCallback(rec, m, eval_loaders)])
        trainer.fit(model_of(m), train_loader)
    rec.close()

Under several processes (DDP) the global-zero process records, over the whole loaders.
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
            "curate.record.lightning needs PyTorch Lightning: pip install lightning"
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
    ) -> None:
        super().__init__()
        self.rec, self.member, self.loaders = rec, member, dict(loaders)
        self.unpack, self.forward = unpack, forward

    def _record(self, trainer, pl_module, epoch: int) -> None:
        if trainer.is_global_zero:
            record_pass(
                self.rec, pl_module, self.member, epoch, self.loaders, self.unpack, self.forward
            )

    def on_fit_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == 0:
            self._record(trainer, pl_module, 0)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._record(trainer, pl_module, trainer.current_epoch + 1)
