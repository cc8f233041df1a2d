"""The pruning command: `curate prune` (the train instances to keep, by difficulty), its flags and
what it prints; the work is `curate.prune`.
"""

from __future__ import annotations

import argparse
import shlex

from curate.commands.common import SEED, Registry, Subparsers, add_force, add_workspace, whole


def cmd_prune(args: argparse.Namespace) -> int:
    """`curate prune`: the train instances to keep, by difficulty, as an idx list.

    Parameters
    ----------
    args : the parsed command line.

    Returns
    -------
    int
        the exit code: 0 (what the user can fix raises a CurateError).
    """
    from curate.prune import held_out, prune, regime_note, sidecar_path
    from curate.workspace import Workspace

    ws = Workspace.resolve(args.workspace)
    side = prune(
        ws,
        args.run,
        args.keep,
        args.strategy,
        args.out,
        score=args.score,
        where=args.where,
        seed=args.seed,
        balanced=not args.no_balance,
        direction=args.direction,
        beta=args.beta,
        strata=args.strata,
        force=args.force,
    )
    print(
        f"{args.strategy} by {side['score']}: kept {side['n']} of {side['pool']} train instances "
        f"of {side['dataset']} ({side['checksum']}) in {args.out} (its sidecar: "
        f"{sidecar_path(args.out)}); train on them with "
        f"`curate train RECIPE --subset {shlex.quote(str(args.out))}`, or in your own loop (the "
        "file holds their idx)"
    )
    ties = side.get("drawn_among_ties") or 0
    if ties >= 0.1 * side["n"]:  # worth a word: the seed, not the score, chose these
        print(
            f"note: {ties} of the {side['n']} kept ({ties / side['n']:.0%}) were drawn at random "
            f"(--seed {args.seed}) among instances with the same {side['score']} at the cut "
            f"({side['score_values']} distinct values in the pool): the score cannot rank them. "
            "More members or epochs give a finer score; el2n is continuous"
        )
    scored = held_out(side.get("run_acc") or {})
    regime = regime_note(args.strategy, scored[1] if scored else None, args.keep)
    if regime:
        print(
            f"note: the members of run {args.run} score {scored[1]:.3f} on {scored[0]} (epoch "
            f"{side['run_acc_epoch']}): {regime} (docs: the prune guide, which strategy for which "
            "regime)"
        )
    return 0


def add_prune(sub: Subparsers) -> None:
    """Add `curate prune`: its parser, answered by `cmd_prune`."""
    p = sub.add_parser("prune", help="the train instances to keep, by difficulty (an idx list)")
    p.add_argument("run", help="a scored run")
    p.add_argument("--keep", type=float, required=True, help="fraction kept, in (0, 1]")
    p.add_argument(
        "--strategy",
        required=True,
        choices=Registry("curate.prune:STRATEGIES"),
        help="which instances to keep: %(choices)s",
    )
    p.add_argument(
        "--score",
        default="accessibility",
        help="a numeric column of the difficulty view: accessibility, el2n, forgetting_events, ...",
    )
    p.add_argument(
        "--direction",
        choices=Registry("curate.selection:DIRECTIONS"),
        default="auto",
        help="which score values are easy (auto: el2n, forgetting_events, ... lower)",
    )
    p.add_argument(
        "--where", help="SQL filter on the difficulty view restricting the pool pruned from"
    )
    p.add_argument("--seed", type=SEED, default=0, help="seeds ties and random draws")
    p.add_argument(
        "--no-balance",
        action="store_true",
        help="prune the pool as a whole (default: within every class, keeping class proportions)",
    )
    p.add_argument(
        "--beta",
        type=float,
        help="ccs: fraction of the hardest dropped first (default 0 at keep >= 0.5, 0.1 to 0.2, "
        "0.3 below)",
    )
    p.add_argument(
        "--strata", type=whole(1, 100_000), default=50, help="ccs: equal-width score strata"
    )
    p.add_argument(
        "--out",
        required=True,
        help="the idx list: .npy, .csv or .parquet; its sidecar <name>.json is written beside it",
    )
    add_force(p)
    add_workspace(p)
    p.set_defaults(func=cmd_prune)
