"""The commands over scored runs: `curate curriculum`, `pairs`, `pairs-analyse`, `label-issues`,
`evaluate`, `report`, and `curate query` (read-only SQL on the catalog).
"""

from __future__ import annotations

import argparse

from curate.commands.common import SEED, Registry, Subparsers, add_force, add_workspace, whole
from curate.errors import CurateError
from curate.extras import need
from curate.workspace import Workspace


def cmd_query(args: argparse.Namespace) -> int:
    """`curate query`: print the tables, or run the SQL within --timeout and --max-rows."""
    from curate.query import MAX_ROWS, TIMEOUT, list_tables, run_query

    ws = Workspace.resolve(args.workspace)
    if args.tables:
        print(list_tables(ws))
        return 0
    if not args.sql:
        raise CurateError(
            'give the SQL to run, e.g. curate query "SELECT * FROM datasets", or --tables'
        )
    timeout = TIMEOUT if args.timeout is None else args.timeout
    max_rows = MAX_ROWS if args.max_rows is None else args.max_rows
    if not 0 < timeout <= 7 * 86400:
        raise CurateError(
            f"--timeout {timeout:g}: give a number of seconds above 0, at most a week (604800)"
        )
    if max_rows < 1:
        raise CurateError(f"--max-rows {max_rows}: give a number of rows, at least 1")
    out = run_query(
        ws,
        args.sql,
        fmt=args.format or _format_of(args.out),
        out=args.out,
        force=args.force,
        timeout=timeout,
        max_rows=max_rows,
    )
    if out:
        print(out)
    return 0


def _format_of(out: str | None) -> str:
    """The format an --out file's suffix names (.csv, .parquet, .json); table otherwise."""
    from pathlib import Path

    suffix = Path(out).suffix.lower() if out else ""
    return {".csv": "csv", ".parquet": "parquet", ".json": "json"}.get(suffix, "table")


def add_query(sub: Subparsers) -> None:
    """Add `curate query`: its parser, answered by `cmd_query`."""
    p = sub.add_parser("query", help="run read-only SQL on the catalog")
    p.add_argument("sql", nargs="?", help="the SQL statement")
    p.add_argument(
        "--format",
        choices=["table", "csv", "parquet", "json"],
        help="default: by --out's suffix (.csv, .parquet, .json), else table",
    )
    p.add_argument("--out", help="write the result to this file instead of the terminal")
    p.add_argument("--tables", action="store_true", help="list tables, views and their columns")
    p.add_argument(  # the defaults live in curate.query, not imported until a query runs
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="stop the query after this many seconds (default 60); while it runs, stages wait "
        "for the catalog",
    )
    p.add_argument(
        "--max-rows",
        type=int,
        metavar="N",
        help="refuse a result of more than N rows (default 1,000,000); or add LIMIT to the SQL",
    )
    add_force(p)
    add_workspace(p)
    p.set_defaults(func=cmd_query)


def cmd_curriculum(args: argparse.Namespace) -> int:
    """`curate curriculum`: an easy-to-hard ordering of a scored run and its pacing.

    Parameters
    ----------
    args : the parsed command line.

    Returns
    -------
    int
        the exit code: 0 (what the user can fix raises a CurateError).
    """
    from curate.curriculum import CurriculumSpec, export_curriculum

    ws = Workspace.resolve(args.workspace)
    mode = "anti" if args.anti else "random" if args.random else "curriculum"
    params = {}
    for key in ("a", "b", "c", "inc", "step"):
        value = getattr(args, f"pacing_{key}")
        if value is not None:
            params[key] = value
    spec = CurriculumSpec(
        score=args.score,
        pacing=args.pacing,
        mode=mode,
        balanced=args.balanced,
        where=args.where,
        seed=args.seed,
        direction=args.direction,
        params=params,
    )
    side = export_curriculum(ws, args.run, args.out, spec, force=args.force)
    from curate.outputs import sidecar_of

    print(
        f"{mode} ordering of {side['n']} instances by {side['score']} "
        f"({'higher' if side['higher_is_easier'] else 'lower'} = easier), pacing {side['pacing']}: "
        f"{args.out} (its pacing beside it: {sidecar_of(args.out)})"
    )
    return 0


def add_curriculum(sub: Subparsers) -> None:
    """Add `curate curriculum`: its parser, answered by `cmd_curriculum`."""
    p = sub.add_parser("curriculum", help="export an easy-to-hard ordering and its pacing")
    p.add_argument("run", help="a scored run")
    p.add_argument(
        "--score", default="accessibility", help="any numeric column of the difficulty view"
    )
    p.add_argument(
        "--direction",
        choices=Registry("curate.selection:DIRECTIONS"),
        default="auto",
        help="which score values are easy (auto: accessibility-like higher, complexity-like lower)",
    )
    p.add_argument(
        "--pacing",
        default="fixed-exp",
        choices=Registry("curate.curriculum:PACINGS"),
        metavar="PACING",
        help="the pacing function: %(choices)s (default %(default)s)",
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
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument(
        "--out",
        required=True,
        help="the ordering: .npy (idx), .csv or .parquet (rank, idx, label, score); its pacing "
        "goes to <out>.json beside it",
    )
    add_force(p)
    add_workspace(p)
    p.set_defaults(func=cmd_curriculum)


def cmd_pairs(args: argparse.Namespace) -> int:
    """`curate pairs`: trivial-vs-impossible image pairs as a browser 2AFC experiment.

    Parameters
    ----------
    args : the parsed command line.

    Returns
    -------
    int
        the exit code: 0 (what the user can fix raises a CurateError).
    """
    need("train", "torch", what="curate pairs")  # the images, read from the .beton files
    from curate.humanstudy import PairsSpec, export_pairs

    ws = Workspace.resolve(args.workspace)
    spec = PairsSpec(args.n, args.train_trials, args.same_class, args.seed, args.split)
    out = export_pairs(ws, args.run, args.out, spec)
    print(
        f"{args.n} test and {args.train_trials} practice trials in {out}: open {out / 'index.html'} in a browser"
    )
    return 0


def add_pairs(sub: Subparsers) -> None:
    """Add `curate pairs`: its parser, answered by `cmd_pairs`."""
    p = sub.add_parser(
        "pairs", help="export trivial-vs-impossible image pairs as a browser 2AFC experiment"
    )
    p.add_argument("run", help="a scored run")
    p.add_argument("--n", type=whole(1, 1_000_000), default=80, help="test trials")
    p.add_argument(
        "--train-trials", type=whole(0, 1_000_000), default=5, help="practice trials shown first"
    )
    p.add_argument("--same-class", action="store_true", help="pair images of the same class")
    p.add_argument("--split", help="split to draw from (default: test, else val)")
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument(
        "--out", required=True, help="a new folder for images, manifest.csv and index.html"
    )
    add_workspace(p)
    p.set_defaults(func=cmd_pairs)


def cmd_pairs_analyse(args: argparse.Namespace) -> int:
    """`curate pairs-analyse`: accuracy per observer and their error consistency.

    Parameters
    ----------
    args : the parsed command line.

    Returns
    -------
    int
        the exit code: 0 (what the user can fix raises a CurateError).
    """
    from curate.humanstudy import analyse

    table = analyse(args.dir, args.answers, force=args.force)
    print(table.to_string(index=False))
    print(
        f"per observer: {args.dir}/analysis.csv; between observers: {args.dir}/consistency.csv; "
        f"plot: {args.dir}/analysis.png"
    )
    return 0


def add_pairs_analyse(sub: Subparsers) -> None:
    """Add `curate pairs-analyse`: its parser, answered by `cmd_pairs_analyse`."""
    p = sub.add_parser(
        "pairs-analyse", help="accuracy per observer and error consistency between observers"
    )
    p.add_argument("dir", help="the folder `curate pairs` wrote")
    p.add_argument(
        "answers", nargs="+", help="answers CSV files downloaded from the experiment page"
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="replace analysis files in DIR that curate did not write",
    )
    p.set_defaults(func=cmd_pairs_analyse)


def cmd_label_issues(args: argparse.Namespace) -> int:
    """`curate label-issues`: a run's likely wrong labels, ranked for review.

    Parameters
    ----------
    args : the parsed command line.

    Returns
    -------
    int
        the exit code: 0 (what the user can fix raises a CurateError).
    """
    from curate.review import label_issue_list, write_list

    ws = Workspace.resolve(args.workspace)
    top = args.top if args.top is not None or args.out else 20
    if args.out:
        from curate.outputs import check_file

        check_file(args.out, args.force)
    df = label_issue_list(ws, args.run, args.split, top, every=args.all)
    if args.out:
        target = write_list(df, args.out, args.force)
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


def add_label_issues(sub: Subparsers) -> None:
    """Add `curate label-issues`: its parser, answered by `cmd_label_issues`."""
    p = sub.add_parser(
        "label-issues", help="a run's likely wrong labels, ranked for review, with image paths"
    )
    p.add_argument("run", help="a scored run")
    p.add_argument("--split", default="train", help="the split to review (default train)")
    p.add_argument(
        "--top", type=whole(0), help="at most N rows (default: 20 on screen, all in --out)"
    )
    p.add_argument("--all", action="store_true", help="every instance, not only flagged ones")
    p.add_argument("--out", help="write the list as CSV here")
    add_force(p)
    add_workspace(p)
    p.set_defaults(func=cmd_label_issues)


def cmd_evaluate(args: argparse.Namespace) -> int:
    """`curate evaluate`: a per-instance score against an external reference.

    Parameters
    ----------
    args : the parsed command line.

    Returns
    -------
    int
        the exit code: 0 (what the user can fix raises a CurateError).
    """
    from curate.evaluate import evaluate, format_row, ranked

    ws = Workspace.resolve(args.workspace)
    rows = evaluate(
        ws, args.run, args.reference, args.column, args.score or ["accessibility"], args.split
    )
    if len(rows) > 1:
        print("strongest agreement first (the sign says the direction: see the score's docs)")
    for row in ranked(rows):
        print(format_row(row))
    print("stored in reference_agreement")
    return 0


def add_evaluate(sub: Subparsers) -> None:
    """Add `curate evaluate`: its parser, answered by `cmd_evaluate`."""
    p = sub.add_parser(
        "evaluate", help="compare a per-instance score with an external reference (by idx)"
    )
    p.add_argument("run", help="a scored run")
    p.add_argument(
        "--reference", required=True, help=".npy/.npz (one value per instance, idx order) or CSV"
    )
    p.add_argument("--column", help="the .npz array, the CSV column, or a 2-d array's column")
    p.add_argument(
        "--score",
        action="append",
        help="a column of instance_scores (default accessibility); repeat it to compare several, "
        "or give `all` for every difficulty score and issue_score, strongest first",
    )
    p.add_argument("--split", default="train", help="the split (default train)")
    add_workspace(p)
    p.set_defaults(func=cmd_evaluate)


def cmd_report(args: argparse.Namespace) -> int:
    """`curate report`: one HTML page of a run's figures beside the papers' findings.

    Parameters
    ----------
    args : the parsed command line.

    Returns
    -------
    int
        the exit code: 0 (what the user can fix raises a CurateError).
    """
    from curate.report import HTML, build_report

    ws = Workspace.resolve(args.workspace)
    out = build_report(ws, args.run, args.out, args.compare or [], args.pairs)
    print(f"report of {args.run}: {out / HTML} (figures and headline.csv beside it)")
    return 0


def add_report(sub: Subparsers) -> None:
    """Add `curate report`: its parser, answered by `cmd_report`."""
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
    add_workspace(p)
    p.set_defaults(func=cmd_report)
