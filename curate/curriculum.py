"""Curricula (docs/concepts.md#curricula): orderings from easy to hard, pacing functions, and samplers that
draw each batch uniformly from the g(t) easiest instances.

Usable without the rest of curate::

    from curate.curriculum import CurriculumSampler, load_ordering, pacing_function
    order = load_ordering("digits-curriculum.npy")           # positions, easiest first
    g = pacing_function("fixed-exp", n=len(order), total_steps=1000)
    sampler = CurriculumSampler(order, batch_size=64, pacing=g, total_steps=1000, seed=0)
    loader = torch.utils.data.DataLoader(dataset, batch_size=64, sampler=sampler)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from curate.errors import CurateError

PACINGS = ("fixed-exp", "linear", "quad", "root", "step", "exp", "log", "none")

# ----------------------------------------------------------------------------- pacing


def fixed_exp(t: int, n: int, b: float = 0.04, inc: float = 1.9, step: int = 100) -> int:
    """Hacohen & Weinshall: g(t) = min(1, b inc^floor(t / step)) N."""
    return int(min(1.0, b * inc ** (t // step)) * n)


def wu_pacing(
    kind: str, t: int, n: int, total_steps: int, a: float = 0.8, b: float = 0.2, c: float = 10.0
) -> int:
    """Wu, Dyer & Neyshabur (2021): N_b = b N at t = 0, all N at t = a T.

    linear  N_b + (N - N_b) t / (aT)          quad  N_b + (N - N_b) (t / (aT))^2
    root    N_b + (N - N_b) sqrt(t / (aT))    step  N_b + N floor(t / (aT))
    exp     N_b + (N - N_b) (e^(c t / (aT)) - 1) / (e^c - 1)
    log     N_b + (N - N_b) (1 + log(t / (aT) + e^-c) / c)
    capped at N.
    """
    at = a * total_steps
    nb = b * n
    x = t / at
    if kind == "linear":
        v = nb + (n - nb) * x
    elif kind == "quad":
        v = nb + (n - nb) * x * x
    elif kind == "root":
        v = nb + (n - nb) * math.sqrt(x)
    elif kind == "step":
        v = nb + n * math.floor(x)
    elif kind == "exp":
        v = nb + (n - nb) * math.expm1(min(c * x, 700)) / math.expm1(c)
    elif kind == "log":
        v = nb + (n - nb) * (1 + math.log(x + math.exp(-c)) / c)
    else:
        raise CurateError(f"unknown pacing {kind!r}; choose one of {', '.join(PACINGS)}")
    return int(min(v, n))


def pacing_function(kind: str, n: int, total_steps: int, **params) -> Callable[[int], int]:
    """g(step) -> number of the easiest instances available, at least 1 and at most n.

    kind : fixed-exp (params b, inc, step), linear, quad, root, step, exp, log (params a, b, c), or none.
    """
    if kind not in PACINGS:
        raise CurateError(f"unknown pacing {kind!r}; choose one of {', '.join(PACINGS)}")
    check_pacing(kind, params)
    if kind == "none":
        return lambda t: n
    if kind == "fixed-exp":
        return lambda t: max(1, fixed_exp(t, n, **params))
    return lambda t: max(1, wu_pacing(kind, t, n, total_steps, **params))


# each parameter: (the pacings that take it, its bounds as a test, the bounds in words)
PACING_PARAMS = {
    "a": (
        PACINGS[1:7],
        lambda v: 0 < v <= 1,
        "in (0, 1] (the fraction of the steps to reach all data)",
    ),
    "b": (PACINGS[:7], lambda v: 0 <= v <= 1, "in [0, 1] (the fraction of the data at the start)"),
    "c": (("exp", "log"), lambda v: 0 < v <= 700, "in (0, 700] (the steepness)"),
    "inc": (("fixed-exp",), lambda v: 1 < v <= 1e6, "in (1, 1e6] (the growth factor)"),
    "step": (
        ("fixed-exp",),
        lambda v: 1 <= v <= 1e9 and v == int(v),
        "a whole number in 1..1e9 (batches between increases)",
    ),
}


def check_pacing(kind: str, params: dict) -> None:
    """Refuse a parameter the pacing `kind` does not take, or a value outside its bounds (NaN,
    0 or negative steps, a pacing that never grows): one CurateError naming the flag."""
    for key, value in params.items():
        takes, ok, words = PACING_PARAMS.get(key, ((), None, ""))
        if kind not in takes:
            have = [k for k, (t, _, _) in PACING_PARAMS.items() if kind in t]
            raise CurateError(
                f"--pacing-{key}: pacing {kind!r} takes "
                f"{', '.join('--pacing-' + k for k in have) or 'no parameter'}"
            )
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not ok(value):
            raise CurateError(f"--pacing-{key} {value!r}: must be {words}")


# ----------------------------------------------------------------------------- orderings


def order_by_score(score: np.ndarray, higher_is_easier: bool = True, seed: int = 0) -> np.ndarray:
    """Positions sorted from easy to hard; ties broken by a seeded generator. NaN scores go last."""
    score = np.asarray(score, dtype=float)
    key = -score if higher_is_easier else score
    key = np.where(np.isnan(key), np.inf, key)
    tie = np.random.default_rng(seed).permutation(len(score))
    return np.lexsort((tie, key))


def balance(order: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Interleave classes (Hacohen & Weinshall): group j holds every class's j-th easiest instance, the
    groups follow one another, within a group instances keep their order. order: positions, easiest first."""
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order))
    lab = labels[order]
    within = np.zeros(
        len(order), np.int64
    )  # j: how many easier instances of the same class precede
    for k in np.unique(lab):
        sel = lab == k
        within[sel] = np.arange(sel.sum())
    return order[np.lexsort((np.arange(len(order)), within))]


def make_ordering(
    score: np.ndarray,
    labels: np.ndarray,
    mode: str = "curriculum",
    balanced: bool = False,
    higher_is_easier: bool = True,
    seed: int = 0,
) -> np.ndarray:
    """mode: curriculum (easy first), anti (hard first) or random (a seeded permutation)."""
    if mode == "random":
        order = np.random.default_rng(seed).permutation(len(score))
        return balance(order, labels) if balanced else order
    order = order_by_score(score, higher_is_easier, seed)
    if balanced:
        order = balance(order, labels)
    if mode == "anti":
        order = order[::-1].copy()
    elif mode != "curriculum":
        raise CurateError(f"ordering mode {mode!r}; choose curriculum, anti or random")
    return order


# ----------------------------------------------------------------------------- drawing batches


def curriculum_batch(
    order: np.ndarray, step: int, batch_size: int, pacing: Callable[[int], int], seed: int
) -> np.ndarray:
    """The batch at `step`: batch_size instances drawn uniformly without replacement from the g(step)
    easiest (with replacement when fewer than a batch are available). Depends only on (seed, step)."""
    avail = min(len(order), pacing(step))
    rng = np.random.default_rng([seed, step])
    pick = rng.choice(avail, batch_size, replace=avail < batch_size)
    return order[pick]


class CurriculumSampler:
    """A `torch.utils.data.Sampler` of positions: total_steps batches of batch_size, each drawn from the
    g(step) easiest instances. Use with DataLoader(batch_size=batch_size, sampler=...). Resumable: pass
    the step to start from."""

    def __init__(
        self,
        order,
        batch_size: int,
        pacing: Callable[[int], int],
        total_steps: int,
        seed: int = 0,
        start_step: int = 0,
    ):
        self.order = np.asarray(order)
        self.batch_size, self.pacing, self.total_steps = batch_size, pacing, total_steps
        self.seed, self.start_step = seed, start_step

    def __len__(self) -> int:
        return (self.total_steps - self.start_step) * self.batch_size

    def __iter__(self) -> Iterator[int]:
        for t in range(self.start_step, self.total_steps):
            yield from curriculum_batch(
                self.order, t, self.batch_size, self.pacing, self.seed
            ).tolist()


def ffcv_order(ordering: np.ndarray, batch_size: int, pacing: Callable[[int], int], seed: int = 0):
    """An ffcv TraversalOrder class drawing each epoch's batches from the curriculum; install it with
    `loader.traversal_order = ffcv_order(order, ...)(loader)` (ffcv 1.0.2 rejects classes as `order=`)."""
    from ffcv.traversal_order.base import TraversalOrder

    class CurriculumOrder(TraversalOrder):
        def sample_order(self, epoch: int):
            steps = len(self.indices) // batch_size
            batches = [
                curriculum_batch(ordering, epoch * steps + s, batch_size, pacing, seed)
                for s in range(steps)
            ]
            out = np.concatenate(batches) if batches else np.empty(0, np.int64)
            rest = np.asarray(self.indices, dtype=np.int64)[
                : len(self.indices) - len(out)
            ]  # never served
            return np.concatenate([out, rest]).astype(np.int64)

    return CurriculumOrder


# ----------------------------------------------------------------------------- files


def load_ordering(path: str | Path) -> np.ndarray:
    """The idx ordering of an exported curriculum (.npy, .csv or .parquet), easiest first."""
    from curate.selection import read_idx_file

    return read_idx_file(path, "curriculum file", f"curate curriculum RUN --out {path}")


def order_digest(idx: np.ndarray) -> str:
    """BLAKE2b of the idx in their order (int64 little-endian): the sidecar keeps it, so an
    ordering and a sidecar of two different exports (a kill between their renames, a file
    swapped by hand) are told apart."""
    from curate.selection import idx_digest

    return idx_digest(idx)


def check_pair(path: str | Path, idx: np.ndarray, side: dict) -> None:
    """A CurateError when the sidecar of curriculum file `path` names another ordering than the
    one the file holds (sidecars of earlier versions, without the digest, are taken as they are)."""
    want = side.get("order")
    if want is not None and want != order_digest(idx):
        raise CurateError(
            f"curriculum {path} and its sidecar do not belong together (the sidecar describes "
            "another ordering: an export killed between its two files, or a file replaced by "
            "hand); export the curriculum again"
        )


def load_sidecar(path: str | Path) -> dict:
    """The pacing parameters exported beside curriculum file `path`: `<name>.json` (order.npy.json),
    else `<stem>.json` as earlier versions wrote it."""
    from curate.selection import read_sidecar, sidecar_path

    p = Path(path)
    side = read_sidecar(p, legacy=(p.with_suffix(".json"),))
    if side.get("kind") == "curate-subset":
        raise CurateError(
            f"{path} is a subset (curate prune wrote it), not a curriculum: train on it with "
            "--subset, or export a curriculum for --curriculum"
        )
    if "pacing" not in side:
        raise CurateError(
            f"{sidecar_path(p)} (the pacing parameters of {path}) is missing; export the "
            "curriculum again"
        )
    return side


@dataclass(frozen=True)
class CurriculumSpec:
    """What `export_curriculum` orders by and how it paces (the flags of `curate curriculum`).

    Attributes
    ----------
    score : a numeric column of the difficulty view
    pacing : the pacing function's name (`PACINGS`), with its `params` (e.g. {"inc": 1.9})
    mode : "curriculum" (easy first), "anti" (hard first) or "random" (seeded, same pacing)
    balanced : interleave classes (Hacohen & Weinshall)
    where : an SQL filter on the difficulty view restricting the pool, or None
    seed : seed of the random ordering and of ties
    direction : which score values are easy: "higher", "lower", or "auto" (by the score's kind)
    """

    score: str = "accessibility"
    pacing: str = "fixed-exp"
    mode: str = "curriculum"
    balanced: bool = False
    where: str | None = None
    seed: int = 0
    direction: str = "auto"
    params: dict = field(default_factory=dict)


def export_curriculum(
    ws, run: str, out: str | Path, spec: CurriculumSpec = CurriculumSpec(), force: bool = False
) -> dict:
    """Write the ordering to `out` (.npy: idx, easiest first; .csv or .parquet: rank, idx, label
    and score) and its sidecar `<out>.json` beside it (pacing, its parameters, run, score, seed).

    Parameters
    ----------
    ws : the workspace holding the scored run
    run : a scored run
    out : the ordering's file (.npy, .csv or .parquet)
    spec : the score, direction, ordering mode and pacing
    force : replace files at `out` and its sidecar that curate did not write

    Returns
    -------
    dict
        the sidecar written to <out>.json
    """
    from curate.selection import check_idx_out, scored_pool, write_idx_file

    out = check_idx_out(out, force)  # before any work: the ordering and its sidecar
    pacing_function(spec.pacing, 1, 1, **(spec.params or {}))  # validates name and parameters
    pool = scored_pool(ws, run, spec.score, spec.where, spec.direction)
    order = make_ordering(
        pool.values, pool.labels, spec.mode, spec.balanced, pool.higher_is_easier, spec.seed
    )
    ranked = pool.table.iloc[order][["idx", "label", "score"]].reset_index(drop=True)
    ranked.insert(0, "rank", np.arange(len(ranked)))
    sidecar = {
        "run": run,
        "score": spec.score,
        "higher_is_easier": pool.higher_is_easier,
        "mode": spec.mode,
        "balanced": spec.balanced,
        "where": spec.where,
        "seed": spec.seed,
        "pacing": spec.pacing,
        "pacing_params": spec.params or {},
        "n": len(ranked),
        "order": order_digest(ranked["idx"].to_numpy()),
    }
    write_idx_file(out, ranked, sidecar, force, by="curate curriculum")
    return sidecar | {"file": out.name}
