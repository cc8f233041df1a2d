"""The recording commands: `curate import-log` (a finished run's saved per-epoch outputs as a
prediction log), importing the recorder only when the command runs. `curate ingest labels` is in
`data`; the recorder itself is `curate.record`."""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from curate.commands.common import Subparsers, add_workspace
from curate.record import SCHEME  # light: the recorder itself is imported when the command runs
from curate.workspace import Workspace

DESCRIPTION = """Write a run's prediction log from the per-epoch outputs a finished run saved.

Files in --dir, one of two schemes per split:
  <split>_m<member>_e<epoch>.npy|.npz|.pt   (N, C) outputs of one member at one epoch
                                            (epoch 0 = before training), e.g. train_m0_e3.npy
  <split>.npy|.npz|.pt                      (M, E+1, N, C): every member and epoch at once
  <split>_idx.npy (optional)                (N,) the catalog idx of the rows; without it the rows
                                            are in the split's order (ascending idx)
.npz: one array, or `logits`/`probs` (+ `idx`); .pt: a tensor or a dict with `logits`/`probs`.
N is the split's size, C the dataset's classes; headers are checked before any data is read.
Regular files only (a FIFO is refused, never opened); at most 1000 members and epochs 0..100000,
and no more than the files hold. Outputs must be real numbers (complex or text arrays are refused).

--kind auto reads every array first and decides for the whole import: every value in [0, 1] and
every row summing to 1 within 0.01 (bf16, rounding to 3 decimals, renormalised rows) ->
probabilities; values outside [0, 1] -> logits; values in [0, 1] with rows not summing to 1 ->
refused: say --kind logits or --kind probs. The kind used is printed. Probabilities enter as their
log, floored at 1e-4/C (C classes) and renormalised: a margin stays within ln(C*1e4) nats (10.3
for 3 classes). Multilabel: values in [0, 1] are sigmoids (no sum test), entered as their logit.

All or nothing: the log is written aside and registered only once every part is there; a failed
or interrupted (Ctrl-C, SIGTERM) import leaves the workspace as it was, and rerunning it starts
over; what a killed import left is removed by the next one. The run records a checksum of its
arrays: importing the same arrays again changes nothing; other arrays under the same run name are
refused unless --replace (which also drops the scores of the old log). Then: curate score RUN."""

# what Ctrl-C (or SIGTERM) during an import prints: an import does not resume, it starts over
INTERRUPTED = (
    "interrupted; an import is all or nothing, so the workspace holds the run whole or not at "
    "all: rerun the same command to import it from the start (an import does not resume)"
)


class Terminated(KeyboardInterrupt):
    """SIGTERM during an import: unwinds like Ctrl-C (the staging folder removed, the workspace
    as it was), then exits with 128 + SIGTERM as a killed process would."""

    exit_code = 128 + signal.SIGTERM


@contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """Within the block, SIGTERM raises `Terminated` (main thread only; the old handler after)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum, frame):
        raise Terminated

    old = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def cmd_import_log(args) -> int:
    """`curate import-log RUN --dataset D --dir FOLDER [--replace]`."""
    from curate.record.importlog import import_log

    ws = Workspace.resolve(args.workspace)
    with _sigterm_unwinds():
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
    print(f"kind: {res.kind} ({res.why})")
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
    p.add_argument(
        "--kind",
        default="auto",
        choices=["auto", "logits", "probs"],
        help="what the arrays hold (auto: decided from the values, refused when unclear)",
    )
    p.add_argument("--arch", default="imported", help="architecture name for the runs table")
    p.add_argument(
        "--replace",
        action="store_true",
        help="replace the run when it was imported from other arrays (its scores are dropped)",
    )
    add_workspace(p)
    p.set_defaults(func=cmd_import_log, interrupted=INTERRUPTED)
