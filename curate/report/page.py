"""The report's building blocks (figures, notes, headline numbers, sections) and the one HTML page.

The page is self-contained: every figure is embedded as a base64 PNG, the style sheet is inline,
and nothing refers to the network.
"""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass, field
from pathlib import Path


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


_CSS = """
body { font-family: sans-serif; max-width: 1100px; margin: 2em auto; color: #222; line-height: 1.4; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 1em 0; font-size: .92em; }
th, td { border: 1px solid #ccc; padding: .3em .6em; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
th { background: #f2f2f2; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: .92em; color: #333; }
p.note { background: #fff6e0; border-left: 4px solid #e0a800; padding: .4em .8em; }
"""


def _img(folder: Path, name: str) -> str:
    data = base64.b64encode((folder / name).read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(name)}" src="data:image/png;base64,{data}">'


def _table(header: list[str], rows: list[list[str]], numeric_from: int = 1) -> str:
    out = ["<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"]
    for row in rows:
        cells = [
            f'<td class="num">{html.escape(c)}</td>'
            if i >= numeric_from
            else f"<td>{html.escape(c)}</td>"
            for i, c in enumerate(row)
        ]
        out.append("<tr>" + "".join(cells) + "</tr>")
    return "\n".join(out) + "</table>"


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
    """The whole page; figures are read from `folder` and embedded."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "<ul>" + "".join(f"<li>{html.escape(f)}</li>" for f in facts) + "</ul>",
        "<h2>Headline numbers</h2>",
        "<p>What each paper found beside what this run shows; every value of this run is read "
        "from the catalog (last scored epoch unless the row says otherwise).</p>",
    ]
    header, rows = headline_rows(sections, splits)
    parts.append(_table(header, rows, numeric_from=3))
    parts.append(
        "<p>Contents: "
        + ", ".join(f'<a href="#{s.key}">{html.escape(s.title)}</a>' for s in sections)
        + "</p>"
    )
    for sec in sections:
        parts.append(f'<h2 id="{sec.key}">{html.escape(sec.title)}</h2>')
        parts.append(f"<p>{html.escape(sec.intro)}</p>")
        for note in sec.notes:
            parts.append(f'<p class="note">{html.escape(note)}</p>')
        for caption, header, rows in sec.tables:
            parts.append(f"<p>{html.escape(caption)}</p>" + _table(header, rows))
        for fig in sec.figures:
            parts.append(
                f"<figure>{_img(folder, fig.name)}<figcaption><b>{html.escape(fig.title)}.</b> "
                f"{html.escape(fig.caption)} <i>({html.escape(fig.name)})</i></figcaption></figure>"
            )
    parts.append("</body></html>")
    return "\n".join(parts)
