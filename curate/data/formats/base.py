"""What every source format shares: the `Split` and `SourceData` a reader returns, the checksums of
its inputs, finding and unpacking `--source`, the seeded train/test split of array sources, listing
class folders of image files, and `decode_image`, the one decoder of encoded image files.

The readers themselves live one per module beside this one (`curate.data.formats.digits`, ...); the
registry of format names is `curate.data.formats.FORMATS`. This module imports none of them.
"""

from __future__ import annotations

import hashlib
import tarfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from curate.errors import CurateError
from curate.locks import exclusive
from curate.workspace import Workspace, atomic_path, remove_atomic_leftovers

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
    # labels are bitmasks of class sets (bit k = class k; curate.data.formats.voc), not class indices
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
    """BLAKE2b over the dtype, shape and bytes of each array, in the given order."""
    h = hashlib.blake2b(digest_size=16)
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(a.tobytes())
    return h.hexdigest()


# ----------------------------------------------------------------------------- helpers


def require_path(source: str, fmt: str, what: str) -> Path:
    """`source` as an existing path; a CurateError saying what `fmt` needs when absent or missing."""
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
    with exclusive(
        dest.parent / f".{name}.lock",
        f"source {name!r}",
        "another `curate ingest` is unpacking it: wait for it to finish",
    ):
        remove_atomic_leftovers(dest)  # an unpack that was killed
        if not (marker.exists() and marker.read_text() == digest):
            _unpack(path, dest, digest)
    entries = [p for p in dest.iterdir() if not p.name.startswith(".")]
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else dest


def _unpack(path: Path, dest: Path, digest: str) -> None:
    """The archive at `path` into the new folder `dest` (its checksum `digest` marked in it)."""
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


def resolve_source(source: str, fmt: str, what: str, ws: Workspace) -> Path:
    """`require_path`, with an archive unpacked (once) into the workspace's sources/."""
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
    """A split of in-memory images: idx 0..N-1, refs `<ref>#<row>` (row = `rows`, the source's)."""
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


# ----------------------------------------------------------------------------- class folders of image files


def visible(p: Path) -> bool:
    """False for hidden files and folders (their names start with a dot), which readers ignore."""
    return not p.name.startswith(".")


def list_class_folder(
    folder: Path, label: int, skip_corrupt: bool, skipped: list
) -> list[tuple[str, int]]:
    """(file, label) of every image in one class folder, sorted; other entries stop the read, or
    with `skip_corrupt` are appended to `skipped` as (path, reason)."""
    out = []

    def kind(f: Path) -> str:  # what an entry that is no image is, for the message
        if f.is_symlink() and not f.exists():
            return "a dangling or looping symbolic link"
        if f.is_dir():
            return "a folder inside a class folder"
        if not f.is_file():
            return "not a regular file (a FIFO, a device?)"
        return "not an image file (extension)"

    for f in sorted(filter(visible, folder.iterdir())):
        if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS:
            out.append((str(f), label))
        elif skip_corrupt:
            skipped.append((str(f), kind(f)))
        else:
            raise CurateError(
                f"{f}: {kind(f)} (image extensions: {', '.join(sorted(IMAGE_EXTENSIONS))}); "
                "remove it, or pass --skip-corrupt to skip it"
            )
    if not out:
        raise CurateError(
            f"class folder {folder} holds no images; remove the folder or add its images"
        )
    return out


def file_split(
    name: str, entries: list[tuple[str, int]], skipped: list, integer_ids: bool
) -> Split:
    """A split of encoded files; with `integer_ids` and all-integer, distinct file names, those
    integers become the ids (`file_ids`) and the files are ordered by them."""
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


# ----------------------------------------------------------------------------- decoding


# the most pixels an image may declare: 64 M (8000 x 8000; a 50-megapixel photograph fits), so a
# file of a few KB declaring 13000 x 13000 never takes gigabytes to decode
MAX_PIXELS = 64_000_000


class _TooLarge(ValueError):
    """An image declaring more than `MAX_PIXELS` pixels."""


def decode_image(path: str) -> np.ndarray:
    """Decode a file to (H, W, C) uint8 with C in {1, 3}: grey stays grey, palette/RGBA/CMYK become RGB
    (alpha dropped), 16-bit scaled to 8-bit. Raises ValueError with the reason when unreadable."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            # the pixel count is checked here, before anything is decoded: Pillow's own warning
            # (past 89 M pixels) would only repeat it, and its error comes at 179 M
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
        with im:
            w, h = im.size
            if w * h > MAX_PIXELS:
                raise _TooLarge(
                    f"declares {w} x {h} pixels, more than curate decodes ({MAX_PIXELS:,}): a "
                    "damaged file or a decompression bomb; resize it, or leave it out"
                )
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                a = np.asarray(im, dtype=np.float32)
                a = np.clip(a / max(a.max(), 1) * 255, 0, 255).astype(np.uint8)[..., None]
            elif im.mode in ("L", "1"):
                a = np.asarray(im.convert("L"), dtype=np.uint8)[..., None]
            else:
                a = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except _TooLarge:
        raise
    except UnidentifiedImageError:
        raise ValueError("not a readable image (unknown format)") from None
    except Image.DecompressionBombError as e:  # its header claims more pixels than memory holds
        raise ValueError(f"too large to decode ({e})") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ValueError(f"corrupt or truncated image ({e})") from None
    if a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError("empty image")
    return a
