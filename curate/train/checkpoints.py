"""A unit's checkpoint: its state after its last complete epoch, one file per unit
(`<run>/checkpoints/<unit>/epoch=<e>.pt`, written atomically). Older epochs are removed only
once the new epoch is recorded as done, so a run killed in between still finds the checkpoint
of the epoch its progress records name."""

from __future__ import annotations

from pathlib import Path

import torch

from curate.errors import CurateError
from curate.workspace import atomic_path, remove_dead_temps


def save(run_dir: Path, unit: str, epoch: int, state: dict) -> None:
    d = run_dir / "checkpoints" / unit
    with atomic_path(d / f"epoch={epoch}.pt") as tmp:
        torch.save({"epoch": epoch, **state}, tmp)
    remove_dead_temps(d, "epoch=*.pt")  # those of a save killed midway, by an earlier process


def remove_older(run_dir: Path, unit: str, epoch: int) -> None:
    """Delete the unit's checkpoints of epochs other than `epoch` (call once `epoch` is done)."""
    for old in (run_dir / "checkpoints" / unit).glob("epoch=*.pt"):
        if old.name != f"epoch={epoch}.pt":
            old.unlink()


def load(run_dir: Path, unit: str, epoch: int) -> dict:
    path = run_dir / "checkpoints" / unit / f"epoch={epoch}.pt"
    if not path.exists():
        raise CurateError(
            f"{path} is missing although epoch {epoch} is recorded as done; delete "
            f"{run_dir / 'progress'} entries after epoch {epoch - 1} or the run folder, then rerun"
        )
    return torch.load(path, map_location="cpu", weights_only=False)
