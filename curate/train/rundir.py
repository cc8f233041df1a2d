"""A trained run's folder and its identity: what makes two runs the same (dataset, loader and
training settings), recorded once in the run's manifest (`curate.runlog`); a different recipe
asking for the same run is refused."""

from __future__ import annotations

from pathlib import Path

from curate import runlog
from curate.config import Recipe
from curate.errors import CurateError
from curate.workspace import Workspace

# settings that say where and how fast a run trains, not what it trains
_NOT_IDENTITY = {"loader": ("workers", "os_cache"), "train": ("device", "threads", "fuse_members")}


def run_identity(recipe: Recipe, dataset: str) -> dict:
    """What makes two runs the same: the dataset, the loader and the training settings."""
    settings = recipe.to_dict()
    return {
        "dataset": dataset,
        "loader": _identity_section(settings, "loader"),
        "train": _identity_section(settings, "train"),
    }


def _identity_section(settings: dict, section: str) -> dict:
    return {k: v for k, v in settings[section].items() if k not in _NOT_IDENTITY[section]}


def run_manifest(identity: dict) -> runlog.Manifest:
    """The manifest of a run `curate train` trains with this identity."""
    return runlog.Manifest.from_identity(identity, origin="train")


def prepare_run_dir(ws: Workspace, run: str, identity: dict) -> Path:
    """Create the run's folder with its manifest, or check that an existing one matches.

    A manifest written before a setting existed counts as having that setting's default.
    """
    run_dir = ws.run_dir(run)
    defaults = Recipe().to_dict()
    diff = runlog.prepare_run(run_dir, run_manifest(identity), defaults)
    if diff:
        raise CurateError(
            f"run {run!r} in {run_dir} was made with a different recipe (differs in: "
            f"{', '.join(diff)}); pass --run-name NEW_NAME to keep both, or delete "
            f"{run_dir} to start over"
        )
    return run_dir
