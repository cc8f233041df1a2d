"""`curate.Recorder`: the prediction log of a user's own training loop, written exactly as `curate
train` writes it (`curate.runlog`), so `curate score`, `label-issues`, `report` and the app
read it unchanged.

A run has M members and epochs 0..E (epoch 0 = each member before its first training step, as
`curate train` logs it). For every split, member and epoch the user's evaluation pass calls
``rec.log(split, member, epoch, idx, logits)`` with batches in any order and of any size, on any
device; the part (split, member, epoch) is written, atomically (temporary file, then rename), the
moment every instance of the split has been logged exactly once. Once every split of (member,
epoch) is written, the member's progress record marks the epoch done, with the wall time since the
previous epoch the recorder completed (of any member: the times add up to the time recorded);
`close()` records the run in the catalog's `runs` and `members` tables (`curate.runlog.record_run`).

Resuming: a rerun of the same script with the same arguments finds the parts already written and
skips them: `log()` on a complete part is a no-op (nothing is computed or checked), `done()` and
`next_epoch()` tell the loop what it may skip. A killed process loses at most the parts it had not
finished. While a part is being recorded its lock file is held (an advisory lock the kernel
releases when the process ends, so a killed recorder leaves no stale lock); a second process
recording the same part is refused at once.

Sharded recording (several ranks of one DDP job evaluating one member, each on its own share of
the split, as a DistributedSampler deals it): `Recorder(..., distributed=True)` or `set_rank()`
(the Lightning and Hugging Face callbacks call it under DDP). Each rank logs the instances its
loader gives it and, at the end of the pass, `end_pass()` writes them to its own hidden file beside
the part (`runlog.rank_shard_path`); no lock or file is shared between ranks. The part itself,
`part.parquet`, the one file readers see, is written by one rank with a rename once the ranks'
files together cover every idx of the split: under a torch.distributed process group, rank 0 after
a barrier (and every rank learns the outcome by a broadcast); without one, whichever rank finds
every rank's file present. Instances logged by several ranks (a DistributedSampler pads the split
to a multiple of the ranks by repeating some) count once, and must agree
(`runlog.shards.disagree`), else the part is refused. A rank's file left by a process that died
before its part was written is stale (its model may not be the one retrained since): when a
process takes rank r, it removes rank r's files older than the process (its start, from the
kernel: a forked child's own), so no other rank merges them. Without a group, a rank that starts
only after the others have ended that pass is too late for it.

Training state: `save_state(member, epoch, state)` keeps the user's state (model and optimizer
state_dicts; without torch, anything picklable) with the log, atomically; `load_state(member)`
gives back the last one saved at an epoch whose parts are all written, so a resumed loop starts
from weights that match its log.
"""

from __future__ import annotations

import os
import pickle
import sys
import threading
import time
import warnings
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from curate import catalog, runlog
from curate.config import check_name
from curate.data.positions import find_positions
from curate.errors import CurateError
from curate.locks import exclusive
from curate.runlog.layout import MAX_EPOCHS, MAX_MEMBERS
from curate.workspace import Workspace, atomic_path, process_start, remove_dead_temps

PASS = runlog.EVAL  # the recorder writes the evaluation pass, the one `curate score` reads


STRATEGY = "recorder"  # runs.strategy of a run recorded from the user's own loop
# a resumed member is suspect when its accuracy on a split drops by more than this from the
# epoch before, or falls to within CHANCE_BAND of chance after being WELL_ABOVE chance
RESUME_DROP, CHANCE_BAND, WELL_ABOVE = 0.25, 0.05, 0.2
INCOMPLETE_CAUSE = (
    "likely an eval loader with drop_last=True, a sampler that skips instances, or a "
    "DistributedSampler without sharded recording (Recorder(..., distributed=True), or the "
    "Lightning / Hugging Face callback under DDP)"
)


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
    distributed : record sharded over the ranks of torch.distributed's process group (each rank
        logs its own share of each split and calls `end_pass`); the rank and world size are read
        when the group is up (at the first `log`), or given by `set_rank`.

    Logits are turned into the log's columns by the same functions `curate train` uses
    (`curate.runlog.columns`), in float32 whatever the dtype given. One Recorder is used by one
    thread; several processes may record one run when each records its own parts (e.g. one
    member each).
    """

    ORIGIN = "recorder"  # the manifest's origin (`curate import-log` records with "import")

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
        distributed: bool = False,
    ) -> None:
        self.ws = workspace if isinstance(workspace, Workspace) else Workspace.resolve(workspace)
        self.run = check_name(str(run), "run")
        bounds = (("members", members, 2, MAX_MEMBERS), ("epochs", epochs, 1, MAX_EPOCHS))
        for what, v, low, high in bounds:
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not low <= v <= high:
                why = " (agreement needs at least 2 members)" if what == "members" else ""
                raise CurateError(f"{what} = {v!r}: must be an integer in {low}..{high}{why}")
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
        self.manifest = runlog.Manifest(
            dataset,
            self.members,
            self.epochs,
            self.arch,
            splits=tuple(self.splits),
            origin=self.ORIGIN,
            seed=seed,
        )
        self._check_run_dir()
        self._open: dict[tuple[str, int, int], _OpenPart] = {}
        self._complete: set[tuple[str, int, int]] = set()
        self._acc: dict[tuple[str, int, int], float] = {}
        self._device = "cpu"
        self._since = time.perf_counter()  # the last epoch completed here, of any member
        self._closed = False
        self._kind_checked = False  # the first batch is looked at once: probabilities, not logits?
        self._rank, self._world, self._distributed = 0, 1, bool(distributed)
        self._resolve_rank()
        self._scan()
        self._at_start = set(self._complete)  # parts written before this process: a resume
        self._checked: set[int] = set()  # members whose resumed accuracy was checked

    # ------------------------------------------------------------------ the run folder

    def _check_run_dir(self) -> None:
        """Start the run's folder, or refuse one recorded (or trained) with other settings."""
        diff = runlog.prepare_run(self.run_dir, self.manifest)
        if diff:
            raise CurateError(
                f"run {self.run!r} in {self.run_dir} was recorded with other settings "
                f"(differs in: {', '.join(diff)}); choose another run name to "
                f"keep both, or delete {self.run_dir} to start over"
            )

    def _scan(self) -> None:
        """Find the parts already written; mark epochs whose parts are all there but whose
        progress record a killed process did not write."""
        for m in range(self.members):
            prog = runlog.read_progress(self.run_dir, m)["epochs"]
            for e in range(self.epochs + 1):
                have = [
                    s
                    for s in self.splits
                    if runlog.shard_path(self.run_dir, PASS, s, m, e).exists()
                ]
                self._complete.update((s, m, e) for s in have)
                if len(have) == len(self.splits) and str(e) not in prog:
                    self._mark_done(m, e, seconds=0.0)

    # ------------------------------------------------------------------ what is left

    def done(self, split: str, member: int, epoch: int) -> bool:
        """Whether the part (split, member, epoch) is written (a resumed run skips it); a part
        another process (rank) wrote since is found on disk."""
        key = (split, int(member), int(epoch))
        if key not in self._complete and runlog.shard_path(self.run_dir, PASS, *key).exists():
            self._complete.add(key)
        return key in self._complete

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
            if not self.done(s, m, e)
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
        rows = self.data.splits[split]
        ids = _as_ids(idx)
        z = _as_logits(logits, len(ids), self.data.num_classes, key)
        if not self._kind_checked and len(ids):
            self._kind_checked = True
            if not self.data.multilabel and _look_like_probabilities(z):
                warnings.warn(
                    f"run {self.run!r} {_name(key)}: every row of the logits is in [0, 1] and sums "
                    "to 1, like softmax probabilities; the recorder takes logits (the raw output "
                    "before softmax) and applies softmax itself. Pass the logits, or the log of "
                    "the probabilities",
                    ProbabilitiesWarning,
                    stacklevel=2,
                )
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
        repeat = part is not None and bool(part.seen[pos].any())
        if repeat and self._world == 1:
            twice = rows.idx[pos[part.seen[pos]][0]]
            raise CurateError(
                f"{_name(key)}: idx {int(twice)} was already logged for this part; log each "
                "instance once per part (a new epoch is a new part; a DistributedSampler repeats "
                "instances to pad the ranks: record sharded, Recorder(..., distributed=True))"
            )
        y = rows.labels[pos]  # numpy; member_columns moves it to a tensor's device
        cols = dict(
            zip(runlog.COLUMNS, runlog.member_columns(z, y, self.data.multilabel), strict=True)
        )
        _check_columns(cols, key)
        if repeat:
            self._check_repeat(key, part, pos, cols)
        if part is None:
            self._check_boundary(key)
            part = self._open[key] = self._start(key, len(rows.idx))
        part.pred[pos], part.p_true[pos], part.margin[pos] = (
            cols["pred"],
            cols["p_true"],
            cols["margin"],
        )
        part.el2n[pos] = cols["el2n"]
        part.count += int((~part.seen[pos]).sum())
        part.seen[pos] = True
        self._device = "cpu" if isinstance(z, np.ndarray) else z.device.type
        if self._world == 1 and part.count == len(rows.idx):
            self._finish(key, part)

    def _check_repeat(self, key, part: _OpenPart, pos: np.ndarray, cols: dict) -> None:
        """Refuse instances this rank logged before in the part with another prediction."""
        again = part.seen[pos]
        old = {c: getattr(part, c)[pos[again]] for c in runlog.COLUMNS}
        bad = runlog.disagree({c: v[again] for c, v in cols.items()}, old)
        if bad.any():
            i = int(self.data.splits[key[0]].idx[pos[again][bad][0]])
            raise CurateError(
                f"{_name(key)}: idx {i} was logged twice with different predictions; every "
                "instance of a part must be predicted by the same weights, in eval mode"
            )

    def _check_boundary(self, key: tuple[str, int, int]) -> None:
        """Refuse to start a later epoch of a member while a part of an earlier one is open: its
        pass ended without covering the split."""
        for k, part in list(self._open.items()):
            if k[1] == key[1] and k[2] < key[2]:
                if self._world > 1:
                    raise CurateError(
                        f"{_name(k)} is still open as {_name(key)} starts: when recording "
                        "sharded, call rec.end_pass(member, epoch) on every rank after each pass"
                    )
                self._drop(k)
                raise self._incomplete(k, int(part.count))

    def _incomplete(self, key: tuple[str, int, int], covered: int) -> CurateError:
        """The error of a pass that ended without covering its split."""
        n = len(self.data.splits[key[0]].idx)
        ranks = f" by {self._world} ranks together" if self._world > 1 else ""
        return CurateError(
            f"{_name(key)}: the eval pass ended with {covered} of the split's {n} idx logged"
            f"{ranks}, so the part is incomplete and nothing of it is written; {INCOMPLETE_CAUSE}"
        )

    def _drop(self, key: tuple[str, int, int]) -> None:
        part = self._open.pop(key, None)
        if part is not None:
            part.lock.close()

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
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
                raise CurateError(f"{what} {v!r}: give a whole number, 0..{top}")
            if not 0 <= v <= top:
                raise CurateError(
                    f"{what} {v!r} is outside the declared 0..{top} (members={self.members}, "
                    f"epochs={self.epochs}, epoch 0 = before training); declare more when "
                    "creating the Recorder under a new run name"
                )
        return split, int(member), int(epoch)

    def _start(self, key: tuple[str, int, int], n: int) -> _OpenPart:
        split, m, e = key
        path = runlog.shard_path(self.run_dir, PASS, split, m, e)
        stack = ExitStack()
        if self._world == 1:  # sharded: each rank writes its own file, no lock is shared
            stack.enter_context(
                exclusive(
                    path.parent / ".recording.lock",
                    f"part {_name(key)} of run {self.run!r}",
                    "another process is recording it: record each part in one process (e.g. one "
                    "member per process), or wait for it to finish" + _ddp_hint(),
                )
            )
        for stale in path.parent.glob(f".{path.name}.*.tmp"):  # a killed writer's temporary
            stale.unlink(missing_ok=True)
        if path.exists():  # written by another process since this one started
            stack.close()
            raise CurateError(
                f"part {_name(key)} of run {self.run!r} was written by another process while "
                "this one ran; rerun the script to resume from what is written" + _ddp_hint()
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
        try:
            self._write_part(key, {c: getattr(part, c) for c in runlog.COLUMNS})
        finally:
            self._drop(key)

    def _write_part(self, key: tuple[str, int, int], cols: dict[str, np.ndarray]) -> None:
        """Write the part (columns in the split's idx order) and mark its epoch when complete."""
        split, m, e = key
        rows = self.data.splits[split]
        runlog.write_shard(
            runlog.shard_path(self.run_dir, PASS, split, m, e),
            rows.idx,
            cols["pred"],
            cols["p_true"],
            cols["margin"],
            wide=self.data.multilabel,
            el2n=cols["el2n"],  # as `curate train` logs it: EL2N of these logits
        )
        self._complete.add(key)
        self._acc[key] = float(np.mean(cols["pred"] == rows.labels)) if len(rows.idx) else 0.0
        if self.epoch_done(m, e):
            now = time.perf_counter()
            self._mark_done(m, e, seconds=now - self._since)
            self._since = now
            self._check_resumed(m, e)

    def _check_resumed(self, m: int, e: int) -> None:
        """Warn when the first epoch of `m` this process records follows an epoch written before
        it started and its accuracy is far below that epoch's (`RESUME_DROP`, or down to chance):
        the loop most likely resumed a fresh model instead of the member's trained one."""
        if m in self._checked or e == 0:
            return
        self._checked.add(m)
        if not all((s, m, e - 1) in self._at_start for s in self.splits):
            return
        for s in self.splits:
            before, now = self._part_acc((s, m, e - 1)), self._part_acc((s, m, e))
            chance = _chance(self.data.splits[s].labels)
            dropped = now < before - RESUME_DROP
            to_chance = before >= chance + WELL_ABOVE and now <= chance + CHANCE_BAND
            if dropped or to_chance:
                warnings.warn(
                    f"run {self.run!r} member {m}: accuracy on {s} fell from {before:.3f} at "
                    f"epoch {e - 1} (recorded before this process started) to {now:.3f} at epoch "
                    f"{e} (chance {chance:.3f}); likely a fresh model mixed into the member's "
                    "log: restore the member's training state on resume (rec.save_state / "
                    "rec.load_state), or delete the run to start over",
                    ResumedAccuracyWarning,
                    stacklevel=4,
                )
                return

    def _part_acc(self, key: tuple[str, int, int]) -> float:
        if key not in self._acc:
            split, m, e = key
            path = runlog.shard_path(self.run_dir, PASS, split, m, e)
            t = runlog.read_shard(path, ["idx", "pred"])
            rows = self.data.splits[split]
            pos = rows.positions(t["idx"].astype(np.int64))
            self._acc[key] = float(np.mean(t["pred"] == rows.labels[pos]))
        return self._acc[key]

    def _mark_done(self, m: int, e: int, seconds: float) -> None:
        acc = {s: self._part_acc((s, m, e)) for s in self.splits}
        record = {"acc": acc, "seconds": seconds, "unit": f"member-{m}"}
        if self._world > 1:  # the processes that recorded it (a parent of spawned ranks has none)
            record["world"] = self._world
        runlog.mark_epoch_done(self.run_dir, m, e, record)

    # ------------------------------------------------------------------ sharded recording

    @property
    def rank(self) -> int:
        """This process's rank in sharded recording (0 when not sharded)."""
        return self._rank

    @property
    def world_size(self) -> int:
        """The ranks recording each part together (1: this process records whole parts)."""
        return self._world

    def set_rank(self, rank: int, world_size: int) -> None:
        """Record sharded as rank `rank` of `world_size` (1: whole parts, in this process).

        Raises CurateError while parts are open (between a pass's first `log` and `end_pass`).
        """
        rank, world_size = int(rank), int(world_size)
        if (rank, world_size) == (self._rank, self._world):
            return
        if not 0 <= rank < world_size:
            raise CurateError(f"rank {rank} of {world_size} ranks: need 0 <= rank < world_size")
        if self._open:
            raise CurateError(
                f"rank and world size changed while {_name(next(iter(self._open)))} is open; "
                "set them before the pass"
            )
        self._rank, self._world = rank, world_size
        if world_size > 1:
            self._remove_stale_rank_files()

    def _remove_stale_rank_files(self) -> None:
        """Remove this rank's files left by an earlier process (a killed attempt): a part whose
        ranks' files are all present is merged, and one of them from a model since retrained would
        enter the log. Files of this process, and the other ranks' files, are left alone."""
        name = runlog.rank_shard_path(Path("."), PASS, "s", 0, 0, self._rank, self._world).name
        root = runlog.split_dir(self.run_dir, PASS, "_").parent
        began = process_start()
        for path in root.glob(f"split=*/member=*/epoch=*/{name}"):
            try:
                if path.stat().st_mtime < began:
                    path.unlink()
            except FileNotFoundError:
                pass

    def _resolve_rank(self) -> None:
        """With distributed=True: take the rank from torch.distributed once its group is up."""
        if not self._distributed or self._world > 1:
            return
        dist = _process_group()
        if dist is not None and dist.get_world_size() > 1:
            self.set_rank(dist.get_rank(), dist.get_world_size())

    def end_pass(self, member: int, epoch: int, splits=None) -> None:
        """End the evaluation pass of (member, epoch) over `splits` (default: every recorded split).

        Not sharded: every such part must be written by now (its split fully logged), else a
        CurateError names the split, how many idx came and the likely cause. Sharded: this rank's
        rows of each part go to its own file; under a torch.distributed group all ranks must call
        it (it holds a barrier), rank 0 writes each part the ranks cover and every rank raises
        when one is not covered; without a group, the rank that finds every rank's file present
        writes the part.
        """
        self._resolve_rank()
        keys = [self._key(s, member, epoch) for s in (self.splits if splits is None else splits)]
        if self._world == 1:
            for key in keys:
                if not self.done(*key):
                    part = self._open.get(key)
                    self._drop(key)
                    raise self._incomplete(key, 0 if part is None else int(part.count))
            return
        todo = [k for k in keys if not self.done(*k)]
        dist = _process_group()
        grouped = dist is not None and dist.get_world_size() == self._world
        own = {}  # rank 0 under a group merges its own rows from memory, without a file
        written = []
        for key in todo:
            if grouped and self._rank == 0:
                own[key] = self._rows(key)
                self._drop(key)
            else:
                self._write_rank_file(key)
                written.append(key)
        if not grouped:
            outcome = self._merge_all(todo)
        else:
            # every rank says which pass of which run it ended; once all have (the gather is also
            # the barrier: every rank's file is in place), all must agree
            said = [None] * self._world
            mine = (self.run, sorted(keys), str(self.run_dir))
            with _waiting_note(self, member, epoch):
                dist.all_gather_object(said, mine)
            # the folder only informs: one shared folder may be mounted at other paths on other
            # machines (a folder that is not shared leaves a share missing, refused below)
            if any(x[:2] != said[0][:2] for x in said):
                self._unlink_rank_files(written)  # nothing of this pass is left behind
                raise CurateError(_ranks_differ(said))
            outcome = [self._merge_all(todo, own) if self._rank == 0 else None]
            dist.broadcast_object_list(outcome, src=0)
            outcome = outcome[0]
        for key, (state, message) in outcome.items():
            if state == "error":
                if grouped:  # every rank hears it: each removes its own files of the pass
                    self._unlink_rank_files(written)
                raise CurateError(message)
            if state == "done":
                self._complete.add(key)
            elif grouped:  # every rank ended the pass, and a share is still missing
                self._unlink_rank_files(written)
                raise CurateError(
                    f"{_name(key)} of run {self.run!r}: a rank's share is missing although every "
                    "rank ended the pass (removed meanwhile, or the ranks do not see one "
                    "workspace folder: a disk of each machine's own?); rerun the script to record "
                    "the pass again"
                )

    def _unlink_rank_files(self, keys) -> None:
        """Remove this rank's files of `keys` (a pass refused: nothing of it stays)."""
        for key in keys:
            path = runlog.rank_shard_path(self.run_dir, PASS, *key, self._rank, self._world)
            path.unlink(missing_ok=True)

    def _rows(self, key: tuple[str, int, int]) -> dict[str, np.ndarray]:
        """This rank's rows of the part: idx and the columns (empty when it logged none)."""
        part = self._open.get(key)
        rows = self.data.splits[key[0]]
        seen = np.zeros(len(rows.idx), bool) if part is None else part.seen
        cols = {
            c: (np.zeros(0) if part is None else getattr(part, c)[seen]) for c in runlog.COLUMNS
        }
        return {"idx": rows.idx[seen], **cols}

    def _write_rank_file(self, key: tuple[str, int, int]) -> None:
        """This rank's rows of the part (possibly none) to its own file, atomically."""
        t = self._rows(key)
        path = runlog.rank_shard_path(self.run_dir, PASS, *key, self._rank, self._world)
        runlog.write_shard(
            path, t["idx"], t["pred"], t["p_true"], t["margin"], self.data.multilabel, t["el2n"]
        )
        self._drop(key)

    def _merge_all(self, keys, own: dict | None = None) -> dict:
        """key -> (state, message) for each part: "done" (written), "pending" (ranks missing) or
        "error" (the ranks do not cover the split, or disagree)."""
        out = {}
        for key in keys:
            try:
                out[key] = (self._merge(key, (own or {}).get(key)), "")
            except CurateError as e:
                out[key] = ("error", str(e))
        return out

    def _merge(self, key: tuple[str, int, int], own: dict | None = None) -> str:
        """Write the part from the ranks' files once all are present (this rank's rows from
        `own` when given, instead of its file): "done" or "pending"."""
        if runlog.shard_path(self.run_dir, PASS, *key).exists():
            return "done"
        paths = [
            runlog.rank_shard_path(self.run_dir, PASS, *key, r, self._world)
            for r in range(self._world)
            if own is None or r != self._rank
        ]
        if not all(p.exists() for p in paths):
            return "pending"
        rows = self.data.splits[key[0]]
        try:
            merged = runlog.merge_rank_shards(
                paths, rows.positions, len(rows.idx), _name(key), first=own
            )
        except FileNotFoundError:  # another rank merged them meanwhile
            return "done" if runlog.shard_path(self.run_dir, PASS, *key).exists() else "pending"
        if merged.covered < len(rows.idx):
            raise self._incomplete(key, merged.covered)
        self._write_part(key, merged.columns)
        for p in paths:
            p.unlink(missing_ok=True)
        return "done"

    # ------------------------------------------------------------------ training state

    def save_state(self, member: int, epoch: int, state: dict) -> None:
        """Keep the user's training state of `member` as it is after `epoch`, atomically.

        Parameters
        ----------
        member, epoch : the member and the epoch the state has finished (0: untrained).
        state : e.g. ``{"model": model.state_dict(), "opt": opt.state_dict()}``: saved with
            ``torch.save`` where torch is installed, else pickled (numpy arrays, an sklearn
            estimator: anything picklable); `load_state` reads either.

        `load_state` returns it once every part of (member, epoch) is written, so save it right
        after training epoch `epoch` or after its evaluation pass, either way. States of earlier
        epochs are removed once a later one counts. Under sharded recording only rank 0 writes.
        """
        key = self._key(self.splits[0], member, epoch)
        if self._world > 1 and self._rank != 0:
            return
        torch = _torch()
        with atomic_path(runlog.state_path(self.run_dir, key[1], key[2]), ".pt") as tmp:
            if torch is not None:
                torch.save(state, tmp)
            else:
                with open(tmp, "wb") as f:
                    pickle.dump(state, f, protocol=pickle.HIGHEST_PROTOCOL)
        # a save killed midway (an earlier process) left its temporary beside the states
        remove_dead_temps(runlog.state_dir(self.run_dir, key[1]), "epoch=*.pt")
        usable = [
            e for e in runlog.saved_state_epochs(self.run_dir, key[1]) if self.epoch_done(key[1], e)
        ]
        for e in runlog.saved_state_epochs(self.run_dir, key[1]):
            if usable and e < usable[-1]:
                runlog.state_path(self.run_dir, key[1], e).unlink(missing_ok=True)

    def load_state(self, member: int, map_location=None):
        """The last training state of `member` saved at an epoch whose parts are all written.

        Parameters
        ----------
        member : the member.
        map_location : passed to ``torch.load`` (a state saved with torch).

        Returns
        -------
        (epoch, state), or None when there is none: resume the loop at ``epoch + 1`` from `state`
        (parts of later epochs already written are skipped by `log`), or at 0 from a fresh model.
        """
        m = self._key(self.splits[0], member, 0)[1]
        for e in reversed(runlog.saved_state_epochs(self.run_dir, m)):
            if e <= self.epochs and self.epoch_done(m, e):
                return e, _load_state_file(runlog.state_path(self.run_dir, m, e), map_location)
        return None

    # ------------------------------------------------------------------ closing

    def close(self) -> RecordedRun:
        """Record the run in the catalog's `runs` and `members` tables (what is written so far).

        Parts not complete are dropped (they were never visible) and listed in the result, and on
        stderr; a rerun of the script records them. What is missing is read from the files on
        disk, so every process (every rank, the parent of spawned ranks) reports the same. When
        recording sharded, rank 0 first writes any part whose ranks' files are all present, and
        only rank 0 writes the catalog rows. Calling close() twice is harmless.
        """
        if self._closed:
            return self._result
        self._closed = True
        for key in list(self._open):
            self._drop(key)
        if self._world > 1 and self._rank == 0:
            self._merge_all(self.missing())  # a part no rank could complete (a lost file view)
        missing = self.missing()
        if self._world == 1 or self._rank == 0:
            record_recorded_run(self)
        done = {m: runlog.last_done_epoch(self.run_dir, m) for m in range(self.members)}
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
    """Replace the run's rows in `runs` and `members` with what its folder records
    (`curate.runlog.record_run`, as `curate train` records its runs); seeds unknown to curate are
    NULL."""
    facts = runlog.RunFacts(STRATEGY, rec._device, rec.precision)
    runlog.record_run(rec.ws, rec.run, rec.run_dir, rec.manifest, facts)


def _ddp_hint() -> str:
    """For a recorder of whole parts in a DDP job (a process group, or torchrun's WORLD_SIZE, of
    more than one process): what the two ways of recording there are; else ""."""
    try:
        world = runlog.world_size()
    except ValueError:  # a $WORLD_SIZE that is no number: no DDP job to speak of
        return ""
    if world <= 1:
        return ""
    return (
        f". This process is one of {world} of a DDP job, and this Recorder records whole parts: "
        "if each rank evaluates its share of the split (a DistributedSampler), create it with "
        "distributed=True on every rank; if every rank evaluates the whole split, record on rank 0 "
        "only"
    )


WAIT_NOTE = 60.0  # s a rank waits at end_pass for the others before it says so on stderr


@contextmanager
def _waiting_note(rec: Recorder, member: int, epoch: int):
    """While the block runs: after `WAIT_NOTE` s, one line on stderr saying which rank waits for
    the others at which pass, and the usual cause (a rank that never ends the pass waits until
    the process group's own timeout, 30 minutes by default)."""

    def note() -> None:
        print(
            f"rank {rec.rank} of {rec.world_size}: waiting {WAIT_NOTE:.0f} s so far at "
            f"end_pass(member {member}, epoch {epoch}) of run {rec.run!r} for the other ranks. "
            "Recording with distributed=True, every rank must call end_pass for every pass (a "
            "loop that evaluates on rank 0 only: create the Recorder there without "
            "distributed=True)",
            file=sys.stderr,
            flush=True,
        )

    timer = threading.Timer(WAIT_NOTE, note)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def _ranks_differ(said: list) -> str:
    """The one message for ranks that ended different passes, or passes of different runs."""

    def what(x) -> str:
        run, keys, folder = x
        passes = sorted({(m, e) for _, m, e in keys})
        ended = ", ".join(f"member {m} epoch {e}" for m, e in passes) or "nothing"
        return f"run {run!r} in {folder}, {ended} ({', '.join(sorted({s for s, _, _ in keys}))})"

    ranks = "; ".join(f"rank {r}: {what(x)}" for r, x in enumerate(said))
    return (
        f"the ranks ended different passes at once ({ranks}); sharded recording needs every rank "
        "to give the Recorder the same workspace, run, members and epochs, and to call "
        "end_pass(member, epoch) for the same pass and splits. Nothing of this pass was recorded"
    )


def _process_group():
    """torch.distributed when a process group is up (torch imported by then), else None."""
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        return dist
    return None


def _as_ids(idx) -> np.ndarray:
    if hasattr(idx, "detach"):
        idx = idx.detach().cpu().numpy()
    a = np.asarray(idx)
    if a.ndim != 1 or not (np.issubdtype(a.dtype, np.integer) or a.size == 0):
        raise CurateError(
            f"idx must be a 1-d array of integer instance ids, got {a.dtype} of shape {a.shape}"
        )
    if a.dtype == np.uint64 and a.size and int(a.max()) > np.iinfo(np.int64).max:
        raise CurateError(f"idx {int(a.max())} is beyond any split's idx (above 2^63 - 1)")
    return a.astype(np.int64, copy=False)


# the first bytes of a `torch.save` file (a zip archive's local file header: torch checks the
# same); a pickle of protocol 2 or later starts with 0x80
_TORCH_MAGIC = b"PK\x03\x04"


def _load_state_file(path: Path, map_location):
    """A state `save_state` wrote: torch.save's zip archive, else a pickle. A file that is neither
    (damaged, truncated) is one CurateError naming it."""
    with open(path, "rb") as f:
        saved_with_torch = f.read(4) == _TORCH_MAGIC
    torch = _torch()
    if saved_with_torch and torch is None:
        raise CurateError(
            f"{path} was saved with torch, which is not installed here; install torch "
            "(pip install 'curate[train]') to resume from it"
        )
    try:
        if saved_with_torch:
            return torch.load(path, map_location=map_location, weights_only=False)
        with open(path, "rb") as f:
            return pickle.load(f)
    except (pickle.UnpicklingError, EOFError, RuntimeError, ValueError, ImportError) as e:
        first = (str(e).splitlines() or [type(e).__name__])[0]
        raise CurateError(
            f"{path} is not a readable training state ({type(e).__name__}: {first}); move it "
            "away to resume from the state before it, or retrain the member"
        ) from None


def _torch():
    """torch when it is installed (logits are then computed with it, as `curate train` computes
    them), else None: the core install computes them with numpy."""
    from curate.extras import installed

    if "torch" not in sys.modules and not installed("torch"):
        return None
    import torch

    return torch


def _as_logits(logits, n: int, k: int, key):
    """The batch's logits (B, C) as float32: a torch tensor on the device given when torch is
    installed, else a numpy array (numpy logits, or anything with __array__)."""
    torch = _torch()
    if torch is not None and isinstance(logits, torch.Tensor):
        z = logits.detach()
    else:
        a = np.asarray(logits)
        if a.dtype.kind == "f" and a.dtype.itemsize > 8:  # long double: torch takes none
            with np.errstate(over="ignore"):
                a = a.astype(np.float64)
        if a.dtype.kind not in "fiub":
            raise CurateError(
                f"{_name(key)}: logits must be a float tensor or array (B, C), got "
                f"{type(logits).__name__} of {a.dtype}"
            )
        z = a if torch is None else torch.from_numpy(a)
    xp = np if isinstance(z, np.ndarray) else torch
    floating = z.dtype.kind == "f" if xp is np else z.is_floating_point()
    if z.ndim != 2 or z.shape[0] != n or not (floating or 0 in z.shape):
        raise CurateError(
            f"{_name(key)}: logits must be a float array of shape (B, C) = ({n}, {k}) for {n} idx, "
            f"got {z.dtype} of shape {tuple(z.shape)}"
        )
    if z.shape[1] != k:
        raise CurateError(
            f"{_name(key)}: logits have {z.shape[1]} classes, the dataset has {k}; give the "
            "model's raw output with one column per class, in the catalog's class order"
        )
    if xp is np:
        with np.errstate(over="ignore", invalid="ignore"):  # beyond float32: inf, refused below
            z = z.astype(np.float32)
    else:
        z = z.float()
    finite = xp.isfinite(z)
    if not bool(finite.all()):
        bad = int((~finite).any(1).sum())
        raise CurateError(
            f"{_name(key)}: {bad} rows of the logits are NaN or infinite (in float32, as they are "
            "recorded); the model diverged or the batch is broken. Nothing of this batch was "
            "recorded"
        )
    return z


def _check_columns(cols: dict, key) -> None:
    """Refuse a batch whose logits are finite but so far apart (beyond 1e38) that the margin or
    the error norm is not: nothing of it is recorded."""
    bad = ~np.isfinite(cols["margin"]) | ~np.isfinite(cols["p_true"]) | ~np.isfinite(cols["el2n"])
    if bad.any():
        raise CurateError(
            f"{_name(key)}: {int(bad.sum())} rows of the logits are too large to score (their "
            "differences overflow float32); the model diverged or the batch is broken. Nothing "
            "of this batch was recorded"
        )


class ProbabilitiesWarning(UserWarning):
    """The first batch given as logits looks like softmax probabilities."""


def _look_like_probabilities(z) -> bool:
    """Every row of a batch (B, C), C > 1, lies in [0, 1] and sums to 1 (within 1e-3), and some
    value lies strictly between 0 and 1 (one-hot rows are valid, if unusual, logits)."""
    if z.shape[1] < 2:
        return False
    lo, hi, sums = z.min(), z.max(), z.sum(1)
    if not (bool(lo >= 0) and bool(hi <= 1) and bool((abs(sums - 1) <= 1e-3).all())):
        return False
    return bool(((z > 1e-6) & (z < 1 - 1e-6)).any())


class ResumedAccuracyWarning(UserWarning):
    """A member's accuracy fell far at the first epoch recorded after a resume."""


def _chance(labels: np.ndarray) -> float:
    """The accuracy of always predicting the split's most common label (set)."""
    if not len(labels):
        return 0.0
    return float(np.unique(labels, return_counts=True)[1].max() / len(labels))


def _name(key: tuple[str, int, int]) -> str:
    split, m, e = key
    return f"(split {split}, member {m}, epoch {e})"


def _range(idx: np.ndarray) -> str:
    return f"{int(idx.min())} to {int(idx.max())}" if len(idx) else "nowhere (it is empty)"
