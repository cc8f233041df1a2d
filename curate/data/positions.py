"""Instance ids (`idx`) to row positions: the one lookup from the catalog's keys to a split's rows."""

from __future__ import annotations

import numpy as np


def find_positions(known: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Where each of `wanted` sits in `known`.

    Parameters
    ----------
    known : (N,) the ids of a split's rows, in row order (sorted or not, no repeats).
    wanted : (K,) the ids to look up.

    Returns
    -------
    (K,) int64 positions into `known`; -1 where an id is not in `known`.
    """
    known = np.asarray(known)
    wanted = np.asarray(wanted)
    if len(known) == 0:
        return np.full(len(wanted), -1, np.int64)
    is_sorted = bool(np.all(known[1:] >= known[:-1]))
    order = None if is_sorted else np.argsort(known, kind="stable")
    at = np.minimum(np.searchsorted(known, wanted, sorter=order), len(known) - 1)
    pos = at if order is None else order[at]
    return np.where(known[pos] == wanted, pos, -1).astype(np.int64)
