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

``--paths FILE.csv`` (header ``split,idx,path``) gives the image files, shown as `instances.source`
(e.g. by `label-issues`); ``--classes`` names the classes (a file with one name per line, or
``a,b,c``), by default the sorted names used in a CSV, else ``0..K-1``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

from curate import catalog
from curate.config import check_name
from curate.errors import CurateError
from curate.locks import dataset_lock
from curate.workspace import Workspace

FORMAT = "labels"  # datasets.format of a dataset registered from labels alone
STORAGE = "none"  # datasets.storage: no pixels stored
FORMS = (
    "a CSV with header split,idx,label, an .npz with one array of labels per split (key = split), "
    "or an .npy of the train split's labels in idx order"
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


def _read_labels(path: Path) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], list[str] | None]:
    """split -> (idx, labels as given (int64 or str)), and the class names a CSV used."""
    if not path.is_file():
        raise CurateError(f"--labels {path}: no such file; give {FORMS}")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        df = _read_csv(path, "--labels", "label", skipinitialspace=True)
        idx = pd.to_numeric(df["idx"], errors="coerce")
        bad = idx.isna() | (idx != idx.round()) | (idx < 0)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise CurateError(
                f"--labels {path}: idx {df['idx'].iloc[row]!r} on line {row + 2} is not an "
                "integer >= 0"
            )
        labels = df["label"].str.strip()
        numeric = bool(labels.str.fullmatch(r"\d+").all())  # class indices, else class names
        out = {}
        for split, rows in df.groupby("split", sort=False).groups.items():
            i = idx.loc[rows].to_numpy(np.int64)
            v = labels.loc[rows]
            out[str(split)] = (i, v.astype(np.int64).to_numpy() if numeric else v.to_numpy(object))
        return out, None if numeric else sorted(set(labels))
    if suffix in (".npy", ".npz"):
        try:
            loaded = np.load(path, allow_pickle=False)
        except Exception as e:
            raise CurateError(f"--labels {path}: not a readable numpy file ({e})") from None
        arrays = {"train": loaded} if suffix == ".npy" else {k: loaded[k] for k in loaded.files}
        out = {}
        for split, a in arrays.items():
            if a.ndim != 1 or not np.issubdtype(a.dtype, np.integer):
                raise CurateError(
                    f"--labels {path}: split {split!r} must be a 1-d array of integer class "
                    f"indices, got {a.dtype} of shape {a.shape}"
                )
            out[split] = (np.arange(len(a), dtype=np.int64), a.astype(np.int64))
        return out, None
    raise CurateError(f"--labels {path}: unknown kind of file {suffix!r}; give {FORMS}")


def _classes(spec: str | None, used: list[str] | None, top: int) -> list[str]:
    if spec:
        p = Path(spec)
        names = (
            [line.strip() for line in p.read_text().splitlines() if line.strip()]
            if p.is_file()
            else [n.strip() for n in spec.split(",") if n.strip()]
        )
        if len(set(names)) != len(names):
            raise CurateError(f"--classes {spec}: a class name is listed twice")
        return names
    return used if used is not None else [str(k) for k in range(top + 1)]


def _class_indices(values: np.ndarray, classes: list[str], path: Path) -> np.ndarray:
    if values.dtype != object:
        out = values
    else:
        pos = {n: k for k, n in enumerate(classes)}
        out = np.empty(len(values), np.int64)
        for r, v in enumerate(values):
            if v in pos:
                out[r] = pos[v]
            elif v.isdigit():
                out[r] = int(v)
            else:
                raise CurateError(
                    f"--labels {path}: unknown class {v!r}; classes are "
                    f"{', '.join(classes[:10])}{' ...' if len(classes) > 10 else ''}"
                )
    bad = (out < 0) | (out >= len(classes))
    if bad.any():
        raise CurateError(
            f"--labels {path}: label {int(out[bad][0])} is outside 0..{len(classes) - 1} "
            f"({len(classes)} classes); name the classes with --classes"
        )
    return out


def _read_paths(path: Path, splits: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """split -> (N,) object array of file paths (None where the file lists none)."""
    df = _read_csv(path, "--paths", "path")
    out = {s: np.full(len(i), None, object) for s, i in splits.items()}
    for split, rows in df.groupby("split", sort=False).groups.items():
        if split not in splits:
            raise CurateError(
                f"--paths {path}: split {split!r} is not in the labels (splits: "
                f"{', '.join(splits)})"
            )
        i = pd.to_numeric(df["idx"].loc[rows], errors="coerce").to_numpy()
        pos = np.searchsorted(splits[split], i)
        pos = np.minimum(pos, len(splits[split]) - 1)
        bad = np.isnan(i) | (splits[split][pos] != i)
        if bad.any():
            raise CurateError(
                f"--paths {path}: {split} idx {df['idx'].loc[rows].iloc[int(np.flatnonzero(bad)[0])]}"
                " has no label in the label file"
            )
        out[split][pos] = df["path"].loc[rows].to_numpy(object)
    return out


def ingest_labels(
    ws: Workspace | str | Path,
    name: str,
    labels: str,
    paths: str | None = None,
    classes: str | None = None,
    force: bool = False,
) -> tuple[str, dict[str, int]]:
    """Register dataset `name` from a label file (and optional image paths), without pixels.

    Parameters
    ----------
    ws : the workspace (or its folder).
    name : the catalog name of the dataset.
    labels : the label file (see the module docstring).
    paths : optional CSV split,idx,path of the image files.
    classes : class names: a file with one per line, or comma-separated.
    force : replace a dataset of that name registered from other labels.

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
        raise CurateError(f"--paths {ppath}: no such file; give a CSV with header split,idx,path")
    raw, used = _read_labels(lpath)
    order = sorted(raw, key=lambda s: (s != "train", list(raw).index(s)))
    top = max((int(v.max()) for _, v in raw.values() if v.dtype != object and len(v)), default=0)
    names = _classes(classes, used, top)
    splits = {}
    for s in order:
        i, v = raw[s]
        srt = np.argsort(i, kind="stable")
        i, v = i[srt], v[srt]
        dup = np.flatnonzero(np.diff(i) == 0)
        if len(dup):
            raise CurateError(f"--labels {lpath}: {s} idx {int(i[dup[0]])} is listed twice")
        splits[s] = (i, _class_indices(v, names, lpath))
    sources = _read_paths(ppath, {s: i for s, (i, _) in splits.items()}) if ppath else None
    checksum = _digest(lpath, ppath) + ":" + ",".join(names)
    recipe = {"format": FORMAT, "labels": _digest(lpath), "paths": ppath and _digest(ppath)}
    counts = {s: len(i) for s, (i, _) in splits.items()}
    with dataset_lock(ws.dataset_dir(name)):
        old = _existing(ws, name)
        if old is not None:
            fmt, old_sum = old
            if fmt != FORMAT:
                raise CurateError(
                    f"dataset {name!r} is already in {ws.catalog} with its images ({fmt}); "
                    "register the labels under another --name"
                )
            if old_sum == checksum:
                return "up to date", counts
            if not force:
                raise CurateError(
                    f"dataset {name!r} is already registered from other labels; rerun with "
                    "--force to replace it, or choose another --name"
                )
        _record(ws, name, lpath, names, splits, sources, checksum, recipe)
    return "written", counts


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


def _record(ws, name, lpath, names, splits, sources, checksum, recipe) -> None:
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
                    "class_name": np.array(names, dtype=object)[y],
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
        "multilabel": False,
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
        ws, args.name or "", args.labels, args.paths, args.classes, args.force
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


def _read_csv(path: Path, flag: str, value: str, skipinitialspace: bool = False) -> pd.DataFrame:
    """A split,idx,<value> CSV as strings, its header lower-cased; one error naming `flag` else."""
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=skipinitialspace)
    except Exception as e:
        raise CurateError(f"{flag} {path}: not a readable CSV ({e})") from None
    df.columns = [c.strip().lower() for c in df.columns]
    if sorted(df.columns) != sorted(["idx", value, "split"]):
        raise CurateError(
            f"{flag} {path}: the header must be split,idx,{value} (found {','.join(df.columns)})"
        )
    return df
