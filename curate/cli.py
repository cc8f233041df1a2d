"""The `curate` command line: one subcommand per stage. Errors the user can fix exit with code 2.

Each subcommand's parser sits beside its handler in `curate.commands` (`data`, `training`,
`results`, `pruning`, `explorer`, `record`); this module assembles them, in the order
`curate --help` lists them, and runs the chosen one. A command that reads a recipe declares the
sections it reads (`curate.commands.common.Reads`) and takes `--set` for those keys only.
"""

from __future__ import annotations

import argparse
import sys

from curate import __version__
from curate.commands import data, explorer, pruning, record, results, training
from curate.commands.common import HelpFormatter
from curate.errors import CurateError
from curate.workspace import Workspace

# the subcommands, in the order `curate --help` lists them
COMMANDS = (
    data.add_ingest,
    results.add_query,
    training.add_train,
    training.add_score,
    data.add_stats,
    results.add_curriculum,
    pruning.add_prune,
    results.add_pairs,
    results.add_pairs_analyse,
    results.add_label_issues,
    results.add_evaluate,
    results.add_report,
    explorer.add_app,
    training.add_run,
    record.add_import_log,
)


class OneLineParser(argparse.ArgumentParser):
    """A parser whose refusal is one `error:` line (exit code 2), as every other error is: the
    usage block argparse prints first is left to `--help`."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message}; see `{self.prog} --help`\n")


class CommandParser(OneLineParser):
    """A subcommand's parser: its help lists what each recipe flag allows (`HelpFormatter`)."""

    def __init__(self, *args, formatter_class=HelpFormatter, **kwargs) -> None:
        super().__init__(*args, formatter_class=formatter_class, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    """The `curate` parser with every subcommand of `COMMANDS`; each sets its handler as `func`.

    Returns
    -------
    argparse.ArgumentParser
        the parser; a subcommand that reads a recipe also sets `reads` (what it reads).
    """
    parser = OneLineParser(prog="curate", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"curate {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=CommandParser)
    for add in COMMANDS:
        add(sub)
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
    """Run one `curate` command line.

    Parameters
    ----------
    argv : the arguments after `curate` (default: the process's).

    Returns
    -------
    int
        the exit code: 0, 2 for an error the user can fix (one `error:` line on stderr; a package
        of an extra not installed is one: `curate.extras`), 130 when interrupted.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CurateError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except ModuleNotFoundError as e:  # a part of an extra the command's `need` did not name
        from curate.extras import extra_of, missing_message

        extra = extra_of(e)
        if extra is None:
            raise
        what = f"curate {args.command}"
        print(f"error: {missing_message(extra, [e.name.split('.')[0]], what)}", file=sys.stderr)
        return 2
    except Exception as e:
        ws = Workspace.resolve(getattr(args, "workspace", None))
        if not _disk_full(e, ws):
            raise
        from curate.workspace import no_space_message

        where = getattr(e, "filename", None) or ws.root
        print(f"error: {no_space_message(where)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        # a command may say what an interrupt means for it (`interrupted` among its defaults)
        said = getattr(args, "interrupted", None)
        print(said or "interrupted; rerun the same command to resume", file=sys.stderr)
        return getattr(e, "exit_code", 130)


if __name__ == "__main__":
    sys.exit(main())
