"""A run's folder and its identity: what makes two runs the same (dataset, loader and training
settings), recorded once in `run.json`; a different recipe asking for the same run is refused."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from curate.config import LoaderConfig, Recipe, TrainConfig
from curate.errors import CurateError
from curate.workspace import Workspace, atomic_path


def run_identity(recipe: Recipe, dataset: str) -> dict:
    """What makes two runs the same: the dataset, the loader and the training settings."""
    train = {
        k: v
        for k, v in dataclasses.asdict(recipe.train).items()
        if k not in ("device", "threads", "fuse_members")  # where and how fast, not what
    }
    return {
        "dataset": dataset,
        "loader": {
            k: v
            for k, v in dataclasses.asdict(recipe.loader).items()
            if k not in ("workers", "os_cache")
        },
        "train": train,
    }


def prepare_run_dir(ws: Workspace, run: str, identity: dict) -> Path:
    """Create the run's folder with its `run.json`, or check that an existing one matches."""
    run_dir = ws.run_dir(run)
    rec = run_dir / "run.json"
    if rec.exists():
        old = _with_new_defaults(json.loads(rec.read_text()), identity)
        if old != json.loads(json.dumps(identity)):
            diff = [
                f"{s}.{k}"
                for s in identity
                if isinstance(identity[s], dict)
                for k in identity[s]
                if old.get(s, {}).get(k) != identity[s][k]
            ]
            if old.get("dataset") != identity["dataset"]:
                diff.insert(0, "dataset")
            raise CurateError(
                f"run {run!r} in {run_dir} was made with a different recipe (differs in: "
                f"{', '.join(diff) or 'settings'}); pass --run-name NEW_NAME to keep both, or delete "
                f"{run_dir} to start over"
            )
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(rec) as tmp:
            tmp.write_text(json.dumps(identity, indent=1))
    return run_dir


def _with_new_defaults(old: dict, identity: dict) -> dict:
    """A run.json written before a setting existed counts as having that setting's default."""
    defaults = {
        "loader": dataclasses.asdict(LoaderConfig()),
        "train": dataclasses.asdict(TrainConfig()),
    }
    for section, values in defaults.items():
        have = old.get(section)
        if not isinstance(have, dict):
            continue
        for k, v in identity.get(section, {}).items():
            if k not in have and k in values and v == values[k]:
                have[k] = v
    return old
