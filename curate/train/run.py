"""`curate train`: the train stage's entry point.

Trains an ensemble and logs every member's prediction on every instance after every epoch (and at
epoch 0, untrained). The steps, each in its own module: where this process trains
(`placement`), the run's folder (`rundir`), the learner chosen by `train.strategy` (`learner`,
`learners/`), the batches (`feed`), the epoch loop (`loop`), the log (`predlog`, over
`curate.runlog`), and the catalog record (`curate.runlog.record_run`).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from tqdm.auto import tqdm

import curate.train.learners  # noqa: F401  (registers the built-in learners)
from curate import catalog, runlog
from curate.config import Recipe
from curate.data.ingest import default_name
from curate.data.loader import DatasetInfo, dataset_info
from curate.errors import CurateError
from curate.locks import run_lock
from curate.train import predlog
from curate.train.embeddings import PIXELS, source_run
from curate.train.feed import make_feed
from curate.train.learner import TrainSetup, learner_class, learner_names
from curate.train.learners.neural import auto_strategy
from curate.train.loop import steps_to_do, train_units
from curate.train.placement import place, rank
from curate.train.precision import choose_precision
from curate.train.rundir import prepare_run_dir, run_identity, run_manifest
from curate.train.seeds import member_seeds
from curate.workspace import Workspace


def strategy_choices() -> tuple[str, ...]:
    """The values `train.strategy` may take: auto, or any registered learner."""
    return ("auto", *learner_names())


def train(recipe: Recipe, ws: Workspace, run: str | None = None, quiet: bool = False) -> Path:
    """Train (or resume) the run of `recipe`.

    Parameters
    ----------
    recipe : the recipe; `train.strategy` names the learner (auto: fused or separate).
    ws : the workspace holding the ingested dataset.
    run : the run's name (default: the recipe's).
    quiet : no progress bar.

    Returns
    -------
    The run folder. Rank 0 records the run in the catalog's `runs` and `members` tables.

    One process (one per torchrun rank) trains a run at a time: a second is refused at once.
    Rank 0 checks that the catalog can record the run before training, not after.
    """
    run = run or recipe.name
    with run_lock(ws.run_dir(run), rank()):
        if rank() == 0:
            catalog.check_writable(ws)
        return _train(recipe, ws, run, quiet)


def check_multilabel(recipe: Recipe, info: DatasetInfo, strategy: str) -> None:
    """Refuse what a multilabel dataset (class-set labels) cannot train with, before any data is
    loaded."""
    if not learner_class(strategy).multilabel:
        raise CurateError(
            f"dataset {info.name!r} is multilabel (class sets); strategy {strategy!r} predicts one "
            "class. Use --set train.strategy=separate (or fused)"
        )
    if recipe.train.label_smoothing > 0:
        raise CurateError(
            f"train.label_smoothing = {recipe.train.label_smoothing}: smoothing applies to one-class "
            f"targets; dataset {info.name!r} is multilabel (BCE on K-hot targets). Set it to 0"
        )


def check_learner(ws: Workspace, recipe: Recipe, info: DatasetInfo, strategy: str) -> None:
    """Refuse, before any data is loaded or any file written, what `strategy` cannot train: the
    learner's own check, class-set (multilabel) data, and `train.features` (a network run's
    embeddings, for the staged learners only)."""
    learner = learner_class(strategy)
    learner.check(recipe, info)
    if info.multilabel:
        check_multilabel(recipe, info, strategy)
    features = recipe.train.features
    if features != PIXELS:
        if not learner.takes_features:
            staged = [n for n in learner_names() if learner_class(n).takes_features]
            raise CurateError(
                f"train.features = {features!r} (--features) is for the staged learners "
                f"({', '.join(staged)}); strategy {strategy} trains on pixels: drop --features or "
                "pass --learner adaboost"
            )
        source_run(ws, features, info.name)  # exists, same dataset, finished, a network


def log_splits(wanted: tuple[str, ...], info: DatasetInfo) -> list[str]:
    """The splits the eval pass logs: `train.log_splits`, or every split when it is empty."""
    unknown = [s for s in wanted if s not in info.splits]
    if unknown:
        raise CurateError(
            f"train.log_splits names split {unknown[0]!r}, which dataset {info.name!r} does not "
            f"have; choose from {', '.join(info.splits)}"
        )
    return list(wanted) or list(info.splits)


def equal_steps_epochs(epochs: int, keep: float) -> int:
    """Epochs on a subset keeping the fraction `keep` of the train split that take as many optimiser
    steps as `epochs` epochs of the whole split: round(epochs / keep), the nearest integer, halves
    up (3 epochs at keep = 0.5: 6; at 0.3: 10; at 0.7: 4), at least 1."""
    return max(1, math.floor(epochs / keep + 0.5))


def check_subset(ws: Workspace, recipe: Recipe, info: DatasetInfo):
    """The `train.subset` of the recipe, read and checked against the dataset's train split."""
    from curate.prune import load_subset

    t = recipe.train
    if t.curriculum:
        raise CurateError(
            "train.subset and train.curriculum together are not supported; export the curriculum "
            "with --where restricted to the subset, or train on the subset without pacing"
        )
    sub = load_subset(t.subset, info.name, catalog.split_labels(ws, info.name, "train")[0])
    if len(sub.idx) < recipe.loader.batch_size:
        raise CurateError(
            f"subset {t.subset} holds {len(sub.idx)} instances, fewer than one batch "
            f"(loader.batch_size = {recipe.loader.batch_size}); lower the batch size or keep more"
        )
    return sub


def _train(recipe: Recipe, ws: Workspace, run: str, quiet: bool) -> Path:
    t = recipe.train
    where = place(t.device, t.threads)
    dataset = default_name(recipe.dataset)
    info = dataset_info(dataset, ws)
    if "train" not in info.splits:
        raise CurateError(
            f"dataset {dataset!r} has no 'train' split (splits: {', '.join(info.splits)})"
        )
    strategy = (
        t.strategy if t.strategy != "auto" else auto_strategy(t.arch, info.storage, where.device)
    )
    check_learner(ws, recipe, info, strategy)
    splits = log_splits(t.log_splits, info)
    identity = run_identity(recipe, dataset)  # written only once the recipe is known to train
    if t.subset:  # checked before anything is written; the identity holds its checksum
        if learner_class(strategy).takes_features:
            raise CurateError(
                f"train.subset trains a network on part of the train split; strategy {strategy} "
                "fits the whole split: drop --subset or train a network"
            )
        sub = check_subset(ws, recipe, info)
        if t.equal_steps:
            epochs = equal_steps_epochs(t.epochs, len(sub.idx) / info.splits["train"])
            recipe = dataclasses.replace(recipe, train=dataclasses.replace(t, epochs=epochs))
            identity = run_identity(recipe, dataset)
            identity["train"]["epochs_asked"] = t.epochs  # E, of which `epochs` is the equal steps
            t = recipe.train
        identity["train"]["subset"] = sub.checksum
    n_train = len(sub.idx) if t.subset else info.splits["train"]
    if recipe.loader.batch_size > n_train:  # before the run exists: a fixed rerun is the same run
        raise CurateError(
            f"loader.batch_size = {recipe.loader.batch_size} exceeds the {n_train} training "
            "instances; lower it (--set loader.batch_size=N)"
        )
    run_dir = prepare_run_dir(ws, run, identity) if where.rank == 0 else ws.run_dir(run)
    where.barrier()

    seeds = {m: member_seeds(t.seed, m) for m in range(t.members)}
    todo = [m for m in where.members(t.members) if predlog.last_done_epoch(run_dir, m) < t.epochs]
    if todo:
        feed = make_feed(info, ws, recipe, where.device, seeds)
        learner = learner_class(strategy)(TrainSetup(recipe, info, feed, seeds, where.device, ws))
        total = steps_to_do(learner, todo, run_dir, t.epochs)
        show = not quiet and where.rank == 0
        with tqdm(
            total=total, desc=f"train {run}", unit="step", disable=not show, dynamic_ncols=True
        ) as bar:
            train_units(learner, todo, run_dir, splits, t.epochs, t.log_train_pass, bar)

    where.barrier()
    if where.rank == 0:
        facts = runlog.RunFacts(
            strategy,
            where.device.type,
            choose_precision(t.precision, where.device),
            seeds=seeds,
            subset=identity["train"].get("subset") or None,  # the subset's checksum
            subset_info=subset_info(t.subset, identity["train"].get("subset")),
        )
        runlog.record_run(ws, run, run_dir, run_manifest(identity), facts)
    return run_dir


def subset_info(path: str, checksum: str | None) -> dict | None:
    """`runs.subset_info`: the subset's sidecar (from `curate prune`), its absolute path and
    checksum; None without a subset."""
    if not path:
        return None
    from curate.prune import read_sidecar

    where = Path(path).expanduser().absolute()
    return read_sidecar(where) | {"path": str(where), "checksum": checksum}
