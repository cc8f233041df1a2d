"""The training commands: `curate train` (the ensemble and its prediction log), `curate score` (the
log into difficulty tables) and `curate run` (every stage of a recipe, `curate.pipeline`).
"""

from __future__ import annotations

import argparse
import sys

from curate.commands.common import Reads, Subparsers, add_recipe, recipe_flag, recipe_of
from curate.config import NAMING_KEYS
from curate.errors import CurateError
from curate.extras import need
from curate.workspace import Workspace

# train reads of [dataset] only what names the ingested dataset it trains on
TRAIN = Reads(
    "train",
    {"dataset": NAMING_KEYS, "loader": None, "train": None},
    flags={
        "members": "train.members",
        "epochs": "train.epochs",
        "arch": "train.arch",
        "device": "train.device",
        "strategy": "train.strategy",
        "seed": "train.seed",
        "curriculum": "train.curriculum",
        "features": "train.features",
        "subset": "train.subset",
        "equal_steps": "train.equal_steps",
    },
)
TRAIN_FLAGS = TRAIN.flags
# score reads the split tolerance and the runs to compare with; the run gives everything else
SCORE = Reads(
    "score",
    {"score": ("tol", "compare_runs")},
    flags={"tol": "score.tol", "compare": "score.compare_runs"},
)
RUN = Reads("run", {"dataset": None, "loader": None, "train": None, "score": None})


def _run_name(args: argparse.Namespace) -> str | None:
    from curate.config import check_name

    return check_name(args.run, "--run-name") if args.run is not None else None


def cmd_train(args: argparse.Namespace) -> int:
    """`curate train`: the ensemble of a recipe, a format or an ingested dataset.

    Parameters
    ----------
    args : the parsed command line.

    Returns
    -------
    int
        the exit code: 0 (what the user can fix raises a CurateError).
    """
    ws = Workspace.resolve(args.workspace)
    # a recipe, a format, or the name of a dataset ingested in the workspace
    recipe = recipe_of(args, args.recipe, ingested=ws)
    need("train", "torch", "torchvision", "ffcv", what="curate train")
    from curate.train.run import train

    run = _run_name(args)
    run_dir = train(recipe, ws, run=run)
    print(f"run {run or recipe.name}: prediction log in {run_dir / 'predictions'}")
    return 0


def add_train_flags(p: argparse.ArgumentParser) -> None:
    """Add the flags of `curate train` (each sets a key of [train]) and --run-name."""
    recipe_flag(p, TRAIN, "--members", type=int, help="ensemble size M")
    recipe_flag(p, TRAIN, "--epochs", type=int, help="epochs E")
    recipe_flag(p, TRAIN, "--arch", help="architecture")
    recipe_flag(p, TRAIN, "--device", help="where to train")
    recipe_flag(
        p,
        TRAIN,
        "--strategy",
        "--learner",
        dest="strategy",
        help="the learner: a network's way of training, or a staged learner that is not a network",
    )
    recipe_flag(
        p, TRAIN, "--seed", type=int, help="recipe seed; every member's seeds derive from it"
    )
    p.add_argument(
        "--run-name",
        "--run",
        dest="run",
        help="run name (default: the recipe's name); under torchrun write --run-name",
    )
    recipe_flag(
        p,
        TRAIN,
        "--curriculum",
        help="train with an ordering exported by `curate curriculum` (.npy or .csv)",
    )
    recipe_flag(
        p,
        TRAIN,
        "--subset",
        metavar="FILE",
        help="train on the train-split idx listed by `curate prune`",
    )
    recipe_flag(
        p,
        TRAIN,
        "--equal-steps",
        action="store_true",
        help="with --subset: train round(E / F) epochs, F the fraction kept, as many optimiser "
        "steps as E epochs of the whole split",
    )
    recipe_flag(
        p,
        TRAIN,
        "--features",
        metavar="RUN",
        help="adaboost/gboost: fit the penultimate-layer embeddings of network run RUN on the same "
        "dataset instead of the pixels",
    )


def add_train(sub: Subparsers) -> None:
    """Add `curate train`: its parser, answered by `cmd_train`."""
    p = sub.add_parser(
        "train", help="train the ensemble and log every member's predictions every epoch"
    )
    p.add_argument(
        "recipe", help="a recipe in pipelines/ (or a .toml path), or an ingested dataset's name"
    )
    add_train_flags(p)
    add_recipe(p, TRAIN)
    p.set_defaults(func=cmd_train)


def _epoch_prefix(text: str | None) -> int | None:
    """--epochs 1..K (or K): score epochs 1..K of the log."""
    import re

    if text is None:
        return None
    m = re.fullmatch(r"\s*(?:1\s*\.\.\s*)?(\d+)\s*", text)
    if not m or int(m.group(1)) < 1:
        raise CurateError(
            f"--epochs {text!r}: write 1..K (or K), the last epoch to score, e.g. --epochs 1..5"
        )
    return int(m.group(1))


def cmd_score(args: argparse.Namespace) -> int:
    """`curate score`: a run's prediction log into the difficulty tables (score.tol).

    Parameters
    ----------
    args : the parsed command line.

    Returns
    -------
    int
        the exit code: 0 (what the user can fix raises a CurateError).
    """
    score = recipe_of(args).score  # before the imports: a refused --set costs nothing
    from curate.scores.score import run_info, score_run
    from curate.scores.summary import print_summary
    from curate.stats.correlate import compute_correlations

    ws = Workspace.resolve(args.workspace)
    summary = score_run(
        ws,
        args.run,
        tol=score.tol,
        compare=list(score.compare_runs),
        epochs=_epoch_prefix(args.epochs),
        el2n_epoch=args.el2n_epoch,
    )
    compute_correlations(ws, run_info(ws, args.run).dataset)  # when image statistics exist
    print_summary(ws, args.run, summary)
    _note_unfinished(ws, args.run)
    return 0


def _note_unfinished(ws: Workspace, run: str) -> None:
    """A note on stderr when the scored run is not finished (no `runs` row): its scores cover what
    was logged, and the report waits for the run to finish."""
    from curate.runlog.manifest import unfinished
    from curate.sql import fetch

    if fetch(ws, "SELECT 1 FROM runs WHERE run = ?", [run]).empty:
        why, fix = unfinished(ws.run_dir(run))
        print(
            f"note: run {run!r} is not finished ({why}): these scores cover what was logged, and "
            f"`curate report` waits for it; {fix}, then score it again",
            file=sys.stderr,
        )


def add_score(sub: Subparsers) -> None:
    """Add `curate score`: its parser, answered by `cmd_score`."""
    p = sub.add_parser("score", help="turn a run's prediction log into the difficulty tables")
    p.add_argument("run", help='run name (see `curate query "SELECT run FROM runs"`)')
    recipe_flag(
        p,
        SCORE,
        "--tol",
        type=int,
        help="split tolerance: 0 = strict (Meding, the default), 1 = all except one",
    )
    recipe_flag(
        p,
        SCORE,
        "--compare",
        action="append",
        metavar="RUN",
        help="also compare with this run (same dataset; repeatable)",
    )
    p.add_argument(
        "--epochs",
        metavar="1..K",
        help="score only epochs 1..K of the log (stop early, score what you have)",
    )
    p.add_argument(
        "--el2n-epoch",
        type=int,
        default=1,
        metavar="E",
        help="the early epoch EL2N is taken at (default 1)",
    )
    add_recipe(p, SCORE)
    p.set_defaults(func=cmd_score)


def cmd_run(args: argparse.Namespace) -> int:
    """Every stage of a recipe: ingest, train, score, then a short summary (`curate.pipeline`)."""
    recipe = recipe_of(args, args.recipe)
    need("train", "torch", "torchvision", "ffcv", "cv2", what="curate run")
    if recipe.score.stats:  # checked before hours of training, not after
        need(
            "stats",
            "skimage",
            "threadpoolctl",
            what="curate run with image statistics (--set score.stats=false leaves them out)",
        )
    from curate.pipeline import run_pipeline

    run = _run_name(args) or recipe.name
    run_pipeline(recipe, Workspace.resolve(args.workspace), run=run)
    return 0


def add_run(sub: Subparsers) -> None:
    """Add `curate run`: its parser, answered by `cmd_run`."""
    p = sub.add_parser("run", help="every stage of a recipe: ingest, stats, train, score, summary")
    p.add_argument(
        "recipe", nargs="?", default="digits", help="a recipe in pipelines/ or a .toml path"
    )
    p.add_argument("--run-name", "--run", dest="run", help="run name (default: the recipe's name)")
    add_recipe(p, RUN)
    p.set_defaults(func=cmd_run)
