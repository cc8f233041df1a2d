"""A unit's predictions, gathered from its logits batch by batch: what the epoch loop writes to the
prediction log. The columns themselves (predicted class, p_true, margin, el2n; multilabel as
class-set bitmasks) are computed by `curate.runlog.columns`, the functions the recorder uses too."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from curate.runlog.columns import error_norm, k_hot, logit_stats, multilabel_stats

__all__ = [
    "Collector",
    "Predictions",
    "error_norm",
    "k_hot",
    "logit_stats",
    "multilabel_stats",
]


@dataclass(frozen=True)
class Predictions:
    """A unit's predictions on a set of rows.

    idx, labels : (N,) when every member saw the same rows (the evaluation pass), (M_u, N) when each
    saw its own (the training forward pass). pred, p_true, margin : (M_u, N). el2n : (M_u, N), the
    L2 norm of the error vector (`error_norm`), or None where a learner does not give it.
    """

    idx: np.ndarray
    labels: np.ndarray
    pred: np.ndarray
    p_true: np.ndarray
    margin: np.ndarray
    multilabel: bool = False  # pred and labels are class-set bitmasks (exact match = correct)
    el2n: np.ndarray | None = None

    def accuracy(self) -> np.ndarray:
        """Fraction of rows each member gets right, (M_u,)."""
        return (self.pred == self.labels).mean(axis=-1)


class Collector:
    """Gathers batches of logits into Predictions. to_cpu: move each batch off the device at once
    (for the training pass, whose batches would otherwise pile up on the GPU)."""

    def __init__(self, to_cpu: bool = False, multilabel: bool = False):
        self.to_cpu, self.multilabel = to_cpu, multilabel
        self.parts: dict[str, list[torch.Tensor]] = {
            k: [] for k in ("idx", "labels", "pred", "p_true", "margin", "el2n")
        }

    def add(self, logits: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> None:
        """logits (B, M_u, K); y and idx (B,) or (M_u, B)."""
        stats = multilabel_stats if self.multilabel else logit_stats
        pred, p_true, margin = stats(logits, y)
        el2n = error_norm(logits, y, self.multilabel)
        for k, v in zip(self.parts, (idx, y, pred, p_true, margin, el2n), strict=True):
            self.parts[k].append(v.cpu() if self.to_cpu else v)

    def result(self) -> Predictions:
        parts = {k: torch.cat(v, -1).cpu().numpy() for k, v in self.parts.items()}
        return Predictions(**parts, multilabel=self.multilabel)
