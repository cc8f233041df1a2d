"""`curate train <ingested dataset name>`: the recipe of a dataset the catalog already holds, for a
name that is neither a recipe in pipelines/ nor a format (`curate ingest digits --name dnoisy`,
then `curate train dnoisy`; a dataset ingested with `--labels` trains by its name alone)."""

from __future__ import annotations

import dataclasses
from typing import Any

from curate import catalog
from curate.config import Recipe, find_recipe, load_recipe
from curate.errors import CurateError
from curate.workspace import Workspace


def _formats() -> tuple[str, ...]:
    from curate.data.formats import FORMATS

    return tuple(FORMATS)


def ingested_format(ws: Workspace, name: str) -> str | None:
    """The ingest format of dataset `name` in the workspace's catalog; None when it has none."""
    if not ws.catalog.exists():
        return None
    with catalog.read(ws) as con:
        tables = {r[0] for r in con.execute("SHOW TABLES").fetchall()}
        if "datasets" not in tables:
            return None
        row = con.execute("SELECT format FROM datasets WHERE dataset = ?", [name]).fetchone()
    return None if row is None else row[0]


def ingested_recipe(
    ws: Workspace,
    name: str,
    overrides: list[str] | None = None,
    flags: dict[str, tuple[str, Any]] | None = None,
    **load: Any,
) -> Recipe | None:
    """The training recipe for ingested dataset `name`: the defaults (with `--set` overrides and
    flags) on that dataset, the recipe named after it. None when `name` is a recipe or a format
    (the usual lookup applies). `load` goes on to `curate.config.load_recipe` (`reads`).

    Raises CurateError when `name` is none of the three, or names a dataset registered from
    labels alone (nothing to train on).
    """
    if find_recipe(name) is not None or name.endswith(".toml") or name in _formats():
        return None
    fmt = ingested_format(ws, name)
    if fmt is None:
        from curate.config import PIPELINES

        recipes = sorted(p.stem for p in PIPELINES.glob("*.toml"))
        have = _datasets(ws)
        raise CurateError(
            f"{name!r} is no recipe in {PIPELINES} ({', '.join(recipes)}), no format "
            f"({', '.join(_formats())}) and no dataset ingested in {ws.root} (have: "
            f"{', '.join(have) or 'none'}); ingest it first: curate ingest FORMAT --name {name}"
        )
    from curate.data.labels_only import FORMAT, no_pixels_error

    if fmt == FORMAT:
        raise no_pixels_error(ws, name)
    base = {"dataset": {"format": fmt, "name": name}}
    recipe = load_recipe(None, overrides, flags, base=base, **load)
    return dataclasses.replace(recipe, name=name)


def _datasets(ws: Workspace) -> list[str]:
    if not ws.catalog.exists():
        return []
    with catalog.read(ws) as con:
        tables = {r[0] for r in con.execute("SHOW TABLES").fetchall()}
        if "datasets" not in tables:
            return []
        return [r[0] for r in con.execute("SELECT dataset FROM datasets ORDER BY 1").fetchall()]
