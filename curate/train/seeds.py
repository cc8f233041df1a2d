"""Every random draw of a run, seeded from the recipe seed.

Member m has its own seeds for initial weights, data order, augmentation and dropout, so members
differ in all four, and a member's draws do not depend on the strategy that trains it or on the
rank it lands on.
"""

from __future__ import annotations

import numpy as np
import torch


def member_seeds(seed: int, member: int) -> dict[str, int]:
    """Independent seeds of member m, derived from the recipe seed."""
    init, order, aug, drop = np.random.SeedSequence([seed, member]).generate_state(4)
    return {"init": int(init), "order": int(order % 2**31), "aug": int(aug), "dropout": int(drop)}


def order_rng(seeds: dict[str, int], epoch: int) -> np.random.Generator:
    """The generator of a member's data order in epoch e (1-based), as ffcv's RANDOM order."""
    return np.random.default_rng(seeds["order"] + epoch - 1)


def augment_generator(seeds: dict[str, int], epoch: int) -> torch.Generator:
    """The generator of a member's augmentation draws in epoch e (1-based)."""
    return torch.Generator().manual_seed(seeds["aug"] * 1_000_003 + epoch - 1)


def dropout_seed(seeds: dict[str, int], epoch: int) -> int:
    """torch's global seed for a unit's dropout draws in epoch e (1-based)."""
    return seeds["dropout"] + epoch
