"""`curate import-log`: the prediction log of a run that already happened, from the per-epoch
arrays it saved, written by `curate.Recorder` (so it is exactly what a recorded loop writes).

Naming scheme, in one folder (`--dir`):

- ``<split>_m<member>_e<epoch>.npy`` (or ``.npz``, ``.pt``): the (N, C) outputs of one member at
  one epoch on one split, e.g. ``train_m0_e3.npy``; epoch 0 is the member before training;
- or ``<split>.npy`` (``.npz``, ``.pt``): one (M, E + 1, N, C) array of every member and epoch;
- ``<split>_idx.npy`` (optional): the (N,) catalog idx of the rows, in row order; without it the
  rows are in the split's order (ascending idx, as `curate query "SELECT idx FROM instances"`).

An ``.npz`` holds one array (or ``logits`` / ``probs``, and ``idx``); a ``.pt`` a tensor or a dict
with ``logits`` or ``probs`` (and ``idx``). N is the split's size and C the dataset's class count.
Outputs must be real numbers: complex or text arrays are refused.

What is read, and when: only regular files (a FIFO, socket or device named like an array is
refused, never opened). Every file's header (a ``.npy``'s, an ``.npz`` member's, a ``.pt``'s
tensors mapped, not read) is checked before any data is read: real dtype, shape (N, C) or
(M, E + 1, N, C) for the dataset's N and C, and as many bytes as the shape needs. At most
`MAX_MEMBERS` members, epochs 0..`MAX_EPOCHS` and `MAX_PARTS` (member, epoch) pairs, and no more
members or epochs than the files hold (`--members`/`--epochs` may ask for fewer); every part must
have its file. A stacked array is read one (member, epoch) slice at a time.

Logits or probabilities (`--kind`). ``auto`` reads every array once before writing anything and
decides for the whole import, only where the values leave no doubt:

- every value in [0, 1] and every row summing to 1 within `SUM_TOL` (0.01): probabilities. The
  tolerance covers probabilities stored in bfloat16 (8 significant bits: each value within 2^-9
  relative, so a row sum within ~0.002 whatever the classes), float16, rounded to 3 decimals
  (each value within 5e-4: a row sum within 0.01 for up to 20 classes at worst, for ~60 over
  10^5 rows of independent rounding errors), rounded to 2 decimals for 2 classes, and rows
  renormalised after any rounding; real logits all in [0, 1] with every row summing to 1 that
  closely do not occur. Coarser probabilities (2 decimals of many classes) are refused as below:
  pass ``--kind probs``;
- any value outside [0, 1] (or not finite): logits (parts whose values happen to lie in [0, 1],
  e.g. a zero-initialised head at epoch 0, are logits too);
- every value in [0, 1] but some row not summing to 1 within the tolerance, or some parts looking
  like probabilities and others with values outside [0, 1]: refused, asking for ``--kind logits``
  or ``--kind probs``.

The kind used is reported (`ImportedRun.kind`, printed by the command) and kept in the import
record. Multilabel datasets keep the rule they had: values all in [0, 1] are the classes'
sigmoids (rows need not sum to 1), anything else logits; now decided once for the whole import,
mixed arrays refused as above.

Probabilities enter the log as their logarithm, whose softmax gives them back (renormalised).
A rounded probability can be exactly 0, whose log would make an infinite margin; every
probability is floored at ``PROB_FLOOR / C`` = 1e-4 / C before the log (then the row is
renormalised). The floors of a row add up to at most 1e-4, so confidence and EL2N move by at most
~1e-4, and a margin, log(p_y / p_j) between two floored probabilities at most 1, lies within
±ln(C * 1e4) nats: 10.3 for 3 classes, 11.5 for 10, 16.1 for 1000 (a floor of 1e-12 allowed
27.6 nats, and a flat 1e-4 would move a 1000-class row's mass by up to 0.1). Multilabel
probabilities keep their conversion, log(p) - log(1 - p) with both clipped at 1e-12.

All or nothing: the log is written aside (``runs/.import/``), moved to ``runs/<run>/`` only once
every part is there, and only then recorded in the catalog; a failed or interrupted import leaves
the workspace as it was (SIGTERM unwinds like Ctrl-C). A staging folder left by a killed import is
removed by the next import of any run, once no process holds that run's lock (a replacement
killed mid-swap is put back, or, its new log already in place, registered in the catalog). ``runs/<run>/import.json`` keeps a checksum of the imported
arrays (and the settings, with the kind used): importing the same arrays again changes nothing,
other arrays under the same run name are refused unless ``replace`` is given, which swaps the log
and drops the scores of the old one.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import closing, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from curate import catalog, runlog
from curate.config import check_name, name_problem
from curate.errors import CurateError
from curate.locks import exclusive
from curate.record import SCHEME
from curate.record.recorder import DatasetRows, RecordedRun, Recorder, load_dataset_rows
from curate.workspace import Workspace

SUFFIXES = (".npy", ".npz", ".pt")
PART = re.compile(r"^(?P<split>.+)_m(?P<member>\d+)_e(?P<epoch>\d+)$")
STAGING = ".import"  # runs/.import/<run>.<random>/: an import being written (never a run name)
TEMP = re.compile(r"[a-z0-9_]{8}")  # the random tail of mkdtemp's names

# sane bounds, whatever the files say: an ensemble of at most 1000 members, epochs 0..100000, and
# at most a million (member, epoch) parts per split (each one file of the log)
MAX_MEMBERS = runlog.layout.MAX_MEMBERS
MAX_EPOCHS = runlog.layout.MAX_EPOCHS
MAX_PARTS = 1_000_000
BOUNDS = (
    f"import-log takes at most {MAX_MEMBERS} members, epochs 0..{MAX_EPOCHS} and {MAX_PARTS} "
    "(member, epoch) parts"
)
SUM_TOL = 1e-2  # --kind auto: |row sum - 1| of probabilities (see the module docstring)
PROB_FLOOR = 1e-4  # a row's probabilities are floored at PROB_FLOOR / C before their log
OLD_SUM_TOL = 1e-3 + 1e-5  # what --kind auto required before the import record kept kind_used

# what the import record holds, and the words a refusal uses for each
_SETTINGS = {
    "checksum": "the arrays",
    "dataset": "--dataset",
    "splits": "the splits",
    "members": "--members",
    "epochs": "--epochs",
    "kind": "--kind",
    "arch": "--arch",
    "kind_used": "the kind the arrays are read as",
}
_KIND_WORD = {"logits": "logits", "probs": "probabilities"}


@dataclass
class ImportedRun(RecordedRun):
    """What `import_log` did: `action` is "imported", "replaced" or "unchanged"; `kind` is what
    the arrays were read as ("logits" or "probs") and `why` says how that was decided."""

    action: str = "imported"
    kind: str = ""
    why: str = ""


@dataclass(frozen=True)
class _Header:
    """One array of a file as its header gives it, no data read: the shape, the dtype (numpy's, or
    torch's for a .pt), its kind letter (numpy's: f, i, u, b, c, U, S, O, V), the bytes of one
    element, whether stored in Fortran order, and the bytes the file holds for its data (None when
    not known from the header: a .pt)."""

    shape: tuple[int, ...]
    dtype: Any
    kind: str
    itemsize: int
    fortran: bool = False
    available: int | None = None

    @property
    def nbytes(self) -> int:
        n = self.itemsize
        for d in self.shape:
            n *= d  # Python ints: no overflow, whatever the header claims
        return n

    def real(self, where: str) -> None:
        """A CurateError when the array does not hold real numbers (complex, text, objects)."""
        if self.kind not in "fiub":
            what = {"c": "complex numbers", "U": "text", "S": "text", "O": "objects"}
            raise CurateError(
                f"{where}: holds {what.get(self.kind, 'values')} ({self.dtype}), not real "
                "numbers; save the model's real-valued logits or probabilities as a float array"
            )

    def whole(self, where: str) -> None:
        """A CurateError when the file holds fewer bytes than the header's shape needs."""
        if self.available is not None and self.available < self.nbytes:
            raise CurateError(
                f"{where}: its header declares shape {self.shape} of {self.dtype} "
                f"({self.nbytes} bytes) but the file holds {self.available} bytes of data; it is "
                "truncated: save it again"
            )


@dataclass(frozen=True)
class _Plan:
    """What to import: the checked arguments, the files found per split and their headers."""

    run: str
    dataset: str
    folder: Path
    data: DatasetRows
    parts: dict
    stacked: dict
    idx_files: dict
    members: int
    epochs: int
    splits: list
    kind: str
    arch: str
    heads: dict  # path -> (_Header of the outputs, _Header of the file's own idx or None)

    def record(self, checksum: str, kind_used: str) -> dict:
        """The import record (`import.json`) of these settings, this checksum of the arrays and the
        kind they were read as."""
        return {
            "checksum": checksum,
            "dataset": self.dataset,
            "splits": self.splits,
            "members": self.members,
            "epochs": self.epochs,
            "kind": self.kind,
            "arch": self.arch,
            "kind_used": kind_used,
        }

    def recorder(self, ws: Workspace) -> Recorder:
        """The recorder of this run in `ws` (whose run folder may be a staging folder)."""
        return _ImportRecorder(
            ws,
            self.run,
            self.dataset,
            self.members,
            self.epochs,
            splits=self.splits,
            arch=self.arch,
        )


@dataclass(frozen=True)
class _Kind:
    """What the arrays are read as: `kind` ("logits" or "probs"), `why` (for the printed line),
    the checksum of the arrays when they were read to decide ("" otherwise), and what --kind auto
    decided before the import record kept the kind used (for records written then)."""

    kind: str
    why: str
    checksum: str = ""
    before: str = ""


class _ImportRecorder(Recorder):
    """The recorder of an import: its manifest says the log was imported (its training, time and
    processes unknown to curate)."""

    ORIGIN = "import"


@dataclass(frozen=True)
class _Aside(Workspace):
    """The workspace, with the run's folder moved to a staging folder: the recorder writes there."""

    staging: Path = Path()

    def run_dir(self, run: str) -> Path:
        return self.staging


# ----------------------------------------------------------------------------- reading files


def _not_regular(path: Path, mode: int) -> CurateError:
    kinds = (
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISDIR, "a folder"),
    )
    what = next((word for test, word in kinds if test(mode)), "not a regular file")
    return CurateError(
        f"{path}: {what}, not a regular file; import-log reads arrays from regular files only "
        "and never opens anything else: save the array to a file under that name, or move it "
        "out of --dir"
    )


def _regular(path: Path) -> None:
    """A CurateError, without opening `path`, unless it is a regular file (or a link to one): a
    FIFO would block the read forever, a device never end."""
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        raise CurateError(f"{path}: cannot be read ({e.strerror})") from None
    if not stat.S_ISREG(mode):
        raise _not_regular(path, mode)


def _open(path: Path):
    """`path` opened for binary reading, refused unless a regular file; opened without blocking,
    so that a FIFO put in its place since `_regular` looked is refused too, not waited on."""
    _regular(path)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise _not_regular(path, mode)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _npy_header(f, size: int) -> _Header:
    """The header of the .npy stream `f` (at its start), of `size` bytes in all; `f` is left at
    the data."""
    version = np.lib.format.read_magic(f)
    read = np.lib.format.read_array_header_1_0
    if version != (1, 0):
        read = np.lib.format.read_array_header_2_0  # 2.0 and 3.0 (utf-8 field names)
    shape, fortran, dtype = read(f)
    return _Header(
        tuple(int(d) for d in shape),
        dtype,
        dtype.kind,
        dtype.itemsize,
        bool(fortran),
        size - f.tell(),
    )


def _npz_names(z: zipfile.ZipFile) -> dict[str, str]:
    """{array name: member name} of an .npz, as numpy names them (the member without .npy)."""
    return {(n[:-4] if n.endswith(".npy") else n): n for n in z.namelist()}


def _npz_key(names, path: Path, want: str) -> str:
    """The key of the outputs in an .npz of arrays `names`: `logits`, `probs`, or its one array
    but `idx` (of an idx file, `want` = "idx": `idx`, or its one array)."""
    if want == "idx":  # an idx file: its `idx`, or its one array
        if "idx" in names or len(names) == 1:
            return "idx" if "idx" in names else next(iter(names))
        raise CurateError(f"{path}: holds arrays {', '.join(names)}; name the idx `idx`")
    keys = [k for k in names if k != "idx"]
    key = next((k for k in ("logits", "probs") if k in keys), None)
    if key is None and len(keys) == 1:
        key = keys[0]
    if key is None:
        raise CurateError(
            f"{path}: holds arrays {', '.join(names)}; name the {want} `logits` or `probs` (and "
            "the rows' ids `idx`)"
        )
    return key


def _member_header(z: zipfile.ZipFile, member: str) -> _Header:
    """The header of one .npz member, from its first bytes (a compressed member is inflated only
    that far)."""
    with z.open(member) as f:
        return _npy_header(f, z.getinfo(member).file_size)


def _pt(path: Path, mmap: bool = False):
    """(tensor, idx or None) from a .pt file (a tensor, or a dict with logits or probs); with
    `mmap`, the tensors are mapped, not read, where the file's format allows."""
    from curate.extras import need

    need("train", "torch", what=f"reading {path.name} (a .pt file; .npy and .npz need no torch)")
    import torch

    _regular(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except RuntimeError:
        if not mmap:
            raise
        obj = torch.load(path, map_location="cpu", weights_only=True)  # legacy format: no mmap
    idx = None
    if isinstance(obj, dict):
        key = next((k for k in ("logits", "probs") if k in obj), None)
        if key is None:
            raise CurateError(
                f"{path}: a dict with keys {', '.join(map(str, obj))}; give `logits` or `probs`"
            )
        idx = obj.get("idx")
        obj = obj[key]
    if not hasattr(obj, "numpy"):
        raise CurateError(f"{path}: holds a {type(obj).__name__}, not a tensor")
    return obj, idx


def _torch_header(t) -> _Header:
    """The header of a tensor (a mapped one: no data read), or of an array-like idx."""
    if not hasattr(t, "is_complex"):
        a = np.asarray(t)
        return _Header(tuple(a.shape), a.dtype, a.dtype.kind, a.dtype.itemsize)
    import torch

    if t.is_complex():
        kind = "c"
    elif t.is_floating_point():
        kind = "f"
    elif t.dtype == torch.bool:
        kind = "b"
    else:
        kind = "u" if t.dtype == torch.uint8 else "i"
    return _Header(tuple(int(d) for d in t.shape), t.dtype, kind, t.element_size())


def _probe(path: Path, want: str = "outputs") -> tuple[_Header, _Header | None]:
    """The headers of a file's outputs and of its own idx (None without one); no data is read."""
    try:
        if path.suffix == ".npy":
            with _open(path) as f:
                return _npy_header(f, os.fstat(f.fileno()).st_size), None
        if path.suffix == ".npz":
            with _open(path) as f, zipfile.ZipFile(f) as z:
                names = _npz_names(z)
                head = _member_header(z, names[_npz_key(names, path, want)])
                own = "idx" in names and want != "idx"
                idx = _member_header(z, names["idx"]) if own else None
                return head, idx
        obj, idx = _pt(path, mmap=True)
        return _torch_header(obj), None if idx is None else _torch_header(idx)
    except CurateError:
        raise
    except Exception as e:
        raise CurateError(f"{path}: not a readable {path.suffix} file ({e})") from None


def _numpy(t) -> np.ndarray:
    """A tensor (or array-like) as numpy; floating tensors (bfloat16 too) as float32."""
    if hasattr(t, "is_floating_point"):
        t = t.detach()
        return t.float().numpy() if t.is_floating_point() else t.numpy()
    return np.asarray(t)


def _load(path: Path, want: str = "outputs") -> tuple[np.ndarray, np.ndarray | None]:
    """(array, idx or None) from a .npy, .npz or .pt file whose headers `_plan` checked, so that
    what is read is what the dataset's shape allows."""
    try:
        if path.suffix == ".npy":
            with _open(path) as f:
                return np.lib.format.read_array(f, allow_pickle=False), None
        if path.suffix == ".npz":
            with _open(path) as f, zipfile.ZipFile(f) as z:
                names = _npz_names(z)
                with z.open(names[_npz_key(names, path, want)]) as m:
                    arr = np.lib.format.read_array(m, allow_pickle=False)
                if "idx" not in names or want == "idx":
                    return arr, None
                with z.open(names["idx"]) as m:
                    return arr, np.lib.format.read_array(m, allow_pickle=False)
        obj, idx = _pt(path, mmap=True)
        return _numpy(obj), None if idx is None else _numpy(idx)
    except CurateError:
        raise
    except Exception as e:
        raise CurateError(f"{path}: not a readable {path.suffix} file ({e})") from None


def _slices(path: Path, head: _Header) -> Iterator[np.ndarray]:
    """The (N, C) slices [m, e] of the stacked (M, E + 1, N, C) array in `path`, m-major, read
    one at a time (a .npy memory-mapped, an .npz member inflated slice by slice, a .pt mapped)."""
    n_m, n_e, n, k = head.shape
    try:
        if path.suffix == ".npy":
            with _open(path) as f:
                now = _npy_header(f, os.fstat(f.fileno()).st_size)
                if (now.shape, now.dtype, now.fortran) != (head.shape, head.dtype, head.fortran):
                    raise CurateError(f"{path}: changed while being imported; rerun")
                now.whole(str(path))
                if head.nbytes == 0:
                    cube = np.zeros(head.shape, head.dtype)
                else:
                    order = "F" if head.fortran else "C"
                    cube = np.memmap(f, head.dtype, "r", f.tell(), head.shape, order)
                for m in range(n_m):
                    for e in range(n_e):
                        yield np.array(cube[m, e])
                del cube
            return
        if path.suffix == ".npz":
            with _open(path) as f, zipfile.ZipFile(f) as z:
                names = _npz_names(z)
                with z.open(names[_npz_key(names, path, "outputs")]) as s:
                    _npy_header(s, 0)
                    if head.fortran:  # slices not contiguous: the array at once (its size checked)
                        cube = np.lib.format.read_array(s, allow_pickle=False)
                        s = None
                    step = n * k * head.itemsize
                    for m in range(n_m):
                        for e in range(n_e):
                            if s is None:
                                yield np.array(cube[m, e])
                                continue
                            buf = s.read(step)
                            if len(buf) != step:
                                raise CurateError(f"{path}: the array ends early; save it again")
                            yield np.frombuffer(buf, head.dtype).reshape(n, k).copy()
            return
        cube = _pt(path, mmap=True)[0]
        for m in range(n_m):
            for e in range(n_e):
                yield _numpy(cube[m, e])
    except CurateError:
        raise
    except Exception as e:
        raise CurateError(f"{path}: not a readable {path.suffix} file ({e})") from None


def _own_idx(path: Path) -> np.ndarray:
    """The idx an .npz or .pt of outputs holds beside them (read alone, not the outputs)."""
    try:
        if path.suffix == ".npz":
            with _open(path) as f, zipfile.ZipFile(f) as z, z.open(_npz_names(z)["idx"]) as m:
                return np.lib.format.read_array(m, allow_pickle=False)
        return _numpy(_pt(path, mmap=True)[1])
    except CurateError:
        raise
    except Exception as e:
        raise CurateError(f"{path}: not a readable {path.suffix} file ({e})") from None


# ----------------------------------------------------------------------------- what to import


def _scan(folder: Path, splits: list[str]) -> tuple[dict, dict, dict]:
    """(parts {(split, m, e): path}, stacked {split: path}, idx files {split: path}); a file
    named like an array but not a regular file is refused (never opened)."""
    parts, stacked, idx_files = {}, {}, {}
    for p in sorted(folder.iterdir()):
        if p.suffix not in SUFFIXES or p.name.startswith("."):
            continue
        _regular(p)
        stem = p.stem
        if stem.endswith("_idx") and stem[:-4] in splits:
            idx_files[stem[:-4]] = p
            continue
        if stem in splits:
            if stem in stacked:
                raise CurateError(f"{stacked[stem]} and {p} both give split {stem!r}; keep one")
            stacked[stem] = p
            continue
        m = PART.match(stem)
        if m is None:
            raise CurateError(f"{p}: the name does not follow the scheme {SCHEME}")
        if m["split"] not in splits:
            raise CurateError(
                f"{p}: split {m['split']!r} is not in the dataset (splits: {', '.join(splits)})"
            )
        key = (m["split"], int(m["member"]), int(m["epoch"]))
        if key[1] >= MAX_MEMBERS or key[2] > MAX_EPOCHS:
            what = f"member {key[1]}" if key[1] >= MAX_MEMBERS else f"epoch {key[2]}"
            raise CurateError(
                f"{p}: {what} is out of bounds: {BOUNDS}; members are numbered 0..M-1 and epochs "
                "0..E: rename the file"
            )
        if key in parts:
            raise CurateError(f"{parts[key]} and {p} both give the same part; keep one")
        parts[key] = p
    both = sorted({s for s, _, _ in parts} & set(stacked))
    if both:
        raise CurateError(
            f"split {both[0]!r} has both a stacked array {stacked[both[0]]} and per-epoch files; "
            "keep one of the two"
        )
    return parts, stacked, idx_files


def _check_outputs(head: _Header, where: str, split: str, n: int, k: int, stacked: bool) -> None:
    """Refuse, from its header, outputs that are not real numbers, not of shape (n, k) (stacked:
    (M, E + 1, n, k) within the bounds), or that the file does not hold whole."""
    head.real(where)
    shape = head.shape
    if len(shape) != (4 if stacked else 2):
        if stacked:
            raise CurateError(
                f"{where}: shape {shape}; a stacked array is (members, epochs + 1, N, C)"
            )
        raise CurateError(
            f"{where}: shape {shape}; expected ({n}, {k}): one row per instance of split "
            f"{split!r}, one column per class"
        )
    if shape[-1] != k:
        raise CurateError(
            f"{where}: shape {shape}: {shape[-1]} classes, the dataset has {k}; give the model's "
            "outputs with one column per class, in the catalog's class order"
        )
    if shape[-2] != n:
        raise CurateError(
            f"{where}: shape {shape}: {shape[-2]} rows; expected {n}, one row per instance of "
            f"split {split!r}"
        )
    if stacked and (
        shape[0] > MAX_MEMBERS or shape[1] > MAX_EPOCHS + 1 or shape[0] * shape[1] > MAX_PARTS
    ):
        raise CurateError(
            f"{where}: shape {shape}: {shape[0]} members x epochs 0..{shape[1] - 1} is out of "
            f"bounds: {BOUNDS}"
        )
    head.whole(where)


def _check_idx(head: _Header, where: str, split: str, n: int) -> None:
    """Refuse, from its header, an idx that is not one column of n integers held whole."""
    if head.kind not in "iu" or len(head.shape) != 1:
        raise CurateError(
            f"{where}: the idx must be one column of integer instance ids, got {head.dtype} of "
            f"shape {head.shape}; save the catalog's idx of each row"
        )
    if head.shape[0] != n:
        raise CurateError(
            f"{where}: {head.shape[0]} idx, but split {split!r} has {n} instances; a part has "
            "one row per instance: give the idx of every row"
        )
    head.whole(where)


def _gaps(run, folder, parts, flat: list[str], members: int, epochs: int) -> None:
    """Refuse when a part of the per-epoch splits `flat` has no file; counted from the file
    names, the first few named by a walk that stops after them (its length bounded by the files)."""
    have = sum(1 for s, m, e in parts if s in flat and m < members and e <= epochs)
    missing = len(flat) * members * (epochs + 1) - have
    if missing <= 0:
        return
    gaps = (
        f"{s}_m{m}_e{e}"
        for m in range(members)
        for e in range(epochs + 1)
        for s in flat
        if (s, m, e) not in parts
    )
    shown = ", ".join(next(gaps) for _ in range(min(missing, 6)))
    more = f" and {missing - 6} more" if missing > 6 else ""
    raise CurateError(
        f"run {run}: {missing} parts have no array in {folder} ({shown}{more}); add them under "
        "those names and rerun (nothing was imported)"
    )


def _plan(ws, run, dataset, folder, members, epochs, kind, arch) -> _Plan:
    """Check the arguments, find the files and check their headers (`import_log`'s parameters):
    nothing is written, no data read, nothing allocated in proportion to what a file or a flag
    claims."""
    run = check_name(str(run), "run")
    folder = Path(folder)
    if not folder.is_dir():
        raise CurateError(f"--dir {folder}: no such folder; give the folder of {SCHEME}")
    if kind not in ("auto", "logits", "probs"):
        raise CurateError(f"--kind {kind!r}: choose logits, probs or auto")
    data = load_dataset_rows(ws, dataset)
    parts, stacked, idx_files = _scan(folder, list(data.splits))
    if not parts and not stacked:
        raise CurateError(f"{folder} holds no arrays named {SCHEME}")
    splits = [s for s in data.splits if s in stacked or any(k[0] == s for k in parts)]
    k, heads = data.num_classes, {}
    for s in splits:
        n = len(data.splits[s].idx)
        if s in idx_files:
            heads[idx_files[s]] = (_probe(idx_files[s], "idx")[0], None)
            _check_idx(heads[idx_files[s]][0], str(idx_files[s]), s, n)
        if s in stacked:
            head, own = heads[stacked[s]] = _probe(stacked[s])
            _check_outputs(head, str(stacked[s]), s, n, k, stacked=True)
            if own is not None:
                _check_idx(own, f"{stacked[s]} (its idx)", s, n)
    for (s, _, _), p in sorted(parts.items()):
        head, own = heads[p] = _probe(p)
        n = len(data.splits[s].idx)
        _check_outputs(head, str(p), s, n, k, stacked=False)
        if own is not None:
            _check_idx(own, f"{p} (its idx)", s, n)
    shapes = {s: heads[p][0].shape for s, p in stacked.items()}
    found_m = max([m + 1 for _, m, _ in parts] + [sh[0] for sh in shapes.values()])
    found_e = max([e for _, _, e in parts] + [sh[1] - 1 for sh in shapes.values()])
    if members is not None and members > found_m:
        raise CurateError(
            f"--members {members}: the arrays in {folder} hold {found_m} members (0.."
            f"{found_m - 1}); give --members {found_m} or fewer (or leave it out), or add the "
            "other members' arrays"
        )
    if epochs is not None and epochs > found_e:
        raise CurateError(
            f"--epochs {epochs}: the arrays in {folder} hold epochs 0..{found_e}; give --epochs "
            f"{found_e} or fewer (or leave it out), or add the later epochs' arrays"
        )
    members = found_m if members is None else members
    epochs = found_e if epochs is None else epochs
    for what, v, low in (("members", members, 2), ("epochs", epochs, 1)):
        if v < low:
            why = " (agreement needs at least 2 members)" if what == "members" else ""
            raise CurateError(f"{what} = {v!r}: must be an integer >= {low}{why}")
    if members * (epochs + 1) > MAX_PARTS:
        raise CurateError(
            f"{members} members x epochs 0..{epochs} in {folder} is out of bounds: {BOUNDS}"
        )
    for s, sh in shapes.items():
        if sh[0] != members or sh[1] != epochs + 1:
            raise CurateError(
                f"{stacked[s]}: shape {sh} for {members} members and epochs 0..{epochs}; give "
                f"({members}, {epochs + 1}, N, C)"
            )
    _gaps(run, folder, parts, [s for s in splits if s not in stacked], members, epochs)
    return _Plan(
        run,
        dataset,
        folder,
        data,
        parts,
        stacked,
        idx_files,
        members,
        epochs,
        splits,
        kind,
        arch,
        heads,
    )


def _arrays(plan: _Plan) -> Iterator[tuple[tuple[str, int, int], np.ndarray, np.ndarray, str]]:
    """Each part's ((split, member, epoch), float32 outputs (N, C), idx (N,), where it came from),
    in a fixed order (split, then member, then epoch), one part in memory at a time."""
    for s in plan.splits:
        order = _load(plan.idx_files[s], "idx")[0] if s in plan.idx_files else None
        cube = None
        if s in plan.stacked:
            path = plan.stacked[s]
            cube = _slices(path, plan.heads[path][0])
            if plan.heads[path][1] is not None:
                order = _own_idx(path)
        with closing(cube) if cube is not None else nullcontext():
            for m in range(plan.members):
                for e in range(plan.epochs + 1):
                    if cube is not None:
                        arr, idx, where = next(cube), None, f"{plan.stacked[s]}[{m}, {e}]"
                    elif (s, m, e) in plan.parts:
                        arr, idx = _load(plan.parts[(s, m, e)])
                        where = str(plan.parts[(s, m, e)])
                    else:
                        continue
                    arr = _real(arr, where)
                    rows = idx if idx is not None else order
                    rows = plan.data.splits[s].idx if rows is None else np.asarray(rows)
                    if rows.ndim != 1 or rows.dtype.kind not in "iu":
                        raise CurateError(
                            f"{where}: the idx must be one column of integer instance ids, "
                            f"got {rows.dtype} of shape {rows.shape}; save the catalog's idx of "
                            "each row"
                        )
                    if arr.ndim != 2 or len(arr) != len(rows):
                        raise CurateError(
                            f"{where}: shape {arr.shape}; expected ({len(rows)}, C), one row per "
                            f"idx of split {s!r}"
                        )
                    yield (s, m, e), arr, rows.astype(np.int64, copy=False), where


def _real(a: np.ndarray, where: str) -> np.ndarray:
    """`a` as float32, or a CurateError when it does not hold real numbers (complex, text)."""
    a = np.asarray(a)
    _Header(a.shape, a.dtype, a.dtype.kind, a.dtype.itemsize).real(where)
    return np.asarray(a, dtype=np.float32)


def _hash(h, key: tuple[str, int, int], arr: np.ndarray, rows: np.ndarray) -> None:
    """Add one part (its key, float32 outputs and int64 idx) to the checksum `h`."""
    h.update(repr((key, arr.shape)).encode())
    h.update(np.ascontiguousarray(arr).tobytes())
    h.update(np.ascontiguousarray(rows).tobytes())


# ----------------------------------------------------------------------------- logits or probs


def _read_all(plan: _Plan) -> _Kind:
    """Read every array once: their checksum and the kind they are read as (`plan.kind`, or what
    --kind auto decides, the module docstring's rule); a CurateError when auto cannot tell."""
    h = hashlib.sha256()
    multilabel = plan.data.multilabel
    probs = outside = loose = None  # the first part of each sort (where; loose: where, off by)
    parts = old = 0  # parts, and those the rule before kind_used took for probabilities
    for key, arr, rows, where in _arrays(plan):
        _hash(h, key, arr, rows)
        parts += 1
        if plan.kind != "auto":
            continue
        unit = arr.size > 0 and bool(np.isfinite(arr).all()) and arr.min() >= 0 and arr.max() <= 1
        if not unit:
            outside = outside or where
            continue
        off = 0.0 if multilabel else float(np.abs(arr.sum(-1, dtype=np.float64) - 1).max())
        old += off <= OLD_SUM_TOL
        if off <= SUM_TOL:
            probs = probs or where
        elif loose is None:
            loose = (where, off)
    checksum = h.hexdigest()
    if plan.kind != "auto":
        return _Kind(plan.kind, f"--kind {plan.kind}", checksum)
    before = "probs" if old == parts else "logits" if old == 0 else "logits in part"
    if probs and not outside and not loose:
        why = (
            "every value in [0, 1]: the classes' sigmoids (multilabel)"
            if multilabel
            else f"every value in [0, 1] and every row sums to 1 within {SUM_TOL:g}"
        )
        return _Kind("probs", f"--kind auto: {why}", checksum, before)
    if outside and not probs:
        return _Kind("logits", f"--kind auto: values outside [0, 1] in {outside}", checksum, before)
    if outside:
        like = "values in [0, 1]" + ("" if multilabel else ", rows summing to 1")
        raise CurateError(
            f"--kind auto: {probs} looks like probabilities ({like}) but {outside} has values "
            "outside [0, 1]; save every part as the same kind, or say which they are: --kind "
            "logits or --kind probs (nothing was imported)"
        )
    where, off = loose
    raise CurateError(
        f"--kind auto: every value lies in [0, 1], but rows of {where} miss a sum of 1 by up "
        f"to {off:.3g} (probabilities, even rounded, sum to 1 within {SUM_TOL:g}): are they "
        "logits or probabilities? say which: --kind logits or --kind probs (nothing was imported)"
    )


def _as_logits(a: np.ndarray, kind: str, multilabel: bool, where: str) -> np.ndarray:
    """The float32 logits of real outputs `a` given as `kind` ("logits" or "probs"): the log of
    probabilities floored at PROB_FLOOR / C and renormalised (multilabel: log(p) - log(1 - p),
    clipped at 1e-12), so a margin stays within ln(C / PROB_FLOOR) nats (module docstring)."""
    a = _real(a, where)
    if kind == "logits":
        return a
    if np.isnan(a).any() or a.min() < 0 or a.max() > 1:
        raise CurateError(f"{where}: --kind probs, but values lie outside [0, 1] (or are NaN)")
    if multilabel:
        p = np.clip(a, 1e-12, 1.0)
        q = np.clip(1.0 - a, 1e-12, 1.0)
        return (np.log(p) - np.log(q)).astype(np.float32)
    p = np.maximum(a.astype(np.float64), PROB_FLOOR / a.shape[-1])
    return (np.log(p) - np.log(p.sum(-1, keepdims=True))).astype(np.float32)


# ----------------------------------------------------------------------------- writing the run


def _stage(plan: _Plan, kind: str, ws: Workspace, dest: Path) -> str:
    """Write the whole log of `plan`, its outputs read as `kind`, into the new folder `dest`;
    return the arrays' checksum.

    Raises CurateError when an array is refused or a part has no array (naming them).
    """
    rec = plan.recorder(_Aside(ws.root, staging=dest))
    h = hashlib.sha256()
    for key, arr, rows, where in _arrays(plan):
        _hash(h, key, arr, rows)
        rec.log(*key, rows, _as_logits(arr, kind, plan.data.multilabel, where))
    missing = rec.missing()
    if missing:
        shown = ", ".join(f"{s}_m{m}_e{e}" for s, m, e in missing[:6])
        more = f" and {len(missing) - 6} more" if len(missing) > 6 else ""
        raise CurateError(
            f"run {plan.run}: {len(missing)} parts have no array in {plan.folder} ({shown}{more}); "
            "add them under those names and rerun (nothing was imported)"
        )
    digest = h.hexdigest()
    runlog.import_record_path(dest).write_text(json.dumps(plan.record(digest, kind), indent=1))
    return digest


def _earlier(plan: _Plan, final: Path) -> dict | None:
    """The import record of the run already in `final`: None when there is no such run, {} when
    it was recorded otherwise (curate.Recorder, an import older than checksums); a CurateError
    when `curate train` made it (import-log never replaces a trained run)."""
    if not final.exists():
        return None
    try:
        made = runlog.load_manifest(final)
    except CurateError:  # unreadable: not a run curate trained, which is all that is kept
        made = None
    if made is not None and not made.recorded:
        raise CurateError(
            f"run {plan.run!r} in {final} was made by `curate train`; import under another run "
            "name (--replace replaces only imported or recorded runs)"
        )
    try:
        return json.loads(runlog.import_record_path(final).read_text())
    except (OSError, ValueError):
        return {}


def _as_now(earlier: dict | None, kind: _Kind | None) -> dict | None:
    """An import record as this version writes it: one written before the record kept the kind
    used gets the kind that import read the arrays as (--kind auto: by the rule of then, as
    `kind.before` says; unknown without it)."""
    if not earlier or "kind_used" in earlier:
        return earlier
    used = earlier.get("kind")
    if used == "auto":
        used = kind.before if kind is not None and kind.before else None
    return {**earlier, "kind_used": used}


def _refuse(plan: _Plan, final: Path, earlier: dict, new: dict | None) -> CurateError:
    """The refusal to import other arrays (or settings) under the name of a run already there
    (`new`: the record this import would write)."""
    fix = (
        f"import them under a new run name (curate import-log NEW_NAME ...), or pass --replace "
        f"to replace run {plan.run!r} (its scores are dropped)"
    )
    if not earlier or new is None:
        return CurateError(
            f"run {plan.run!r} already exists in {final} and records no checksum of its arrays "
            f"(recorded by curate.Recorder or an older import-log), so it is kept; {fix}"
        )
    differ = [key for key in _SETTINGS if earlier.get(key) != new[key]]
    if differ == ["kind_used"]:
        then = _KIND_WORD.get(earlier["kind_used"], earlier["kind_used"] or "another kind")
        return CurateError(
            f"run {plan.run!r} in {final} read these arrays as {then}; they are now read as "
            f"{_KIND_WORD[new['kind_used']]} (the rule of --kind auto changed); pass --replace to "
            "import them again (its scores are dropped), or import them under a new run name"
        )
    words = [_SETTINGS[key] for key in differ if key != "kind_used"]
    words = words or ["the import settings"]  # a record written by another version
    verb = "differ" if len(words) > 1 or words[0].startswith("the ") else "differs"
    return CurateError(
        f"run {plan.run!r}: {' and '.join(words)} {verb} from the ones imported into {final}; {fix}"
    )


def _drop_scores(ws: Workspace, run: str) -> None:
    """Delete, in one transaction, every row other stages derived from a log named `run`
    (scores, comparisons, agreements): they describe another log than the one imported."""
    with catalog.write(ws) as con:
        for table, cols in catalog.SCHEMA.items():
            names = {c for c, _, _ in cols}
            for key in ("run", "run_a", "run_b"):
                if key in names and table not in ("runs", "members"):
                    con.execute(f"DELETE FROM {table} WHERE {key} = ?", [run])  # constant names


def _install(ws: Workspace, plan: _Plan, tmp: Path, replace: bool) -> RecordedRun:
    """Move the staged log `tmp/new` to the run's folder (the run there, when `replace`, to
    `tmp/old`) and record it in the catalog; on any failure, put everything back as it was."""
    final, new, old = ws.run_dir(plan.run), tmp / "new", tmp / "old"
    _drop_scores(ws, plan.run)
    try:
        if replace:
            os.replace(final, old)
        os.replace(new, final)
        return plan.recorder(ws).close()  # the runs and members rows, in one transaction
    except BaseException:
        if final.exists() and not new.exists():
            os.replace(final, new)
        if old.exists():
            os.replace(old, final)
        raise


def _registered(ws: Workspace, run: str, final: Path) -> bool:
    """Whether the catalog's `runs` table records run `run` at `final`."""
    with catalog.read(ws) as con:
        row = con.execute("SELECT path FROM runs WHERE run = ?", [run]).fetchone()
    return row is not None and row[0] == str(final)


def _lock(runs: Path, run: str):
    """The lock of run `run` (the one `curate train` takes)."""
    return exclusive(
        runs / f".{run}.lock",
        f"run {run!r}",
        "another command is writing it (an import or `curate train`): wait for it to finish, "
        "or choose another run name",
    )


@contextmanager
def _writing(ws: Workspace, run: str):
    """Hold the run's lock for the block; a workspace that cannot be written is one CurateError
    (a full disk is left to the CLI's message for it)."""
    runs = ws.run_dir(run).parent
    try:
        with _lock(runs, run):
            yield runs
    except OSError as e:
        if e.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise
        raise CurateError(
            f"cannot write in the workspace {ws.root} ({e.strerror}: {e.filename}); make it "
            "writable or pass another --workspace, and rerun (nothing was imported)"
        ) from None


def _done(rec: RecordedRun, action: str, kind: _Kind) -> ImportedRun:
    return ImportedRun(rec.run, rec.run_dir, rec.epochs_done, rec.missing, action, *_said(kind))


def _said(kind: _Kind) -> tuple[str, str]:
    return kind.kind, kind.why


def _unchanged(ws: Workspace, plan: _Plan, final: Path, kind: _Kind) -> ImportedRun:
    """The same arrays imported again: nothing is written (but the catalog rows, when missing)."""
    if _registered(ws, plan.run, final):
        done = {m: runlog.last_done_epoch(final, m) for m in range(plan.members)}
        return ImportedRun(plan.run, final, done, [], "unchanged", *_said(kind))
    return _done(plan.recorder(ws).close(), "unchanged", kind)


def _clear(ws: Workspace, folder: Path, run: str) -> None:
    """Remove the staging folder `folder` of a killed import of `run` (its lock held by the
    caller). Killed as it swapped a replacement in: with the run's folder gone (between the two
    renames) the earlier run is put back; with the new log in place, its catalog rows are written
    again from its folder (the transaction may not have run)."""
    final, old = ws.run_dir(run), folder / "old"
    if old.is_dir():
        if not final.exists():
            os.replace(old, final)
        else:
            try:
                made = runlog.load_manifest(final)
                _ImportRecorder(
                    ws,
                    run,
                    made.dataset,
                    made.members,
                    made.epochs,
                    splits=list(made.splits) if made.splits else None,
                    arch=made.arch,
                ).close()
            except (CurateError, OSError, ValueError):
                pass  # not a log this version reads: left as it is
    shutil.rmtree(folder, ignore_errors=True)


def _clear_stale(ws: Workspace, runs: Path, run: str) -> None:
    """Remove the staging folders (`runs/.import/<run>.<random>`) of imports whose process is
    gone: this run's (the caller holds its lock, so none of them is being written) and any other
    run's whose lock no process holds (taken for the removal, then released and its stale lock
    file removed); a folder whose run's lock is held belongs to a live command and stays."""
    root = runs / STAGING
    if not root.is_dir():
        return
    for p in sorted(root.iterdir()):
        owner, dot, tail = p.name.rpartition(".")
        if not dot or not TEMP.fullmatch(tail) or name_problem(owner) or not p.is_dir():
            continue  # not a staging folder
        if owner == run:
            _clear(ws, p, owner)
            continue
        try:
            with _lock(runs, owner):
                _clear(ws, p, owner)
        except (CurateError, OSError):
            continue  # its import (or `curate train` of that run) is running, or not ours to do
    try:
        root.rmdir()
    except OSError:
        pass  # another import is using it


def _staging(runs: Path, run: str) -> Path:
    """A new, empty staging folder under `runs/.import/`, on the file system of the runs."""
    for _ in range(3):
        (runs / STAGING).mkdir(parents=True, exist_ok=True)
        try:
            return Path(tempfile.mkdtemp(prefix=f"{run}.", dir=runs / STAGING))
        except FileNotFoundError:
            continue  # another import removed the empty folder just then
    raise CurateError(f"cannot create a staging folder in {runs / STAGING}; rerun")


def import_log(
    ws: Workspace,
    run: str,
    dataset: str,
    folder: str | Path,
    members: int | None = None,
    epochs: int | None = None,
    kind: str = "auto",
    arch: str = "imported",
    replace: bool = False,
) -> ImportedRun:
    """Write run `run`'s prediction log from saved arrays (the module docstring's scheme).

    Parameters
    ----------
    ws : the workspace holding `dataset`.
    run : the new run's name.
    dataset : the ingested dataset the arrays predict.
    folder : the folder of arrays (regular files only).
    members, epochs : M and E (default: read from the file names or the stacked shape); at most
        what the files hold, and within `MAX_MEMBERS`, `MAX_EPOCHS` and `MAX_PARTS`.
    kind : "logits", "probs" or "auto" (the module docstring's rule: probabilities only when
        every value is in [0, 1] and every row sums to 1 within `SUM_TOL`, refused when neither
        is clear). Probabilities are floored at `PROB_FLOOR` / C before their log, so a margin
        lies within ln(C / PROB_FLOOR) nats.
    arch : the architecture's name, for the `runs` table.
    replace : replace run `run` when it was imported from other arrays (or recorded otherwise).

    Returns
    -------
    What was recorded, whether the run was "imported", "replaced" or "unchanged" (the same arrays
    imported again), and the kind the outputs were read as (and why).

    Raises
    ------
    CurateError
        On any bad input (a file that is not regular, a header that does not fit the dataset,
        members or epochs out of bounds, outputs auto cannot tell apart), a missing part, other
        arrays under an existing run's name (without `replace`) or a workspace that cannot be
        written; the workspace is then as it was.
    """
    plan = _plan(ws, run, dataset, folder, members, epochs, kind, arch)
    final = ws.run_dir(plan.run)
    with _writing(ws, plan.run) as runs:
        _clear_stale(ws, runs, plan.run)
        earlier = _earlier(plan, final)
        read = None  # the arrays' checksum and kind, when read before staging
        if earlier is not None and not replace:
            if not earlier:
                raise _refuse(plan, final, earlier, None)
            read = _read_all(plan)
            new = plan.record(read.checksum, read.kind)
            if _as_now(earlier, read) != new:
                raise _refuse(plan, final, _as_now(earlier, read), new)
            return _unchanged(ws, plan, final, read)
        if plan.kind == "auto":
            read = _read_all(plan)  # auto decides from every array before writing any
        used = read or _Kind(plan.kind, f"--kind {plan.kind}")
        tmp = _staging(runs, plan.run)
        try:
            checksum = _stage(plan, used.kind, ws, tmp / "new")
            if _as_now(earlier, used) == plan.record(checksum, used.kind):
                return _unchanged(ws, plan, final, used)  # --replace by the same arrays
            rec = _install(ws, plan, tmp, replace=earlier is not None)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            try:
                (runs / STAGING).rmdir()
            except OSError:
                pass  # another import is using it
    return _done(rec, "imported" if earlier is None else "replaced", used)
