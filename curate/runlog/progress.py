"""The completion flags of a run: one progress record per member, naming every epoch whose shards
(and, for `curate train`, checkpoint) are complete.

    <run>/progress/member=<m>.json   {"epochs": {"<e>": {"acc": {split: accuracy},
                                                         "seconds": s, "unit": name}}}

An epoch is marked only once every shard of it is written, so a killed writer resumes from the last
marked epoch. `seconds` is the wall time the unit that trained the member took for that epoch (its
training steps and its evaluation pass; 0 at epoch 0 of `curate train`); `unit` names that unit, the
members trained together (`fused-0-7`, `member-3`); absent, the member was its own unit.

`member_seconds` is the one definition of the time a member cost, behind `members.train_seconds`
and `runs.train_seconds`: a unit's epoch is shared equally among the members it trained, so the
members' times add up to the wall time of every process that trained the run (a fused epoch counts
once, not once per member).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from curate.runlog.layout import progress_path
from curate.workspace import atomic_path


def read_progress(run_dir: Path, member: int) -> dict:
    """The member's progress record; {"epochs": {}} when it has none yet."""
    p = progress_path(run_dir, member)
    return json.loads(p.read_text()) if p.exists() else {"epochs": {}}


def mark_epoch_done(run_dir: Path, member: int, epoch: int, record: dict) -> None:
    """Mark the member's `epoch` complete, with its `record` (acc, seconds, unit), atomically."""
    prog = read_progress(run_dir, member)
    prog["epochs"][str(epoch)] = record
    with atomic_path(progress_path(run_dir, member)) as tmp:
        tmp.write_text(json.dumps(prog, indent=1))


def last_done_epoch(run_dir: Path, member: int) -> int:
    """The last epoch of an unbroken run of complete epochs from 0; -1 when none."""
    done = read_progress(run_dir, member)["epochs"]
    e = -1
    while str(e + 1) in done:
        e += 1
    return e


def member_seconds(records: dict[int, dict]) -> dict[int, float]:
    """Each member's share of the wall time, from the members' epoch records.

    Parameters
    ----------
    records : member -> its progress record's "epochs" ({"<e>": {"seconds": s, "unit": ...}}).

    Returns
    -------
    member -> seconds: the sum over its epochs of the epoch's seconds divided by the number of
    members whose record names the same unit and epoch (a fused unit of 8 members gives each an
    eighth of every epoch; a member trained alone keeps its whole time).
    """

    def unit(m: int, rec: dict) -> str:
        return str(rec.get("unit", f"member-{m}"))

    shared = Counter((unit(m, r), e) for m, epochs in records.items() for e, r in epochs.items())
    return {
        m: float(sum(r.get("seconds", 0.0) / shared[(unit(m, r), e)] for e, r in epochs.items()))
        for m, epochs in records.items()
    }


@dataclass(frozen=True)
class MemberState:
    """What a member's progress record says at the end of a run."""

    member: int
    epochs_done: int  # the last complete epoch (-1: none)
    final_acc: dict[str, float]  # accuracy per split at that epoch
    seconds: float  # its share of the wall time (`member_seconds`)
    world: int = 1  # the most processes that recorded one of its epochs together (sharded)


def member_states(run_dir: Path, members: int) -> list[MemberState]:
    """The state of members 0..members-1 of the run in `run_dir`."""
    records = {m: read_progress(run_dir, m)["epochs"] for m in range(members)}
    seconds = member_seconds(records)
    states = []
    for m in range(members):
        done = last_done_epoch(run_dir, m)
        final = records[m].get(str(done), {}).get("acc", {})
        worlds = [r.get("world", 1) for r in records[m].values() if isinstance(r, dict)]
        world = max((w for w in worlds if isinstance(w, int)), default=1)
        states.append(MemberState(m, done, final, seconds[m], world))
    return states


def mean_final_acc(states: list[MemberState]) -> dict[str, float]:
    """The mean over members of their final accuracy, per split (members lacking a split skipped)."""
    splits = sorted({k for s in states for k in s.final_acc})
    return {
        sp: float(np.mean([s.final_acc[sp] for s in states if sp in s.final_acc])) for sp in splits
    }
