"""What `curate prune` and `curate curriculum` share: the scored pool they select from, and the idx
files they write with their sidecars.

The pool is the train instances of a scored run (those matching an SQL filter on the difficulty
view), each with its label, `ddd` split and one numeric score, and the score's direction: which
values are easy. Every check on run, score, filter and direction is made here, once.

An idx file is `.npy` (int64 idx only), or `.csv` / `.parquet` (an `idx` column and any others);
its sidecar is `<name>.json` beside it (order.npy.json), written with it through `curate.outputs`,
so a stem's files in two formats never share one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from curate.errors import CurateError

IDX_SUFFIXES = (".npy", ".csv", ".parquet")
DIRECTIONS = ("auto", "higher", "lower")

# scores where a lower value means easier (the rest: higher = easier)
LOWER_IS_EASIER = frozenset(
    {
        "learned_epoch",
        "first_learned",
        "forgetting_events",
        "el2n",
        "variability",
        "segment_count",
        "mean_local_entropy",
        "dct_pct",
        "edge_strength_sobel",
        "edge_strength_pmi",
        "jpeg_bytes",
        "jpeg_bits_per_pixel",
        "rms_contrast",
        "colourfulness",
    }
)


@dataclass(frozen=True)
class Pool:
    """The scored pool of a run's train split, in idx order.

    Attributes
    ----------
    dataset : the run's dataset.
    table : DataFrame with idx, label, ddd, score (float, NaN where NULL) and score_epoch, N rows.
    score : the score's column name.
    higher_is_easier : True when higher score values are easier.
    """

    dataset: str
    table: object
    score: str
    higher_is_easier: bool

    @property
    def values(self) -> np.ndarray:
        """The scores, shape (N,), float (NaN where NULL)."""
        return self.table["score"].to_numpy(float)

    @property
    def labels(self) -> np.ndarray:
        """The labels, shape (N,)."""
        return self.table["label"].to_numpy()


def higher_is_easier(score: str, direction: str = "auto") -> bool:
    """Whether higher values of `score` are easier: by the score's kind for "auto"."""
    if direction not in DIRECTIONS:
        raise CurateError(f"--direction {direction!r}: choose auto, higher or lower")
    return score not in LOWER_IS_EASIER if direction == "auto" else direction == "higher"


def scored_pool(
    ws, run: str, score: str, where: str | None = None, direction: str = "auto"
) -> Pool:
    """The train instances of scored run `run` matching `where`, with `score`; every check here.

    Raises CurateError for an unknown run or score, a filter that matches nothing, a score that is
    not numeric (booleans included) or NULL everywhere, and a bad direction.
    """
    import pandas as pd

    from curate.sql import MAX_QUERY_MEMORY, Limits, columns, condition, fetch, quote_column

    higher = higher_is_easier(score, direction)
    cols = columns(ws, "difficulty")
    if score not in cols:
        raise CurateError(
            f"unknown score {score!r}: not a column of difficulty; numeric scores include "
            "accessibility, el2n, forgetting_events, confidence, learned_epoch, aum"
        )
    have = fetch(
        ws, "SELECT count(*) AS n FROM difficulty WHERE run = ? AND split = 'train'", [run]
    )
    if int(have["n"].iloc[0]) == 0:
        runs = fetch(ws, "SELECT DISTINCT run FROM difficulty ORDER BY run")["run"].tolist()
        raise CurateError(
            f"unknown run {run!r}: no scored train instances (scored runs: "
            f"{', '.join(runs) or 'none'}); train and score it first"
        )
    at = "el2n_epoch" if score == "el2n" and "el2n_epoch" in cols else "epochs"
    sql = (
        f"SELECT dataset, idx, label, {quote_column(score, cols)} AS score, ddd, "
        f"{at} AS score_epoch FROM difficulty WHERE run = ? AND split = 'train'"
        + (f" AND {condition(where)}" if where else "")  # --where is an SQL filter by design
        + " ORDER BY idx"
    )
    # a user's filter runs in a query worker, within the memory limit of `curate query`: an SQL
    # filter can build values of any size (no time limit: the command is the user's to stop)
    limits = Limits(raise_seconds=None, max_memory=MAX_QUERY_MEMORY) if where else None
    df = fetch(ws, sql, [run], limits=limits)
    if df.empty:
        raise CurateError(f"no train instances of run {run!r} match --where {where!r}; widen it")
    if not pd.api.types.is_numeric_dtype(df["score"]) or pd.api.types.is_bool_dtype(df["score"]):
        raise CurateError(f"--score {score!r} is not a numeric column; choose e.g. accessibility")
    values = df["score"].to_numpy(float)
    if np.isnan(values).all():
        raise CurateError(
            f"score {score!r} is NULL for every instance of run {run!r} (a log written before it "
            "existed?); rescore the run, or choose another --score"
        )
    df["score"] = values
    return Pool(str(df["dataset"].iloc[0]), df.drop(columns="dataset"), score, higher)


# ----------------------------------------------------------------------------- idx files


def idx_digest(idx: np.ndarray) -> str:
    """BLAKE2b (16 bytes) of idx as int64 little-endian, in the order given: what a sidecar keeps
    of its idx file (a subset's sorted and distinct, `curate.prune.checksum`; an ordering's as
    ordered, `curate.curriculum.order_digest`)."""
    import hashlib

    a = np.asarray(idx, dtype=np.int64).astype("<i8")
    return "blake2b:" + hashlib.blake2b(a.tobytes(), digest_size=16).hexdigest()


def sidecar_path(path: str | Path) -> Path:
    """The sidecar of idx file `path`: `<name>.json` beside it."""
    from curate.outputs import sidecar_of

    return sidecar_of(path)


def check_idx_out(out: str | Path, force: bool = False) -> Path:
    """Refuse, before any work, an idx file `out` (or its sidecar) that cannot be written."""
    from curate.outputs import check_file

    out = Path(out)
    if out.suffix not in IDX_SUFFIXES:
        raise CurateError(f"--out {out}: name a .npy, .csv or .parquet file, e.g. keep.npy")
    check_file(out, force)
    check_file(sidecar_path(out), force)
    return out


def write_idx_file(out: str | Path, table, sidecar: dict, force: bool, by: str) -> list[Path]:
    """Write `table` (an idx column and others) to `out` and `sidecar` to `<out>.json`, as one
    output: .npy holds the idx alone, .csv and .parquet the whole table (CSV text escaped)."""
    from curate.outputs import csv_writer, write_files

    out = check_idx_out(out, force)

    def npy(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: np.save would append .npy to the name
            np.save(f, table["idx"].to_numpy(np.int64))

    write = {
        ".npy": npy,
        ".csv": csv_writer(table),
        ".parquet": lambda tmp: table.to_parquet(tmp, index=False),
    }[out.suffix]
    side = json.dumps(sidecar | {"file": out.name}, indent=1)
    return write_files(
        {out: write, sidecar_path(out): lambda tmp: tmp.write_text(side)}, force=force, by=by
    )


def read_idx_file(path: str | Path, what: str = "idx file", how: str = "") -> np.ndarray:
    """The idx of an idx file (.npy, or .csv / .parquet with an idx column), int64, shape (N,).

    `what` names the file in messages ("subset file"); `how` is the command that writes one.
    """
    p = Path(path)
    again = f"; write it again{' with `' + how + '`' if how else ''}"
    if not p.is_file():
        raise CurateError(f"{what} {p} does not exist{again.replace('again', 'one')}")
    if p.suffix not in IDX_SUFFIXES:
        raise CurateError(f"{what} {p}: expected {', '.join(IDX_SUFFIXES)}")
    if p.stat().st_size == 0:
        raise CurateError(f"{what} {p} is empty (0 bytes){again}")
    try:
        if p.suffix == ".npy":
            idx = np.load(p, allow_pickle=False)
        else:
            import pandas as pd

            df = pd.read_csv(p) if p.suffix == ".csv" else pd.read_parquet(p)
            if "idx" not in df:
                raise CurateError(f"{what} {p} has no idx column{again}")
            idx = df["idx"].to_numpy()
    except (ValueError, OSError, EOFError) as e:  # EOFError: a truncated .npy
        raise CurateError(f"{what} {p} is unreadable ({e}){again}") from e
    idx = np.asarray(idx)
    if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
        raise CurateError(f"{what} {p}: expected one column of integer idx{again}")
    return idx.astype(np.int64)


def read_sidecar(path: str | Path, legacy: tuple[Path, ...] = (), kind: str | None = None) -> dict:
    """The sidecar of idx file `path` (`<name>.json`, else the `legacy` names earlier versions
    wrote); {} when there is none, or none whose "kind" is `kind` (when given)."""
    for side in (sidecar_path(path), *legacy):
        try:
            meta = json.loads(Path(side).read_text())
        except (OSError, ValueError):
            continue
        if isinstance(meta, dict) and (kind is None or meta.get("kind") == kind):
            return meta
    return {}
