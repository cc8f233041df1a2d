"""Which parts of a recorded run's log exist: the check `curate score` makes before scoring a run
recorded with `curate.Recorder` or `curate import-log`, so a missing part is named, not skipped."""

from __future__ import annotations

import json
from pathlib import Path

from curate.errors import CurateError
from curate.train import predlog


def missing_parts(run_dir: Path, last_epoch: int | None = None) -> list[tuple[str, int, int]]:
    """The (split, member, epoch) parts of a recorded run whose shard is absent.

    Parameters
    ----------
    run_dir : the run's folder.
    last_epoch : check epochs 0..last_epoch only (a prefix); None = every declared epoch.

    Returns
    -------
    The absent parts in member, epoch, split order; [] for a run `curate train` made (its own
    checks apply) or a complete recorded run.
    """
    rec = run_dir / "run.json"
    ident = json.loads(rec.read_text()) if rec.exists() else {}
    if "recorder" not in ident:
        return []
    members, epochs = ident["train"]["members"], ident["train"]["epochs"]
    end = epochs if last_epoch is None else min(last_epoch, epochs)
    return [
        (s, m, e)
        for m in range(members)
        for e in range(end + 1)
        for s in ident["splits"]
        if not predlog.shard_path(run_dir, "eval", s, m, e).exists()
    ]


def check_complete(run_dir: Path, last_epoch: int | None = None) -> None:
    """Refuse to score a recorded run with missing parts, naming them and the way out."""
    missing = missing_parts(run_dir, last_epoch)
    if not missing:
        return
    shown = ", ".join(f"split {s} member {m} epoch {e}" for s, m, e in missing[:8])
    more = f" and {len(missing) - 8} more" if len(missing) > 8 else ""
    first_gap = min(e for _, _, e in missing)
    prefix = (
        f", or score the complete epochs only with --epochs 1..{first_gap - 1}"
        if first_gap >= 2
        else ""
    )
    raise CurateError(
        f"run {run_dir.name} lacks {len(missing)} parts of its log: {shown}{more}; record them "
        f"(rerun the script: parts already written are skipped){prefix}"
    )
