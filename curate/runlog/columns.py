"""From logits to a shard's columns: each member's predicted class, softmax probability of the
true class, margin and error norm, per instance. The trainer (`curate.train`) and the recorder
(`curate.record`) compute the log with these functions, so both write the same numbers.

Multilabel (class sets as bitmasks, bit k = class k): the prediction is the set {k : sigmoid(z_k) >
0.5} = {k : z_k > 0} as a bitmask, correct only on an exact match; p_true is the probability of
exactly the true set under independent sigmoids, prod over k in the set of sigma(z_k) times prod
over the rest of 1 - sigma(z_k); margin is min over k of (2 y_k - 1) z_k, > 0 exactly when the
thresholded prediction matches (ties z_k = 0 aside).

The functions take torch tensors (torch is imported when they run: `curate train` and a Recorder
where torch is installed use them); `member_columns` also takes numpy logits, computed in numpy
(float64, rounded to float32), for the core install without torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


def logit_stats(logits: torch.Tensor, y: torch.Tensor):
    """logits (B, M, K), y (B,) or (M, B) -> pred, p_true, margin each (M, B).

    margin = true logit minus the largest other logit (> 0 exactly when correct, ties aside).
    """
    import torch

    logits = logits.transpose(0, 1)  # (M, B, K)
    y = y.expand(logits.shape[0], -1) if y.dim() == 1 else y
    true_logit = logits.gather(2, y.unsqueeze(2)).squeeze(2)
    others = logits.scatter(2, y.unsqueeze(2), float("-inf"))
    p_true = torch.softmax(logits, 2).gather(2, y.unsqueeze(2)).squeeze(2)
    return logits.argmax(2), p_true, true_logit - others.max(2).values


def error_norm(logits: torch.Tensor, y: torch.Tensor, multilabel: bool = False) -> torch.Tensor:
    """EL2N (Paul et al. 2021): the L2 norm of the error vector, (M, B) from logits (B, M, K) and
    y (B,) or (M, B): ||softmax(z) - onehot(y)||_2; multilabel: ||sigmoid(z) - k_hot(y)||_2."""
    import torch

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
    import torch

    bits = torch.arange(k, device=y.device)
    return ((y.unsqueeze(-1) >> bits) & 1).float()


def multilabel_stats(logits: torch.Tensor, y: torch.Tensor):
    """logits (B, M, K), bitmask labels y (B,) or (M, B) -> pred (bitmask, int32), p_true, margin
    each (M, B), as the module docstring defines them."""
    import torch

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


def member_columns(
    z: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray, multilabel: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One member's shard columns (pred, p_true, margin, el2n), each (B,) numpy, from its logits
    z (B, K) and labels y (B,) (class indices, or bitmasks when `multilabel`).

    z a torch tensor: computed with torch on z's device (y, tensor or numpy, moved there); z a
    numpy array: computed with numpy (`numpy_columns`), no torch needed.
    """
    if isinstance(z, np.ndarray):
        return numpy_columns(z, np.asarray(y), multilabel)
    import torch

    if not isinstance(y, torch.Tensor):
        y = torch.from_numpy(np.asarray(y)).to(z.device)
    stats = multilabel_stats if multilabel else logit_stats
    pred, p_true, margin = stats(z.unsqueeze(1), y)
    el2n = error_norm(z.unsqueeze(1), y, multilabel)
    return tuple(t[0].cpu().numpy() for t in (pred, p_true, margin, el2n))


def numpy_columns(
    z: np.ndarray, y: np.ndarray, multilabel: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`member_columns` in numpy: logits z (B, K), labels y (B,) -> pred (int64, or int32 bitmasks),
    p_true, margin, el2n (float32), as the module docstring defines them. Computed in float64 and
    rounded: within float32 rounding of what torch computes from the same logits (the margin, one
    subtraction, is the same number)."""
    from scipy.special import expit

    z64 = z.astype(np.float64)
    b, k = z64.shape
    if multilabel:
        target = ((y.astype(np.int64)[:, None] >> np.arange(k)) & 1).astype(np.float64)
        signed = (2 * target - 1) * z64
        pred = ((z64 > 0) * (np.int64(1) << np.arange(k))).sum(1).astype(np.int32)
        p_true = np.exp(-np.logaddexp(0, -signed).sum(1))  # prod of sigma(s z): log-sigmoid sum
        margin = signed.min(1)
        err = expit(z64) - target
    else:
        rows, yi = np.arange(b), y.astype(np.int64)
        pred = z.argmax(1).astype(np.int64)
        shifted = np.exp(z64 - z64.max(1, keepdims=True))
        prob = shifted / shifted.sum(1, keepdims=True)
        p_true = prob[rows, yi]
        others = z64.copy()
        others[rows, yi] = -np.inf
        margin = z64[rows, yi] - others.max(1)
        err = prob
        err[rows, yi] -= 1
    el2n = np.sqrt(np.square(err).sum(1))
    with np.errstate(over="ignore"):  # beyond float32: inf, which the recorder refuses
        return pred, p_true.astype(np.float32), margin.astype(np.float32), el2n.astype(np.float32)
