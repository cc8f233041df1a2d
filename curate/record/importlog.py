"""`curate import-log`: the prediction log of a run that already happened, from the per-epoch
arrays it saved, written by `curate.Recorder` (so it is exactly what a recorded loop writes).

Naming scheme, in one folder (`--dir`):

- ``<split>_m<member>_e<epoch>.npy`` (or ``.npz``, ``.pt``): the (N, C) outputs of one member at
  one epoch on one split, e.g. ``train_m0_e3.npy``; epoch 0 is the member before training;
- or ``<split>.npy`` (``.npz``, ``.pt``): one (M, E + 1, N, C) array of every member and epoch;
- ``<split>_idx.npy`` (optional): the (N,) catalog idx of the rows, in row order; without it the
  rows are in the split's order (ascending idx, as `curate query "SELECT idx FROM instances"`).

An ``.npz`` holds one array (or ``logits`` / ``probs``, and ``idx``); a ``.pt`` a tensor or a dict
with ``logits`` or ``probs`` (and ``idx``). Outputs are logits or probabilities (`--kind`; auto:
probabilities when every row is in [0, 1] and, unless multilabel, sums to 1); probabilities enter as
their logarithm (multilabel: their logit), whose softmax (sigmoid) gives them back. Outputs must be
real numbers: complex or text arrays are refused.

All or nothing: the log is written aside (``runs/.import/``), moved to ``runs/<run>/`` only once
every part is there, and only then recorded in the catalog; a failed or interrupted import leaves
the workspace as it was. ``runs/<run>/import.json`` keeps a checksum of the imported arrays (and the
settings): importing the same arrays again changes nothing, other arrays under the same run name
are refused unless ``replace`` is given, which swaps the log and drops the scores of the old one.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from curate import catalog
from curate.config import check_name
from curate.errors import CurateError
from curate.locks import exclusive
from curate.record.recorder import DatasetRows, RecordedRun, Recorder, load_dataset_rows
from curate.train import predlog
from curate.workspace import Workspace

SUFFIXES = (".npy", ".npz", ".pt")
PART = re.compile(r"^(?P<split>.+)_m(?P<member>\d+)_e(?P<epoch>\d+)$")
RECORD = "import.json"  # beside run.json: the checksum and settings of the import
STAGING = ".import"  # runs/.import/<run>.<random>/: an import being written (never a run name)
from curate.commands.record import SCHEME  # noqa: E402

# what the import record holds, and the words a refusal uses for each
_SETTINGS = {
    "checksum": "the arrays",
    "dataset": "--dataset",
    "splits": "the splits",
    "members": "--members",
    "epochs": "--epochs",
    "kind": "--kind",
    "arch": "--arch",
}


@dataclass
class ImportedRun(RecordedRun):
    """What `import_log` did: `action` is "imported", "replaced" or "unchanged"."""

    action: str = "imported"


@dataclass(frozen=True)
class _Plan:
    """What to import: the checked arguments and the files found, per split."""

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

    def record(self, checksum: str) -> dict:
        """The import record (`RECORD`) of these settings and this checksum of the arrays."""
        return {
            "checksum": checksum,
            "dataset": self.dataset,
            "splits": self.splits,
            "members": self.members,
            "epochs": self.epochs,
            "kind": self.kind,
            "arch": self.arch,
        }

    def recorder(self, ws: Workspace) -> Recorder:
        """The recorder of this run in `ws` (whose run folder may be a staging folder)."""
        return Recorder(
            ws,
            self.run,
            self.dataset,
            self.members,
            self.epochs,
            splits=self.splits,
            arch=self.arch,
        )


@dataclass(frozen=True)
class _Aside(Workspace):
    """The workspace, with the run's folder moved to a staging folder: the recorder writes there."""

    staging: Path = Path()

    def run_dir(self, run: str) -> Path:
        return self.staging


def _load(path: Path, want: str = "outputs") -> tuple[np.ndarray, np.ndarray | None]:
    """(array, idx or None) from a .npy, .npz or .pt file."""
    try:
        if path.suffix == ".npy":
            return np.load(path, allow_pickle=False), None
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                keys = [k for k in z.files if k != "idx"]
                key = next((k for k in ("logits", "probs") if k in keys), None)
                if key is None and len(keys) == 1:
                    key = keys[0]
                if key is None:
                    raise CurateError(
                        f"{path}: holds arrays {', '.join(z.files)}; name the {want} `logits` "
                        "or `probs` (and the rows' ids `idx`)"
                    )
                return z[key], (z["idx"] if "idx" in z.files else None)
        import torch

        obj = torch.load(path, map_location="cpu", weights_only=True)
    except CurateError:
        raise
    except Exception as e:
        raise CurateError(f"{path}: not a readable {path.suffix} file ({e})") from None
    idx = None
    if isinstance(obj, dict):
        key = next((k for k in ("logits", "probs") if k in obj), None)
        if key is None:
            raise CurateError(
                f"{path}: a dict with keys {', '.join(map(str, obj))}; give `logits` or `probs`"
            )
        idx = obj.get("idx")
        idx = None if idx is None else np.asarray(idx.numpy() if hasattr(idx, "numpy") else idx)
        obj = obj[key]
    if not hasattr(obj, "numpy"):
        raise CurateError(f"{path}: holds a {type(obj).__name__}, not a tensor")
    return obj.detach().float().numpy() if obj.is_floating_point() else obj.numpy(), idx


def _real(a: np.ndarray, where: str) -> np.ndarray:
    """`a` as float32, or a CurateError when it does not hold real numbers (complex, text)."""
    a = np.asarray(a)
    if a.dtype.kind not in "fiub":
        what = {"c": "complex numbers", "U": "text", "S": "text", "O": "objects"}
        raise CurateError(
            f"{where}: holds {what.get(a.dtype.kind, 'values')} ({a.dtype}), not real numbers; "
            "save the model's real-valued logits or probabilities as a float array"
        )
    return np.asarray(a, dtype=np.float32)


def _as_logits(a: np.ndarray, kind: str, multilabel: bool, where: str) -> np.ndarray:
    """The float32 logits of real outputs `a` given as `kind` (logits, probs or auto)."""
    a = _real(a, where)
    if kind == "auto":
        finite = np.isfinite(a).all()
        unit = finite and a.size > 0 and a.min() >= 0 and a.max() <= 1
        sums = multilabel or (unit and np.allclose(a.sum(-1), 1, atol=1e-3))  # float32 rounding
        kind = "probs" if unit and sums else "logits"
    if kind == "logits":
        return a
    if np.isnan(a).any() or a.min() < 0 or a.max() > 1:
        raise CurateError(f"{where}: --kind probs, but values lie outside [0, 1] (or are NaN)")
    p = np.clip(a, 1e-12, 1.0)  # log 0 = -inf would stop the recorder: 1e-12 is "never"
    if multilabel:
        q = np.clip(1.0 - a, 1e-12, 1.0)
        return (np.log(p) - np.log(q)).astype(np.float32)
    return np.log(p).astype(np.float32)


def _scan(folder: Path, splits: list[str]) -> tuple[dict, dict, dict]:
    """(parts {(split, m, e): path}, stacked {split: path}, idx files {split: path})."""
    parts, stacked, idx_files = {}, {}, {}
    for p in sorted(folder.iterdir()):
        if p.suffix not in SUFFIXES or p.name.startswith("."):
            continue
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


def _plan(ws, run, dataset, folder, members, epochs, kind, arch) -> _Plan:
    """Check the arguments and find the files (`import_log`'s parameters); nothing is written."""
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
    shapes = {s: _load(p)[0].shape for s, p in stacked.items()}
    for s, shape in shapes.items():
        if len(shape) != 4:
            raise CurateError(
                f"{stacked[s]}: shape {shape}; a stacked array is (members, epochs + 1, N, C)"
            )
    found_m = max([m + 1 for _, m, _ in parts] + [sh[0] for sh in shapes.values()])
    found_e = max([e for _, _, e in parts] + [sh[1] - 1 for sh in shapes.values()])
    members = found_m if members is None else members
    epochs = found_e if epochs is None else epochs
    splits = [s for s in data.splits if s in stacked or any(k[0] == s for k in parts)]
    for s, sh in shapes.items():
        if sh[0] != members or sh[1] != epochs + 1:
            raise CurateError(
                f"{stacked[s]}: shape {sh} for {members} members and epochs 0..{epochs}; give "
                f"({members}, {epochs + 1}, N, C)"
            )
    return _Plan(
        run, dataset, folder, data, parts, stacked, idx_files, members, epochs, splits, kind, arch
    )


def _arrays(plan: _Plan) -> Iterator[tuple[tuple[str, int, int], np.ndarray, np.ndarray, str]]:
    """Each part's ((split, member, epoch), float32 outputs (N, C), idx (N,), where it came from),
    in a fixed order; parts without an array are left out (the recorder lists them)."""
    for s in plan.splits:
        order = _load(plan.idx_files[s])[0] if s in plan.idx_files else None
        cube = _load(plan.stacked[s])[0] if s in plan.stacked else None
        for m in range(plan.members):
            for e in range(plan.epochs + 1):
                if cube is not None:
                    arr, idx, where = cube[m, e], None, f"{plan.stacked[s]}[{m}, {e}]"
                elif (s, m, e) in plan.parts:
                    arr, idx = _load(plan.parts[(s, m, e)])
                    where = str(plan.parts[(s, m, e)])
                else:
                    continue
                arr = _real(arr, where)
                rows = idx if idx is not None else order
                rows = plan.data.splits[s].idx if rows is None else np.asarray(rows)
                if rows.ndim != 1 or rows.dtype.kind not in "iu":
                    named = where if idx is not None else plan.idx_files[s]
                    raise CurateError(
                        f"{named}: the idx must be one column of integer instance ids, got "
                        f"{rows.dtype} of shape {rows.shape}; save the catalog's idx of each row"
                    )
                if arr.ndim != 2 or len(arr) != len(rows):
                    raise CurateError(
                        f"{where}: shape {arr.shape}; expected ({len(rows)}, C), one row per "
                        f"idx of split {s!r}"
                    )
                yield (s, m, e), arr, rows.astype(np.int64, copy=False), where


def _hash(h, key: tuple[str, int, int], arr: np.ndarray, rows: np.ndarray) -> None:
    """Add one part (its key, float32 outputs and int64 idx) to the checksum `h`."""
    h.update(repr((key, arr.shape)).encode())
    h.update(np.ascontiguousarray(arr).tobytes())
    h.update(np.ascontiguousarray(rows).tobytes())


def _checksum(plan: _Plan) -> str:
    """The checksum of the arrays `plan` imports, as `_stage` computes it (nothing is written)."""
    h = hashlib.sha256()
    for key, arr, rows, _ in _arrays(plan):
        _hash(h, key, arr, rows)
    return h.hexdigest()


def _stage(plan: _Plan, ws: Workspace, dest: Path) -> str:
    """Write the whole log of `plan` into the new folder `dest`; return the arrays' checksum.

    Raises CurateError when an array is refused or a part has no array (naming them).
    """
    rec = plan.recorder(_Aside(ws.root, staging=dest))
    h = hashlib.sha256()
    for key, arr, rows, where in _arrays(plan):
        _hash(h, key, arr, rows)
        rec.log(*key, rows, _as_logits(arr, plan.kind, plan.data.multilabel, where))
    missing = rec.missing()
    if missing:
        shown = ", ".join(f"{s}_m{m}_e{e}" for s, m, e in missing[:6])
        more = f" and {len(missing) - 6} more" if len(missing) > 6 else ""
        raise CurateError(
            f"run {plan.run}: {len(missing)} parts have no array in {plan.folder} ({shown}{more}); "
            "add them under those names and rerun (nothing was imported)"
        )
    digest = h.hexdigest()
    (dest / RECORD).write_text(json.dumps(plan.record(digest), indent=1))
    return digest


def _earlier(plan: _Plan, final: Path) -> dict | None:
    """The import record of the run already in `final`: None when there is no such run, {} when
    it was recorded otherwise (curate.Recorder, an import older than checksums); a CurateError
    when `curate train` made it (import-log never replaces a trained run)."""
    if not final.exists():
        return None
    try:
        made = json.loads((final / "run.json").read_text())
    except (OSError, ValueError):
        made = {}
    if made and "recorder" not in made:
        raise CurateError(
            f"run {plan.run!r} in {final} was made by `curate train`; import under another run "
            "name (--replace replaces only imported or recorded runs)"
        )
    try:
        return json.loads((final / RECORD).read_text())
    except (OSError, ValueError):
        return {}


def _refuse(plan: _Plan, final: Path, earlier: dict, checksum: str) -> CurateError:
    """The refusal to import other arrays (or settings) under the name of a run already there."""
    fix = (
        f"import them under a new run name (curate import-log NEW_NAME ...), or pass --replace "
        f"to replace run {plan.run!r} (its scores are dropped)"
    )
    if not earlier:
        return CurateError(
            f"run {plan.run!r} already exists in {final} and records no checksum of its arrays "
            f"(recorded by curate.Recorder or an older import-log), so it is kept; {fix}"
        )
    new = plan.record(checksum)
    differ = [word for key, word in _SETTINGS.items() if earlier.get(key) != new[key]]
    differ = differ or ["the import settings"]  # a record written by another version
    verb = "differ" if len(differ) > 1 or differ[0].startswith("the ") else "differs"
    return CurateError(
        f"run {plan.run!r}: {' and '.join(differ)} {verb} from the ones imported into {final}; "
        f"{fix}"
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


@contextmanager
def _writing(ws: Workspace, run: str):
    """Hold the run's lock (the one `curate train` takes) for the block; a workspace that cannot be
    written is one CurateError (a full disk is left to the CLI's message for it)."""
    runs = ws.run_dir(run).parent
    try:
        with exclusive(
            runs / f".{run}.lock",
            f"run {run!r}",
            "another command is writing it (an import or `curate train`): wait for it to finish, "
            "or choose another run name",
        ):
            yield runs
    except OSError as e:
        if e.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise
        raise CurateError(
            f"cannot write in the workspace {ws.root} ({e.strerror}: {e.filename}); make it "
            "writable or pass another --workspace, and rerun (nothing was imported)"
        ) from None


def _done(rec: RecordedRun, action: str) -> ImportedRun:
    return ImportedRun(rec.run, rec.run_dir, rec.epochs_done, rec.missing, action)


def _unchanged(ws: Workspace, plan: _Plan, final: Path) -> ImportedRun:
    """The same arrays imported again: nothing is written (but the catalog rows, when missing)."""
    if _registered(ws, plan.run, final):
        done = {m: predlog.last_done_epoch(final, m) for m in range(plan.members)}
        return ImportedRun(plan.run, final, done, [], "unchanged")
    return _done(plan.recorder(ws).close(), "unchanged")


def _staging(runs: Path, run: str) -> Path:
    """A new, empty staging folder under `runs/.import/`, on the file system of the runs; the
    folders a killed import of this run left are removed (the caller holds the run's lock)."""
    stale = re.compile(re.escape(run) + r"\.[a-z0-9_]{8}")  # mkdtemp's names, and only them
    if (runs / STAGING).is_dir():
        for p in (runs / STAGING).iterdir():
            if stale.fullmatch(p.name):
                shutil.rmtree(p, ignore_errors=True)
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
    folder : the folder of arrays.
    members, epochs : M and E (default: read from the file names or the stacked shape).
    kind : "logits", "probs" or "auto".
    arch : the architecture's name, for the `runs` table.
    replace : replace run `run` when it was imported from other arrays (or recorded otherwise).

    Returns
    -------
    What was recorded, and whether the run was "imported", "replaced" or "unchanged" (the same
    arrays imported again).

    Raises
    ------
    CurateError
        On any bad input, a missing part, other arrays under an existing run's name (without
        `replace`) or a workspace that cannot be written; the workspace is then as it was.
    """
    plan = _plan(ws, run, dataset, folder, members, epochs, kind, arch)
    final = ws.run_dir(plan.run)
    with _writing(ws, plan.run) as runs:
        earlier = _earlier(plan, final)
        if earlier is not None and not replace:
            checksum = _checksum(plan) if earlier else ""
            if not earlier or earlier != plan.record(checksum):
                raise _refuse(plan, final, earlier, checksum)
            return _unchanged(ws, plan, final)
        tmp = _staging(runs, plan.run)
        try:
            checksum = _stage(plan, ws, tmp / "new")
            if earlier == plan.record(checksum):  # --replace by the same arrays: nothing to do
                return _unchanged(ws, plan, final)
            rec = _install(ws, plan, tmp, replace=earlier is not None)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            try:
                (runs / STAGING).rmdir()
            except OSError:
                pass  # another import is using it
    return _done(rec, "imported" if earlier is None else "replaced")
