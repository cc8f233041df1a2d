"""Recording a finished (or partly finished) run in the catalog's `runs` and `members` tables."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from curate import catalog
from curate.config import Recipe
from curate.train import predlog
from curate.train.seeds import member_seeds
from curate.workspace import Workspace

# the members row built below, by name (insert_frame orders it by the schema)
MEMBER_COLUMNS = [
    "run",
    "member",
    "init_seed",
    "order_seed",
    "aug_seed",
    "epochs_done",
    "final_acc",
    "train_seconds",
]


def _subset_info(path: str, checksum: str | None) -> str | None:
    """runs.subset_info: the subset's sidecar (from `curate prune`) and path, as JSON."""
    if not path:
        return None
    from curate.prune import read_sidecar

    return json.dumps(read_sidecar(path) | {"path": path, "checksum": checksum})


@dataclass(frozen=True)
class RunRecord:
    """What `record_run` stores of a run besides its folder's progress records.

    Attributes
    ----------
    run : the run's name
    run_dir : its folder (prediction log, progress records)
    recipe : the recipe it was trained with
    dataset : the ingested dataset it trained on
    strategy : the learner that trained it (fused, separate, adaboost, ...)
    device : where it trained
    identity : the settings that define the run (`runs.identity`, JSON)
    precision : the training precision (fp32, bf16)
    """

    run: str
    run_dir: Path
    recipe: Recipe
    dataset: str
    strategy: str
    device: torch.device
    identity: dict
    precision: str = "fp32"


def record_run(ws: Workspace, rec: RunRecord) -> None:
    """Replace the run's rows in `runs` and `members` with what its folder records.

    Parameters
    ----------
    ws : the workspace whose catalog is written
    rec : the run and what its folder does not record
    """
    run, run_dir, recipe, dataset = rec.run, rec.run_dir, rec.recipe, rec.dataset
    strategy, device, identity, precision = rec.strategy, rec.device, rec.identity, rec.precision
    t = recipe.train
    rows, unit_epochs, finals = [], {}, []
    for m in range(t.members):
        prog = predlog.read_progress(run_dir, m)["epochs"]
        done = predlog.last_done_epoch(run_dir, m)
        s = member_seeds(t.seed, m)
        final = prog.get(str(done), {}).get("acc", {})
        seconds = sum(v.get("seconds", 0.0) for v in prog.values())
        unit_epochs.update({(v.get("unit", m), e): v.get("seconds", 0.0) for e, v in prog.items()})
        finals.append(final)
        rows.append([run, m, s["init"], s["order"], s["aug"], done, json.dumps(final), seconds])
    secs = sum(unit_epochs.values())  # a fused unit's epoch counts once, not once per member
    splits = sorted({k for f in finals for k in f})
    mean_final = {sp: float(np.mean([f[sp] for f in finals if sp in f])) for sp in splits}
    info = catalog.version_info()
    with catalog.write(ws) as con:
        con.execute("DELETE FROM members WHERE run = ?", [run])
        con.execute("DELETE FROM runs WHERE run = ?", [run])
        run_row = {
            "run": run,
            "dataset": dataset,
            "arch": t.arch,
            "members": t.members,
            "epochs": t.epochs,
            "seed": t.seed,
            "strategy": strategy,
            "device": device.type,
            "world_size": int(os.environ.get("WORLD_SIZE", "1")),
            "recipe": json.dumps(identity),
            "path": str(run_dir),
            "train_seconds": secs,
            "mean_final_acc": json.dumps(mean_final),
            "version": info["version"],
            "git_rev": info["git_rev"],
            "torch_version": torch.__version__,
            "precision": precision,
            "subset": identity["train"].get("subset") or None,  # the subset's checksum
            "subset_info": _subset_info(t.subset, identity["train"].get("subset")),
        }
        # Arrow, not pandas: None stays NULL and NaN stays NaN, as when the values were bound
        catalog.insert_frame(con, "runs", pa.Table.from_pylist([run_row]), now=("finished_at",))
        members = [dict(zip(MEMBER_COLUMNS, r, strict=True)) for r in rows]
        catalog.insert_frame(con, "members", pa.Table.from_pylist(members))
