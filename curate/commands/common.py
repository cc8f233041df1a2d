"""What the subcommands share: the --workspace and --set options, and reading given flags as recipe
overrides.
"""

from __future__ import annotations

import argparse

# what `add_subparsers` returns; every command module adds its parsers to it
Subparsers = argparse._SubParsersAction


def add_common(p: argparse.ArgumentParser) -> None:
    """Add --workspace and --set (recipe overrides), which every command but pairs-analyse takes."""
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


def flags(args: argparse.Namespace, table: dict[str, str]) -> dict[str, tuple[str, object]]:
    """The given command-line flags as recipe overrides: {"section.key": ("--flag", value)}."""
    out = {}
    for dest, key in table.items():
        value = getattr(args, dest, None)
        if value is None or value is False:
            continue
        out[key] = ("--" + dest.replace("_", "-"), value)
    return out


def add_force(p: argparse.ArgumentParser) -> None:
    """Add --force: replace a file at --out that curate cannot prove it wrote."""
    p.add_argument(
        "--force",
        action="store_true",
        help="replace a file at --out that curate did not write (never a folder, a link, or a "
        "workspace's own files)",
    )
