"""`curate evaluate`: a run's per-instance score against an external per-instance reference
(C-scores, forgetting counts, human label distributions, a list of known label errors), stored in
`reference_agreement`.

A reference file is keyed by idx:

- ``.npy``: 1-d, one value per instance of the split in idx order (2-d: ``--column K`` picks column K);
- ``.npz``: the array ``--column NAME`` (the only array when there is one), as for .npy;
- ``.csv``: a column ``idx`` and the value column ``--column NAME`` (the only other column when there
  is one); rows may cover part of the split.

A reference of booleans (or of 0/1 only) also gets the AUROC of the score for reference = true.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from scipy import stats

from curate import catalog
from curate.data.positions import find_positions
from curate.errors import CurateError
from curate.scores.label_issues import auroc
from curate.workspace import Workspace

SCORE_TYPES = ("DOUBLE", "INTEGER", "BOOLEAN")
# `--score all`: the per-instance difficulty scores compared in benchmarks/bench_recipes.py, and the
# label-issue ranking
COMPARED = (
    "accessibility",
    "confidence",
    "aum",
    "el2n",
    "forgetting_events",
    "learned_epoch",
    "issue_score",
)


def expand_scores(scores: list[str] | None) -> list[str]:
    """The `--score` values as given, with ``all`` standing for `COMPARED` (each once, in order);
    accessibility when none is given."""
    out: list[str] = []
    for s in scores or ["accessibility"]:
        for name in COMPARED if s == "all" else (s,):
            if name not in out:
                out.append(name)
    return out


def ranked(rows: list[dict]) -> list[dict]:
    """Rows of several scores against one reference, the strongest |Spearman| first (NaN last)."""
    return sorted(rows, key=lambda r: -abs(r["spearman"]) if np.isfinite(r["spearman"]) else 1)


def score_columns() -> list[str]:
    """The numeric per-instance columns of `instance_scores` a reference can be compared with."""
    return [c for c, t, _ in catalog.SCHEMA["instance_scores"] if t in SCORE_TYPES and c != "idx"]


def read_reference(
    path: Path, column: str | None, n: int
) -> tuple[np.ndarray | None, np.ndarray, str]:
    """(idx or None for "all n instances in idx order", values, the column used)."""
    if not path.is_file():
        what = (
            "a folder"
            if path.is_dir()
            else "not a regular file"
            if path.exists()
            else "no such file"
        )
        raise CurateError(f"--reference {path}: {what}; give a .npy, .npz or .csv file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return _read_csv(path, column)
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                names = z.files
                key = column if column is not None else (names[0] if len(names) == 1 else None)
                if key not in names:
                    raise CurateError(
                        f"--reference {path}: choose the array with --column (it holds "
                        f"{', '.join(names)})"
                    )
                a, used = z[key], key
        elif suffix == ".npy":
            a, used = np.load(path, allow_pickle=False), ""
        else:
            raise CurateError(
                f"--reference {path}: unknown file type {suffix or '(none)'}; give .npy, .npz or .csv"
            )
    except CurateError:
        raise
    except Exception as e:
        raise CurateError(f"--reference {path}: not readable ({e})") from None
    if a.ndim == 2:
        k = None if column is None or suffix == ".npz" else column
        if k is None or not k.isdigit() or int(k) >= a.shape[1]:
            raise CurateError(
                f"--reference {path}: a {a.shape} array; pick a column with --column 0..{a.shape[1] - 1}"
            )
        a, used = a[:, int(k)], f"{used}[:, {k}]" if used else f"[:, {k}]"
    if a.ndim != 1:
        raise CurateError(
            f"--reference {path}: expected one value per instance, got shape {a.shape}"
        )
    if len(a) != n:
        raise CurateError(
            f"--reference {path}: {len(a)} values for a split of {n} instances; an array must hold "
            "one value per instance in idx order (or use a CSV with an idx column)"
        )
    return None, _numeric(a, path), used


def _read_csv(path: Path, column: str | None) -> tuple[np.ndarray, np.ndarray, str]:
    """(idx, values, column) of a reference CSV with an idx column and a value column."""
    df = pd.read_csv(path)
    if "idx" not in df.columns:
        raise CurateError(
            f"--reference {path}: a CSV needs an idx column (found {', '.join(df.columns)})"
        )
    others = [c for c in df.columns if c != "idx"]
    col = column if column is not None else (others[0] if len(others) == 1 else None)
    if col not in others:
        raise CurateError(
            f"--reference {path}: choose the value column with --column (one of {', '.join(others)})"
        )
    idx = _whole_idx(df["idx"], path)
    dup = pd.Series(idx).duplicated().to_numpy()
    if dup.any():
        raise CurateError(f"--reference {path}: idx {int(idx[dup][0])} is listed twice")
    return idx, _numeric(df[col].to_numpy(), path, col), col


def _whole_idx(raw: pd.Series, path: Path) -> np.ndarray:
    """The CSV's idx column as int64; a CurateError naming the values that are not whole numbers
    (text, empty cells, fractions: a fraction is never truncated to an idx)."""
    if pd.api.types.is_integer_dtype(raw):
        return raw.to_numpy(np.int64)
    num = pd.to_numeric(raw, errors="coerce").to_numpy(float)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(num) | (num != np.round(num))
    if bad.any():
        shown = ", ".join(repr(v) if isinstance(v, str) else f"{v:g}" for v in raw[bad][:3])
        raise CurateError(
            f"--reference {path}: column idx holds {int(bad.sum())} values that are not whole "
            f"numbers ({shown}{', ...' if bad.sum() > 3 else ''}); write the catalog's integer "
            "idx of each row"
        )
    return num.astype(np.int64)


def _numeric(a: np.ndarray, path: Path, column: str | None = None) -> np.ndarray:
    """Reference values as numbers or booleans (true/false text, empty cells as NaN); a
    CurateError naming the column and the values that are neither."""
    name = f"column {column!r}" if column else "the reference"
    if a.dtype == object:
        s = pd.Series(a)
        text = s.astype(str).str.strip()
        given = (s.notna() & (text != "")).to_numpy()
        low = text.str.lower().to_numpy()
        if given.any() and np.isin(low[given], ["true", "false"]).all():
            if given.all():
                return low == "true"
            return np.where(given, low == "true", np.nan)  # 1/0, NaN where the cell is empty
        num = pd.to_numeric(s, errors="coerce").to_numpy(float)
        bad = given & np.isnan(num)
        if bad.any():
            shown = ", ".join(repr(v) for v in s[bad][:3])
            raise CurateError(
                f"--reference {path}: {name} holds {int(bad.sum())} values that are not numbers "
                f"or booleans ({shown}{', ...' if bad.sum() > 3 else ''}); choose a numeric or "
                "true/false column with --column"
            )
        a = num
    if np.iscomplexobj(a) or not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
        raise CurateError(
            f"--reference {path}: values must be real numbers or booleans, got {a.dtype}; save a "
            "numeric or boolean array"
        )
    if a.dtype != bool and len(a) and not np.isfinite(a.astype(float)).any():
        raise CurateError(
            f"--reference {path}: {name} holds no finite value (all NaN or infinite); nothing "
            "to compare with"
        )
    return a


def is_boolean(a: np.ndarray) -> bool:
    """A boolean reference: bool values, or numbers that are all 0 or 1."""
    if a.dtype == bool:
        return True
    finite = a[np.isfinite(a.astype(float))]
    return len(finite) > 0 and bool(np.isin(finite, (0, 1)).all())


def agreement(score: np.ndarray, ref: np.ndarray) -> dict:
    """Spearman and Pearson (with two-sided p-values) over the pairs where both are finite, and
    the AUROC of `score` for ref = true when ref is boolean."""
    s, r = np.asarray(score, float), np.asarray(ref)
    ok = np.isfinite(s) & np.isfinite(r.astype(float))
    s, r = s[ok], r[ok]
    out = {"n": int(ok.sum())}
    if out["n"] < 3 or np.ptp(s) == 0 or np.ptp(r.astype(float)) == 0:
        nan = float("nan")
        return out | {
            "spearman": nan,
            "spearman_p": nan,
            "pearson": nan,
            "pearson_p": nan,
            "auroc": None,
        }
    sp = stats.spearmanr(s, r)
    pe = stats.pearsonr(s, r.astype(float))
    out |= {
        "spearman": float(sp.statistic),
        "spearman_p": float(sp.pvalue),
        "pearson": float(pe.statistic),
        "pearson_p": float(pe.pvalue),
    }
    out["auroc"] = auroc(s, r.astype(bool)) if is_boolean(r) else None
    return out


def evaluate(
    ws: Workspace,
    run: str,
    reference: str,
    column: str | None = None,
    scores: Sequence[str] = ("accessibility",),
    split: str = "train",
) -> list[dict]:
    """Compare `scores` of a scored run with a reference file (``all`` = `COMPARED`); store and
    return one row per score, in the order given. Every name is checked, the scores read in one
    query and the reference once, before anything is stored."""
    names = expand_scores(list(scores))
    for name in names:
        if name not in score_columns():
            raise CurateError(f"--score {name!r}: choose one of all, {', '.join(score_columns())}")
    with catalog.read(ws) as con:
        df = con.execute(
            f"SELECT idx, {', '.join(names)} FROM instance_scores WHERE run = ? AND split = ? "
            "ORDER BY idx",  # checked column names
            [run, split],
        ).df()
        if df.empty:
            splits = con.execute(
                "SELECT DISTINCT split FROM instance_scores WHERE run = ?", [run]
            ).fetchall()
            if not splits:
                raise CurateError(f"run {run!r} has no scores; run `curate score {run}` first")
            raise CurateError(
                f"run {run!r} has no split {split!r}; choose --split from "
                f"{', '.join(sorted(s for (s,) in splits))}"
            )
    path = Path(reference)
    ref_idx, ref, used = read_reference(path, column, len(df))
    pos = slice(None)
    if ref_idx is not None:
        pos = find_positions(df["idx"].to_numpy(np.int64), ref_idx)
        if (pos < 0).any():
            raise CurateError(
                f"--reference {path}: idx {int(ref_idx[pos < 0][0])} is not in split {split!r} "
                f"({int((pos < 0).sum())} such rows)"
            )
    head = {"run": run, "split": split, "reference": str(path.absolute()), "reference_column": used}
    rows = [
        head | {"score": name} | agreement(df[name].to_numpy(float)[pos], ref) for name in names
    ]
    _store(ws, rows)
    return rows


def _store(ws: Workspace, rows: list[dict]) -> None:
    """Replace the rows of the same (run, split, score, reference, column), in one transaction."""
    cols = [c for c, _, _ in catalog.SCHEMA["reference_agreement"] if c != "created_at"]
    key = ("run", "split", "score", "reference", "reference_column")
    with catalog.write(ws) as con:
        for row in rows:
            con.execute(
                "DELETE FROM reference_agreement WHERE "
                + " AND ".join(f"{k} = ?" for k in key),  # constant column names
                [row[k] for k in key],
            )
        catalog.insert_frame(
            con,
            "reference_agreement",
            # Arrow, not pandas: an undefined AUROC stays NaN (pandas would make it NULL)
            pa.Table.from_pylist([{c: row[c] for c in cols} for row in rows]),
            now=("created_at",),
        )


def format_row(row: dict) -> str:
    ref = Path(row["reference"]).name + (
        f" [{row['reference_column']}]" if row["reference_column"] else ""
    )
    text = (
        f"{row['run']} / {row['split']}: {row['score']} vs {ref} on {row['n']} instances: "
        f"Spearman {row['spearman']:.3f} (p {row['spearman_p']:.2g}), "
        f"Pearson {row['pearson']:.3f} (p {row['pearson_p']:.2g})"
    )
    if row.get("auroc") is not None:
        text += f", AUROC {row['auroc']:.3f} for reference = true"
    return text
