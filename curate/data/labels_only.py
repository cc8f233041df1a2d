"""Datasets registered from their labels alone (`curate ingest labels --labels FILE [--paths
FILE.csv] --name N`): the catalog's `datasets` and `instances` rows without any pixels, for runs
trained elsewhere (an ImageNet-size model on a cluster) and recorded with `curate.Recorder` or
`curate import-log`. Scoring, label issues, reports and the SQL views work; what needs the images
(image statistics, thumbnails, `curate train`) says that this dataset has none.

Label files:

- ``labels.csv`` with header ``split,idx,label``: one row per instance of every split; ``label`` is
  a class index or a class name;
- ``labels.npz``: one array per split (the key is the split's name), the labels in idx order
  0..N-1;
- ``labels.npy``: the train split's labels in idx order 0..N-1.

With ``--multilabel`` a label is a set of classes, stored as Pascal VOC's are (a bitmask, bit k =
class k; a prediction counts as correct only on an exact match): in a CSV the classes joined by
``+`` (``cat+dog``, or class indices ``0+3``; an empty label is the empty set), in an ``.npz`` /
``.npy`` a K-hot array of shape (N, K) per split. At most 31 classes (the bitmask is a 32-bit
integer). A ``+`` in a label of a single-label file is refused, naming ``--multilabel``.

``--paths FILE.csv`` (header ``split,idx,path``) gives the image files, shown as `instances.source`
(e.g. by `label-issues`); ``--classes`` names the classes (a file with one name per line, or
``a,b,c``), by default the sorted names used in a CSV, else ``0..K-1``.

What is refused, before anything is written (one `CurateError` each):

- labels that mix class indices and class names (a name among numbers would sort every class as
  text), a number that is not a whole number (``0.5``; ``3.0`` reads as ``3``), an empty label;
- a class index outside ``0..2**20-1`` (`MAX_CLASSES`: a run logs one logit per class and
  instance, so a larger id is a typo, not a class), before anything is allocated per class;
- an idx outside ``0..2**31-1`` (`MAX_IDX`: the catalog stores idx as a 32-bit integer), or one
  listed twice in the labels or in ``--paths``;
- a split name that cannot be a file name (`curate.config.check_name`, as for run names): it
  names the prediction log's files;
- replacing a dataset registered from other labels without ``--force``, and one that runs were
  recorded against without ``--force --invalidate-runs`` (the runs are named).
"""

from __future__ import annotations

import errno
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

from curate import catalog, runlog
from curate.config import check_name
from curate.errors import CurateError
from curate.inputs import check_small_file
from curate.locks import dataset_lock
from curate.workspace import Workspace

FORMAT = "labels"  # datasets.format of a dataset registered from labels alone
STORAGE = "none"  # datasets.storage: no pixels stored
FORMS = (
    "a CSV with header split,idx,label, an .npz with one array of labels per split (key = split), "
    "or an .npy of the train split's labels in idx order"
)
# class indices must be below this: a run logs one logit per class and instance (2**20 classes are
# 4 MB of float32 per instance already), so a larger id is a typo or a hash, not a class index
MAX_CLASSES = 2**20
MAX_IDX = 2**31  # instances.idx is a 32-bit INTEGER
MAX_MULTILABEL = 31  # a class set is a bitmask in instances.label, a 32-bit INTEGER
_Splits = dict[str, tuple[np.ndarray, np.ndarray]]  # split -> (idx, labels)
_INTEGER = r"([+-]?)0*([0-9]+)(?:\.0*)?"  # an integer, also written as a float: 3.0, 3.
_NUMBER = r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"  # any number, e.g. 0.5, 1e3
_OUT_OF_RANGE = (
    f"is out of range: class indices are whole numbers 0..{MAX_CLASSES - 1} (below 2**20, since a "
    "run logs one logit per class); number the classes 0..K-1, or label with class names"
)


def no_pixels_error(ws: Workspace, dataset: str) -> CurateError | None:
    """The error for a dataset registered from labels alone (None for any other dataset)."""
    if not ws.catalog.exists():
        return None
    try:
        with catalog.read(ws) as con:
            row = con.execute("SELECT format FROM datasets WHERE dataset = ?", [dataset]).fetchone()
    except CurateError:
        return None
    if row is None or row[0] != FORMAT:
        return None
    return CurateError(
        f"dataset {dataset!r} was registered from labels alone (`curate ingest labels`): it has "
        "no images, so image statistics, thumbnails and `curate train` are not available for it. "
        "Train in your own loop and record it with curate.Recorder or `curate import-log`, or "
        "ingest the images under another --name"
    )


def _digest(*paths: Path | None) -> str:
    h = hashlib.blake2b(digest_size=16)
    for p in paths:
        if p is not None:
            h.update(p.name.encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def _integers(col: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Which strings of a column are integers (``7``, ``+7``, ``007``, ``7.0``), and their values.

    Parameters
    ----------
    col : stripped strings.

    Returns
    -------
    is_int : (R,) bool.
    value : (R,) int64, the value where `is_int` (else 0); one of more than 18 digits is saturated
        at +-2**62, so that a bound check refuses it instead of it wrapping around.
    """
    m = col.str.extract(rf"^{_INTEGER}$")
    digits = m[1].fillna("0")
    long = (digits.str.len() > 18).to_numpy()
    value = digits.mask(long, "0").astype(np.int64).to_numpy().copy()
    value[long] = 2**62
    value[(m[0] == "-").to_numpy()] *= -1
    return m[1].notna().to_numpy(), value


def _shown(values: pd.Series, rows: np.ndarray, limit: int = 3) -> str:
    """Some values of a CSV column with their line numbers: ``'a' (line 2), 'b' (line 7) and 3
    more``."""
    parts = [f"{values.iloc[r]!r} (line {r + 2})" for r in rows[:limit]]
    return ", ".join(parts) + (f" and {len(rows) - limit} more" if len(rows) > limit else "")


def _idx_column(col: pd.Series, flag: str, path: Path) -> np.ndarray:
    """A CSV's idx column as int64: integers in 0..2**31-1, else one CurateError naming the line."""
    col = col.str.strip()
    is_int, value = _integers(col)
    bad = np.flatnonzero(~is_int | (value < 0))
    if len(bad):
        raise CurateError(
            f"{flag} {path}: idx {_shown(col, bad, 1)} is not an integer >= 0; give each "
            "instance's idx as a whole number (0, 1, 2, ...)"
        )
    big = np.flatnonzero(value >= MAX_IDX)
    if len(big):
        raise CurateError(
            f"{flag} {path}: idx {_shown(col, big, 1)} is too large: the catalog stores idx as a "
            f"32-bit integer, so it must be below 2**31 = {MAX_IDX}; number the instances 0..N-1"
        )
    return value


def _label_column(col: pd.Series, path: Path) -> tuple[np.ndarray, list[str] | None]:
    """A CSV's labels: (class indices, None) when every label is an integer, (names, the sorted
    names) when none is; a mix, a number that is not an integer, an empty label or a class index
    out of range is one CurateError."""
    v = col.str.strip()
    empty = np.flatnonzero((v == "").to_numpy())
    if len(empty):
        raise CurateError(
            f"--labels {path}: the label on line {empty[0] + 2} is empty; give every instance a "
            "class index or a class name"
        )
    plus = np.flatnonzero(v.str.contains("+", regex=False).to_numpy() & ~_integers(v)[0])
    if len(plus):
        raise CurateError(
            f"--labels {path}: label {_shown(v, plus)} joins classes with '+'; for labels that "
            "are sets of classes pass --multilabel, else give one class per label"
        )
    is_int, value = _integers(v)
    odd = np.flatnonzero(v.str.fullmatch(_NUMBER).to_numpy() & ~is_int)
    if len(odd):
        raise CurateError(
            f"--labels {path}: label {_shown(v, odd)} is a number but not a class index; labels "
            "are whole numbers 0..K-1 (3.0 reads as 3) or class names"
        )
    if is_int.all():
        big = np.flatnonzero((value < 0) | (value >= MAX_CLASSES))
        if len(big):
            raise CurateError(f"--labels {path}: label {_shown(v, big, 1)} {_OUT_OF_RANGE}")
        return value, None
    if is_int.any():
        ints, names = np.flatnonzero(is_int), np.flatnonzero(~is_int)
        few, many = (names, "class indices") if len(names) <= len(ints) else (ints, "class names")
        raise CurateError(
            f"--labels {path}: labels mix class indices and class names: {_shown(v, few)} among "
            f"{len(v) - len(few)} {many}; give every label as a class index 0..K-1, or every "
            "label as a class name"
        )
    return v.to_numpy(object), sorted(set(v))


def _label_sets(col: pd.Series, path: Path) -> tuple[np.ndarray, list[str] | None]:
    """A multilabel CSV's labels (``cat+dog``, ``0+3``, '' for the empty set): (R,) object array of
    tuples of class indices (int) or names (str), and the sorted names used (None for indices).
    Every label is classes of one kind; a class index is below `MAX_MULTILABEL`."""
    sets = [tuple(t.strip() for t in x.split("+")) if x.strip() else () for x in col]
    tokens = pd.Series([t for st in sets for t in st], dtype=object)
    if (tokens == "").any():
        raise CurateError(
            f"--labels {path}: an empty class in a label set (e.g. 'cat++dog' or 'cat+'); join "
            "class names with one '+'"
        )
    is_int, value = _integers(tokens.astype(str)) if len(tokens) else (np.ones(0, bool), [])
    if is_int.any() and not is_int.all():
        raise CurateError(
            f"--labels {path}: label sets mix class indices and class names (e.g. "
            f"{tokens[~is_int].iloc[0]!r} among indices); use one kind throughout"
        )
    if not is_int.all():
        return np.array(sets, dtype=object), sorted(set(tokens))
    if len(value) and (np.min(value) < 0 or np.max(value) >= MAX_MULTILABEL):
        raise CurateError(
            f"--labels {path}: class index {int(np.max(value))} is out of range: a multilabel "
            f"dataset has at most {MAX_MULTILABEL} classes, 0..{MAX_MULTILABEL - 1}"
        )
    it = iter(int(x) for x in value)
    return np.array([tuple(next(it) for _ in st) for st in sets], dtype=object), None


def _bitmasks(sets: np.ndarray, classes: list[str], path: Path) -> np.ndarray:
    """Label sets (tuples of indices or names) as bitmasks over `classes`, int64, shape (R,)."""
    pos = {n: k for k, n in enumerate(classes)}
    out = np.zeros(len(sets), np.int64)
    for r, st in enumerate(sets):
        for t in st:
            k = t if isinstance(t, int) else pos.get(t)
            if k is None or k >= len(classes):
                raise CurateError(
                    f"--labels {path}: unknown class {t!r}; classes are "
                    f"{', '.join(classes[:10])}{' ...' if len(classes) > 10 else ''}"
                )
            out[r] |= 1 << k
    return out


def _read_labels(path: Path, multilabel: bool = False) -> tuple[_Splits, list[str] | None]:
    """split -> (idx, labels as given: int64 class indices, str names, or with `multilabel` label
    sets (CSV) or bitmasks (arrays)), and the class names a CSV used (arrays: '0'..'K-1')."""
    if not path.exists():
        raise CurateError(f"--labels {path}: no such file; give {FORMS}")
    if not path.is_file():
        raise CurateError(f"--labels {path}: not a regular file; give {FORMS}")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _read_labels_csv(path, multilabel)
    if suffix in (".npy", ".npz") and multilabel:
        return _read_khot_arrays(path, suffix)
    if suffix in (".npy", ".npz"):
        return _read_label_arrays(path, suffix), None
    raise CurateError(f"--labels {path}: unknown kind of file {suffix!r}; give {FORMS}")


def _read_labels_csv(path: Path, multilabel: bool = False) -> tuple[_Splits, list[str] | None]:
    """A labels CSV split,idx,label, every value checked (see `_idx_column`, `_label_column`)."""
    df = _read_csv(path, "--labels", "label", skipinitialspace=True)
    if df.empty:
        raise CurateError(
            f"--labels {path}: no labels below the header; give one row split,idx,label per "
            "instance"
        )
    split = df["split"].str.strip()
    for s in split.unique():
        check_name(s, f"--labels {path}: split")  # a split names files of the prediction log
    idx = _idx_column(df["idx"], "--labels", path)
    read = _label_sets if multilabel else _label_column
    values, used = read(df["label"], path)
    out = {}
    for s, rows in split.groupby(split, sort=False).groups.items():
        pos = np.asarray(rows)
        out[str(s)] = (idx[pos], values[pos])
    return out, used


def _load_arrays(path: Path, suffix: str, give: str) -> dict[str, np.ndarray]:
    """The arrays of an .npy (the train split) or .npz (key = split); one error when unreadable
    or empty (`give` says what to give instead)."""
    try:
        if suffix == ".npy":
            arrays = {"train": np.load(path, allow_pickle=False)}
        else:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
    except Exception as e:
        raise CurateError(f"--labels {path}: not a readable numpy file ({e})") from None
    if not arrays:
        raise CurateError(f"--labels {path}: holds no arrays; give {give}")
    return arrays


def _read_label_arrays(path: Path, suffix: str) -> _Splits:
    """An .npy (the train split) or .npz (one array per split) of class indices in idx order."""
    arrays = _load_arrays(path, suffix, "one array of labels per split")
    out = {}
    for split, a in arrays.items():
        check_name(split, f"--labels {path}: split")  # a split names files of the prediction log
        integral = np.issubdtype(a.dtype, np.integer) or (
            np.issubdtype(a.dtype, np.floating) and bool(np.all(np.isfinite(a) & (a == a.round())))
        )
        if a.ndim != 1 or not len(a) or not integral:
            raise CurateError(
                f"--labels {path}: split {split!r} must be a non-empty 1-d array of class indices "
                f"(whole numbers), got {a.dtype} of shape {a.shape}"
            )
        big = np.flatnonzero((a < 0) | (a >= MAX_CLASSES))
        if len(big):
            shown = f"{a[big[0]].item()!r} (position {big[0]} of split {split!r})"
            raise CurateError(f"--labels {path}: label {shown} {_OUT_OF_RANGE}")
        out[split] = (np.arange(len(a), dtype=np.int64), a.astype(np.int64))
    return out


def _read_khot_arrays(path: Path, suffix: str) -> tuple[_Splits, list[str]]:
    """An .npy (the train split) or .npz (one per split) of K-hot label sets, shape (N, K) of 0/1,
    as bitmasks; and the default class names '0'..'K-1'."""
    arrays = _load_arrays(path, suffix, "one K-hot array per split")
    widths, out = set(), {}
    for split, a in arrays.items():
        check_name(split, f"--labels {path}: split")  # a split names files of the prediction log
        if a.ndim != 2 or not len(a) or not np.isin(a, (0, 1)).all():
            raise CurateError(
                f"--labels {path}: split {split!r} must be a K-hot array of shape (N, K) holding "
                f"only 0 and 1 (--multilabel), got {a.dtype} of shape {a.shape}"
            )
        widths.add(a.shape[1])
        if a.shape[1] > MAX_MULTILABEL:
            raise CurateError(
                f"--labels {path}: {a.shape[1]} classes; a multilabel dataset has at most "
                f"{MAX_MULTILABEL} (a label set is stored as a 32-bit bitmask)"
            )
        bits = (a.astype(np.int64) << np.arange(a.shape[1], dtype=np.int64)).sum(axis=1)
        out[split] = (np.arange(len(a), dtype=np.int64), bits)
    if len(widths) != 1:
        raise CurateError(f"--labels {path}: the splits have different class counts {widths}")
    return out, [str(k) for k in range(widths.pop())]


def _classes(spec: str | None, used: list[str] | None, top: int) -> list[str]:
    """The class names: --classes, else the names a CSV used, else 0..top (top < MAX_CLASSES)."""
    if spec:
        p = Path(spec)
        if "/" in spec and "," not in spec and not p.is_file():  # a path, not a class's name
            what = "not a regular file" if p.exists() else "no such file"
            raise CurateError(
                f"--classes {spec}: {what}; give a text file of class names, one per line, or "
                "the names separated by commas"
            )
        try:
            text = p.read_text() if p.is_file() else None
        except (OSError, UnicodeDecodeError) as e:
            raise CurateError(f"--classes {spec}: not a readable text file ({e})") from None
        names = (
            [line.strip() for line in text.splitlines() if line.strip()]
            if text is not None
            else [n.strip() for n in spec.split(",") if n.strip()]
        )
        if len(set(names)) != len(names):
            raise CurateError(f"--classes {spec}: a class name is listed twice")
    else:
        names = used if used is not None else [str(k) for k in range(top + 1)]
    if len(names) > MAX_CLASSES:
        raise CurateError(
            f"{len(names):,} classes: at most {MAX_CLASSES:,} (2**20; a run logs one logit per class "
            "and instance); are the labels a column of ids rather than classes?"
        )
    return names


def _class_indices(values: np.ndarray, classes: list[str], path: Path) -> np.ndarray:
    if values.dtype != object:
        out = values
    else:
        pos = {n: k for k, n in enumerate(classes)}
        out = np.empty(len(values), np.int64)
        for r, v in enumerate(values):
            if v not in pos:
                raise CurateError(
                    f"--labels {path}: unknown class {v!r}; classes are "
                    f"{', '.join(classes[:10])}{' ...' if len(classes) > 10 else ''}"
                )
            out[r] = pos[v]
    bad = (out < 0) | (out >= len(classes))
    if bad.any():
        raise CurateError(
            f"--labels {path}: label {int(out[bad][0])} is outside 0..{len(classes) - 1} "
            f"({len(classes)} classes); name the classes with --classes"
        )
    return out


def _label_values(v: np.ndarray, names: list[str], lpath: Path, multilabel: bool) -> np.ndarray:
    """Class indices (single-label) or bitmasks (multilabel) of labels as read."""
    if not multilabel:
        return _class_indices(v, names, lpath)
    if len(names) > MAX_MULTILABEL:
        raise CurateError(
            f"--labels {lpath}: {len(names)} classes; a multilabel dataset has at most "
            f"{MAX_MULTILABEL} (a label set is stored as a 32-bit bitmask)"
        )
    bits = _bitmasks(v, names, lpath) if v.dtype == object else v
    if (bits >= 1 << len(names)).any():
        raise CurateError(
            f"--labels {lpath}: a label set uses a class beyond the {len(names)} named by "
            "--classes; name every class"
        )
    return bits


def _checked_splits(raw: dict, names: list[str], lpath: Path, multilabel: bool = False) -> dict:
    """split -> (idx ascending, class indices, or bitmasks when `multilabel`), train first; an idx
    listed twice is refused."""
    order = sorted(raw, key=lambda s: (s != "train", list(raw).index(s)))
    splits = {}
    for s in order:
        i, v = raw[s]
        srt = np.argsort(i, kind="stable")
        i, v = i[srt], v[srt]
        dup = np.flatnonzero(np.diff(i) == 0)
        if len(dup):
            raise CurateError(f"--labels {lpath}: {s} idx {int(i[dup[0]])} is listed twice")
        splits[s] = (i, _label_values(v, names, lpath, multilabel))
    return splits


def _read_paths(path: Path, splits: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """split -> (N,) object array of file paths (None where the file lists none)."""
    df = _read_csv(path, "--paths", "path")
    split = df["split"].str.strip()
    idx = _idx_column(df["idx"], "--paths", path)
    out = {s: np.full(len(i), None, object) for s, i in splits.items()}
    for s, rows in split.groupby(split, sort=False).groups.items():
        if s not in splits:
            raise CurateError(
                f"--paths {path}: split {s!r} is not in the labels (splits: {', '.join(splits)})"
            )
        rows = np.asarray(rows)
        i = idx[rows]
        dup = np.flatnonzero(pd.Series(i).duplicated().to_numpy())
        if len(dup):
            lines = " and ".join(str(r + 2) for r in rows[i == i[dup[0]]][:2])
            raise CurateError(
                f"--paths {path}: {s} idx {int(i[dup[0]])} is listed twice (lines {lines}); give "
                "one path per instance"
            )
        pos = np.minimum(np.searchsorted(splits[s], i), len(splits[s]) - 1)
        bad = np.flatnonzero(splits[s][pos] != i)
        if len(bad):
            raise CurateError(
                f"--paths {path}: {s} idx {int(i[bad[0]])} has no label in the label file "
                f"(line {rows[bad[0]] + 2}); list only instances the labels list"
            )
        out[s][pos] = df["path"].to_numpy(object)[rows]
    return out


def ingest_labels(
    ws: Workspace | str | Path,
    name: str,
    labels: str,
    paths: str | None = None,
    classes: str | None = None,
    force: bool = False,
    invalidate_runs: bool = False,
    multilabel: bool = False,
) -> tuple[str, dict[str, int]]:
    """Register dataset `name` from a label file (and optional image paths), without pixels.

    Everything is read and checked before anything is written; every problem is one
    CurateError, and a refused call leaves the workspace as it was.

    Parameters
    ----------
    ws : the workspace (or its folder).
    name : the catalog name of the dataset.
    labels : the label file (see the module docstring).
    paths : optional CSV split,idx,path of the image files.
    classes : class names: a file with one per line, or comma-separated.
    force : replace a dataset of that name registered from other labels.
    invalidate_runs : with `force`, replace it even when runs were recorded against it.
    multilabel : labels are sets of classes (``cat+dog``, or K-hot arrays), stored as bitmasks.

    Returns
    -------
    ("written" or "up to date", {split: instances}).
    """
    ws = ws if isinstance(ws, Workspace) else Workspace(ws)
    if not name:
        raise CurateError("curate ingest labels needs --name NAME, the catalog name to register")
    name = check_name(name, "--name")
    lpath = Path(labels).absolute()
    ppath = Path(paths).absolute() if paths else None
    if ppath is not None and not ppath.is_file():
        what = "not a regular file" if ppath.exists() else "no such file"
        raise CurateError(f"--paths {ppath}: {what}; give a CSV with header split,idx,path")
    raw, used = _read_labels(lpath, multilabel)
    top = _top_class(raw, multilabel)
    names = _classes(classes, used, top)  # top < MAX_CLASSES: checked as the labels were read
    splits = _checked_splits(raw, names, lpath, multilabel)
    sources = _read_paths(ppath, {s: i for s, (i, _) in splits.items()}) if ppath else None
    checksum = _digest(lpath, ppath) + ":" + ",".join(names) + (":multilabel" * multilabel)
    recipe = {"format": FORMAT, "labels": _digest(lpath), "paths": ppath and _digest(ppath)}
    counts = {s: len(i) for s, (i, _) in splits.items()}
    try:
        with dataset_lock(ws.dataset_dir(name)):
            if not _may_write(ws, name, checksum, force, invalidate_runs):
                return "up to date", counts
            _record(ws, name, lpath, names, splits, sources, checksum, recipe, multilabel)
    except OSError as e:
        if e.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise
        raise CurateError(
            f"cannot write in the workspace {ws.root} ({e.strerror}: {e.filename}); make it "
            "writable or pass another --workspace, and rerun (nothing was registered)"
        ) from None
    return "written", counts


def _top_class(raw: dict, multilabel: bool) -> int:
    """The largest class index the labels use (0 when they are names)."""
    if not multilabel:
        return max((int(v.max()) for _, v in raw.values() if v.dtype != object), default=0)
    ints = [t for _, v in raw.values() if v.dtype == object for st in v for t in st]
    return max((t for t in ints if isinstance(t, int)), default=0)


def _may_write(ws: Workspace, name: str, checksum: str, force: bool, invalidate: bool) -> bool:
    """False when `name` is already registered from these very labels; True when it may be
    (re)written; a CurateError when it is registered otherwise and the flags do not allow
    replacing it (--force, plus --invalidate-runs when runs were recorded against it)."""
    old = _existing(ws, name)
    if old is None:
        return True
    fmt, old_sum = old
    if fmt != FORMAT:
        raise CurateError(
            f"dataset {name!r} is already in {ws.catalog} with its images ({fmt}); "
            "register the labels under another --name"
        )
    if old_sum == checksum:
        return False
    runs = _runs_of(ws, name)
    if not runs:
        if force:
            return True
        raise CurateError(
            f"dataset {name!r} is already registered from other labels; rerun with "
            "--force to replace it, or choose another --name"
        )
    shown = ", ".join(runs[:10]) + (f" and {len(runs) - 10} more" if len(runs) > 10 else "")
    if force and invalidate:
        print(f"{name}: replacing the labels that runs {shown} were recorded against")
        return True
    raise CurateError(
        f"dataset {name!r} is already registered from other labels, and run(s) {shown} were "
        "recorded against them: replacing the labels invalidates their scores and label issues; "
        "rerun with --force --invalidate-runs to replace them anyway, or choose another --name"
    )


def _runs_of(ws: Workspace, name: str) -> list[str]:
    """The runs recorded against dataset `name`: in the catalog, or still being recorded."""
    runs: set[str] = set()
    if ws.catalog.exists():
        with catalog.read(ws) as con:
            if "runs" in {r[0] for r in con.execute("SHOW TABLES").fetchall()}:
                rows = con.execute("SELECT run FROM runs WHERE dataset = ?", [name]).fetchall()
                runs.update(r[0] for r in rows)
    for run in runlog.run_names(ws.runs):
        try:
            manifest = runlog.load_manifest(ws.run_dir(run))
        except CurateError:
            continue  # not a run folder we can read: not one of this dataset's
        if manifest is not None and manifest.dataset == name:
            runs.add(run)
    return sorted(runs)


def _existing(ws: Workspace, name: str) -> tuple[str, str] | None:
    if not ws.catalog.exists():
        return None
    with catalog.read(ws) as con:
        tables = {r[0] for r in con.execute("SHOW TABLES").fetchall()}
        if "datasets" not in tables:
            return None
        row = con.execute(
            "SELECT format, checksum FROM datasets WHERE dataset = ?", [name]
        ).fetchone()
    return None if row is None else (row[0], row[1])


def _record(ws, name, lpath, names, splits, sources, checksum, recipe, multilabel=False) -> None:
    from curate.data.ingest import class_name_of

    frames = []
    for s, (i, y) in splits.items():
        src = sources[s] if sources else np.full(len(i), None, object)
        frames.append(
            pd.DataFrame(
                {
                    "dataset": name,
                    "split": s,
                    "idx": i.astype(np.int32),
                    "label": y.astype(np.int32),
                    "true_label": y.astype(np.int32),
                    "class_name": class_name_of(y, names, multilabel),
                    "source": src,
                }
            )
        )
    instances = pd.concat(frames, ignore_index=True)
    info = catalog.version_info()
    row = {
        "dataset": name,
        "format": FORMAT,
        "source": str(lpath),
        "num_classes": len(names),
        "class_names": names,
        "splits": list(splits),
        "counts": [len(i) for i, _ in splits.values()],
        "storage": STORAGE,
        "checksum": checksum,
        "recipe": json.dumps(recipe),
        "version": info["version"],
        "git_rev": info["git_rev"],
        "labels_file": str(lpath),
        "multilabel": multilabel,
    }
    import pyarrow as pa

    with catalog.write(ws) as con:
        for table in ("instances", "skipped", "image_attributes", "datasets"):
            con.execute(f"DELETE FROM {table} WHERE dataset = ?", [name])
        catalog.insert_frame(con, "instances", instances)
        catalog.insert_frame(con, "datasets", pa.Table.from_pylist([row]), now=("created_at",))


def cmd_ingest_labels(args) -> int:
    """`curate ingest labels --labels FILE [--paths FILE.csv] [--classes C] --name N`."""
    if not getattr(args, "labels", None):
        raise CurateError(f"curate ingest labels needs --labels FILE: {FORMS} (and --name NAME)")
    ws = Workspace.resolve(args.workspace)
    status, counts = ingest_labels(
        ws,
        args.name or "",
        args.labels,
        args.paths,
        args.classes,
        args.force,
        getattr(args, "invalidate_runs", False),
        getattr(args, "multilabel", False),
    )
    shown = ", ".join(f"{k} {v}" for k, v in counts.items())
    print(f"{args.name}: {status} ({shown}; labels only, no images) in {ws.catalog}")
    return 0


def add_flags(p) -> None:
    """The flags `curate ingest labels` adds to `curate ingest`."""
    p.add_argument(
        "--paths",
        metavar="FILE.csv",
        help="ingest labels: the image files as CSV split,idx,path (shown as instances.source)",
    )
    p.add_argument(
        "--classes",
        help="ingest labels: class names, a file with one per line or a,b,c (default: the CSV's "
        "sorted names, else 0..K-1)",
    )
    p.add_argument(
        "--multilabel",
        action="store_true",
        help="ingest labels: each label is a set of classes (CSV: cat+dog; .npz/.npy: K-hot arrays "
        "(N, K)), stored as bitmasks and scored by exact match, as Pascal VOC",
    )
    p.add_argument(
        "--invalidate-runs",
        action="store_true",
        help="ingest labels: with --force, replace the labels even when runs were recorded "
        "against them (their scores and label issues then no longer match); without it, "
        "--force names those runs and refuses",
    )


MAX_CSV_BYTES = 4 * 2**30  # a CSV of labels or paths: 100 M rows of a few dozen bytes fit


def _clip(text: str, most: int = 80) -> str:
    """`text` for a message: at most `most` characters."""
    return text if len(text) <= most else text[:most] + "..."


def _read_csv(path: Path, flag: str, value: str, skipinitialspace: bool = False) -> pd.DataFrame:
    """A split,idx,<value> CSV as strings, its header lower-cased; one error naming `flag` else."""
    # before pandas reads it: a 1 GB sparse file once took 18 GB and gave a gigabyte-long error
    what = f"a CSV with header split,idx,{value}"
    check_small_file(path, f"{flag} {path}", what, MAX_CSV_BYTES, text=True)
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=skipinitialspace)
    except Exception as e:
        raise CurateError(f"{flag} {path}: not a readable CSV ({_clip(str(e))})") from None
    df.columns = [c.strip().lower() for c in df.columns]
    if sorted(df.columns) != sorted(["idx", value, "split"]):
        raise CurateError(
            f"{flag} {path}: the header must be split,idx,{value} (found "
            f"{_clip(','.join(df.columns))})"
        )
    return df
