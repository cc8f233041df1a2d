"""What the subcommands share: --workspace, and the one recipe path.

A command that reads a recipe declares what it reads in a `Reads` (sections, or some keys of a
section, and the flags that set recipe keys), adds its options with `add_recipe` and
`recipe_flag`, and gets its recipe from `recipe_of`: the recipe file (or format, or ingested
dataset), then its `--set` overrides, then its flags, checked in one place. A `--set` of a key the
command does not read is refused, naming what it reads; a command that reads no recipe takes no
`--set`. Help texts list a recipe key's allowed values from `curate.config` (registries looked
up only when help is shown).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Callable
from typing import Any

from curate.config import (
    SECTIONS,
    OneOf,
    Recipe,
    allowed,
    field_info,
    keys,
    load_recipe,
    parse_override,
    unknown_key,
    unknown_section,
)
from curate.errors import CurateError

# what `add_subparsers` returns; every command module adds its parsers to it
Subparsers = argparse._SubParsersAction


@dataclasses.dataclass(frozen=True)
class Reads:
    """What one command reads of a recipe.

    Attributes
    ----------
    command : the subcommand's name.
    sections : section -> the keys read (None = every key of the section).
    flags : argparse dest -> "section.key" the flag sets.
    """

    command: str
    sections: dict[str, tuple[str, ...] | None]
    flags: dict[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        for key in self.flags.values():
            if not self.reads(*key.split(".", 1)):
                raise ValueError(f"curate {self.command}: flag of {key}, a key it does not read")

    def reads(self, section: str, key: str) -> bool:
        """True when the command reads `section.key` (an existing key)."""
        if section not in self.sections or section not in SECTIONS or key not in keys(section):
            return False
        return self.sections[section] is None or key in self.sections[section]

    def describe(self) -> str:
        """What the command reads: "[dataset] (name, format), [loader], [train]"."""
        parts = [
            f"[{s}]" if ks is None else f"[{s}] ({', '.join(ks)})"
            for s, ks in self.sections.items()
        ]
        return ", ".join(parts)


READERS: dict[str, Reads] = {}  # command -> what it reads, filled as the parser is built


class Registry:
    """The names of a registry ("module:ATTR"), looked up when argparse first needs them (to check
    a value or show help), so building the parser imports no registry's module."""

    def __init__(self, spec: str) -> None:
        self.spec = spec

    def names(self) -> tuple[str, ...]:
        """The registry's names, looked up now."""
        return OneOf(self.spec).names()

    def __iter__(self):
        return iter(self.names())

    def __contains__(self, value: object) -> bool:
        return value in self.names()

    def __str__(self) -> str:
        return ", ".join(self.names())


class HelpFormatter(argparse.HelpFormatter):
    """Appends to the help of an option that sets a recipe key the key and what it allows, read
    from `curate.config` (a registry only when the help is shown)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = super()._get_help_string(action) or ""
        key = getattr(action, "recipe_key", None)
        if key and action.nargs == 0:  # a switch: --download, --no-pmi
            text += f" (sets {key} = {str(action.const).lower()})"
        elif key:
            try:
                text += f" ({key}: {allowed(key)})".replace("%", "%%")
            except ModuleNotFoundError as e:  # a registry of an extra not installed (curate train)
                from curate.extras import extra_of, install_hint

                if extra_of(e) is None:
                    raise
                text += f" ({key}: its choices come with {install_hint(extra_of(e))})"
        return text


def whole(low: int, high: int = 2**62) -> Callable[[str], int]:
    """An argparse type: a whole number in low..high, else one line saying so (a negative seed, a
    count of -1 or one past int64 never reaches the command)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a whole number; give one in {low}..{high:,}"
            ) from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value:,} is outside {low}..{high:,}")
        return value

    parse.__name__ = "whole number"
    return parse


SEED = whole(0, 2**63 - 1)  # numpy's generators take any non-negative integer


def add_workspace(p: argparse.ArgumentParser) -> None:
    """Add --workspace, which every command but pairs-analyse takes."""
    p.add_argument(
        "--workspace", help="workspace folder (default $CURATE_WORKSPACE or ./workspace)"
    )


def add_recipe(p: argparse.ArgumentParser, reads: Reads) -> None:
    """Add --workspace and --set (the recipe keys `reads` names), and remember `reads` as the
    command's (`args.reads`, `READERS`)."""
    add_workspace(p)
    section, ks = next(iter(reads.sections.items()))
    example = f"{section}.{(ks or keys(section))[0]}"
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help=f"override a recipe key this command reads: {reads.describe()}; e.g. --set "
        f"{example}=... (repeatable)",
    )
    READERS[reads.command] = reads
    p.set_defaults(reads=reads)


def recipe_flag(p: argparse.ArgumentParser, reads: Reads, *names: str, **kwargs: Any):
    """Add a flag that sets the recipe key `reads.flags` names for its dest; its default is None
    (not given), and its help ends with the key and what it allows."""
    action = p.add_argument(*names, default=None, **kwargs)
    action.recipe_key = reads.flags[action.dest]
    return action


def flags(args: argparse.Namespace, table: dict[str, str]) -> dict[str, tuple[str, object]]:
    """The given command-line flags as recipe overrides: {"section.key": ("--flag", value)}.

    Parameters
    ----------
    args : the parsed command line.
    table : argparse dest -> "section.key".

    Returns
    -------
    dict
        only the flags given (not None); a repeated flag's values for a text key joined with
        os.pathsep (voc's several roots).
    """
    out: dict[str, tuple[str, object]] = {}
    for dest, key in table.items():
        value = getattr(args, dest, None)
        if value is None:
            continue
        if isinstance(value, list) and field_info(key).annotation is str:
            value = os.pathsep.join(value)
        out[key] = ("--" + dest.replace("_", "-"), value)
    return out


def _refusal(section: str, key: str, reads: Reads) -> str | None:
    """Why `--set section.key` is refused by the command reading `reads`; None when it is read."""
    if reads.reads(section, key):
        return None
    head = f"--set {section}.{key}: "
    tail = f"; curate {reads.command} reads {reads.describe()}"
    if section not in SECTIONS:
        return head + unknown_section(section) + tail
    if key not in keys(section):
        return head + unknown_key(section, key) + tail
    others = [f"curate {r.command}" for r in READERS.values() if r.reads(section, key)]
    where = f"; {' and '.join(others)} read it" if others else ""
    return (
        f"{head}curate {reads.command} does not read {section}.{key}: it reads "
        f"{reads.describe()}{where}; drop it"
    )


def check_overrides(overrides: list[str], reads: Reads) -> None:
    """Refuse a `--set` of a key the command does not read, or of no key at all (CurateError)."""
    for text in overrides:
        section, key, _ = parse_override(text)
        refusal = _refusal(section, key, reads)
        if refusal:
            raise CurateError(refusal)


def recipe_of(args: argparse.Namespace, target: str | None = None, ingested=None) -> Recipe:
    """The command's recipe: `target` (a recipe, a format, or None for the defaults), then the
    command's `--set` overrides, then its flags, checked once (`curate.config.load_recipe`).

    Parameters
    ----------
    args : the parsed command line; `args.reads` says what the command reads.
    target : a recipe in pipelines/, a TOML path or a format; None = the defaults.
    ingested : a workspace in which `target` may also name an ingested dataset (curate train).

    Returns
    -------
    Recipe
        a `CurateError` (exit code 2) on a key the command does not read or a bad value.
    """
    reads: Reads = args.reads
    check_overrides(args.overrides, reads)
    kw = {
        "overrides": args.overrides,
        "flags": flags(args, reads.flags),
        "reads": reads.sections,
    }
    if ingested is not None and target is not None:
        from curate.data.registered import ingested_recipe

        recipe = ingested_recipe(ingested, target, **kw)
        if recipe is not None:
            return recipe
    return load_recipe(target, **kw)


def add_force(p: argparse.ArgumentParser) -> None:
    """Add --force: replace a file at --out that curate cannot prove it wrote."""
    p.add_argument(
        "--force",
        action="store_true",
        help="replace a file at --out that curate did not write (never a folder, a link, or a "
        "workspace's own files)",
    )
