"""Labels from a file (`curate ingest ... --labels FILE`): a user's own, possibly noisy, annotations
replace the source's labels, which stay in `instances.true_label`.

Accepted files:

- ``labels.npy``: one integer per train image, in idx order (length = the train split's size);
- ``labels.npz:KEY``: the same, as the array KEY of an .npz (e.g. CIFAR-10N's ``worse_label``);
- ``labels.csv`` with a header ``split,idx,label``: any rows of any splits; ``label`` is a class index
  or a class name. Instances a CSV does not list keep the source's label.

Everything is checked before ingest writes anything; every problem is one `CurateError`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from curate.errors import CurateError

FORMS = "a .npy of train labels in idx order, FILE.npz:KEY, or a CSV with header split,idx,label"


@dataclass(frozen=True)
class LabelFile:
    """Replacement labels per split: split -> (idx (R,) or None for "every instance, in idx
    order", label (R,) int64)."""

    path: str
    by_split: dict[str, tuple[np.ndarray | None, np.ndarray]]


def split_spec(spec: str) -> tuple[Path, str | None]:
    """'FILE.npz:KEY' -> (FILE.npz, KEY); anything else -> (path, None)."""
    head, sep, key = spec.rpartition(":")
    if sep and head.lower().endswith(".npz") and key:
        return Path(head), key
    return Path(spec), None


def digest(spec: str) -> str:
    """What identifies the file's content for ingest's up-to-date check: sha256 (+ the .npz key)."""
    path, key = split_spec(spec)
    h = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "missing"
    return h + (f":{key}" if key else "")


def read_label_file(spec: str, class_names: list[str], splits: dict[str, int]) -> LabelFile:
    """Read and check a label file against the dataset's classes and split sizes.

    Parameters
    ----------
    spec : the path (``FILE.npz:KEY`` for an array of an .npz).
    class_names : the dataset's classes, in label order.
    splits : split name -> number of instances.
    """
    path, key = split_spec(spec)
    if not path.is_file():
        raise CurateError(f"--labels {spec}: no such file; give {FORMS}")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        by_split = _read_csv(path, class_names, splits)
    elif suffix in (".npy", ".npz"):
        labels = _read_array(path, key, spec)
        if "train" not in splits:
            raise CurateError(
                f"--labels {spec}: an array gives the train split's labels, and this dataset has no "
                f"train split (splits: {', '.join(splits)}); use a CSV with header split,idx,label"
            )
        if len(labels) != splits["train"]:
            raise CurateError(
                f"--labels {spec}: {len(labels)} labels for a train split of {splits['train']} "
                "images; give one label per train image, in idx order"
            )
        by_split = {"train": (None, _check_range(labels, len(class_names), spec))}
    else:
        raise CurateError(f"--labels {spec}: unknown file type {suffix or '(none)'}; give {FORMS}")
    return LabelFile(spec, by_split)


def _read_array(path: Path, key: str | None, spec: str) -> np.ndarray:
    try:
        if path.suffix.lower() == ".npz":
            with np.load(path, allow_pickle=False) as z:
                if key is None or key not in z.files:
                    raise CurateError(
                        f"--labels {spec}: name the array to use as {path}:KEY; it holds "
                        f"{', '.join(z.files)}"
                    )
                a = z[key]
        else:
            a = np.load(path, allow_pickle=False)
    except CurateError:
        raise
    except Exception as e:  # a truncated or foreign file
        raise CurateError(f"--labels {spec}: not a readable numpy file ({e})") from None
    if a.ndim != 1 or not (np.issubdtype(a.dtype, np.integer) or _integral_float(a)):
        raise CurateError(
            f"--labels {spec}: expected a 1-d array of class indices, got {a.dtype} of shape "
            f"{a.shape}"
        )
    return a.astype(np.int64)


def _integral_float(a: np.ndarray) -> bool:
    return np.issubdtype(a.dtype, np.floating) and bool(np.all(np.isfinite(a) & (a == np.round(a))))


def _check_range(labels: np.ndarray, k: int, spec: str) -> np.ndarray:
    bad = (labels < 0) | (labels >= k)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise CurateError(
            f"--labels {spec}: {int(bad.sum())} labels outside 0..{k - 1} (the first at row "
            f"{first}: {int(labels[first])}); the dataset has {k} classes"
        )
    return labels


def _read_csv(path: Path, class_names: list[str], splits: dict[str, int]) -> dict:
    spec = str(path)
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except Exception as e:
        raise CurateError(f"--labels {spec}: not a readable CSV ({e})") from None
    cols = [c.strip().lower() for c in df.columns]
    if sorted(cols) != ["idx", "label", "split"]:
        raise CurateError(
            f"--labels {spec}: the header must be split,idx,label (found {','.join(df.columns)})"
        )
    df.columns = cols
    unknown = sorted(set(df["split"]) - set(splits))
    if unknown:
        raise CurateError(
            f"--labels {spec}: split {unknown[0]!r} is not in this dataset (splits: "
            f"{', '.join(splits)})"
        )
    idx = pd.to_numeric(df["idx"], errors="coerce")
    if idx.isna().any() or (idx != idx.round()).any():
        row = int(np.flatnonzero(idx.isna() | (idx != idx.round()))[0])
        raise CurateError(
            f"--labels {spec}: idx {df['idx'].iloc[row]!r} on line {row + 2} is not an integer"
        )
    labels = _csv_labels(df["label"], class_names, spec)
    out = {}
    for split, rows in df.groupby("split", sort=False).groups.items():
        i = idx.loc[rows].to_numpy(np.int64)
        dup = pd.Series(i).duplicated()
        if dup.any():
            raise CurateError(
                f"--labels {spec}: {split} idx {int(i[dup.to_numpy()][0])} is listed twice"
            )
        out[str(split)] = (i, labels[np.asarray(rows)])
    return out


def _csv_labels(col: pd.Series, class_names: list[str], spec: str) -> np.ndarray:
    """Class indices from a column of indices or names (names win when a value is both)."""
    names = {n: k for k, n in enumerate(class_names)}
    out = np.empty(len(col), np.int64)
    for r, v in enumerate(col.str.strip()):
        if v in names:
            out[r] = names[v]
        elif re.fullmatch(r"-?[0-9]+", v):  # ASCII digits only: int() refuses '²'
            k = int(v)
            if not 0 <= k < len(class_names):  # before it meets int64: 23 digits overflow it
                raise CurateError(
                    f"--labels {spec}: label {v} on line {r + 2} is outside "
                    f"0..{len(class_names) - 1}; the dataset has {len(class_names)} classes"
                )
            out[r] = k
        else:
            shown = ", ".join(class_names[:10]) + (" ..." if len(class_names) > 10 else "")
            raise CurateError(
                f"--labels {spec}: unknown class {v!r} on line {r + 2}; classes are {shown} "
                "(or their indices)"
            )
    return _check_range(out, len(class_names), spec)


def apply(
    given: tuple[np.ndarray | None, np.ndarray],
    idx: np.ndarray,
    labels: np.ndarray,
    split: str,
    spec: str,
) -> np.ndarray:
    """The split's labels (N,) after replacement; idx (N,) are the split's instances."""
    rows, new = given
    if rows is None:
        if len(new) != len(labels):
            raise CurateError(
                f"--labels {spec}: {len(new)} labels for {len(labels)} {split} images; give one "
                "per image, in idx order"
            )
        order = np.argsort(idx, kind="stable")  # the array is in idx order
        out = np.empty_like(labels)
        out[order] = new
        return out
    pos = {int(i): p for p, i in enumerate(idx)}
    missing = [int(i) for i in rows if int(i) not in pos]
    if missing:
        raise CurateError(
            f"--labels {spec}: {split} has no idx {missing[0]} ({len(missing)} listed idx are not "
            f"in the split, whose idx run from {int(idx.min())} to {int(idx.max())})"
        )
    out = labels.copy()
    out[[pos[int(i)] for i in rows]] = new
    return out
