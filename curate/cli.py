"""The `curate` command line: one subcommand per stage. Errors the user can fix exit with code 2."""

from __future__ import annotations

import argparse
import os
import sys

from curate import __version__
from curate.config import load_recipe
from curate.errors import CurateError
from curate.workspace import Workspace


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--workspace", help="workspace folder (default $CURATE_WORKSPACE or ./workspace)"
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override a recipe key, e.g. --set train.epochs=5 (repeatable)",
    )


def _flags(args: argparse.Namespace, table: dict[str, str]) -> dict[str, tuple[str, object]]:
    """The given command-line flags as recipe overrides: {"section.key": ("--flag", value)}."""
    out = {}
    for dest, key in table.items():
        value = getattr(args, dest, None)
        if value is None or value is False:
            continue
        out[key] = ("--" + dest.replace("_", "-"), value)
    return out


_DATASET_FLAGS = {
    "source": "dataset.source",
    "name": "dataset.name",
    "skip_corrupt": "dataset.skip_corrupt",
    "random_labels": "dataset.random_labels",
    "labels": "dataset.labels",
    "download": "dataset.download",
}


def _dataset_recipe(args: argparse.Namespace):
    from curate.config import find_recipe
    from curate.data.sources import FORMATS

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
    return load_recipe(target, args.overrides, _flags(args, _DATASET_FLAGS))


def cmd_ingest(args: argparse.Namespace) -> int:
    from curate.data.ingest import ingest

    recipe = _dataset_recipe(args)
    ws = Workspace.resolve(args.workspace)
    res = ingest(recipe.dataset, ws, force=args.force)
    counts = ", ".join(f"{k} {v}" for k, v in res.counts.items())
    print(f"{res.dataset}: {res.status} ({counts}; {res.storage}) in {res.path}")
    return 0


def cmd_query(args: argparse.Namespace) -> int:
    from curate.query import list_tables, run_query

    ws = Workspace.resolve(args.workspace)
    if args.tables:
        print(list_tables(ws))
        return 0
    if not args.sql:
        raise CurateError(
            'give the SQL to run, e.g. curate query "SELECT * FROM datasets", or --tables'
        )
    out = run_query(ws, args.sql, fmt=args.format, out=args.out)
    if out:
        print(out)
    return 0


_TRAIN_FLAGS = {
    "members": "train.members",
    "epochs": "train.epochs",
    "arch": "train.arch",
    "device": "train.device",
    "strategy": "train.strategy",
    "seed": "train.seed",
    "curriculum": "train.curriculum",
    "features": "train.features",
    "subset": "train.subset",
}


def _train_recipe(args: argparse.Namespace):
    if args.curriculum:
        from pathlib import Path

        args.curriculum = str(Path(args.curriculum).absolute())
    if getattr(args, "subset", None):
        from pathlib import Path

        args.subset = str(Path(args.subset).absolute())
    return load_recipe(args.recipe, args.overrides, _flags(args, _TRAIN_FLAGS))


def _run_name(args: argparse.Namespace) -> str | None:
    from curate.config import check_name

    return check_name(args.run, "--run-name") if args.run is not None else None


def cmd_train(args: argparse.Namespace) -> int:
    from curate.train.run import train

    recipe = _train_recipe(args)
    run = _run_name(args)
    ws = Workspace.resolve(args.workspace)
    run_dir = train(recipe, ws, run=run)
    print(f"run {run or recipe.name}: prediction log in {run_dir / 'predictions'}")
    return 0


def _add_train_flags(p: argparse.ArgumentParser) -> None:
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
        "--features",
        metavar="RUN",
        help="adaboost/gboost: fit the penultimate-layer embeddings of network run RUN on the same "
        "dataset instead of the pixels (train.features)",
    )


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
    from curate.scores.report import print_summary
    from curate.scores.score import run_info, score_run
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


def cmd_run(args: argparse.Namespace) -> int:
    """Every stage of a recipe: ingest, train, score, then a short summary."""
    from curate.data.ingest import ingest
    from curate.scores.report import print_summary
    from curate.scores.score import score_run
    from curate.stats.correlate import compute_correlations
    from curate.train.run import train

    recipe = load_recipe(args.recipe, args.overrides)
    run = _run_name(args) or recipe.name
    ws = Workspace.resolve(args.workspace)
    print(f"== ingest {recipe.dataset.format} into {ws.root}")
    res = ingest(recipe.dataset, ws, force=False)
    print(f"{res.dataset}: {res.status} ({', '.join(f'{k} {v}' for k, v in res.counts.items())})")
    if recipe.score.stats:
        from curate.stats.compute import compute_stats

        print(f"== image statistics of {res.dataset}")
        compute_stats(res.dataset, ws, pmi=recipe.score.pmi)
    print(
        f"== train {recipe.name}: {recipe.train.members} x {recipe.train.arch}, {recipe.train.epochs} epochs"
    )
    train(recipe, ws, run=run)
    print(f"== score {run}")
    summary = score_run(ws, run, tol=recipe.score.tol, compare=list(recipe.score.compare_runs))
    compute_correlations(ws, res.dataset)  # when image statistics exist
    print_summary(ws, run, summary)
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    from curate.stats.compute import compute_stats, format_reference, reference
    from curate.stats.correlate import compute_correlations

    ws = Workspace.resolve(args.workspace)
    if args.reference:
        ref = reference(ws, args.dataset)
        if args.out:
            import json
            from pathlib import Path

            from curate.workspace import atomic_path

            with atomic_path(Path(args.out)) as tmp:
                tmp.write_text(json.dumps(ref, indent=1))
            print(f"wrote histogram data of {len(ref)} dataset(s) to {args.out}")
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


def cmd_curriculum(args: argparse.Namespace) -> int:
    from curate.curriculum import export_curriculum

    ws = Workspace.resolve(args.workspace)
    mode = "anti" if args.anti else "random" if args.random else "curriculum"
    params = {}
    for key in ("a", "b", "c", "inc", "step"):
        value = getattr(args, f"pacing_{key}")
        if value is not None:
            params[key] = value
    side = export_curriculum(
        ws,
        args.run,
        args.out,
        args.score,
        args.pacing,
        mode,
        args.balanced,
        args.where,
        args.seed,
        args.direction,
        params,
    )
    print(
        f"{mode} ordering of {side['n']} instances by {side['score']} "
        f"({'higher' if side['higher_is_easier'] else 'lower'} = easier), pacing {side['pacing']}: "
        f"{args.out} (.csv, .parquet, .npy, .json)"
    )
    return 0


def cmd_pairs(args: argparse.Namespace) -> int:
    from curate.humanstudy import export_pairs

    ws = Workspace.resolve(args.workspace)
    out = export_pairs(
        ws, args.run, args.out, args.n, args.train_trials, args.same_class, args.seed, args.split
    )
    print(
        f"{args.n} test and {args.train_trials} practice trials in {out}: open {out / 'index.html'} in a browser"
    )
    return 0


def cmd_pairs_analyse(args: argparse.Namespace) -> int:
    from curate.humanstudy import analyse

    table = analyse(args.dir, args.answers)
    print(table.to_string(index=False))
    print(
        f"per observer: {args.dir}/analysis.csv; between observers: {args.dir}/consistency.csv; "
        f"plot: {args.dir}/analysis.png"
    )
    return 0


def cmd_label_issues(args: argparse.Namespace) -> int:
    from curate.review import label_issue_list, write_list

    ws = Workspace.resolve(args.workspace)
    top = args.top if args.top is not None or args.out else 20
    df = label_issue_list(ws, args.run, args.split, top, every=args.all)
    if args.out:
        target = write_list(ws, df, args.out)
        print(f"wrote {len(df)} rows, highest issue_score first, to {target}")
        return 0
    if df.empty:
        print(f"no flagged labels in {args.run} / {args.split} (--all lists every instance)")
        return 0
    import pandas as pd

    shown = df.drop(columns=["flagged", "true_label"] if not args.all else [])
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(shown.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from curate.evaluate import evaluate, format_row

    ws = Workspace.resolve(args.workspace)
    row = evaluate(ws, args.run, args.reference, args.column, args.score, args.split)
    print(format_row(row))
    print("stored in reference_agreement")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from curate.report import HTML, build_report

    ws = Workspace.resolve(args.workspace)
    out = build_report(ws, args.run, args.out, args.compare or [], args.pairs)
    print(f"report of {args.run}: {out / HTML} (figures and headline.csv beside it)")
    return 0


def cmd_app(args: argparse.Namespace) -> int:
    import subprocess
    from pathlib import Path

    app = Path(__file__).resolve().parent.parent / "app" / "app.py"
    if not app.exists():
        raise CurateError(f"{app} is missing; run the app from a curate checkout")
    ws = Workspace.resolve(args.workspace)
    cmd = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(app),
        "--server.port",
        str(args.port),
        "--server.address",
        args.address,
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--",
        "--workspace",
        str(ws.root),
    ]
    import ipaddress

    if not 0 < args.port < 65536:
        raise CurateError(f"--port {args.port}: choose a port from 1 to 65535")
    try:
        loopback = ipaddress.ip_address(args.address).is_loopback
    except ValueError:
        loopback = args.address == "localhost"
    host = args.address if ":" not in args.address else f"[{args.address}]"
    print(f"curate explorer on http://{host}:{args.port} (catalog {ws.catalog}); Ctrl-C stops it")
    if not loopback:
        print(
            f"warning: --address {args.address} exposes the explorer to every machine that can "
            f"reach this one on port {args.port}: they can browse the catalog, the images and "
            "the read-only SQL console. Leave --address out to keep it on this machine.",
            file=sys.stderr,
        )
    return subprocess.call(cmd)


def _add_ingest(sub) -> None:
    p = sub.add_parser("ingest", help="turn a dataset into .beton files and `instances` rows")
    p.add_argument(
        "dataset",
        help="format (digits, mnist, fashion-mnist, cifar10, cifar100, imagefolder, "
        "imagenet, voc, gaussian-sigma, gabor, gaussian-2class) or a recipe name",
    )
    p.add_argument(
        "--source",
        action="append",
        help="path to the raw data: folder, archive or file (voc: repeat to combine roots)",
    )
    p.add_argument(
        "--name", help="catalog name (default: the format's, or the folder's for imagefolder)"
    )
    p.add_argument("--force", action="store_true", help="rebuild when input or settings changed")
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
    _add_common(p)
    p.set_defaults(func=cmd_ingest)


def _add_query(sub) -> None:
    p = sub.add_parser("query", help="run read-only SQL on the catalog")
    p.add_argument("sql", nargs="?", help="the SQL statement")
    p.add_argument("--format", default="table", choices=["table", "csv", "parquet", "json"])
    p.add_argument("--out", help="write the result to this file instead of the terminal")
    p.add_argument("--tables", action="store_true", help="list tables, views and their columns")
    _add_common(p)
    p.set_defaults(func=cmd_query)


def _add_train(sub) -> None:
    p = sub.add_parser(
        "train", help="train the ensemble and log every member's predictions every epoch"
    )
    p.add_argument(
        "recipe", help="a recipe in pipelines/ (or a .toml path), or an ingested dataset's name"
    )
    _add_train_flags(p)
    _add_common(p)
    p.set_defaults(func=cmd_train)


def _add_score(sub) -> None:
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
    _add_common(p)
    p.set_defaults(func=cmd_score)


def _add_stats(sub) -> None:
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
    _add_common(p)
    p.set_defaults(func=cmd_stats)


def _add_curriculum(sub) -> None:
    p = sub.add_parser("curriculum", help="export an easy-to-hard ordering and its pacing")
    p.add_argument("run", help="a scored run")
    p.add_argument(
        "--score", default="accessibility", help="any numeric column of the difficulty view"
    )
    p.add_argument(
        "--direction",
        choices=["auto", "higher", "lower"],
        default="auto",
        help="which score values are easy (auto: accessibility-like higher, complexity-like lower)",
    )
    p.add_argument(
        "--pacing",
        default="fixed-exp",
        help="fixed-exp, linear, quad, root, step, exp, log or none",
    )
    for key, typ, help_ in (
        ("a", float, "Wu et al.: fraction of the steps to reach all data"),
        ("b", float, "initial fraction (Wu) or starting fraction (fixed-exp)"),
        ("c", float, "exp/log steepness"),
        ("inc", float, "fixed-exp growth factor"),
        ("step", int, "fixed-exp: batches between increases"),
    ):
        p.add_argument(f"--pacing-{key}", type=typ, help=help_)
    p.add_argument(
        "--balanced", action="store_true", help="interleave classes (Hacohen & Weinshall)"
    )
    g = p.add_mutually_exclusive_group()
    g.add_argument("--anti", action="store_true", help="hard first")
    g.add_argument("--random", action="store_true", help="a seeded random ordering (same pacing)")
    p.add_argument(
        "--where",
        help="SQL filter on the difficulty view restricting the pool, e.g. \"ddd <> 'impossible'\"",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--out",
        required=True,
        help="output path; .csv, .parquet, .npy and .json are written beside it",
    )
    _add_common(p)
    p.set_defaults(func=cmd_curriculum)


def _add_pairs(sub) -> None:
    p = sub.add_parser(
        "pairs", help="export trivial-vs-impossible image pairs as a browser 2AFC experiment"
    )
    p.add_argument("run", help="a scored run")
    p.add_argument("--n", type=int, default=80, help="test trials")
    p.add_argument("--train-trials", type=int, default=5, help="practice trials shown first")
    p.add_argument("--same-class", action="store_true", help="pair images of the same class")
    p.add_argument("--split", help="split to draw from (default: test, else val)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--out", required=True, help="a new folder for images, manifest.csv and index.html"
    )
    _add_common(p)
    p.set_defaults(func=cmd_pairs)


def _add_pairs_analyse(sub) -> None:
    p = sub.add_parser(
        "pairs-analyse", help="accuracy per observer and error consistency between observers"
    )
    p.add_argument("dir", help="the folder `curate pairs` wrote")
    p.add_argument(
        "answers", nargs="+", help="answers CSV files downloaded from the experiment page"
    )
    p.set_defaults(func=cmd_pairs_analyse)


def _add_label_issues(sub) -> None:
    p = sub.add_parser(
        "label-issues", help="a run's likely wrong labels, ranked for review, with image paths"
    )
    p.add_argument("run", help="a scored run")
    p.add_argument("--split", default="train", help="the split to review (default train)")
    p.add_argument("--top", type=int, help="at most N rows (default: 20 on screen, all in --out)")
    p.add_argument("--all", action="store_true", help="every instance, not only flagged ones")
    p.add_argument("--out", help="write the list as CSV here")
    _add_common(p)
    p.set_defaults(func=cmd_label_issues)


def _add_evaluate(sub) -> None:
    p = sub.add_parser(
        "evaluate", help="compare a per-instance score with an external reference (by idx)"
    )
    p.add_argument("run", help="a scored run")
    p.add_argument(
        "--reference", required=True, help=".npy/.npz (one value per instance, idx order) or CSV"
    )
    p.add_argument("--column", help="the .npz array, the CSV column, or a 2-d array's column")
    p.add_argument(
        "--score", default="accessibility", help="a column of instance_scores (accessibility)"
    )
    p.add_argument("--split", default="train", help="the split (default train)")
    _add_common(p)
    p.set_defaults(func=cmd_evaluate)


def _add_report(sub) -> None:
    p = sub.add_parser(
        "report", help="one self-contained HTML page of a run's figures beside the papers' findings"
    )
    p.add_argument("run", help="a scored run")
    p.add_argument(
        "--compare",
        action="append",
        metavar="RUN2",
        help="also compare accessibility with this run (same dataset; repeatable)",
    )
    p.add_argument(
        "--pairs", metavar="DIR", help="a folder `curate pairs-analyse` wrote: the human study"
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        help="the report folder (default <workspace>/reports/<run>); replaced only if empty or a "
        "previous report",
    )
    _add_common(p)
    p.set_defaults(func=cmd_report)


def _add_app(sub) -> None:
    p = sub.add_parser("app", help="the Streamlit explorer over the catalog (read-only)")
    p.add_argument("--port", type=int, default=8501)
    p.add_argument(
        "--address",
        default="127.0.0.1",
        help="interface to serve on (default 127.0.0.1, this machine only; 0.0.0.0 exposes it)",
    )
    _add_common(p)
    p.set_defaults(func=cmd_app)


def _add_run(sub) -> None:
    p = sub.add_parser("run", help="every stage of a recipe: ingest, stats, train, score, summary")
    p.add_argument(
        "recipe", nargs="?", default="digits", help="a recipe in pipelines/ or a .toml path"
    )
    p.add_argument("--run-name", "--run", dest="run", help="run name (default: the recipe's name)")
    _add_common(p)
    p.set_defaults(func=cmd_run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="curate", description=__doc__)
    parser.add_argument("--version", action="version", version=f"curate {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_ingest(sub)
    _add_query(sub)
    _add_train(sub)
    _add_score(sub)
    _add_stats(sub)
    _add_curriculum(sub)
    from curate.prune_cli import add_prune

    add_prune(sub, _add_common)
    _add_pairs(sub)
    _add_pairs_analyse(sub)
    _add_label_issues(sub)
    _add_evaluate(sub)
    _add_report(sub)
    _add_app(sub)
    _add_run(sub)
    return parser


def _disk_full(e: BaseException, ws: Workspace) -> bool:
    """True when `e` (or what caused it) is a full disk: ENOSPC, or a library's word for it."""
    import errno
    import shutil

    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            return True
        text = str(e)
        if "No space left on device" in text:
            return True
        if "write failed" in text or "file write" in text:  # torch.save's words for it
            try:
                return shutil.disk_usage(ws.root).free < 2**20
            except OSError:
                return False
        e = e.__cause__ or e.__context__
    return False


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CurateError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except Exception as e:
        ws = Workspace.resolve(getattr(args, "workspace", None))
        if not _disk_full(e, ws):
            raise
        from curate.workspace import no_space_message

        where = getattr(e, "filename", None) or ws.root
        print(f"error: {no_space_message(where)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
