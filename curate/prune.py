"""Pruning by difficulty: which instances of the train split to keep (`curate prune`), and reading
such a subset back for training (`curate train --subset`, `train.subset`).

Strategies, each applied within every class by default (class-balanced: class k keeps
round(F n_k) instances, largest remainders making the total round(F N)):

    hard        keep the hardest (drop the easiest first)
    easy        keep the easiest (drop the hardest first)
    in-between  drop the trivial and the impossible (Meding et al.'s `ddd` split) first, both at the
                same rate relative to their size (the easiest trivial, the hardest impossible
                first); then the in-between from both ends of the score, keeping its middle
    ccs         coverage-centric coreset selection (Zheng et al. 2023): drop the hardest beta,
                then spread the budget evenly over `strata` equal-width strata of the score
                (their Algorithm 1: the smallest stratum first, each taking at most an equal
                share of what is left, drawn at random within it)
    random      a seeded random sample

"Easy" follows the score's direction (`curate.selection.LOWER_IS_EASIER`): accessibility high
is easy, EL2N and forgetting events high are hard. NULL scores count as the hardest (a forgetting
count is NULL for never-learned instances).

The subset is written as an idx list (.npy, .csv or .parquet, sorted by idx) and a JSON sidecar
beside it (`<name>.json`, e.g. keep.npy.json): dataset, split, run, strategy, score, fraction, seed and the
checksum that a training run on it records.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from curate.errors import CurateError

STRATEGIES = ("hard", "easy", "in-between", "ccs", "random")
KIND = "curate-subset"


def ccs_beta(keep: float) -> float:
    """The default fraction of the hardest that ccs drops first, by the fraction kept: 0 when at
    least half is kept, 0.1 down to a fifth, 0.3 below (close to Zheng et al.'s CIFAR-10 choices
    for pruning rates 30-50 %, 70-80 % and 90 %)."""
    return 0.0 if keep >= 0.5 else 0.1 if keep >= 0.2 else 0.3


# ----------------------------------------------------------------------------- selection


def _hardness(score: np.ndarray, higher_is_easier: bool) -> np.ndarray:
    """A key where larger = harder and NULL (NaN) is the hardest of all."""
    h = -score if higher_is_easier else score.copy()
    return np.where(np.isnan(h), np.inf, h)


def _easy_to_hard(hard: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Positions from easy to hard, ties in a seeded random order."""
    return np.lexsort((rng.permutation(len(hard)), hard))


def _pick(
    strategy: str,
    n_keep: int,
    hard: np.ndarray,
    ddd: np.ndarray | None,
    rng: np.random.Generator,
    beta: float,
    strata: int,
) -> np.ndarray:
    """Positions (into one group's arrays) of the n_keep instances to keep."""
    n = len(hard)
    if n_keep >= n:
        return np.arange(n)
    if strategy == "random":
        return rng.choice(n, n_keep, replace=False)
    order = _easy_to_hard(hard, rng)
    if strategy == "easy":
        return order[:n_keep]
    if strategy == "hard":
        return order[n - n_keep :]
    if strategy == "in-between":
        return order[_in_between_keep(order, ddd, n_keep)]
    if strategy == "ccs":
        return _ccs(hard, order, n_keep, beta, strata, rng)
    raise CurateError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")


def _in_between_keep(order: np.ndarray, ddd: np.ndarray | None, n_keep: int) -> np.ndarray:
    """Ranks (into `order`, easy to hard) to keep: drop trivial and impossible first, then the
    in-between from both ends."""
    if ddd is None:
        raise CurateError("strategy in-between needs the ddd split of a scored run")
    cls = ddd[order]
    drop_key = np.empty(len(order))
    for name, from_easy in (("trivial", True), ("impossible", False)):
        sel = np.flatnonzero(cls == name)
        r = np.arange(len(sel)) if from_easy else np.arange(len(sel))[::-1]
        drop_key[sel] = r / max(len(sel), 1)  # 0 = dropped first
    mid = np.flatnonzero(cls == "in-between")
    if len(mid):
        pos = np.arange(len(mid)) / max(len(mid) - 1, 1)  # 0 (easiest) .. 1 (hardest)
        drop_key[mid] = 1 + (1 - np.abs(2 * pos - 1))  # the ends 1, the middle 2
    other = ~np.isin(cls, ["trivial", "impossible", "in-between"])
    drop_key[other] = 1.0
    ranks = np.lexsort((np.arange(len(order)), -drop_key))  # kept first: largest key
    return ranks[:n_keep]


def _ccs(
    hard: np.ndarray,
    order: np.ndarray,
    n_keep: int,
    beta: float,
    strata: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Zheng et al. 2023, Algorithm 1, on one group."""
    n = len(hard)
    n_drop = min(int(round(beta * n)), n - n_keep)  # never drop below the budget
    pool = order[: n - n_drop]  # the hardest n_drop dropped
    h = hard[pool]
    finite = np.isfinite(h)
    bins = np.full(len(pool), strata, np.int64)  # NULL scores: a stratum of their own
    if finite.any():
        lo, hi = h[finite].min(), h[finite].max()
        width = (hi - lo) / strata if hi > lo else 1.0
        bins[finite] = np.minimum(((h[finite] - lo) / width).astype(np.int64), strata - 1)
    groups = [pool[bins == b] for b in np.unique(bins)]
    groups.sort(key=len)
    kept, budget = [], n_keep
    for j, g in enumerate(groups):
        share = min(len(g), budget // (len(groups) - j))
        kept.append(rng.choice(g, share, replace=False))
        budget -= share
    return np.concatenate(kept) if kept else np.empty(0, np.int64)


def class_quotas(labels: np.ndarray, keep: float) -> dict[int, int]:
    """Per-class counts that keep round(keep n_k), adjusted by largest remainder so that they sum
    to round(keep N)."""
    classes, counts = np.unique(labels, return_counts=True)
    exact = keep * counts
    base = np.floor(exact).astype(np.int64)
    short = int(round(keep * len(labels))) - int(base.sum())
    if short > 0:
        base[np.argsort(-(exact - base), kind="stable")[:short]] += 1
    return {int(k): int(q) for k, q in zip(classes, base, strict=True)}


def select(
    score: np.ndarray,
    labels: np.ndarray,
    keep: float,
    strategy: str,
    higher_is_easier: bool = True,
    ddd: np.ndarray | None = None,
    seed: int = 0,
    balanced: bool = True,
    beta: float | None = None,
    strata: int = 50,
) -> np.ndarray:
    """The positions (sorted) of the instances to keep.

    Parameters
    ----------
    score : (N,) the difficulty score (NaN = hardest).
    labels : (N,) class of each instance.
    keep : the fraction to keep, in (0, 1].
    strategy : hard, easy, in-between, ccs or random.
    higher_is_easier : the score's direction.
    ddd : (N,) 'trivial' / 'in-between' / 'impossible' (needed by in-between).
    seed : seeds ties, random draws and ccs's sampling.
    balanced : apply the strategy within every class, keeping the class proportions.
    beta : ccs: the fraction of the hardest dropped first (default `ccs_beta(keep)`).
    strata : ccs: number of equal-width score strata.

    Raises
    ------
    CurateError when keep is outside (0, 1], the strategy is unknown, or a class would be left
    without an instance.
    """
    check_keep(keep)
    if strategy not in STRATEGIES:
        raise CurateError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    if strata < 1:
        raise CurateError(f"--strata {strata}: use at least 1 stratum")
    beta = ccs_beta(keep) if beta is None else beta
    if not 0 <= beta < 1:
        raise CurateError(f"--beta {beta:g}: the fraction ccs drops first must be in [0, 1)")
    score = np.asarray(score, dtype=float)
    labels = np.asarray(labels)
    hard = _hardness(score, higher_is_easier)
    rng = np.random.default_rng(seed)
    quotas = class_quotas(labels, keep)
    empty = [k for k, q in quotas.items() if q == 0]
    if balanced and empty:
        raise CurateError(
            f"--keep {keep:g} leaves class {empty[0]} empty ({int((labels == empty[0]).sum())} "
            f"instances in the pool; {len(empty)} class(es) in all): keep at least "
            f"{1 / (labels == empty[0]).sum():.3g}, or widen --where"
        )
    if balanced:
        parts = []
        for k, q in quotas.items():
            rows = np.flatnonzero(labels == k)
            sub = None if ddd is None else ddd[rows]
            parts.append(rows[_pick(strategy, q, hard[rows], sub, rng, beta, strata)])
        chosen = np.concatenate(parts)
    else:
        chosen = _pick(strategy, int(round(keep * len(labels))), hard, ddd, rng, beta, strata)
        missing = sorted(set(np.unique(labels).tolist()) - set(np.unique(labels[chosen]).tolist()))
        if missing:
            raise CurateError(
                f"--keep {keep:g} with --strategy {strategy} --no-balance keeps no instance of "
                f"class {missing[0]} ({len(missing)} class(es) in all); keep more, or drop "
                "--no-balance"
            )
    if len(chosen) == 0:
        raise CurateError(f"--keep {keep:g} keeps no instance of {len(labels)}; keep more")
    return np.sort(chosen)


def drawn_among_ties(
    score: np.ndarray, labels: np.ndarray, chosen: np.ndarray, balanced: bool = True
) -> int:
    """How many chosen instances the seed chose rather than the score: those whose score value is
    shared by a dropped instance of the same group (its class, or the whole pool when not
    balanced). For hard and easy these are the instances drawn at random among the ties at the
    cut (random and ccs draw at random by design; in-between also cuts by the ddd split).

    Parameters
    ----------
    score : (N,) the score (NaN counts as one value).
    labels : (N,) class of each instance.
    chosen : positions of the kept instances, as `select` returns them.
    balanced : whether the groups are the classes.

    Returns
    -------
    The count, 0 .. len(chosen); 0 means the score alone decided the subset.
    """
    score = np.where(np.isnan(score), np.inf, np.asarray(score, dtype=float))
    group = np.asarray(labels) if balanced else np.zeros(len(score), np.int64)
    kept = np.zeros(len(score), bool)
    kept[chosen] = True
    _, key = np.unique(
        np.stack([np.unique(group, return_inverse=True)[1], score]), axis=1, return_inverse=True
    )
    key = key.ravel()
    n_keys = int(key.max()) + 1 if len(key) else 0
    split = (np.bincount(key[kept], minlength=n_keys) > 0) & (
        np.bincount(key[~kept], minlength=n_keys) > 0
    )  # a value both kept and dropped within its group
    return int(split[key[kept]].sum())


# What separated the settings curate's pruning benchmarks measured (benchmarks/bench_prune.py;
# docs/guide/prune.md) was the scoring run's accuracy on held-out data, not how much of its train
# split it fit. Where it was HELD_OUT_HIGH or more keeping the hard beat random at 50 % kept and
# `easy` lost to random at every fraction; where it was under HELD_OUT_LOW `hard` lost to random
# at 50 % kept, at fixed epochs and at equal steps. The thresholds and every figure the note
# quotes are read from curate/findings.json (curate/findings.py derives them from the results).
HARD_WARN_KEEP = 0.7  # at 90 % kept the measured runs under HELD_OUT_LOW went both ways


def _findings() -> dict:
    """The pruning benchmarks' figures (`curate.findings.load`)."""
    from curate import findings

    return findings.load()


HELD_OUT_LOW, HELD_OUT_HIGH = _findings()["held_out_low"], _findings()["held_out_high"]


def _hard_note() -> str:
    """What the benchmarks under HELD_OUT_LOW measured for hard."""
    from curate.findings import fmt

    low = _findings()["low"]
    least, most = low["hard_half_lost_by"]
    ties = low["hard_30_70"]["not_below_random"]
    but = {0: "in every cell", 1: "in all but one tie"}.get(ties, f"in all but {ties} ties")
    return (
        f"in curate's pruning benchmarks every scoring run under {HELD_OUT_LOW:.2f} on "
        f"held-out data made hard lose to random at 50 % kept (by {fmt(least)} to "
        f"{fmt(most, 0)} points), and at 30 and 70 % {but}, whether its members fit their train "
        "split or not; random, ccs or easy did better there"
    )


def regime_note(strategy: str, held_out_acc: float | None, keep: float = 0.5) -> str | None:
    """A word of warning when `strategy` goes against what was measured for scoring runs that
    did as well on held-out data as this one; None when it does not, or the accuracy is unknown.

    Parameters
    ----------
    strategy : the strategy asked for.
    held_out_acc : the scoring run's mean member accuracy on a held-out split (test, else val)
        at the last scored epoch, in [0, 1] (higher = better); None when none was logged.
    keep : the fraction kept; hard is warned against only at HARD_WARN_KEEP (0.7) or less (at
        90 % kept the measured runs under HELD_OUT_LOW went both ways).

    Returns
    -------
    str or None
        The note, its figures read from curate/findings.json (`curate.findings`).
    """
    if held_out_acc is None or not np.isfinite(held_out_acc):
        return None
    if strategy == "hard" and held_out_acc < HELD_OUT_LOW and keep <= HARD_WARN_KEEP:
        return _hard_note()
    if strategy == "easy" and held_out_acc >= HELD_OUT_HIGH:
        return (
            f"in curate's pruning benchmarks every scoring run at {HELD_OUT_HIGH:.2f} or more on "
            "held-out data made easy lose to random at every fraction measured, while hard (by "
            "el2n or accessibility) beat random at 50 % kept"
        )
    return None


def check_keep(keep: float) -> None:
    """Raise a CurateError unless `keep` is a fraction in (0, 1] (NaN is not)."""
    if not (isinstance(keep, int | float) and 0 < keep <= 1):
        raise CurateError(f"--keep {keep!r}: the fraction to keep must be in (0, 1], e.g. 0.5")


# ----------------------------------------------------------------------------- files


def checksum(idx: np.ndarray) -> str:
    """BLAKE2b of the sorted, distinct idx (int64 little-endian): what a run on the subset
    records."""
    from curate.selection import idx_digest

    return idx_digest(np.unique(np.asarray(idx, dtype=np.int64)))


def sidecar_path(path: str | Path) -> Path:
    """Where the sidecar of subset file `path` lives: `<name>.json` beside it (keep.npy.json)."""
    from curate.selection import sidecar_path as of

    return of(path)


def read_sidecar(path: str | Path) -> dict:
    """The sidecar `curate prune` wrote beside a subset file (or, from earlier versions,
    `<stem>.subset.json`); {} when there is none."""
    from curate.selection import read_sidecar as read

    p = Path(path)
    return read(p, legacy=(p.with_name(p.stem + ".subset.json"),), kind=KIND)


def _any_sidecar(path: str | Path) -> dict:
    """The sidecar beside `path`, of whichever command; {} when there is none."""
    from curate.selection import read_sidecar as read

    return read(path)


def read_idx(path: str | Path) -> np.ndarray:
    """The idx of a subset file (.npy, or .csv / .parquet with an idx column), int64."""
    from curate.selection import read_idx_file

    return read_idx_file(path, "subset file", f"curate prune RUN --keep F --out {path}")


@dataclass(frozen=True)
class Subset:
    """A subset as training uses it: its idx (sorted), checksum, and where it came from."""

    idx: np.ndarray
    checksum: str
    path: str


def load_subset(path: str | Path, dataset: str, split_idx: np.ndarray) -> Subset:
    """Read and check a subset for training on `dataset`, whose train split has `split_idx`.

    Raises CurateError when the file is missing or unreadable, its sidecar names another dataset,
    it repeats an idx, is empty, or names an idx the train split does not have.
    """
    idx = read_idx(path)
    meta = read_sidecar(path)
    if not meta and "pacing" in _any_sidecar(path):
        raise CurateError(
            f"{path} is a curriculum (curate curriculum wrote it), not a subset: train on it with "
            "--curriculum, or prune a run for --subset"
        )
    if meta:
        if meta.get("dataset") not in (None, dataset):
            raise CurateError(
                f"subset {path} was made for dataset {meta['dataset']!r}, not {dataset!r}; prune a "
                f"run on {dataset!r}"
            )
        if meta.get("checksum") not in (None, checksum(idx)):
            raise CurateError(
                f"subset {path} and its sidecar do not belong together (the sidecar describes "
                "another subset: an export killed between its two files, or a file replaced by "
                "hand); prune again"
            )
    if len(idx) == 0:
        raise CurateError(f"subset {path} is empty; keep at least one instance")
    if len(np.unique(idx)) != len(idx):
        raise CurateError(f"subset {path} lists an idx more than once; write it with curate prune")
    outside = np.setdiff1d(idx, split_idx)
    if len(outside):
        raise CurateError(
            f"subset {path} names {len(outside)} idx the train split of {dataset!r} does not have "
            f"(e.g. {outside[0]}); prune a run on this dataset"
        )
    return Subset(np.sort(idx), checksum(idx), str(Path(path).absolute()))


# ----------------------------------------------------------------------------- from a scored run


def prune(
    ws,
    run: str,
    keep: float,
    strategy: str,
    out: str | Path,
    score: str = "accessibility",
    where: str | None = None,
    seed: int = 0,
    balanced: bool = True,
    direction: str = "auto",
    beta: float | None = None,
    strata: int = 50,
    force: bool = False,
) -> dict:
    """Select a subset of the train split of scored run `run` and write it to `out` (.npy, .csv
    or .parquet) with its sidecar. Returns the sidecar.

    The pool is the run's train instances (those matching `where`, an SQL filter on the difficulty
    view); `keep` is the fraction of the pool kept. Everything is checked before anything is
    written.
    """
    from curate.selection import check_idx_out, scored_pool, write_idx_file

    check_keep(keep)
    if strategy not in STRATEGIES:
        raise CurateError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    out = check_idx_out(out, force)  # before any work
    pool = scored_pool(ws, run, score, where, direction)
    df, values, labels = pool.table, pool.values, pool.labels
    ddd = df["ddd"].to_numpy().astype(str)
    higher = pool.higher_is_easier
    pos = select(values, labels, keep, strategy, higher, ddd, seed, balanced, beta, strata)
    kept = df.iloc[pos][["idx", "label", "score"]].reset_index(drop=True)
    sidecar = {
        "kind": KIND,
        "dataset": pool.dataset,
        "split": "train",
        "run": run,
        "strategy": strategy,
        "score": score,
        # el2n: the epoch it was taken at; other scores: the last epoch of the 1..E they use
        "score_epoch": int(df["score_epoch"].max()),
        "higher_is_easier": higher,
        "keep": keep,
        "balanced": balanced,
        "where": where,
        "seed": seed,
        "beta": (ccs_beta(keep) if beta is None else beta) if strategy == "ccs" else None,
        "strata": strata if strategy == "ccs" else None,
        "pool": len(df),
        "n": len(kept),
        "checksum": checksum(kept["idx"].to_numpy()),
        # hard / easy: kept instances chosen by the seed among ties at the cut
        "drawn_among_ties": (
            None
            if strategy not in ("hard", "easy")
            else drawn_among_ties(values, labels, pos, balanced)
        ),
        "score_values": int(len(np.unique(values[~np.isnan(values)]))),
    }
    sidecar["run_acc"], sidecar["run_acc_epoch"] = run_accuracy(ws, run)
    write_idx_file(out, kept, sidecar, force, by="curate prune")
    return sidecar


def run_accuracy(ws, run: str) -> tuple[dict[str, float], int | None]:
    """The members' mean accuracy of scored run `run` on every split it logged, at the last
    scored epoch (`epoch_metrics`; higher = better), and that epoch; ({}, None) when it has none.
    """
    from curate.sql import fetch

    rows = fetch(
        ws,
        "SELECT split, acc_mean, epoch FROM epoch_metrics WHERE run = ? AND acc_mean IS NOT NULL "
        "AND epoch = (SELECT max(epoch) FROM epoch_metrics WHERE run = ?) ORDER BY split",
        [run, run],
    )
    if rows.empty:
        return {}, None
    accs = {str(r.split): float(r.acc_mean) for r in rows.itertuples()}
    return accs, int(rows["epoch"].iloc[0])


def held_out(accs: dict[str, float]) -> tuple[str, float] | None:
    """The held-out split of `run_accuracy`'s answer and its accuracy: test, else val, else the
    first other split that is not train; None when the run logged only its train split."""
    others = sorted(k for k in accs if k != "train")
    for split in ("test", "val", *others):
        if split in accs:
            return split, accs[split]
    return None
