"""`curate.Recorder`: the prediction log of a user's own training loop, written exactly as `curate
train` writes it (`curate.train.predlog`), so `curate score`, `label-issues`, `report` and the app
read it unchanged.

A run has M members and epochs 0..E (epoch 0 = each member before its first training step, as
`curate train` logs it). For every split, member and epoch the user's evaluation pass calls
``rec.log(split, member, epoch, idx, logits)`` with batches in any order and of any size, on any
device; the part (split, member, epoch) is written, atomically (temporary file, then rename), the
moment every instance of the split has been logged exactly once. Once every split of (member,
epoch) is written, the member's progress record marks the epoch done; `close()` records the run in
the catalog's `runs` and `members` tables.

Resuming: a rerun of the same script with the same arguments finds the parts already written and
skips them: `log()` on a complete part is a no-op (nothing is computed or checked), `done()` and
`next_epoch()` tell the loop what it may skip. A killed process loses at most the parts it had not
finished. While a part is being recorded its lock file is held (an advisory lock the kernel
releases when the process ends, so a killed recorder leaves no stale lock); a second process
recording the same part is refused at once.
"""

from __future__ import annotations

import json
import os
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from curate import catalog
from curate.config import check_name
from curate.data.positions import find_positions
from curate.errors import CurateError
from curate.locks import exclusive
from curate.train import predlog
from curate.workspace import Workspace, atomic_path

PASS = "eval"  # the recorder writes the evaluation pass, the one `curate score` reads
STRATEGY = "recorder"  # runs.strategy of a run recorded from the user's own loop


@dataclass(frozen=True)
class SplitRows:
    """A split as the catalog lists it: idx (N,) ascending, label (N,) int64."""

    idx: np.ndarray
    labels: np.ndarray
    contiguous: bool  # idx == arange(N): positions are the ids themselves

    def positions(self, idx: np.ndarray) -> np.ndarray:
        """Row position of each id, -1 where the split has no such id."""
        if self.contiguous:
            return np.where((idx >= 0) & (idx < len(self.idx)), idx, -1)
        return find_positions(self.idx, idx)


@dataclass(frozen=True)
class DatasetRows:
    """What the recorder needs of a dataset: its classes, whether labels are class sets, and the
    rows of every split."""

    name: str
    class_names: list[str]
    multilabel: bool
    splits: dict[str, SplitRows]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def load_dataset_rows(ws: Workspace, dataset: str) -> DatasetRows:
    """The dataset's classes and split rows from the catalog; a clear error when it is absent."""
    if not ws.catalog.exists():
        raise CurateError(
            f"no catalog in {ws.root}; ingest the dataset first: `curate ingest FORMAT --name "
            f"{dataset}` or, from labels alone, `curate ingest labels --labels FILE --name {dataset}`"
        )
    with catalog.read(ws) as con:
        row = con.execute(
            "SELECT class_names, splits, multilabel FROM datasets WHERE dataset = ?", [dataset]
        ).fetchone()
        if row is None:
            have = [r[0] for r in con.execute("SELECT dataset FROM datasets ORDER BY 1").fetchall()]
            raise CurateError(
                f"dataset {dataset!r} is not in {ws.catalog} (have: {', '.join(have) or 'none'}); "
                f"ingest it first (`curate ingest labels --labels FILE --name {dataset}` needs no "
                "images)"
            )
        inst = con.execute(
            "SELECT split, idx, label FROM instances WHERE dataset = ? ORDER BY split, idx",
            [dataset],
        ).df()
    splits = {}
    for split in row[1]:
        rows = inst[inst["split"] == split]
        idx = rows["idx"].to_numpy(np.int64)
        contiguous = bool(len(idx) == 0 or (idx[0] == 0 and idx[-1] == len(idx) - 1))
        splits[split] = SplitRows(idx, rows["label"].to_numpy(np.int64), contiguous)
    return DatasetRows(dataset, list(row[0]), bool(row[2]), splits)


@dataclass
class _OpenPart:
    """A part being gathered: per-row predictions in the split's idx order, and which rows came."""

    pred: np.ndarray
    p_true: np.ndarray
    margin: np.ndarray
    el2n: np.ndarray
    seen: np.ndarray
    count: int
    lock: ExitStack


@dataclass
class RecordedRun:
    """What `Recorder.close()` recorded: complete epochs per member and the parts still missing."""

    run: str
    run_dir: Path
    epochs_done: dict[int, int]
    missing: list[tuple[str, int, int]] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.missing


class Recorder:
    """Record the evaluation pass of the user's own training loop as a curate prediction log.

    Parameters
    ----------
    workspace : the curate workspace (a path or `Workspace`; None = ``$CURATE_WORKSPACE`` or
        ``./workspace``) whose catalog holds the dataset.
    run : the run's name (its folder under ``<workspace>/runs/``).
    dataset : an ingested dataset (`curate ingest`, or `curate ingest labels` from labels alone).
    members : ensemble size M >= 2 (members are numbered 0..M-1).
    epochs : the last epoch E >= 1; epochs 0..E are logged, 0 being each member before training.
    splits : the splits to record (default: every split of the dataset); scoring reads these.
    arch : the architecture's name, for the `runs` table.
    seed : the user's seed, for the `runs` table (None when unknown).
    precision : the training arithmetic, for the `runs` table (e.g. fp32, bf16, amp).

    Logits are turned into the log's columns by the same functions `curate train` uses
    (`curate.train.logits`), in float32 whatever the dtype given. One Recorder is used by one
    thread; several processes may record one run when each records its own parts (e.g. one
    member each).
    """

    def __init__(
        self,
        workspace: Workspace | str | os.PathLike | None,
        run: str,
        dataset: str,
        members: int,
        epochs: int,
        *,
        splits: list[str] | tuple[str, ...] | None = None,
        arch: str = "custom",
        seed: int | None = None,
        precision: str = "unknown",
    ) -> None:
        self.ws = workspace if isinstance(workspace, Workspace) else Workspace.resolve(workspace)
        self.run = check_name(str(run), "run")
        for what, v, low in (("members", members, 2), ("epochs", epochs, 1)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
                why = " (agreement needs at least 2 members)" if what == "members" else ""
                raise CurateError(f"{what} = {v!r}: must be an integer >= {low}{why}")
        self.members, self.epochs = int(members), int(epochs)
        self.data = load_dataset_rows(self.ws, dataset)
        self.dataset = dataset
        chosen = list(splits) if splits is not None else list(self.data.splits)
        unknown = [s for s in chosen if s not in self.data.splits]
        if unknown or not chosen:
            raise CurateError(
                f"split {unknown[0] if unknown else '(none)'!r}: dataset {dataset!r} has splits "
                f"{', '.join(self.data.splits)}; record some of those"
            )
        self.splits = chosen
        self.arch, self.seed, self.precision = str(arch), seed, str(precision)
        self.run_dir = self.ws.run_dir(self.run)
        self.identity = {
            "dataset": dataset,
            "loader": {},
            "train": {"arch": self.arch, "members": self.members, "epochs": self.epochs},
            "splits": self.splits,
            "recorder": {"seed": seed},
        }
        self._check_run_dir()
        self._open: dict[tuple[str, int, int], _OpenPart] = {}
        self._complete: set[tuple[str, int, int]] = set()
        self._acc: dict[tuple[str, int, int], float] = {}
        self._device = "cpu"
        self._since = {m: time.perf_counter() for m in range(self.members)}
        self._closed = False
        self._scan()

    # ------------------------------------------------------------------ the run folder

    def _check_run_dir(self) -> None:
        rec = self.run_dir / "run.json"
        if rec.exists():
            old = json.loads(rec.read_text())
            new = json.loads(json.dumps(self.identity))
            if old != new:
                diff = [k for k in ("dataset", "splits") if old.get(k) != new.get(k)]
                diff += [
                    f"train.{k}"
                    for k in new["train"]
                    if old.get("train", {}).get(k) != new["train"][k]
                ]
                if old.get("recorder") is None:
                    diff.insert(0, "made by `curate train`")
                raise CurateError(
                    f"run {self.run!r} in {self.run_dir} was recorded with other settings "
                    f"(differs in: {', '.join(diff) or 'settings'}); choose another run name to "
                    f"keep both, or delete {self.run_dir} to start over"
                )
        else:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            with atomic_path(rec) as tmp:
                tmp.write_text(json.dumps(self.identity, indent=1))

    def _scan(self) -> None:
        """Find the parts already written; mark epochs whose parts are all there but whose
        progress record a killed process did not write."""
        for m in range(self.members):
            prog = predlog.read_progress(self.run_dir, m)["epochs"]
            for e in range(self.epochs + 1):
                have = [
                    s
                    for s in self.splits
                    if predlog.shard_path(self.run_dir, PASS, s, m, e).exists()
                ]
                self._complete.update((s, m, e) for s in have)
                if len(have) == len(self.splits) and str(e) not in prog:
                    self._mark_done(m, e, seconds=0.0)

    # ------------------------------------------------------------------ what is left

    def done(self, split: str, member: int, epoch: int) -> bool:
        """Whether the part (split, member, epoch) is already written (a resumed run skips it)."""
        return (split, int(member), int(epoch)) in self._complete

    def epoch_done(self, member: int, epoch: int) -> bool:
        """Whether every recorded split of (member, epoch) is written."""
        return all(self.done(s, member, epoch) for s in self.splits)

    def next_epoch(self, member: int) -> int:
        """The first epoch of `member` with a part still to write; E + 1 when it is complete."""
        e = 0
        while e <= self.epochs and self.epoch_done(member, e):
            e += 1
        return e

    def missing(self) -> list[tuple[str, int, int]]:
        """Every (split, member, epoch) not yet written, in member, epoch, split order."""
        return [
            (s, m, e)
            for m in range(self.members)
            for e in range(self.epochs + 1)
            for s in self.splits
            if (s, m, e) not in self._complete
        ]

    # ------------------------------------------------------------------ logging

    def log(self, split: str, member: int, epoch: int, idx, logits) -> None:
        """Record one batch of the evaluation pass.

        Parameters
        ----------
        split : a split of the dataset (one of `splits`).
        member : 0..M-1.
        epoch : 0..E (0 = before training).
        idx : (B,) the instances' ids (the catalog's `idx`), torch or numpy, any order.
        logits : (B, C) the member's raw outputs, C = the dataset's classes (multilabel: one
            logit per class), torch tensor on any device or numpy array.

        A part already written is skipped. Bad input raises CurateError before anything of the
        batch is kept: the part's earlier batches stay as they were.
        """
        if self._closed:
            raise CurateError(f"the recorder of run {self.run!r} is closed; create a new one")
        key = self._key(split, member, epoch)
        if key in self._complete:
            return
        import torch

        rows = self.data.splits[split]
        ids = _as_ids(idx)
        z = _as_logits(logits, len(ids), self.data.num_classes, key)
        pos = rows.positions(ids)
        if np.any(pos < 0):
            bad = ids[pos < 0]
            raise CurateError(
                f"{_name(key)}: idx {int(bad[0])} is not in split {split!r} ({int(len(bad))} of "
                f"the batch are not; its {len(rows.idx)} idx run from {_range(rows.idx)}); pass "
                "the catalog's idx of each instance"
            )
        srt = np.sort(pos)  # O(B log B): no array of the split's size per batch
        dup = np.flatnonzero(srt[1:] == srt[:-1])
        if len(dup):
            twice = rows.idx[srt[dup[0]]]
            raise CurateError(
                f"{_name(key)}: idx {int(twice)} appears twice in this batch; log each instance "
                "once per part"
            )
        part = self._open.get(key)
        if part is not None and part.seen[pos].any():
            twice = rows.idx[pos[part.seen[pos]][0]]
            raise CurateError(
                f"{_name(key)}: idx {int(twice)} was already logged for this part; log each "
                "instance once per part (a new epoch is a new part)"
            )
        y = torch.from_numpy(rows.labels[pos]).to(z.device)
        pred, p_true, margin, el2n = _stats(z, y, self.data.multilabel)
        if part is None:
            part = self._open[key] = self._start(key, len(rows.idx))
        part.pred[pos], part.p_true[pos], part.margin[pos] = pred, p_true, margin
        part.el2n[pos] = el2n
        part.seen[pos] = True
        part.count += len(pos)
        self._device = z.device.type
        if part.count == len(rows.idx):
            self._finish(key, part)

    def _key(self, split: str, member: int, epoch: int) -> tuple[str, int, int]:
        if split not in self.splits:
            why = (
                f"the recorder records {', '.join(self.splits)}"
                if split in self.data.splits
                else f"dataset {self.dataset!r} has no such split (splits: "
                f"{', '.join(self.data.splits)})"
            )
            raise CurateError(f"split {split!r}: {why}")
        for what, v, top in (("member", member, self.members - 1), ("epoch", epoch, self.epochs)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 0 <= v <= top:
                raise CurateError(
                    f"{what} {v!r} is outside the declared 0..{top} (members={self.members}, "
                    f"epochs={self.epochs}, epoch 0 = before training); declare more when "
                    "creating the Recorder under a new run name"
                )
        return split, int(member), int(epoch)

    def _start(self, key: tuple[str, int, int], n: int) -> _OpenPart:
        split, m, e = key
        path = predlog.shard_path(self.run_dir, PASS, split, m, e)
        stack = ExitStack()
        stack.enter_context(
            exclusive(
                path.parent / ".recording.lock",
                f"part {_name(key)} of run {self.run!r}",
                "another process is recording it: record each part in one process (e.g. one "
                "member per process), or wait for it to finish",
            )
        )
        for stale in path.parent.glob(f".{path.name}.*.tmp"):  # a killed writer's temporary
            stale.unlink(missing_ok=True)
        if path.exists():  # written by another process since this one started
            stack.close()
            raise CurateError(
                f"part {_name(key)} of run {self.run!r} was written by another process while "
                "this one ran; rerun the script to resume from what is written"
            )
        wide = np.int32 if self.data.multilabel else np.int16
        return _OpenPart(
            np.zeros(n, wide),
            np.zeros(n, np.float32),
            np.zeros(n, np.float32),
            np.zeros(n, np.float32),
            np.zeros(n, bool),
            0,
            stack,
        )

    def _finish(self, key: tuple[str, int, int], part: _OpenPart) -> None:
        split, m, e = key
        rows = self.data.splits[split]
        try:
            predlog.write_shard(
                predlog.shard_path(self.run_dir, PASS, split, m, e),
                rows.idx,
                part.pred,
                part.p_true,
                part.margin,
                wide=self.data.multilabel,
                el2n=part.el2n,  # as `curate train` logs it: EL2N of these logits
            )
        finally:
            part.lock.close()
            del self._open[key]
        self._complete.add(key)
        self._acc[key] = float(np.mean(part.pred == rows.labels)) if len(rows.idx) else 0.0
        if self.epoch_done(m, e):
            now = time.perf_counter()
            self._mark_done(m, e, seconds=now - self._since[m])
            self._since[m] = now

    def _part_acc(self, key: tuple[str, int, int]) -> float:
        if key not in self._acc:
            split, m, e = key
            t = pq.read_table(predlog.shard_path(self.run_dir, PASS, split, m, e), ["idx", "pred"])
            rows = self.data.splits[split]
            pos = rows.positions(t.column("idx").to_numpy().astype(np.int64))
            self._acc[key] = float(np.mean(t.column("pred").to_numpy() == rows.labels[pos]))
        return self._acc[key]

    def _mark_done(self, m: int, e: int, seconds: float) -> None:
        acc = {s: self._part_acc((s, m, e)) for s in self.splits}
        predlog.mark_epoch_done(self.run_dir, m, e, {"acc": acc, "seconds": seconds})

    # ------------------------------------------------------------------ closing

    def close(self) -> RecordedRun:
        """Record the run in the catalog's `runs` and `members` tables (what is written so far).

        Parts not complete are dropped (they were never visible) and listed in the result, and on
        stderr; a rerun of the script records them. Calling close() twice is harmless.
        """
        if self._closed:
            return self._result
        self._closed = True
        for part in self._open.values():
            part.lock.close()
        self._open.clear()
        missing = self.missing()
        record_recorded_run(self)
        done = {m: predlog.last_done_epoch(self.run_dir, m) for m in range(self.members)}
        self._result = RecordedRun(self.run, self.run_dir, done, missing)
        if missing:
            shown = ", ".join(_name(k) for k in missing[:5]) + (" ..." if len(missing) > 5 else "")
            print(
                f"run {self.run}: {len(missing)} parts not recorded yet ({shown}); rerun to "
                "finish them before `curate score`",
                file=sys.stderr,
            )
        return self._result

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def record_recorded_run(rec: Recorder) -> None:
    """Replace the run's rows in `runs` and `members` with what its folder records, in the
    columns `curate train` fills (`curate.train.catalog.record_run`); seeds unknown to curate are
    NULL."""
    members, finals, total = [], [], 0.0
    for m in range(rec.members):
        prog = predlog.read_progress(rec.run_dir, m)["epochs"]
        done = predlog.last_done_epoch(rec.run_dir, m)
        final = prog.get(str(done), {}).get("acc", {})
        seconds = float(sum(v.get("seconds", 0.0) for v in prog.values()))
        total += seconds
        finals.append(final)
        members.append(
            {
                "run": rec.run,
                "member": m,
                "init_seed": None,
                "order_seed": None,
                "aug_seed": None,
                "epochs_done": done,
                "final_acc": json.dumps(final),
                "train_seconds": seconds,
            }
        )
    splits = sorted({k for f in finals for k in f})
    mean_final = {s: float(np.mean([f[s] for f in finals if s in f])) for s in splits}
    info = catalog.version_info()
    try:
        import torch

        torch_version = torch.__version__
    except ImportError:  # pragma: no cover - torch is a dependency
        torch_version = None
    run_row = {
        "run": rec.run,
        "dataset": rec.dataset,
        "arch": rec.arch,
        "members": rec.members,
        "epochs": rec.epochs,
        "seed": rec.seed,
        "strategy": STRATEGY,
        "device": rec._device,
        "world_size": 1,
        "recipe": json.dumps(rec.identity),
        "path": str(rec.run_dir),
        "train_seconds": total,
        "mean_final_acc": json.dumps(mean_final),
        "version": info["version"],
        "git_rev": info["git_rev"],
        "torch_version": torch_version,
        "precision": rec.precision,
    }
    import pyarrow as pa

    with catalog.write(rec.ws) as con:
        con.execute("DELETE FROM members WHERE run = ?", [rec.run])
        con.execute("DELETE FROM runs WHERE run = ?", [rec.run])
        # Arrow rows, as `curate train` writes them: None stays NULL
        catalog.insert_frame(con, "runs", pa.Table.from_pylist([run_row]), now=("finished_at",))
        catalog.insert_frame(con, "members", pa.Table.from_pylist(members))


def _as_ids(idx) -> np.ndarray:
    if hasattr(idx, "detach"):
        idx = idx.detach().cpu().numpy()
    a = np.asarray(idx)
    if a.ndim != 1 or not (np.issubdtype(a.dtype, np.integer) or a.size == 0):
        raise CurateError(
            f"idx must be a 1-d array of integer instance ids, got {a.dtype} of shape {a.shape}"
        )
    return a.astype(np.int64, copy=False)


def _as_logits(logits, n: int, k: int, key):
    import torch

    if isinstance(logits, torch.Tensor):
        z = logits.detach()
    else:
        a = np.asarray(logits)
        if a.dtype.kind not in "fiub":
            raise CurateError(
                f"{_name(key)}: logits must be a float tensor or array (B, C), got "
                f"{type(logits).__name__} of {a.dtype}"
            )
        z = torch.from_numpy(a)
    if z.ndim != 2 or z.shape[0] != n or not (z.is_floating_point() or z.numel() == 0):
        raise CurateError(
            f"{_name(key)}: logits must be a float array of shape (B, C) = ({n}, {k}) for {n} idx, "
            f"got {z.dtype} of shape {tuple(z.shape)}"
        )
    if z.shape[1] != k:
        raise CurateError(
            f"{_name(key)}: logits have {z.shape[1]} classes, the dataset has {k}; give the "
            "model's raw output with one column per class, in the catalog's class order"
        )
    if not bool(torch.isfinite(z).all()):
        bad = int((~torch.isfinite(z)).any(1).sum())
        raise CurateError(
            f"{_name(key)}: {bad} rows of the logits are NaN or infinite; the model diverged or "
            "the batch is broken. Nothing of this batch was recorded"
        )
    return z.float()


def _stats(z, y, multilabel: bool):
    from curate.train.logits import error_norm, logit_stats, multilabel_stats

    stats = multilabel_stats if multilabel else logit_stats
    pred, p_true, margin = stats(z.unsqueeze(1), y)
    el2n = error_norm(z.unsqueeze(1), y, multilabel)
    return tuple(t[0].cpu().numpy() for t in (pred, p_true, margin, el2n))


def _name(key: tuple[str, int, int]) -> str:
    split, m, e = key
    return f"(split {split}, member {m}, epoch {e})"


def _range(idx: np.ndarray) -> str:
    return f"{int(idx.min())} to {int(idx.max())}" if len(idx) else "nowhere (it is empty)"
