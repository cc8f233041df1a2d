"""From logits to what the prediction log records: each member's predicted class, softmax
probability of the true class and margin, per instance.

Multilabel (class sets as bitmasks, bit k = class k): the prediction is the set {k : sigmoid(z_k) >
0.5} = {k : z_k > 0} as a bitmask, correct only on an exact match; p_true is the probability of
exactly the true set under independent sigmoids, prod over k in the set of sigma(z_k) times prod
over the rest of 1 - sigma(z_k); margin is min over k of (2 y_k - 1) z_k, > 0 exactly when the
thresholded prediction matches (ties z_k = 0 aside)."""

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


def error_norm(logits: torch.Tensor, y: torch.Tensor, multilabel: bool = False) -> torch.Tensor:
    """EL2N (Paul et al. 2021): the L2 norm of the error vector, (M, B) from logits (B, M, K) and
    y (B,) or (M, B): ||softmax(z) - onehot(y)||_2; multilabel: ||sigmoid(z) - k_hot(y)||_2."""
    logits = logits.transpose(0, 1).float()  # (M, B, K)
    y = y.expand(logits.shape[0], -1) if y.dim() == 1 else y
    k = logits.shape[2]
    if multilabel:
        err = torch.sigmoid(logits) - k_hot(y, k)
    else:
        err = torch.softmax(logits, 2)
        err = err - torch.nn.functional.one_hot(y.long(), k).to(err.dtype)
    return torch.linalg.vector_norm(err, dim=2)


def k_hot(y: torch.Tensor, k: int) -> torch.Tensor:
    """Bitmask labels (...) -> float K-hot targets (..., K): element k is bit k of the label."""
    bits = torch.arange(k, device=y.device)
    return ((y.unsqueeze(-1) >> bits) & 1).float()


def multilabel_stats(logits: torch.Tensor, y: torch.Tensor):
    """logits (B, M, K), bitmask labels y (B,) or (M, B) -> pred (bitmask, int32), p_true, margin
    each (M, B), as the module docstring defines them."""
    logits = logits.transpose(0, 1).float()  # (M, B, K)
    y = y.expand(logits.shape[0], -1) if y.dim() == 1 else y
    k = logits.shape[2]
    sign = 2 * k_hot(y, k) - 1  # +1 for the label's classes, -1 for the others
    bits = torch.ones(k, dtype=torch.int64, device=logits.device) << torch.arange(
        k, device=logits.device
    )
    pred = ((logits > 0).long() * bits).sum(2).to(torch.int32)
    signed = sign * logits
    # log sigma(s z) summed over classes: exact-set probability without underflow on the way
    p_true = torch.nn.functional.logsigmoid(signed).sum(2).exp()
    return pred, p_true, signed.min(2).values


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
