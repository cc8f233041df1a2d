"""The training commands: `curate train` (the ensemble and its prediction log), `curate score` (the
log into difficulty tables) and `curate run` (every stage of a recipe, `curate.pipeline`).
"""

from __future__ import annotations

import argparse

from curate.commands.common import Subparsers, add_common, flags
from curate.config import load_recipe
from curate.errors import CurateError
from curate.workspace import Workspace

TRAIN_FLAGS = {
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
}


def _train_recipe(args: argparse.Namespace):
    if args.curriculum:
        from pathlib import Path

        args.curriculum = str(Path(args.curriculum).absolute())
    if getattr(args, "subset", None):
        from pathlib import Path

        args.subset = str(Path(args.subset).absolute())
    return load_recipe(args.recipe, args.overrides, flags(args, TRAIN_FLAGS))


def _run_name(args: argparse.Namespace) -> str | None:
    from curate.config import check_name

    return check_name(args.run, "--run-name") if args.run is not None else None


def cmd_train(args: argparse.Namespace) -> int:
    from curate.data.registered import ingested_recipe
    from curate.train.run import train

    ws = Workspace.resolve(args.workspace)
    recipe = ingested_recipe(ws, args.recipe, args.overrides, flags(args, TRAIN_FLAGS))
    recipe = recipe or _train_recipe(args)  # a recipe or format, when not an ingested name
    run = _run_name(args)
    run_dir = train(recipe, ws, run=run)
    print(f"run {run or recipe.name}: prediction log in {run_dir / 'predictions'}")
    return 0


def add_train_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--members", type=int, help="ensemble size M (>= 2)")
    p.add_argument("--epochs", type=int, help="epochs E (>= 1)")
    p.add_argument(
        "--arch",
        help="architecture (mlp, lenet5, small-stvgg, stvgg, linear-stvgg, resnet18-cifar, "
        "resnet18, resnet50, densenet121, vgg16)",
    )
    p.add_argument("--device", choices=["cpu", "cuda", "auto"])
    p.add_argument(
        "--strategy",
        "--learner",
        dest="strategy",
        help="the learner: auto, fused, separate, or one that is not a network: adaboost, gboost",
    )
    p.add_argument("--seed", type=int, help="recipe seed; every member's seeds derive from it")
    p.add_argument(
        "--run-name",
        "--run",
        dest="run",
        help="run name (default: the recipe's name); under torchrun write --run-name",
    )
    p.add_argument(
        "--curriculum", help="train with an ordering exported by `curate curriculum` (.npy or .csv)"
    )
    p.add_argument(
        "--subset",
        metavar="FILE",
        help="train on the train-split idx listed by `curate prune` (train.subset)",
    )
    p.add_argument(
        "--equal-steps",
        action="store_true",
        default=None,
        help="with --subset: train round(E / F) epochs, F the fraction kept, as many optimiser "
        "steps as E epochs of the whole split (train.equal_steps)",
    )
    p.add_argument(
        "--features",
        metavar="RUN",
        help="adaboost/gboost: fit the penultimate-layer embeddings of network run RUN on the same "
        "dataset instead of the pixels (train.features)",
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
    add_common(p)
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
    from curate.scores.score import run_info, score_run
    from curate.scores.summary import print_summary
    from curate.stats.correlate import compute_correlations

    ws = Workspace.resolve(args.workspace)
    summary = score_run(
        ws,
        args.run,
        tol=args.tol,
        compare=args.compare or [],
        epochs=_epoch_prefix(args.epochs),
        el2n_epoch=args.el2n_epoch,
    )
    compute_correlations(ws, run_info(ws, args.run).dataset)  # when image statistics exist
    print_summary(ws, args.run, summary)
    return 0


def add_score(sub: Subparsers) -> None:
    """Add `curate score`: its parser, answered by `cmd_score`."""
    p = sub.add_parser("score", help="turn a run's prediction log into the difficulty tables")
    p.add_argument("run", help='run name (see `curate query "SELECT run FROM runs"`)')
    p.add_argument(
        "--tol",
        type=int,
        default=0,
        help="split tolerance: 0 = strict (Meding), 1 = all except one",
    )
    p.add_argument(
        "--compare",
        action="append",
        metavar="RUN",
        help="also compare with this run (same dataset)",
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
    add_common(p)
    p.set_defaults(func=cmd_score)


def cmd_run(args: argparse.Namespace) -> int:
    """Every stage of a recipe: ingest, train, score, then a short summary (`curate.pipeline`)."""
    from curate.pipeline import run_pipeline

    recipe = load_recipe(args.recipe, args.overrides)
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
    add_common(p)
    p.set_defaults(func=cmd_run)
