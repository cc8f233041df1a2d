"""The data commands: `curate ingest` (a source into .beton files and catalog rows) and
`curate stats` (image statistics and their correlation with agreement).
"""

from __future__ import annotations

import argparse
import os

from curate.commands.common import (
    Reads,
    Subparsers,
    add_force,
    add_recipe,
    recipe_flag,
    recipe_of,
    whole,
)
from curate.errors import CurateError
from curate.extras import need
from curate.workspace import Workspace

INGEST = Reads(
    "ingest",
    {"dataset": None},
    flags={
        "source": "dataset.source",
        "name": "dataset.name",
        "skip_corrupt": "dataset.skip_corrupt",
        "random_labels": "dataset.random_labels",
        "labels": "dataset.labels",
        "download": "dataset.download",
    },
)
STATS = Reads("stats", {"score": ("pmi",)}, flags={"no_pmi": "score.pmi"})


def _dataset_recipe(args: argparse.Namespace):
    from curate.config import find_recipe
    from curate.data.formats import FORMATS

    target = args.dataset
    if find_recipe(target) is None and target not in FORMATS:
        raise CurateError(
            f"unknown dataset {target!r}; formats: {', '.join(FORMATS)}; or a recipe in pipelines/"
        )
    return recipe_of(args, target)


def cmd_ingest(args: argparse.Namespace) -> int:
    """`curate ingest`: a source (or a recipe's [dataset]) into .beton files and catalog rows.

    Parameters
    ----------
    args : the parsed command line.

    Returns
    -------
    int
        the exit code: 0 (what the user can fix raises a CurateError).
    """
    if args.dataset == "labels":  # a dataset from its labels alone, no images
        from curate.data.labels_only import cmd_ingest_labels

        if args.overrides:
            raise CurateError(
                f"--set {args.overrides[0]}: curate ingest labels reads no recipe key; give the "
                "labels with --labels FILE and the dataset's name with --name NAME"
            )
        return cmd_ingest_labels(args)
    recipe = _dataset_recipe(args)
    # a .beton per split: ffcv (and torch, opencv) from curate[train]; `ingest labels` needs none
    need("train", "torch", "ffcv", "cv2", what=f"curate ingest {args.dataset}")
    from curate.data.ingest import ingest

    ws = Workspace.resolve(args.workspace)
    res = ingest(recipe.dataset, ws, force=args.force)
    counts = ", ".join(f"{k} {v}" for k, v in res.counts.items())
    print(f"{res.dataset}: {res.status} ({counts}; {res.storage}) in {res.path}")
    return 0


def add_ingest(sub: Subparsers) -> None:
    """Add `curate ingest`: its parser, answered by `cmd_ingest`."""
    p = sub.add_parser("ingest", help="turn a dataset into .beton files and `instances` rows")
    fmt = p.add_argument(
        "dataset",
        help="a format or a recipe name; `labels` registers a dataset from --labels alone (no "
        "images)",
    )
    fmt.recipe_key = "dataset.format"  # its help lists the formats (curate.data.formats)
    recipe_flag(
        p,
        INGEST,
        "--source",
        action="append",
        help="path to the raw data: folder, archive or file (voc: repeat to combine roots)",
    )
    recipe_flag(
        p,
        INGEST,
        "--name",
        help="catalog name (default: the format's, or the folder's for imagefolder)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="rebuild when input or settings changed (ingest labels: replace a dataset registered "
        "from other labels; one that runs were recorded against also needs --invalidate-runs)",
    )
    recipe_flag(
        p,
        INGEST,
        "--skip-corrupt",
        action="store_true",
        help="skip unreadable images, listed in `skipped`",
    )
    recipe_flag(
        p, INGEST, "--random-labels", type=int, metavar="SEED", help="permute labels with this seed"
    )
    recipe_flag(
        p,
        INGEST,
        "--labels",
        metavar="FILE",
        help="train on these labels (.npy of train labels in idx order, FILE.npz:KEY, or a CSV "
        "split,idx,label); the source's stay in true_label",
    )
    recipe_flag(
        p,
        INGEST,
        "--download",
        action="store_true",
        help="fetch the dataset with torchvision (needs a network)",
    )
    from curate.data.labels_only import add_flags

    add_flags(p)
    add_recipe(p, INGEST)
    p.set_defaults(func=cmd_ingest)


def cmd_stats(args: argparse.Namespace) -> int:
    """`curate stats`: image statistics of a dataset and their correlations, or --reference.

    Parameters
    ----------
    args : the parsed command line.

    Returns
    -------
    int
        the exit code: 0 (what the user can fix raises a CurateError).
    """
    pmi = recipe_of(args).score.pmi  # before the work: a refused --set costs nothing
    if args.out and not args.reference:
        raise CurateError(
            "--out writes the --reference histograms; statistics of a dataset go to the catalog "
            "(image_stats): export them with curate query --out"
        )
    need("stats", "torch", "ffcv", "numba", "cv2", "skimage", "threadpoolctl", what="curate stats")
    from curate.stats.compute import compute_stats, format_reference, reference
    from curate.stats.correlate import compute_correlations

    ws = Workspace.resolve(args.workspace)
    if args.reference:
        if args.out:
            from curate.outputs import check_file

            check_file(args.out, args.force)  # before the work: a refused --out costs nothing
        ref = reference(ws, args.dataset)
        if args.out:
            import json

            from curate.outputs import write_file

            target = write_file(
                args.out,
                lambda p: p.write_text(json.dumps(ref, indent=1)),
                force=args.force,
                by="curate stats --reference",
            )
            print(f"wrote histogram data of {len(ref)} dataset(s) to {target}")
        else:
            print(format_reference(ref))
        return 0
    if not args.dataset:
        raise CurateError("name the dataset: curate stats DATASET (or --reference)")
    n = compute_stats(args.dataset, ws, workers=args.workers, pmi=pmi)
    if os.environ.get("RANK", "0") != "0":
        return 0  # under torchrun, rank 0 writes the tables
    rows = compute_correlations(ws, args.dataset)
    print(
        f"{args.dataset}: statistics of {n} images in image_stats"
        + (f"; {rows} correlations" if rows else "")
    )
    return 0


def add_stats(sub: Subparsers) -> None:
    """Add `curate stats`: its parser, answered by `cmd_stats`."""
    p = sub.add_parser(
        "stats", help="image statistics of every instance, and their correlation with agreement"
    )
    p.add_argument("dataset", nargs="?", help="an ingested dataset")
    p.add_argument(
        "--workers", type=whole(0, 4096), default=0, help="processes (default 0: all cores)"
    )
    recipe_flag(
        p,
        STATS,
        "--no-pmi",
        action="store_const",
        const=False,
        help="leave edge_strength_pmi out (seconds per image on large images)",
    )
    p.add_argument(
        "--reference", action="store_true", help="print each statistic's distribution per dataset"
    )
    p.add_argument("--out", help="with --reference: write the histogram data as JSON here")
    add_force(p)
    add_recipe(p, STATS)
    p.set_defaults(func=cmd_stats)
