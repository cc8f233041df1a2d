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
their logarithm (multilabel: their logit), whose softmax (sigmoid) gives them back.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from curate.errors import CurateError
from curate.record.recorder import RecordedRun, Recorder, load_dataset_rows
from curate.workspace import Workspace

SUFFIXES = (".npy", ".npz", ".pt")
PART = re.compile(r"^(?P<split>.+)_m(?P<member>\d+)_e(?P<epoch>\d+)$")
from curate.commands.record import SCHEME  # noqa: E402


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


def _as_logits(a: np.ndarray, kind: str, multilabel: bool, where: str) -> np.ndarray:
    a = np.asarray(a, dtype=np.float32)
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


def import_log(
    ws: Workspace,
    run: str,
    dataset: str,
    folder: str | Path,
    members: int | None = None,
    epochs: int | None = None,
    kind: str = "auto",
    arch: str = "imported",
) -> RecordedRun:
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

    Returns
    -------
    What the recorder recorded; parts already written by an earlier import are kept.
    """

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
    rec = Recorder(ws, run, dataset, members, epochs, splits=splits, arch=arch)
    try:
        for s in splits:
            order = _load(idx_files[s])[0] if s in idx_files else None
            cube = _load(stacked[s])[0] if s in stacked else None
            for m in range(members):
                for e in range(epochs + 1):
                    if rec.done(s, m, e):
                        continue
                    if cube is not None:
                        arr, idx = cube[m, e], None
                        where = f"{stacked[s]}[{m}, {e}]"
                    elif (s, m, e) in parts:
                        arr, idx = _load(parts[(s, m, e)])
                        where = str(parts[(s, m, e)])
                    else:
                        continue  # close() names what is missing
                    rows = idx if idx is not None else order
                    if rows is None:
                        rows = data.splits[s].idx
                    if arr.ndim != 2 or len(arr) != len(rows):
                        raise CurateError(
                            f"{where}: shape {arr.shape}; expected ({len(rows)}, C), one row per "
                            f"idx of split {s!r}"
                        )
                    rec.log(
                        s, m, e, np.asarray(rows), _as_logits(arr, kind, data.multilabel, where)
                    )
    finally:
        result = rec.close()
    return result
