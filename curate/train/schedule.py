"""Optimisers and learning-rate schedules the papers used, as per-step factors of the base rate.

| schedule | factor at step t of T (epoch = t / steps_per_epoch)       | used by                  |
| cosine   | f + (1 - f) 0.5 (1 + cos(pi t / T)), f = lr_min / lr      | Pliushch (CIFAR)         |
| step     | gamma ^ floor(epoch / step_size)                          | Meding ResNet-18, Pascal |
| stvgg    | 1.8 ^ -floor(epoch / 20)                                  | Hacohen st-VGG           |
| onecycle | linear 1/25 -> 1 over 30 % of T, then cosine to 1/25e4    | KTH-TIPS (with Adam)     |
| constant | 1                                                         |                          |
"""

from __future__ import annotations

import math

import torch

from curate.config import TrainConfig


def lr_factor(step: int, steps_per_epoch: int, cfg: TrainConfig) -> float:
    """Multiplier of cfg.lr at optimiser step `step` (0-based)."""
    total = steps_per_epoch * cfg.epochs
    epoch = step // steps_per_epoch
    warm = cfg.warmup_epochs * steps_per_epoch
    if cfg.schedule != "onecycle" and warm > 0 and step < warm:
        return (step + 1) / warm
    if cfg.schedule == "cosine":
        t = (step - warm) / max(1, total - warm)
        floor = cfg.lr_min / cfg.lr if cfg.lr > 0 else 0.0
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
    if cfg.schedule == "step":
        return cfg.gamma ** (epoch // cfg.step_size)
    if cfg.schedule == "stvgg":
        return 1.8 ** -(epoch // 20)
    if cfg.schedule == "onecycle":
        up = 0.3 * total
        if step < up:
            return 1 / 25 + (1 - 1 / 25) * step / up
        t = (step - up) / max(1, total - up)
        lo = 1 / 25e4
        return lo + (1 - lo) * 0.5 * (1 + math.cos(math.pi * t))
    return 1.0  # constant (config.py declares the schedules a recipe may name)


def make_optimizer(params, cfg: TrainConfig, steps_per_epoch: int):
    """(optimizer, LambdaLR scheduler stepped once per batch)."""
    if cfg.optimizer == "sgd":
        opt = torch.optim.SGD(
            params,
            lr=cfg.lr,
            momentum=cfg.momentum,
            nesterov=cfg.nesterov,
            weight_decay=cfg.weight_decay,
        )
    else:  # adam (config.py declares the optimisers a recipe may name)
        opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, steps_per_epoch, cfg))
    return opt, sched
