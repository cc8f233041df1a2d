"""Recording a finished (or partly finished) run in the catalog's `runs` and `members` tables."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from curate import db
from curate.config import Recipe
from curate.train import predlog
from curate.train.seeds import member_seeds
from curate.workspace import Workspace


def _subset_info(path: str, checksum: str | None) -> str | None:
    """runs.subset_info: the subset's sidecar (from `curate prune`) and path, as JSON."""
    if not path:
        return None
    from curate.prune import read_sidecar

    return json.dumps(read_sidecar(path) | {"path": path, "checksum": checksum})


def record_run(
    ws: Workspace,
    run: str,
    run_dir: Path,
    recipe: Recipe,
    dataset: str,
    strategy: str,
    device: torch.device,
    identity: dict,
    precision: str = "fp32",
) -> None:
    """Replace the run's rows in `runs` and `members` with what its folder records."""
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
    info = db.version_info()
    with db.write(ws) as con:
        con.execute("DELETE FROM members WHERE run = ?", [run])
        con.execute("DELETE FROM runs WHERE run = ?", [run])
        con.execute(
            "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, now()::TIMESTAMP, ?, ?, ?)",
            [
                run,
                dataset,
                t.arch,
                t.members,
                t.epochs,
                t.seed,
                strategy,
                device.type,
                int(os.environ.get("WORLD_SIZE", "1")),
                json.dumps(identity),
                str(run_dir),
                secs,
                json.dumps(mean_final),
                info["version"],
                info["git_rev"],
                torch.__version__,
                precision,
                identity["train"].get("subset") or None,  # the subset's checksum
                _subset_info(t.subset, identity["train"].get("subset")),
            ],
        )
        con.executemany("INSERT INTO members VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
