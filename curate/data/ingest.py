"""Ingest: a source (curate.data.formats) becomes one .beton per split plus rows in the catalog's
`datasets`, `instances` and `skipped` tables.

Every .beton has three fields: `image` (raw uint8 HxWxC, float32 HxWxC, or JPEG), `label` and
`idx`. Outputs are written to a temporary folder and moved into place only after the catalog
transaction commits, so an error or an interrupt leaves the previous state whole.
"""

from __future__ import annotations

import dataclasses
import json
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from tqdm.auto import tqdm

from curate import catalog
from curate.config import DatasetConfig, check_name
from curate.cores import usable_cores
from curate.data import labels as label_files
from curate.data.formats import read_source
from curate.data.formats.base import SourceData, Split, decode_image
from curate.data.writer import page_size, write_beton
from curate.errors import CurateError
from curate.locks import dataset_lock
from curate.workspace import Workspace, atomic_path, remove_atomic_leftovers

# the [dataset] keys that do not change what ingest writes (so changing them needs no --force)
_NOT_CONTENT = {"workers", "download", "source"}


@dataclass
class IngestResult:
    dataset: str
    status: str  # "written", "up to date"
    counts: dict[str, int]
    storage: str
    path: Path


def _workers(n: int) -> int:
    return n if n > 0 else usable_cores()


def _decode_chunk(
    args: tuple[list[str], int],
) -> list[tuple[tuple[int, int, int] | None, np.ndarray | None, str | None]]:
    """Decode files fully (catches truncation); keep pixels only for images up to `keep_side`."""
    files, keep_side = args
    out = []
    for f in files:
        try:
            a = decode_image(f)
        except ValueError as e:
            out.append((None, None, str(e)))
            continue
        small = max(a.shape[:2]) <= keep_side
        out.append((a.shape, a if small else None, None))
    return out


def decode_files(files: list[str], keep_side: int, workers: int, desc: str) -> list:
    """Decode every file in a process pool, in chunks; returns (shape, pixels or None, error) per file."""
    chunk = 512
    chunks = [(files[i : i + chunk], keep_side) for i in range(0, len(files), chunk)]
    results: list = []
    with tqdm(total=len(files), desc=desc, unit="img", leave=False) as bar:
        if workers == 1 or len(chunks) == 1:
            for c in chunks:
                results += _decode_chunk(c)
                bar.update(len(c[0]))
        else:
            with ProcessPoolExecutor(workers) as pool:
                for c, r in zip(chunks, pool.map(_decode_chunk, chunks), strict=True):
                    results += r
                    bar.update(len(c[0]))
    return results


def _resize_jpeg_source(a: np.ndarray, cfg: DatasetConfig) -> np.ndarray:
    import cv2

    h, w = a.shape[:2]
    if cfg.short_side > 0 and min(h, w) > cfg.short_side:  # shrink only: never invent pixels
        s = cfg.short_side / min(h, w)
    elif cfg.max_side > 0 and max(h, w) > cfg.max_side:
        s = cfg.max_side / max(h, w)
    else:
        s = 1.0
    if s != 1.0:
        size = (max(1, round(w * s)), max(1, round(h * s)))
        a = cv2.resize(a, size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
    return a


class _ArraySource:
    """Indexable view the ffcv writer reads: (image, label, idx)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, idx: np.ndarray):
        self.images, self.labels, self.idx = images, labels, idx

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.images[i], int(self.labels[i]), int(self.idx[i])


class _FileSource:
    def __init__(self, files: list[str], labels: np.ndarray, idx: np.ndarray, cfg: DatasetConfig):
        self.files, self.labels, self.idx, self.cfg = files, labels, idx, cfg

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        a = decode_image(self.files[i])
        if a.shape[2] == 1:
            a = np.repeat(a, 3, axis=2)
        a = np.ascontiguousarray(_resize_jpeg_source(a, self.cfg))
        return a, int(self.labels[i]), int(self.idx[i])


def _permute_labels(labels: np.ndarray, seed: int, split_no: int) -> np.ndarray:
    return np.random.default_rng([seed, split_no]).permutation(labels)


@dataclass
class _Prepared:
    split: Split
    heights: np.ndarray
    widths: np.ndarray
    channels: np.ndarray
    pixels: list | None  # decoded small images of a file split


def _prepare_files(s: Split, cfg: DatasetConfig, workers: int) -> _Prepared:
    """Decode a file split, drop (or refuse) unreadable files, assign idx."""
    keep = cfg.raw_max_side if cfg.storage != "jpeg" else 0
    res = decode_files(s.files, keep, workers, f"checking {s.name} images")
    bad = [(f, r[2]) for f, r in zip(s.files, res, strict=True) if r[2] is not None]
    if bad and not cfg.skip_corrupt:
        f, why = bad[0]
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise CurateError(
            f"cannot read image {f}: {why}{more}; fix or remove it, or pass --skip-corrupt "
            "to skip unreadable images"
        )
    ok = [i for i, r in enumerate(res) if r[2] is None]
    if not ok:
        raise CurateError(f"split {s.name}: no readable image")
    s.skipped += bad
    s.files = [s.files[i] for i in ok]
    s.refs = list(s.files)
    s.labels = s.labels[ok]
    s.attributes = {k: np.asarray(v)[ok] for k, v in s.attributes.items()}
    s.idx = s.file_ids[ok] if s.file_ids is not None else np.arange(len(ok))
    shapes = np.array([res[i][0] for i in ok])
    pixels = [res[i][1] for i in ok]
    return _Prepared(s, shapes[:, 0], shapes[:, 1], shapes[:, 2], pixels)


def _choose_storage(
    preps: list[_Prepared], cfg: DatasetConfig
) -> tuple[str, tuple[int, int, int] | None]:
    arrays = [p.split.images for p in preps if p.split.images is not None]
    if arrays:
        a = arrays[0]
        if cfg.storage == "jpeg":
            raise CurateError(
                f"{cfg.format} images are arrays; storage = 'jpeg' applies to image files only"
            )
        return ("float32" if a.dtype == np.float32 else "raw-uint8"), tuple(a.shape[1:])
    shapes = {(int(h), int(w)) for p in preps for h, w in zip(p.heights, p.widths, strict=True)}
    channels = 3 if any((p.channels == 3).any() for p in preps) else 1
    equal_small = len(shapes) == 1 and max(next(iter(shapes))) <= cfg.raw_max_side
    if cfg.storage == "raw" and not equal_small:
        raise CurateError(
            f"storage = 'raw' needs images of one size up to raw_max_side = {cfg.raw_max_side} "
            f"pixels; found {len(shapes)} sizes up to {max(max(s) for s in shapes)}. "
            "Use storage = 'jpeg' (or 'auto'), or raise raw_max_side"
        )
    if cfg.storage in ("auto", "raw") and equal_small:
        h, w = next(iter(shapes))
        return "raw-uint8", (h, w, channels)
    return "jpeg", None


def _stack_pixels(p: _Prepared, shape: tuple[int, int, int]) -> np.ndarray:
    out = np.empty((len(p.pixels),) + shape, np.uint8)
    for i, a in enumerate(p.pixels):
        out[i] = a if a.shape[2] == shape[2] else np.repeat(a, shape[2], axis=2)
    return out


def _write_beton(path: Path, source, storage: str, shape, cfg: DatasetConfig, workers: int) -> None:
    from ffcv.fields import IntField, NDArrayField, RGBImageField

    if storage in ("raw-uint8", "float32"):
        dtype = np.dtype("uint8" if storage == "raw-uint8" else "float32")
        image = NDArrayField(dtype=dtype, shape=shape)
        sample = int(np.prod(shape)) * dtype.itemsize + 16  # pixels, label and idx
    else:
        image = RGBImageField(write_mode="jpg", max_resolution=None, jpeg_quality=cfg.jpeg_quality)
        sample = None  # JPEG sizes are known only once encoded: ffcv's default page
    fields = {"image": image, "label": IntField(), "idx": IntField()}
    write_beton(path, fields, source, workers, page_size(sample, len(source), workers))


def channel_stats(images: np.ndarray, chunk: int = 4096) -> tuple[list[float], list[float]]:
    """Per-channel mean and std (population) of (N, H, W, C) images, in their own units, chunked."""
    c = images.shape[-1]
    total, sq, n = np.zeros(c), np.zeros(c), 0
    for i in range(0, len(images), chunk):
        x = images[i : i + chunk].reshape(-1, c).astype(np.float64)
        total += x.sum(0)
        sq += (x * x).sum(0)
        n += len(x)
    mean = total / n
    std = np.sqrt(np.maximum(sq / n - mean**2, 0))
    std[std == 0] = 1.0
    return mean.tolist(), std.tolist()


def content_config(cfg: DatasetConfig) -> dict:
    out = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in _NOT_CONTENT}
    if cfg.labels:
        out["labels"] = label_files.digest(cfg.labels)  # the file's content, not where it lies
    else:
        del out["labels"]  # absent, as in datasets ingested before the key existed
    if not cfg.max_per_split:
        del out["max_per_split"]  # likewise: every instance, as before the key existed
    return out


def _existing(ws: Workspace, name: str) -> dict | None:
    if not ws.catalog.exists():
        return None
    con = catalog.read(ws)
    try:
        if "datasets" not in {r[0] for r in con.execute("SHOW TABLES").fetchall()}:
            return None
        row = con.execute(
            "SELECT checksum, recipe, splits, counts, storage FROM datasets WHERE dataset = ?",
            [name],
        ).fetchone()
    finally:
        con.close()
    if row is None:
        return None
    return {
        "checksum": row[0],
        "recipe": json.loads(row[1]),
        "splits": row[2],
        "counts": row[3],
        "storage": row[4],
    }


def default_name(cfg: DatasetConfig) -> str:
    name = cfg.name
    if not name:
        if cfg.format == "imagefolder" and cfg.source:
            stem = Path(cfg.source).name
            for s in (".tar.gz", ".tgz", ".tar", ".zip"):
                stem = stem.removesuffix(s)
            name = stem
        else:
            name = cfg.format
    if cfg.max_per_split and not cfg.name:
        name = f"{name}-first{cfg.max_per_split}"
    if cfg.random_labels is not None and "random" not in name:
        name = f"{name}-random-labels-{cfg.random_labels}"
    if cfg.labels and not cfg.name:
        path, key = label_files.split_spec(cfg.labels)
        name = f"{name}-labels-{key or path.stem}"
    return name


def ingest(cfg: DatasetConfig, ws: Workspace, force: bool = False) -> IngestResult:
    """Build the .betons and catalog rows of one dataset; a no-op when input and config are unchanged.

    Raises CurateError (exit code 2) on bad input, and when the input or config changed since the last
    ingest and `force` is not set.
    """
    name = check_name(default_name(cfg), "dataset name")  # a folder's own name may be unusable
    cfg = dataclasses.replace(cfg, name=name)
    if cfg.format == "imagenet" and cfg.storage == "auto":
        cfg = dataclasses.replace(cfg, storage="jpeg")  # the papers' setting: JPEG, short side 256
    target = ws.dataset_dir(name)
    with dataset_lock(target):
        remove_atomic_leftovers(target)  # a killed ingest's (we hold its lock)
        return _ingest_locked(cfg, ws, name, target, force)


def _ingest_locked(
    cfg: DatasetConfig, ws: Workspace, name: str, target: Path, force: bool
) -> IngestResult:
    workers = _workers(cfg.workers)
    src: SourceData = read_source(cfg, ws)
    for s in src.splits:  # a split names a folder and files of the prediction log, whatever format
        check_name(s.name, f"{cfg.format} split")
    if cfg.labels and src.multilabel:
        raise CurateError(
            f"--labels replaces class indices; {cfg.format} labels are class sets (bitmasks), "
            "which a label file cannot give yet. Ingest without --labels"
        )
    if cfg.max_per_split:
        src.splits = [first_n(s, cfg.max_per_split) for s in src.splits]
    given = (
        label_files.read_label_file(
            cfg.labels, src.class_names, {s.name: len(s.labels) for s in src.splits}
        )
        if cfg.labels
        else None
    )  # checked before anything is decoded or written
    current = _unchanged(ws, name, cfg, src, target, force)
    if current is not None:
        return current
    preps = [_prepare(s, cfg, workers) for s in src.splits]
    storage, shape = _choose_storage(preps, cfg)
    _assign_labels(preps, cfg, given)
    with atomic_path(target) as tmp:  # moved into place only once the catalog has committed
        tmp.mkdir(parents=True)
        stats = None
        stats_split = (
            "train" if any(p.split.name == "train" for p in preps) else preps[0].split.name
        )
        for p in preps:
            source = _indexable(p, storage, shape, cfg)
            if p.split.name == stats_split:
                stats = _normalisation(source, storage)
            print(f"writing {name}/{p.split.name}.beton ({len(p.split.labels)} images, {storage})")
            _write_beton(tmp / f"{p.split.name}.beton", source, storage, shape, cfg, workers)
        _write_dataset_json(tmp, name, cfg, src, preps, storage, shape, stats)
        skipped = [(name, p.split.name, f, why) for p in preps for f, why in p.split.skipped]
        _record(ws, name, cfg, src, preps, storage, shape, skipped)
    if skipped:
        print(f"skipped {len(skipped)} unreadable files (listed in the `skipped` table)")
    counts = {p.split.name: len(p.split.labels) for p in preps}
    return IngestResult(name, "written", counts, storage, target)


def _unchanged(
    ws: Workspace, name: str, cfg: DatasetConfig, src: SourceData, target: Path, force: bool
) -> IngestResult | None:
    """The existing dataset when input and settings are unchanged; an error when they changed."""
    old = _existing(ws, name)
    if old is None or force:
        return None
    same_input = old["checksum"] == src.checksum
    same_cfg = old["recipe"] == json.loads(json.dumps(content_config(cfg)))
    if same_input and same_cfg:
        if _files_match(ws, name, old, target):
            counts = dict(zip(old["splits"], old["counts"], strict=True))
            return IngestResult(name, "up to date", counts, old["storage"], target)
        # this very ingest was killed between its catalog's commit and its files' rename (the
        # files are missing, or an earlier ingest's): it is done again, as if never begun
        print(f"{name}: its files do not match the catalog (an ingest killed midway?); rebuilding")
        return None
    what = (
        "input changed (checksum differs)" if not same_input else "the [dataset] settings changed"
    )
    raise CurateError(
        f"dataset {name!r} is already in {ws.catalog} but {what}; rerun with --force to "
        f"rebuild it (this replaces {target}), or ingest under another --name"
    )


def first_n(s: Split, n: int) -> Split:
    """The first `n` instances of split `s` (all when it has fewer), every per-image field cut alike.

    Parameters
    ----------
    s : a split as a source reads it.
    n : how many instances to keep, >= 1.

    Returns
    -------
    A new Split; `s` is unchanged.
    """
    cut = {
        f.name: getattr(s, f.name)[:n]
        for f in dataclasses.fields(s)
        if f.name in ("labels", "idx", "images", "files", "file_ids", "refs", "source_index")
        and getattr(s, f.name) is not None
    }
    attrs = {k: v[:n] for k, v in s.attributes.items()}
    return dataclasses.replace(s, **cut, attributes=attrs, skipped=list(s.skipped))


def _prepare(s: Split, cfg: DatasetConfig, workers: int) -> _Prepared:
    if s.files is not None:
        return _prepare_files(s, cfg, workers)
    n, h, w, c = s.images.shape
    return _Prepared(s, np.full(n, h), np.full(n, w), np.full(n, c), None)


def _assign_labels(
    preps: list[_Prepared], cfg: DatasetConfig, given: label_files.LabelFile | None
) -> None:
    """Keep the source's labels as true labels; permute them under random labels, or replace them
    from a label file."""
    for k, p in enumerate(preps):
        p.split.true_labels = p.split.labels.copy()  # type: ignore[attr-defined]
        if cfg.random_labels is not None:
            p.split.labels = _permute_labels(p.split.labels, cfg.random_labels, k)
        if given is not None and p.split.name in given.by_split:
            s = p.split
            s.labels = label_files.apply(
                given.by_split[s.name], s.idx, s.labels, s.name, given.path
            )
            changed = int((s.labels != s.true_labels).sum())  # type: ignore[attr-defined]
            print(
                f"{s.name}: labels from {given.path}; {changed} of {len(s.labels)} "
                f"({changed / max(len(s.labels), 1):.1%}) differ from the source's"
            )


def _indexable(p: _Prepared, storage: str, shape, cfg: DatasetConfig):
    s = p.split
    if s.images is not None:
        return _ArraySource(s.images, s.labels, s.idx)
    if storage == "raw-uint8":
        return _ArraySource(_stack_pixels(p, shape), s.labels, s.idx)
    return _FileSource(s.files, s.labels, s.idx, cfg)


def _normalisation(source, storage: str) -> tuple[list[float], list[float]]:
    """Per-channel mean and std for the loaders: the split's own, or ImageNet's for JPEG."""
    from curate.data.loader import IMAGENET_MEAN, IMAGENET_STD  # torch: ingest of images only

    return channel_stats(source.images) if storage != "jpeg" else (IMAGENET_MEAN, IMAGENET_STD)


def _files_match(ws: Workspace, name: str, old: dict, target: Path) -> bool:
    """The dataset's files are the ones its catalog rows describe: every split's .beton, and a
    dataset.json with the same input checksum and settings (one written before it kept them:
    taken on trust)."""
    if not all(ws.beton(name, s).exists() for s in old["splits"]):
        return False
    try:
        meta = json.loads((target / "dataset.json").read_text())
    except (OSError, ValueError):
        return False
    return (
        meta.get("checksum", old["checksum"]) == old["checksum"]
        and meta.get("recipe", old["recipe"]) == old["recipe"]
    )


def _write_dataset_json(tmp: Path, name, cfg, src, preps, storage, shape, stats) -> None:
    meta = {
        "checksum": src.checksum,  # what the catalog's row says too: the files are that ingest's
        "recipe": json.loads(json.dumps(content_config(cfg))),
        "dataset": name,
        "format": cfg.format,
        "storage": storage,
        "shape": shape,
        "class_names": src.class_names,
        "multilabel": src.multilabel,  # labels are class-set bitmasks (curate.data.formats.voc)
        "splits": {p.split.name: len(p.split.labels) for p in preps},
        "mean": list(stats[0]),
        "std": list(stats[1]),
    }
    (tmp / "dataset.json").write_text(json.dumps(meta, indent=1))


def class_name_of(labels: np.ndarray, class_names: list[str], multilabel: bool) -> np.ndarray:
    """The name of each label: its class, or for a multilabel bitmask the '+'-joined names of its
    classes in class order ('' for the empty set)."""
    if not multilabel:
        return np.array(class_names, dtype=object)[labels]
    from curate.data.formats.voc import label_names

    return np.array([label_names(v, class_names) for v in labels], dtype=object)


def _instance_rows(
    name: str, p: _Prepared, class_names: list[str], multilabel: bool = False
) -> pd.DataFrame:
    s = p.split
    return pd.DataFrame(
        {
            "dataset": name,
            "split": s.name,
            "idx": s.idx.astype(np.int32),
            "label": s.labels.astype(np.int32),
            "true_label": s.true_labels.astype(np.int32),
            "class_name": class_name_of(s.labels, class_names, multilabel),
            "source": s.refs,
            "source_index": s.source_index if s.source_index is not None else None,
            "height": p.heights.astype(np.int32),
            "width": p.widths.astype(np.int32),
            "channels": p.channels.astype(np.int32),
        }
    )


def attribute_rows(name: str, split: Split) -> pd.DataFrame:
    """`image_attributes` rows of one split: one row per instance and attribute, numeric
    attributes in `value`, categorical ones in `category`."""
    frames = []
    for attr, values in split.attributes.items():
        values = np.asarray(values)
        numeric = values.dtype.kind in "biuf"
        frames.append(
            pd.DataFrame(
                {
                    "dataset": name,
                    "split": split.name,
                    "idx": np.asarray(split.idx, dtype=np.int32),
                    "attribute": attr,
                    "value": values.astype(np.float64) if numeric else np.nan,
                    "category": None if numeric else values.astype(str).astype(object),
                }
            )
        )
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _record(ws, name, cfg, src, preps, storage, shape, skipped) -> None:
    """Replace the dataset's rows of `instances`, `skipped`, `image_attributes` and `datasets`, in
    one transaction."""
    instances = pd.concat(
        [_instance_rows(name, p, src.class_names, src.multilabel) for p in preps],
        ignore_index=True,
    )
    attributes = pd.concat([attribute_rows(name, p.split) for p in preps], ignore_index=True)
    instances["source_index"] = instances["source_index"].astype("Int64")
    skipped_df = pd.DataFrame(skipped, columns=["dataset", "split", "source", "reason"])
    info = catalog.version_info()
    with catalog.write(ws) as con:
        for table in ("instances", "skipped", "image_attributes", "datasets"):
            con.execute(f"DELETE FROM {table} WHERE dataset = ?", [name])
        catalog.insert_frame(con, "instances", instances)
        if len(attributes):
            catalog.insert_frame(con, "image_attributes", attributes)
        if len(skipped_df):
            catalog.insert_frame(con, "skipped", skipped_df)
        row = {
            "dataset": name,
            "format": cfg.format,
            "source": src.source,
            "num_classes": len(src.class_names),
            "class_names": list(src.class_names),
            "splits": [p.split.name for p in preps],
            "counts": [len(p.split.labels) for p in preps],
            "storage": storage,
            "image_shape": list(shape) if shape else None,
            "checksum": src.checksum,
            "random_labels_seed": cfg.random_labels,
            "recipe": json.dumps(content_config(cfg)),
            "version": info["version"],
            "git_rev": info["git_rev"],
            "labels_file": str(Path(cfg.labels).absolute()) if cfg.labels else None,
            "multilabel": src.multilabel,
        }
        # Arrow, not pandas: None stays NULL, as when the values were bound
        catalog.insert_frame(con, "datasets", pa.Table.from_pylist([row]), now=("created_at",))
