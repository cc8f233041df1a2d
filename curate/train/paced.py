"""A curriculum as training uses it: an exported ordering mapped to row positions of the train
split, and its pacing g(step) over every step of the run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from curate.curriculum import check_pair, load_ordering, load_sidecar, pacing_function
from curate.data.positions import find_positions
from curate.errors import CurateError


@dataclass(frozen=True)
class Paced:
    """order: positions in the train split, easiest first; pacing: g(step), instances available."""

    order: np.ndarray
    pacing: Callable[[int], int]


def load_paced(path: str, split_idx: np.ndarray, steps_per_epoch: int, epochs: int) -> Paced:
    """Read an exported ordering and its sidecar; map its idx to row positions of the train split."""
    idx = load_ordering(path)
    side = load_sidecar(path if Path(path).suffix else Path(path).with_suffix(".npy"))
    check_pair(path, idx, side)
    if len(np.unique(idx)) != len(idx):
        raise CurateError(
            f"curriculum {path} lists an idx more than once; an ordering names each instance "
            "once: export it with curate curriculum"
        )
    pos = find_positions(split_idx, idx)
    if np.any(pos < 0):
        raise CurateError(
            f"curriculum {path} names instances this dataset's train split does not have; "
            "export it from a run on the same dataset"
        )
    pacing = pacing_function(
        side["pacing"], len(idx), steps_per_epoch * epochs, **side.get("pacing_params", {})
    )
    return Paced(pos, pacing)
