"""From logits to what the prediction log records: each member's predicted class, softmax
probability of the true class and margin, per instance."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


def logit_stats(logits: torch.Tensor, y: torch.Tensor):
    """logits (B, M, K), y (B,) or (M, B) -> pred, p_true, margin each (M, B).

    margin = true logit minus the largest other logit (> 0 exactly when correct, ties aside).
    """
    logits = logits.transpose(0, 1)  # (M, B, K)
    y = y.expand(logits.shape[0], -1) if y.dim() == 1 else y
    true_logit = logits.gather(2, y.unsqueeze(2)).squeeze(2)
    others = logits.scatter(2, y.unsqueeze(2), float("-inf"))
    p_true = torch.softmax(logits, 2).gather(2, y.unsqueeze(2)).squeeze(2)
    return logits.argmax(2), p_true, true_logit - others.max(2).values


@dataclass(frozen=True)
class Predictions:
    """A unit's predictions on a set of rows.

    idx, labels : (N,) when every member saw the same rows (the evaluation pass), (M_u, N) when each
    saw its own (the training forward pass). pred, p_true, margin : (M_u, N).
    """

    idx: np.ndarray
    labels: np.ndarray
    pred: np.ndarray
    p_true: np.ndarray
    margin: np.ndarray
    multilabel: bool = False  # pred and labels are class-set bitmasks (exact match = correct)

    def accuracy(self) -> np.ndarray:
        """Fraction of rows each member gets right, (M_u,)."""
        return (self.pred == self.labels).mean(axis=-1)


class Collector:
    """Gathers batches of logits into Predictions. to_cpu: move each batch off the device at once
    (for the training pass, whose batches would otherwise pile up on the GPU)."""

    def __init__(self, to_cpu: bool = False):
        self.to_cpu = to_cpu
        self.parts: dict[str, list[torch.Tensor]] = {
            k: [] for k in ("idx", "labels", "pred", "p_true", "margin")
        }

    def add(self, logits: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> None:
        """logits (B, M_u, K); y and idx (B,) or (M_u, B)."""
        pred, p_true, margin = logit_stats(logits, y)
        for k, v in zip(self.parts, (idx, y, pred, p_true, margin), strict=True):
            self.parts[k].append(v.cpu() if self.to_cpu else v)

    def result(self) -> Predictions:
        return Predictions(**{k: torch.cat(v, -1).cpu().numpy() for k, v in self.parts.items()})
