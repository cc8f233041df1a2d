"""Recording a run in the catalog: its `runs` row and one `members` row per member, from its
manifest and progress records. The one writer of those rows, called alike by `curate train`,
`curate.Recorder.close()` and `curate import-log`, so every column means the same whoever wrote it:

- `members.train_seconds`: the member's share of the wall time of the process that trained it
  (`curate.runlog.progress.member_seconds`: a fused unit's epoch is shared equally among its
  members); `runs.train_seconds` is their sum: the wall time of every process that trained the
  run, summed over processes, each second counted once whether members trained fused, one by one
  or on several ranks. A recorded run counts the time between the epochs its Recorder completed;
  an imported log was trained elsewhere: NULL.
- `runs.world_size` (`world_size`): the processes of the job that recorded the run (torchrun's
  ranks: torch.distributed's world size, else `$WORLD_SIZE`), 1 for a lone process; NULL for an
  imported log.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from curate import catalog
from curate.runlog.manifest import Manifest
from curate.runlog.progress import MemberState, mean_final_acc, member_states
from curate.workspace import Workspace


@dataclass(frozen=True)
class RunFacts:
    """What the catalog records of a run beyond its manifest and progress records.

    Attributes
    ----------
    strategy : the learner (fused, separate, adaboost, ...), or "recorder" for a recorded or
        imported log.
    device : where it trained (cpu, cuda).
    precision : the training arithmetic (fp32, bf16, ...; "unknown" when not told).
    seeds : member -> {"init", "order", "aug"} seeds; None when curate does not know them.
    subset : the checksum of the train subset it trained on; None = the whole split.
    subset_info : where that subset came from (the prune sidecar and its absolute path).
    """

    strategy: str
    device: str | None
    precision: str
    seeds: Mapping[int, Mapping[str, int]] | None = None
    subset: str | None = None
    subset_info: dict | None = None


def world_size() -> int:
    """The processes of this job: torch.distributed's world size once a process group is up, else
    torchrun's `$WORLD_SIZE`, else 1."""
    dist = sys.modules.get("torch.distributed")  # a group exists only if torch was imported
    if dist is not None and dist.is_available() and dist.is_initialized():
        return int(dist.get_world_size())
    return int(os.environ.get("WORLD_SIZE", "1"))


def _torch_version() -> str | None:
    try:
        import torch
    except ImportError:  # the core install (pip install curate) has no torch
        return None
    return torch.__version__


def run_row(
    run: str, run_dir: Path, manifest: Manifest, facts: RunFacts, states: list[MemberState]
) -> dict:
    """The `runs` row (all but `finished_at`, which the catalog stamps)."""
    timed = manifest.origin != "import"  # an imported log was trained elsewhere, by unknown means
    info = catalog.version_info()
    return {
        "run": run,
        "dataset": manifest.dataset,
        "arch": manifest.arch,
        "members": manifest.members,
        "epochs": manifest.epochs,
        "seed": manifest.seed,
        "strategy": facts.strategy,
        "device": facts.device,
        # this process's job, or the ranks that recorded the run together (spawned ranks whose
        # parent, outside their group, registers the run)
        "world_size": max([world_size(), *(s.world for s in states)]) if timed else None,
        "recipe": json.dumps(manifest.identity()),
        "path": str(run_dir),
        "train_seconds": sum(s.seconds for s in states) if timed else None,
        "mean_final_acc": json.dumps(mean_final_acc(states)),
        "version": info["version"],
        "git_rev": info["git_rev"],
        "torch_version": _torch_version(),
        "precision": facts.precision,
        "subset": facts.subset,
        "subset_info": None if facts.subset_info is None else json.dumps(facts.subset_info),
    }


def member_rows(
    run: str, manifest: Manifest, facts: RunFacts, states: list[MemberState]
) -> list[dict]:
    """The `members` rows, one per member."""
    timed = manifest.origin != "import"
    rows = []
    for s in states:
        seeds = (facts.seeds or {}).get(s.member, {})
        rows.append(
            {
                "run": run,
                "member": s.member,
                "init_seed": seeds.get("init"),
                "order_seed": seeds.get("order"),
                "aug_seed": seeds.get("aug"),
                "epochs_done": s.epochs_done,
                "final_acc": json.dumps(s.final_acc),
                "train_seconds": s.seconds if timed else None,
            }
        )
    return rows


def record_run(ws: Workspace, run: str, run_dir: Path, manifest: Manifest, facts: RunFacts) -> None:
    """Replace the run's rows in `runs` and `members` with what its folder records, in one
    transaction.

    Parameters
    ----------
    ws : the workspace whose catalog is written.
    run : the run's name.
    run_dir : the run's folder; its progress records give each member's last complete epoch,
        final accuracies and time.
    manifest : the run's manifest.
    facts : what neither of those records.
    """
    states = member_states(run_dir, manifest.members or 0)
    runs = pa.Table.from_pylist([run_row(run, run_dir, manifest, facts, states)])
    members = pa.Table.from_pylist(member_rows(run, manifest, facts, states))
    with catalog.write(ws) as con:
        con.execute("DELETE FROM members WHERE run = ?", [run])
        con.execute("DELETE FROM runs WHERE run = ?", [run])
        # Arrow, not pandas: None stays NULL and NaN stays NaN, as when the values were bound
        catalog.insert_frame(con, "runs", runs, now=("finished_at",))
        if members.num_rows:
            catalog.insert_frame(con, "members", members)
