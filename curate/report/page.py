"""The report's building blocks (figures, notes, headline numbers, sections) and the one HTML page.

The page is rendered from the jinja2 template templates/report.html.j2 (package data), autoescaped.
It is self-contained: every figure is embedded as a base64 PNG, the style sheet is inline, and
nothing refers to the network. `render_template` also renders the 2AFC page of `curate pairs`.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import jinja2


@dataclass
class Figure:
    """One PNG of the report folder and its caption (plain text)."""

    name: str  # file name inside the report folder, e.g. "pliushch_agreement_test.png"
    title: str
    caption: str


@dataclass
class Headline:
    """One row of the headline table: a quantity, what the paper found, and this run's value per
    split (None where the catalog has none)."""

    section: str
    quantity: str
    paper: str
    values: dict[str, float | None]
    fmt: str = ".3f"  # format of the values; "%" shows a fraction as a percentage

    def text(self, split: str) -> str:
        return format_value(self.values.get(split), self.fmt)


@dataclass
class Section:
    """A paper's part of the report: its figures, what is missing (notes) and its headline rows."""

    key: str
    title: str
    intro: str
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    headlines: list[Headline] = field(default_factory=list)
    tables: list[tuple[str, list[str], list[list[str]]]] = field(default_factory=list)


def format_value(value: float | None, fmt: str = ".3f") -> str:
    """A headline value as shown on the page: '—' for a missing one, percentages with one decimal."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if fmt == "%":
        return f"{100 * value:.1f} %"
    if fmt == "d":
        return f"{int(round(value))}"
    return format(value, fmt)


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    """The jinja2 environment of curate's pages: templates from curate/report/templates (package
    data), autoescape on for every template (run, class, observer and file names are free text),
    an undefined name an error; `tojson` keeps the keys' order."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("curate.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.policies["json.dumps_kwargs"] = {"sort_keys": False}
    return env


def render_template(name: str, **context) -> str:
    """Template `name` of curate/report/templates rendered with `context` (autoescaped).

    Parameters
    ----------
    name : str
        E.g. "report.html.j2".
    **context
        The template's variables; plain strings are escaped, so no name can inject markup.

    Returns
    -------
    str
        The page.
    """
    return environment().get_template(name).render(**context)


def _png(folder: Path, name: str) -> str:
    """The PNG folder/name as base64 text, for a data: URL."""
    return base64.b64encode((folder / name).read_bytes()).decode("ascii")


def headline_rows(sections: list[Section], splits: list[str]) -> tuple[list[str], list[list[str]]]:
    """The headline table as text: quantity, paper, then one column per split."""
    header = ["section", "quantity", "what the paper found"] + [f"this run: {s}" for s in splits]
    rows = []
    for sec in sections:
        for h in sec.headlines:
            short = sec.title.split(":")[0]  # "Pliushch et al.", ...
            rows.append([short, h.quantity, h.paper] + [h.text(s) for s in splits])
    return header, rows


def render(
    folder: Path, title: str, facts: list[str], splits: list[str], sections: list[Section]
) -> str:
    """The whole page (templates/report.html.j2); figures are read from `folder` and embedded.

    Parameters
    ----------
    folder : Path
        The report folder holding every figure's PNG.
    title : str
        The page's title and heading.
    facts : list of str
        What was reported, one list item each.
    splits : list of str
        The headline table's value columns.
    sections : list of Section
        The sections in page order.

    Returns
    -------
    str
        One self-contained HTML page: no script, no address outside it.
    """
    header, rows = headline_rows(sections, splits)
    images = {f.name: _png(folder, f.name) for sec in sections for f in sec.figures}
    return render_template(
        "report.html.j2",
        title=title,
        facts=facts,
        headline_header=header,
        headline_rows=rows,
        sections=sections,
        images=images,
    )
