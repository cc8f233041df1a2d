"""The epoch loop, the same for every learner.

Each unit resumes from its last complete epoch or, new, logs its untrained epoch 0; then it fits
and logs one epoch at a time. An epoch is complete once its shards, the unit's checkpoint and the
members' progress records are written, in that order; the previous checkpoint is removed after
that, so a killed run rerun with the same command ends with the same log.
"""

from __future__ import annotations

import time
from pathlib import Path

from tqdm.auto import tqdm

from curate.train import checkpoints, predlog
from curate.train.learner import Learner, Unit
from curate.train.logits import Predictions


def train_units(
    learner: Learner,
    members: list[int],
    run_dir: Path,
    splits: list[str],
    epochs: int,
    log_train_pass: bool,
    bar: tqdm,
) -> None:
    """Train `members` to `epochs` with `learner`, logging every split after every epoch."""
    for group in learner.groups(members):
        unit = learner.build(group)
        done = predlog.last_done_epoch(run_dir, unit.members[0])
        if done >= 0:
            unit.load_state_dict(checkpoints.load(run_dir, unit.name, done))
        else:
            log_epoch(run_dir, unit, splits, 0, 0.0, None, epochs, bar)
            done = 0
        for epoch in range(done + 1, epochs + 1):
            t0 = time.perf_counter()
            forward = unit.fit_epoch(epoch, log_train_pass, bar.update)
            log_epoch(run_dir, unit, splits, epoch, time.perf_counter() - t0, forward, epochs, bar)


def steps_to_do(learner: Learner, members: list[int], run_dir: Path, epochs: int) -> int:
    """Training steps left for `members`, for the progress bar."""
    left = [
        epochs - max(0, predlog.last_done_epoch(run_dir, g[0])) for g in learner.groups(members)
    ]
    return sum(left) * learner.steps_per_epoch


def log_epoch(
    run_dir: Path,
    unit: Unit,
    splits: list[str],
    epoch: int,
    seconds: float,
    forward: Predictions | None,
    epochs: int,
    bar: tqdm,
) -> None:
    """Write the epoch's predictions, then the checkpoint, then mark the epoch done."""
    acc = {}
    for split in splits:
        preds = unit.predict(split)
        predlog.write_predictions(run_dir, "eval", split, unit.members, epoch, preds)
        acc[split] = preds.accuracy()  # (M_u,)
    if forward is not None:
        predlog.write_predictions(run_dir, "train-forward", "train", unit.members, epoch, forward)
    checkpoints.save(run_dir, unit.name, epoch, unit.state_dict())
    # the unit's first member is marked last: resume reads it, so it must imply all the others
    for j, m in reversed(list(enumerate(unit.members))):
        record = {"acc": {s: float(a[j]) for s, a in acc.items()}, "seconds": seconds}
        predlog.mark_epoch_done(run_dir, m, epoch, {**record, "unit": unit.name})
    # only now: a run killed above resumes from epoch - 1, whose checkpoint is still there
    checkpoints.remove_older(run_dir, unit.name, epoch)
    line = "  ".join(f"{s} " + " ".join(f"{a:.3f}" for a in acc[s]) for s in splits)
    bar.write(f"{unit.name} epoch {epoch}/{epochs}  acc per member: {line}")
