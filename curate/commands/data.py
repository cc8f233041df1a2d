"""The data commands: `curate ingest` (a source into .beton files and catalog rows) and
`curate stats` (image statistics and their correlation with agreement).
"""

from __future__ import annotations

import argparse
import os

from curate.commands.common import Subparsers, add_common, add_force, flags
from curate.config import load_recipe
from curate.errors import CurateError
from curate.workspace import Workspace

DATASET_FLAGS = {
    "source": "dataset.source",
    "name": "dataset.name",
    "skip_corrupt": "dataset.skip_corrupt",
    "random_labels": "dataset.random_labels",
    "labels": "dataset.labels",
    "download": "dataset.download",
}


def _dataset_recipe(args: argparse.Namespace):
    from curate.config import find_recipe
    from curate.data.formats import FORMATS

    target = args.dataset
    if isinstance(getattr(args, "source", None), list):  # several roots (voc): one path list
        import os

        args.source = os.pathsep.join(args.source)
    if getattr(args, "labels", None):
        from pathlib import Path

        args.labels = str(Path(args.labels).absolute())
    if find_recipe(target) is None and target not in FORMATS:
        raise CurateError(
            f"unknown dataset {target!r}; formats: {', '.join(FORMATS)}; or a recipe in pipelines/"
        )
    return load_recipe(target, args.overrides, flags(args, DATASET_FLAGS))


def cmd_ingest(args: argparse.Namespace) -> int:
    from curate.data.ingest import ingest

    if args.dataset == "labels":  # a dataset from its labels alone, no images
        from curate.data.labels_only import cmd_ingest_labels

        return cmd_ingest_labels(args)
    recipe = _dataset_recipe(args)
    ws = Workspace.resolve(args.workspace)
    res = ingest(recipe.dataset, ws, force=args.force)
    counts = ", ".join(f"{k} {v}" for k, v in res.counts.items())
    print(f"{res.dataset}: {res.status} ({counts}; {res.storage}) in {res.path}")
    return 0


def add_ingest(sub: Subparsers) -> None:
    """Add `curate ingest`: its parser, answered by `cmd_ingest`."""
    p = sub.add_parser("ingest", help="turn a dataset into .beton files and `instances` rows")
    p.add_argument(
        "dataset",
        help="format (digits, mnist, fashion-mnist, cifar10, cifar100, imagefolder, "
        "imagenet, voc, gaussian-sigma, gabor, gaussian-2class) or a recipe name; `labels` "
        "registers a dataset from --labels alone (no images)",
    )
    p.add_argument(
        "--source",
        action="append",
        help="path to the raw data: folder, archive or file (voc: repeat to combine roots)",
    )
    p.add_argument(
        "--name", help="catalog name (default: the format's, or the folder's for imagefolder)"
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="rebuild when input or settings changed (ingest labels: replace a dataset registered "
        "from other labels; one that runs were recorded against also needs --invalidate-runs)",
    )
    p.add_argument(
        "--skip-corrupt", action="store_true", help="skip unreadable images, listed in `skipped`"
    )
    p.add_argument(
        "--random-labels", type=int, metavar="SEED", help="permute labels with this seed"
    )
    p.add_argument(
        "--labels",
        metavar="FILE",
        help="train on these labels (.npy of train labels in idx order, FILE.npz:KEY, or a CSV "
        "split,idx,label); the source's stay in true_label",
    )
    p.add_argument(
        "--download",
        action="store_true",
        help="fetch the dataset with torchvision (needs a network)",
    )
    from curate.data.labels_only import add_flags

    add_flags(p)
    add_common(p)
    p.set_defaults(func=cmd_ingest)


def cmd_stats(args: argparse.Namespace) -> int:
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
    n = compute_stats(args.dataset, ws, workers=args.workers, pmi=not args.no_pmi)
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
    p.add_argument("--workers", type=int, default=0, help="processes (default: all cores)")
    p.add_argument(
        "--no-pmi",
        action="store_true",
        help="leave edge_strength_pmi out (seconds per image on large images; score.pmi = false)",
    )
    p.add_argument(
        "--reference", action="store_true", help="print each statistic's distribution per dataset"
    )
    p.add_argument("--out", help="with --reference: write the histogram data as JSON here")
    add_force(p)
    add_common(p)
    p.set_defaults(func=cmd_stats)
