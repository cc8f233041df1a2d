"""The recording commands: `curate import-log` (a finished run's saved per-epoch outputs as a
prediction log), importing the recorder only when the command runs. `curate ingest labels` is in
`data`; the recorder itself is `curate.record`."""

from __future__ import annotations

import argparse

from curate.commands.common import Subparsers
from curate.workspace import Workspace

SCHEME = (
    "<split>_m<member>_e<epoch>.npy|.npz|.pt of shape (N, C), or <split>.npy|.npz|.pt of shape "
    "(M, E+1, N, C), with an optional <split>_idx.npy"
)
DESCRIPTION = """Write a run's prediction log from the per-epoch outputs a finished run saved.

Files in --dir, one of two schemes per split:
  <split>_m<member>_e<epoch>.npy|.npz|.pt   (N, C) outputs of one member at one epoch
                                            (epoch 0 = before training), e.g. train_m0_e3.npy
  <split>.npy|.npz|.pt                      (M, E+1, N, C): every member and epoch at once
  <split>_idx.npy (optional)                (N,) the catalog idx of the rows; without it the rows
                                            are in the split's order (ascending idx)
.npz: one array, or `logits`/`probs` (+ `idx`); .pt: a tensor or a dict with `logits`/`probs`.
--kind auto takes rows in [0, 1] summing to 1 as probabilities (entered as their log).
Outputs must be real numbers (complex or text arrays are refused).

All or nothing: the log is written aside and registered only once every part is there; a failed
or interrupted import leaves the workspace as it was. The run records a checksum of its arrays:
importing the same arrays again changes nothing; other arrays under the same run name are refused
unless --replace (which also drops the scores of the old log). Then: curate score RUN."""


def cmd_import_log(args) -> int:
    """`curate import-log RUN --dataset D --dir FOLDER [--replace]`."""
    from curate.record.importlog import import_log

    ws = Workspace.resolve(args.workspace)
    res = import_log(
        ws,
        args.run,
        args.dataset,
        args.dir,
        args.members,
        args.epochs,
        args.kind,
        args.arch,
        replace=args.replace,
    )
    what = {
        "imported": "prediction log in",
        "replaced": "prediction log replaced (the scores of the old one dropped) in",
        "unchanged": "already imported from these arrays, nothing changed; prediction log in",
    }[res.action]
    print(f"run {res.run}: {what} {res.run_dir / 'predictions'}; next: curate score {res.run}")
    return 0


def add_import_log(sub: Subparsers) -> None:
    """Add `curate import-log`: its parser, answered by `cmd_import_log`."""
    p = sub.add_parser(
        "import-log",
        help="a finished run's saved per-epoch logits or probabilities as a curate prediction log",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run", help="the new run's name")
    p.add_argument("--dataset", required=True, help="the ingested dataset the arrays predict")
    p.add_argument("--dir", required=True, help=f"folder of arrays: {SCHEME}")
    p.add_argument("--members", type=int, help="ensemble size M (default: from the files)")
    p.add_argument("--epochs", type=int, help="last epoch E (default: from the files)")
    p.add_argument("--kind", default="auto", choices=["auto", "logits", "probs"])
    p.add_argument("--arch", default="imported", help="architecture name for the runs table")
    p.add_argument(
        "--replace",
        action="store_true",
        help="replace the run when it was imported from other arrays (its scores are dropped)",
    )
    p.add_argument(
        "--workspace", help="workspace folder (default $CURATE_WORKSPACE or ./workspace)"
    )
    p.set_defaults(func=cmd_import_log)
