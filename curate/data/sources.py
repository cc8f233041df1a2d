"""Readers for every source format. Each returns a `SourceData`: per split, labels and either the
images as an in-memory array or a list of encoded image files, plus a checksum of the inputs.

Formats: digits, mnist, fashion-mnist, cifar10, cifar100, imagefolder, imagenet, voc (multilabel,
in curate/data/voc.py), and the synthetic controls gaussian-sigma, gabor, gaussian-2class
(SCIENCE.md, Synthetic controls).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import pickle
import tarfile
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from curate.config import DatasetConfig
from curate.data.voc import read_voc
from curate.errors import CurateError
from curate.workspace import Workspace, atomic_path

IMAGE_EXTENSIONS = {
    ".jpg",
    ".jpeg",
    ".png",
    ".bmp",
    ".gif",
    ".webp",
    ".tif",
    ".tiff",
    ".ppm",
    ".pgm",
    ".pbm",
}
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip", ".tar.bz2", ".tar.xz")


@dataclass
class Split:
    """One split of a source. Exactly one of `images` and `files` is set.

    images : (N, H, W, C) uint8 or float32, rows in `idx` order
    files  : N encoded image files; `idx` may be None, to be assigned after unreadable files are
             dropped (positions), unless `file_ids` holds the ids the file names carry
    attributes : name -> (N,) array, float (numeric) or str (categorical), same order as the images
    """

    name: str
    labels: np.ndarray
    idx: np.ndarray | None = None
    images: np.ndarray | None = None
    files: list[str] | None = None
    file_ids: np.ndarray | None = None
    refs: list[str] | None = None
    source_index: np.ndarray | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)
    # per-image attributes (name -> length-N array aligned with `images`/`files`): float arrays are
    # numeric (object count, area ratio), object/str arrays categorical (illumination, pose);
    # stored long in `image_attributes`
    attributes: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class SourceData:
    format: str
    source: str
    class_names: list[str]
    splits: list[Split]
    checksum: str
    # labels are bitmasks of class sets (bit k = class k; curate.data.voc), not class indices
    multilabel: bool = False


# ----------------------------------------------------------------------------- checksums


def _hash_file(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def checksum_files(paths: list[Path], root: Path | None = None) -> str:
    """BLAKE2b over (relative name, content hash) of every file, in the given order; threads for I/O."""
    with ThreadPoolExecutor(8) as pool:
        digests = list(pool.map(_hash_file, paths, chunksize=256))
    h = hashlib.blake2b(digest_size=16)
    for p, d in zip(paths, digests, strict=True):
        name = str(p.relative_to(root)) if root else p.name
        h.update(name.encode() + b"\0" + d.encode() + b"\n")
    return h.hexdigest()


def checksum_arrays(*arrays: np.ndarray) -> str:
    h = hashlib.blake2b(digest_size=16)
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(a.tobytes())
    return h.hexdigest()


# ----------------------------------------------------------------------------- helpers


def require_path(source: str, fmt: str, what: str) -> Path:
    if not source:
        raise CurateError(
            f"{fmt} needs --source PATH (in a recipe or `curate run`: --set dataset.source=PATH) "
            f"pointing at {what}"
        )
    p = Path(source).expanduser()
    if not p.exists():
        raise CurateError(f"source path {p} does not exist; pass --source pointing at {what}")
    return p


def unpack_archive(path: Path, ws: Workspace) -> Path:
    """Unpack a .tar.gz/.zip source once into <workspace>/sources/; re-unpack when the archive changed.

    Returns the single top-level folder of the archive, or the unpack folder when there are several.
    """
    name = path.name
    for s in ARCHIVE_SUFFIXES:
        if name.endswith(s):
            name = name[: -len(s)]
    dest = ws.sources_dir() / name
    marker = dest / ".curate-archive"
    digest = _hash_file(path)
    if not (marker.exists() and marker.read_text() == digest):
        print(f"unpacking {path} into {dest}")
        with atomic_path(dest) as tmp:
            tmp.mkdir()
            try:
                if path.name.endswith(".zip"):
                    with zipfile.ZipFile(path) as z:
                        z.extractall(tmp)
                else:
                    with tarfile.open(path) as t:
                        t.extractall(tmp, filter="data")
            except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as e:
                raise CurateError(f"cannot unpack {path} ({e}); is the archive complete?") from None
            (tmp / ".curate-archive").write_text(digest)
    entries = [p for p in dest.iterdir() if not p.name.startswith(".")]
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else dest


def resolve_source(source: str, fmt: str, what: str, ws: Workspace) -> Path:
    p = require_path(source, fmt, what)
    if p.is_file() and p.name.endswith(ARCHIVE_SUFFIXES):
        return unpack_archive(p, ws)
    return p


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of test rows: `test_fraction` of each class, chosen by a seeded generator."""
    rng = np.random.default_rng(seed)
    test = np.zeros(len(labels), bool)
    for k in np.unique(labels):
        rows = np.flatnonzero(labels == k)
        n = int(round(test_fraction * len(rows)))
        test[rng.choice(rows, n, replace=False)] = True
    return test


def array_split(
    name: str, images: np.ndarray, labels: np.ndarray, ref: str, rows: np.ndarray | None = None
) -> Split:
    n = len(labels)
    rows = np.arange(n) if rows is None else rows
    if len(images) != n:
        raise CurateError(
            f"{ref}: {len(images)} images but {n} labels; the files do not belong together"
        )
    return Split(
        name=name,
        labels=labels.astype(np.int64),
        idx=np.arange(n),
        images=images,
        refs=[f"{ref}#{r}" for r in rows],
        source_index=rows.astype(np.int64),
    )


# ----------------------------------------------------------------------------- digits


def read_digits(cfg: DatasetConfig, ws: Workspace) -> SourceData:
    """scikit-learn's 8x8 digits; 0..16 mapped losslessly to uint8 by round(v * 255 / 16)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.rint(d.images * (255 / 16)).astype(np.uint8)[..., None]  # (1797, 8, 8, 1)
    labels = d.target.astype(np.int64)
    test = stratified_split(labels, cfg.test_fraction, cfg.split_seed)
    splits = []
    for name, mask in (("train", ~test), ("test", test)):
        rows = np.flatnonzero(mask)
        splits.append(array_split(name, images[rows], labels[rows], "sklearn:digits", rows))
    return SourceData(
        "digits",
        "sklearn.datasets.load_digits",
        [str(k) for k in range(10)],
        splits,
        checksum_arrays(images, labels, test),
    )


# ----------------------------------------------------------------------------- MNIST (IDX)

MNIST_CLASSES = [str(k) for k in range(10)]
FASHION_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path: Path) -> np.ndarray:
    """Parse one IDX file (gzipped or not): magic 0x0000 0x08 ndim, big-endian int32 dims, uint8 data."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise CurateError(
            f"cannot read {path} ({e}); is the file complete? Re-download it"
        ) from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise CurateError(
            f"{path} is not an IDX file of unsigned bytes (bad magic number); "
            "use the official MNIST files"
        )
    ndim = raw[3]
    if ndim == 0 or len(raw) < 4 + 4 * ndim:
        raise CurateError(
            f"{path} is truncated or corrupt: its header announces {ndim} dimensions but the file "
            f"holds {len(raw)} bytes; re-download it"
        )
    dims = np.frombuffer(raw, ">i4", count=ndim, offset=4)
    expected = int(np.prod(dims))
    data = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim)
    if data.size != expected:
        raise CurateError(
            f"{path} is truncated: header says {tuple(dims)} = {expected} bytes, file holds "
            f"{data.size}; re-download it"
        )
    return data.reshape(tuple(int(d) for d in dims))


def _find_idx(root: Path, stem: str, fmt: str) -> Path:
    for folder in (root, root / "raw", root / "MNIST" / "raw", root / "FashionMNIST" / "raw"):
        for name in (stem, stem + ".gz"):
            if (folder / name).is_file():
                return folder / name
    raise CurateError(
        f"{fmt}: no {stem}[.gz] under {root} (looked in ., raw/, MNIST/raw/, FashionMNIST/raw/); "
        "pass --source pointing at the folder holding the official IDX files"
    )


def _read_idx_dataset(
    cfg: DatasetConfig, ws: Workspace, fmt: str, classes: list[str]
) -> SourceData:
    if cfg.download and not cfg.source:
        import torchvision

        root = ws.sources_dir() / fmt
        cls = torchvision.datasets.MNIST if fmt == "mnist" else torchvision.datasets.FashionMNIST
        for train in (True, False):
            cls(str(root), train=train, download=True)
        cfg_root = root
    else:
        cfg_root = require_path(cfg.source, fmt, "the folder with the IDX files")
    splits, inputs = [], []
    for name, (img_stem, lab_stem) in IDX_FILES.items():
        img_path, lab_path = _find_idx(cfg_root, img_stem, fmt), _find_idx(cfg_root, lab_stem, fmt)
        images, labels = read_idx(img_path), read_idx(lab_path)
        if images.ndim != 3 or labels.ndim != 1:
            raise CurateError(
                f"{img_path} / {lab_path}: expected images (N, H, W) and labels (N,), got "
                f"{images.shape} and {labels.shape}; the images and labels files are swapped?"
            )
        if len(images) != len(labels):
            raise CurateError(
                f"{img_path} holds {len(images)} images but {lab_path} holds {len(labels)} labels; "
                "use matching files"
            )
        if labels.max(initial=0) >= len(classes):
            raise CurateError(
                f"{lab_path} has label {labels.max()} >= {len(classes)} classes; not {fmt}"
            )
        splits.append(array_split(name, images[..., None], labels, str(img_path)))
        inputs += [img_path, lab_path]
    return SourceData(fmt, str(cfg_root), classes, splits, checksum_files(inputs))


def read_mnist(cfg: DatasetConfig, ws: Workspace) -> SourceData:
    return _read_idx_dataset(cfg, ws, "mnist", MNIST_CLASSES)


def read_fashion_mnist(cfg: DatasetConfig, ws: Workspace) -> SourceData:
    return _read_idx_dataset(cfg, ws, "fashion-mnist", FASHION_CLASSES)


# ----------------------------------------------------------------------------- CIFAR (pickles)

_PICKLE_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("copy_reg", "_reconstructor"),
    ("copyreg", "_reconstructor"),
    ("__builtin__", "object"),
    ("builtins", "object"),
    ("_codecs", "encode"),
}


class _SafeUnpickler(pickle.Unpickler):
    """Unpickles only plain containers and numpy arrays: a CIFAR batch cannot run code."""

    def find_class(self, module: str, name: str):
        if (module, name) in _PICKLE_ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def load_pickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            obj = _SafeUnpickler(f, encoding="bytes").load()
    except Exception as e:  # noqa: BLE001 - any failure means "not a CIFAR pickle"
        raise CurateError(
            f"{path} is not a CIFAR python batch ({type(e).__name__}: {e}); "
            "use the official 'python version' files (cifar-10-batches-py/)"
        ) from None
    if not isinstance(obj, dict):
        raise CurateError(
            f"{path} is not a CIFAR python batch (holds {type(obj).__name__}, not a dict)"
        )
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _cifar_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    d = load_pickle(path)
    missing = [k for k in ("data", label_key) if k not in d]
    if missing:
        raise CurateError(
            f"{path} is not a CIFAR python batch: no key {missing[0]!r} (keys: "
            f"{', '.join(map(str, d))}); use the official 'python version' files"
        )
    data, labels = np.asarray(d["data"]), np.asarray(d[label_key], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3072 or data.dtype != np.uint8:
        raise CurateError(
            f"{path}: 'data' is {data.dtype} {data.shape}, CIFAR's is uint8 (N, 3072)"
        )
    if len(data) != len(labels):
        raise CurateError(
            f"{path}: {len(data)} images but {len(labels)} labels; the file is damaged"
        )
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def _read_cifar(cfg: DatasetConfig, ws: Workspace, fmt: str) -> SourceData:
    c10 = fmt == "cifar10"
    folder = "cifar-10-batches-py" if c10 else "cifar-100-python"
    if cfg.download and not cfg.source:
        import torchvision

        root = ws.sources_dir() / fmt
        (torchvision.datasets.CIFAR10 if c10 else torchvision.datasets.CIFAR100)(
            str(root), download=True
        )
        base = root / folder
    else:
        base = resolve_source(cfg.source, fmt, f"the {folder}/ folder (or its .tar.gz)", ws)
        if (base / folder).is_dir():
            base = base / folder
    files = (
        {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
        if c10
        else {"train": ["train"], "test": ["test"]}
    )
    meta_name, names_key = ("batches.meta", "label_names") if c10 else ("meta", "fine_label_names")
    label_key = "labels" if c10 else "fine_labels"
    inputs = []
    for name in [meta_name] + sum(files.values(), []):
        if not (base / name).is_file():
            raise CurateError(
                f"{fmt}: {base / name} is missing; pass --source pointing at {folder}/ "
                f"(or use --download)"
            )
        inputs.append(base / name)
    meta = load_pickle(base / meta_name)
    if names_key not in meta:
        raise CurateError(f"{base / meta_name} has no {names_key!r}; it is not {fmt}'s meta file")
    classes = [n.decode() if isinstance(n, bytes) else str(n) for n in meta[names_key]]
    splits = []
    for split, names in files.items():
        parts = [_cifar_batch(base / n, label_key) for n in names]
        images = np.concatenate([p[0] for p in parts])
        labels = np.concatenate([p[1] for p in parts])
        if labels.max(initial=0) >= len(classes):
            raise CurateError(
                f"{fmt} {split}: label {labels.max()} >= {len(classes)} classes; wrong meta file?"
            )
        s = array_split(split, np.ascontiguousarray(images), labels, str(base / names[0]))
        if len(names) > 1:  # refs name the batch file each row came from
            s.refs = [
                f"{base / n}#{r}"
                for n, p in zip(names, parts, strict=True)
                for r in range(len(p[1]))
            ]
        splits.append(s)
    return SourceData(fmt, str(base), classes, splits, checksum_files(inputs, base))


def read_cifar10(cfg: DatasetConfig, ws: Workspace) -> SourceData:
    return _read_cifar(cfg, ws, "cifar10")


def read_cifar100(cfg: DatasetConfig, ws: Workspace) -> SourceData:
    return _read_cifar(cfg, ws, "cifar100")


# ----------------------------------------------------------------------------- image folders


def _visible(p: Path) -> bool:
    return not p.name.startswith(".")


def _list_class_folder(
    folder: Path, label: int, skip_corrupt: bool, skipped: list
) -> list[tuple[str, int]]:
    out = []
    for f in sorted(filter(_visible, folder.iterdir())):
        if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS:
            out.append((str(f), label))
        elif skip_corrupt:
            skipped.append(
                (
                    str(f),
                    "not an image file (extension)"
                    if f.is_file()
                    else "a folder inside a class folder",
                )
            )
        else:
            what = "is not an image file" if f.is_file() else "is a folder inside a class folder"
            raise CurateError(
                f"{f} {what} (image extensions: {', '.join(sorted(IMAGE_EXTENSIONS))}); "
                "remove it, or pass --skip-corrupt to skip it"
            )
    if not out:
        raise CurateError(
            f"class folder {folder} holds no images; remove the folder or add its images"
        )
    return out


def _file_split(
    name: str, entries: list[tuple[str, int]], skipped: list, integer_ids: bool
) -> Split:
    files = [e[0] for e in entries]
    labels = np.array([e[1] for e in entries], np.int64)
    ids = None
    if integer_ids:
        stems = [Path(f).stem for f in files]
        if all(s.isdigit() for s in stems) and len(set(map(int, stems))) == len(stems):
            ids = np.array([int(s) for s in stems], np.int64)
            order = np.argsort(ids, kind="stable")
            files, labels, ids = [files[i] for i in order], labels[order], ids[order]
    return Split(
        name=name, labels=labels, files=files, file_ids=ids, refs=list(files), skipped=skipped
    )


def read_imagefolder(cfg: DatasetConfig, ws: Workspace) -> SourceData:
    """`<root>/<split>/<class>/<image>`; integer file names become idx (the standard order)."""
    root = resolve_source(
        cfg.source, "imagefolder", "a <split>/<class>/<image> folder (or its .tar.gz)", ws
    )
    if not root.is_dir():
        raise CurateError(f"{root} is not a folder; imagefolder needs <split>/<class>/<image>")
    split_dirs = sorted(p for p in root.iterdir() if p.is_dir() and _visible(p))
    if not split_dirs:
        raise CurateError(
            f"{root} has no split folders; imagefolder needs <split>/<class>/<image>, e.g. train/cat/1.png"
        )
    classes = sorted(
        {c.name for s in split_dirs for c in s.iterdir() if c.is_dir() and _visible(c)}
    )
    if not classes:
        raise CurateError(
            f"{split_dirs[0]} has no class folders; imagefolder needs <split>/<class>/<image>"
        )
    label_of = {c: k for k, c in enumerate(classes)}
    splits = []
    for sd in split_dirs:
        skipped: list = []
        entries = []
        for c in sorted(filter(_visible, sd.iterdir())):
            if not c.is_dir():
                if cfg.skip_corrupt:
                    skipped.append((str(c), "a file where class folders belong"))
                    continue
                raise CurateError(
                    f"{c} is a file where class folders belong (<split>/<class>/<image>); "
                    "move or remove it, or pass --skip-corrupt"
                )
            entries += _list_class_folder(c, label_of[c.name], cfg.skip_corrupt, skipped)
        splits.append(_file_split(sd.name, entries, skipped, integer_ids=True))
    files = sorted(Path(f) for s in splits for f in s.files)
    return SourceData("imagefolder", str(root), classes, splits, checksum_files(files, root))


def read_imagenet(cfg: DatasetConfig, ws: Workspace) -> SourceData:
    """ILSVRC-2012 layout: train/<wnid>/*.JPEG; val/<wnid>/*.JPEG or flat val/ + LOC_val_solution.csv.

    Labels follow LOC_synset_mapping.txt's order (the standard class indices); idx is the position
    in torchvision's ImageFolder order (by wnid, then file name).
    """
    root = resolve_source(
        cfg.source, "imagenet", "the ILSVRC-2012 folder holding train/ and val/", ws
    )
    if (root / "ILSVRC" / "Data" / "CLS-LOC").is_dir():  # the Kaggle layout
        data_root = root / "ILSVRC" / "Data" / "CLS-LOC"
    else:
        data_root = root
    if not (data_root / "train").is_dir():
        raise CurateError(f"{data_root} has no train/ folder; imagenet needs train/<wnid>/*.JPEG")
    mapping = next(
        (
            p
            for p in (root / "LOC_synset_mapping.txt", data_root / "LOC_synset_mapping.txt")
            if p.is_file()
        ),
        None,
    )
    if mapping is not None:
        lines = [ln.strip() for ln in mapping.read_text().splitlines() if ln.strip()]
        wnids = [ln.split(maxsplit=1)[0] for ln in lines]
        names = [ln.split(maxsplit=1)[1].split(",")[0].strip() if " " in ln else ln for ln in lines]
    else:
        wnids = sorted(
            p.name for p in (data_root / "train").iterdir() if p.is_dir() and _visible(p)
        )
        names = list(wnids)
    label_of = {w: k for k, w in enumerate(wnids)}
    splits = []
    for split in ("train", "val"):
        sd = data_root / split
        if not sd.is_dir():
            continue
        skipped: list = []
        entries = []
        sub = sorted(p for p in sd.iterdir() if _visible(p))
        if any(p.is_dir() for p in sub):
            for c in sub:
                if not c.is_dir():
                    continue
                if c.name not in label_of:
                    raise CurateError(
                        f"{c}: wnid {c.name} is not in {mapping or 'train/'}; wrong folder?"
                    )
                entries += _list_class_folder(c, label_of[c.name], cfg.skip_corrupt, skipped)
        else:
            sol = next(
                (
                    p
                    for p in (
                        root / "LOC_val_solution.csv",
                        data_root / "LOC_val_solution.csv",
                        sd / "LOC_val_solution.csv",
                    )
                    if p.is_file()
                ),
                None,
            )
            if sol is None:
                raise CurateError(
                    f"{sd} is flat but LOC_val_solution.csv is missing; put it beside train/ "
                    "or sort val/ into <wnid>/ folders"
                )
            with open(sol) as f:
                truth = {
                    row["ImageId"]: row["PredictionString"].split()[0] for row in csv.DictReader(f)
                }
            for p in sub:
                if p.suffix.lower() not in IMAGE_EXTENSIONS:
                    continue
                if p.stem not in truth:
                    raise CurateError(
                        f"{p} has no row in {sol}; the solution file does not match val/"
                    )
                entries.append((str(p), label_of[truth[p.stem]]))
            entries.sort(key=lambda e: (wnids[e[1]], Path(e[0]).name))
        if not entries:
            raise CurateError(f"{sd} holds no images")
        splits.append(_file_split(split, entries, skipped, integer_ids=False))
    files = sorted(Path(f) for s in splits for f in s.files)
    inputs = files + ([mapping] if mapping else [])
    return SourceData("imagenet", str(root), names, splits, checksum_files(inputs, root))


# ----------------------------------------------------------------------------- synthetic controls


def _sizes(cfg: DatasetConfig, classes: int, train: int, test: int) -> tuple[int, int, int]:
    return cfg.num_classes or classes, cfg.train_per_class or train, cfg.test_per_class or test


def _synthetic(fmt: str, cfg: DatasetConfig, classes: list[str], make: Callable) -> SourceData:
    """`make(rng, label_array) -> images`, called per split with its own seeded generator."""
    splits = []
    per = {"train": cfg.train_per_class, "test": cfg.test_per_class}
    for s, (name, n) in enumerate(per.items()):
        rng = np.random.default_rng([cfg.seed, s])
        labels = np.repeat(np.arange(len(classes)), n)
        images = make(rng, labels)
        splits.append(array_split(name, images, labels, f"synthetic:{fmt}"))
    return SourceData(
        fmt,
        "synthetic",
        classes,
        splits,
        checksum_arrays(*[x for sp in splits for x in (sp.images, sp.labels)]),
    )


def read_gaussian_sigma(cfg: DatasetConfig, ws: Workspace) -> SourceData:
    """Class i = 1..C: every pixel and channel N(128, sigma = i), clipped and rounded to uint8 (Meding B.7)."""
    c, tr, te = _sizes(cfg, 100, 500, 50)
    cfg = _with(cfg, num_classes=c, train_per_class=tr, test_per_class=te)
    size = cfg.image_size

    def make(rng, labels):
        sigma = (labels + 1).astype(np.float32)[:, None, None, None]
        x = rng.standard_normal((len(labels), size, size, 3), dtype=np.float32) * sigma + 128
        return np.clip(np.rint(x), 0, 255).astype(np.uint8)

    return _synthetic("gaussian-sigma", cfg, [f"sigma={i}" for i in range(1, c + 1)], make)


def gabor_patch(
    size: int,
    channel: int,
    theta_deg: float,
    sigma: float,
    wavelength: float,
    cx: float,
    cy: float,
    phase: float,
) -> np.ndarray:
    """One (size, size, 3) uint8 image: grey 128, a Gabor patch modulating one channel."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    t = np.deg2rad(theta_deg)
    xr = (x - cx) * np.cos(t) + (y - cy) * np.sin(t)
    yr = -(x - cx) * np.sin(t) + (y - cy) * np.cos(t)
    g = np.exp(-(xr**2 + yr**2) / (2 * sigma**2)) * np.cos(2 * np.pi * xr / wavelength + phase)
    img = np.full((size, size, 3), 128.0)
    img[..., channel] += 127 * g
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


GABOR_ORIENTATIONS = (45, 90, 135, 180)


def read_gabor(cfg: DatasetConfig, ws: Workspace) -> SourceData:
    """12 classes = 3 colour channels x base orientations 45/90/135/180; each image's orientation is
    base + U(-30, 30) degrees, so neighbouring classes overlap; size and position vary (Hacohen C)."""
    _, tr, te = _sizes(cfg, 12, 100, 20)
    cfg = _with(cfg, train_per_class=tr, test_per_class=te)
    size = cfg.image_size
    names = [f"{ch}-{o}deg" for ch in ("red", "green", "blue") for o in GABOR_ORIENTATIONS]

    def make(rng, labels):
        out = np.empty((len(labels), size, size, 3), np.uint8)
        for i, k in enumerate(labels):
            ch, o = divmod(int(k), len(GABOR_ORIENTATIONS))
            out[i] = gabor_patch(
                size,
                ch,
                GABOR_ORIENTATIONS[o] + rng.uniform(-30, 30),
                sigma=rng.uniform(2, size / 5),
                wavelength=rng.uniform(4, 8),
                cx=rng.uniform(size / 4, 3 * size / 4),
                cy=rng.uniform(size / 4, 3 * size / 4),
                phase=rng.uniform(0, 2 * np.pi),
            )
        return out

    return _synthetic("gabor", cfg, names, make)


def read_gaussian_2class(cfg: DatasetConfig, ws: Workspace) -> SourceData:
    """Class 0 ~ N(0, I), class 1 ~ N(0.1, I) in 3072 dimensions, shaped 32x32x3, float32 (Hacohen C)."""
    _, tr, te = _sizes(cfg, 2, 2500, 500)
    cfg = _with(cfg, train_per_class=tr, test_per_class=te)
    size = cfg.image_size

    def make(rng, labels):
        x = rng.standard_normal((len(labels), size, size, 3), dtype=np.float32)
        return x + np.float32(0.1) * labels.astype(np.float32)[:, None, None, None]

    return _synthetic("gaussian-2class", cfg, ["mean=0", "mean=0.1"], make)


def read_kth_tips2b(cfg: DatasetConfig, ws: Workspace) -> SourceData:
    """KTH-TIPS2-b with its scale, pose and illumination attributes (`curate.data.kth`)."""
    from curate.data.kth import read_kth_tips2b as read  # kth imports this module

    return read(cfg, ws)


def _with(cfg: DatasetConfig, **kw) -> DatasetConfig:
    import dataclasses

    return dataclasses.replace(cfg, **kw)


FORMATS: dict[str, Callable[[DatasetConfig, Workspace], SourceData]] = {
    "digits": read_digits,
    "mnist": read_mnist,
    "fashion-mnist": read_fashion_mnist,
    "cifar10": read_cifar10,
    "cifar100": read_cifar100,
    "imagefolder": read_imagefolder,
    "imagenet": read_imagenet,
    "kth-tips2b": read_kth_tips2b,
    "gaussian-sigma": read_gaussian_sigma,
    "gabor": read_gabor,
    "gaussian-2class": read_gaussian_2class,
    "voc": read_voc,  # Pascal VOC, multilabel (curate/data/voc.py)
}


def read_source(cfg: DatasetConfig, ws: Workspace) -> SourceData:
    if cfg.format not in FORMATS:
        raise CurateError(f"unknown dataset format {cfg.format!r}; known: {', '.join(FORMATS)}")
    return FORMATS[cfg.format](cfg, ws)


def decode_image(path: str) -> np.ndarray:
    """Decode a file to (H, W, C) uint8 with C in {1, 3}: grey stays grey, palette/RGBA/CMYK become RGB
    (alpha dropped), 16-bit scaled to 8-bit. Raises ValueError with the reason when unreadable."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                a = np.asarray(im, dtype=np.float64)
                a = np.clip(a / max(a.max(), 1) * 255, 0, 255).astype(np.uint8)[..., None]
            elif im.mode in ("L", "1"):
                a = np.asarray(im.convert("L"), dtype=np.uint8)[..., None]
            else:
                a = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except UnidentifiedImageError:
        raise ValueError("not a readable image (unknown format)") from None
    except Image.DecompressionBombError as e:  # its header claims more pixels than memory holds
        raise ValueError(f"too large to decode ({e})") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ValueError(f"corrupt or truncated image ({e})") from None
    if a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError("empty image")
    return a
