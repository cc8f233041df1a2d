"""The trainer's side of the prediction log (`curate.runlog`): a unit's predictions written as one
shard per member. The layout, the shards and the progress records are `curate.runlog`'s; they are
named here too because the epoch loop calls them through this module."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from curate.runlog.layout import progress_path, shard_path
from curate.runlog.progress import last_done_epoch, mark_epoch_done, read_progress
from curate.runlog.shards import ROW_GROUP, SHARD_SCHEMA, WIDE_SCHEMA, write_shard

if TYPE_CHECKING:
    from curate.train.logits import Predictions

__all__ = [
    "ROW_GROUP",
    "SHARD_SCHEMA",
    "WIDE_SCHEMA",
    "last_done_epoch",
    "mark_epoch_done",
    "progress_path",
    "read_progress",
    "shard_path",
    "write_predictions",
    "write_shard",
]


def write_predictions(
    run_dir: Path, pass_: str, split: str, members: list[int], epoch: int, preds: Predictions
) -> None:
    """One epoch's shard of each member of a unit (members[j] is row j of preds).

    Where each member saw its own rows (the training pass), its shard lists them in idx order.
    """
    for j, m in enumerate(members):
        own = preds.idx.ndim == 2
        rows = np.argsort(preds.idx[j], kind="stable") if own else slice(None)
        write_shard(
            shard_path(run_dir, pass_, split, m, epoch),
            (preds.idx[j] if own else preds.idx)[rows],
            preds.pred[j][rows],
            preds.p_true[j][rows],
            preds.margin[j][rows],
            wide=preds.multilabel,
            el2n=None if preds.el2n is None else preds.el2n[j][rows],
        )
