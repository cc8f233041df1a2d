"""`curate report`: one self-contained HTML page (plus its PNGs and a CSV of the headline numbers)
that reproduces, for one scored run, the figure types of the three papers, each captioned with what
the paper found and what the run shows.

The package owns the report; `curate/scores/summary.py` is the unrelated short text summary that
`curate run` prints. Modules: `catalog` (what is read, read-only), `plot` (matplotlib style),
`pliushch`, `hacohen`, `meding`, `reliability`, `pruning` (one section each), `page` (the HTML,
rendered from the jinja2 templates in `templates/`, package data, autoescaped).

Every section has one shape: per figure, a function computing its numbers from the catalog's rows,
one drawing it and one writing its caption (the paper's finding and the run's numbers). Figures
of curate's own pruning benchmarks are read from `curate.findings`, never written here.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from curate import __version__
from curate.outputs import check_folder, write_folder
from curate.report import page
from curate.workspace import Workspace

if TYPE_CHECKING:
    from curate.report.catalog import RunData

MARKER = "report.json"  # present in every folder `curate report` wrote
HTML = "index.html"
HEADLINE_CSV = "headline.csv"


def default_out(ws: Workspace, run: str) -> Path:
    """Where a report goes without --out: <workspace>/reports/<run>."""
    return ws.root / "reports" / run


def build_report(
    ws: Workspace,
    run: str,
    out: str | Path | None = None,
    compare: list[str] | None = None,
    pairs: str | Path | None = None,
) -> Path:
    """Write the report of `run` into the folder `out` (default <workspace>/reports/<run>).

    Parameters
    ----------
    ws : Workspace
        The workspace whose catalog holds the run's scores.
    run : str
        A scored run.
    out : path, optional
        The report folder: written under a temporary name, then renamed; an existing folder is
        replaced only when empty or a previous report.
    compare : list of str, optional
        Other runs on the same dataset to compare accessibility with (Hacohen Fig. 8c-d, 8a, 11).
    pairs : path, optional
        A folder `curate pairs-analyse` wrote; adds the human-study results.

    Returns
    -------
    Path
        The report folder, holding index.html, every figure as PNG, headline.csv and report.json.
    """
    from curate.report import catalog, meding

    out = Path(out) if out is not None else default_out(ws, run)
    out = out.expanduser().absolute()
    compare = list(dict.fromkeys(c for c in compare or [] if c != run))
    pairs_dir = Path(pairs).expanduser().absolute() if pairs is not None else None
    keep = [ws.root.expanduser().absolute(), ws.catalog.expanduser().absolute()]
    keep += [pairs_dir] if pairs_dir is not None else []
    check_folder(out, keep)  # before anything is read or drawn
    if pairs_dir is not None:
        meding.read_pairs(pairs_dir)  # a bad --pairs fails before anything is drawn
    data = catalog.load(ws, run, compare)

    def build(tmp: Path) -> None:
        sections = _sections(ws, data, tmp, compare, pairs_dir)
        page_html = page.render(
            tmp, f"curate report: {run}", _facts(ws, data, compare), data.splits, sections
        )
        (tmp / HTML).write_text(page_html, encoding="utf-8")
        headline_frame(sections, data.splits).to_csv(tmp / HEADLINE_CSV, index=False)
        (tmp / MARKER).write_text(
            json.dumps(_marker(ws, run, compare, pairs_dir, sections), indent=1)
        )

    return write_folder(out, build, keep=keep, by="curate report")


def _sections(
    ws: Workspace, data: RunData, folder: Path, compare: list[str], pairs: Path | None
) -> list[page.Section]:
    """Every section of the report, in page order; pruning only when retrainings on subsets
    pruned from the run exist."""
    from curate.report import hacohen, meding, pliushch, pruning, reliability

    sections = [
        pliushch.section(data, folder),
        hacohen.section(ws, data, folder, compare),
        meding.section(ws, data, folder, pairs),
        reliability.section(data, folder),
    ]
    pruned = pruning.section(ws, data.run, folder)
    return sections + ([pruned] if pruned is not None else [])


def _facts(ws: Workspace, data: RunData, compare: list[str]) -> list[str]:
    """The lines under the page's title: the run, its splits, what it is compared with, the build."""
    info = data.info
    E = int(data.epoch_metrics["epoch"].max())
    splits = ", ".join(
        f"{s} ({int(sum(data.last(s)['correct_count_hist']))} images)" for s in data.splits
    )
    return [
        f"run {data.run}: {info['members']} x {info['arch']} ({info['strategy']}, "
        f"{info['device']}) on {data.dataset}, {info['epochs']} epochs trained, epochs 1..{E} "
        "scored",
        "splits: " + splits,
        f"split tolerance {int(data.epoch_metrics['tol'].iloc[-1])}; compared with: "
        + (", ".join(compare) if compare else "the run's own two halves"),
        f"built by curate {__version__} from {ws.catalog} at "
        f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M')} UTC",
    ]


def headline_frame(sections: list[page.Section], splits: list[str]) -> pd.DataFrame:
    """headline.csv: one row per section, quantity and split, with the value as stored and as
    shown on the page."""
    rows = [
        {
            "section": sec.key,
            "quantity": h.quantity,
            "paper": h.paper,
            "split": split,
            "value": h.values.get(split),
            "shown": h.text(split),
        }
        for sec in sections
        for h in sec.headlines
        for split in splits
    ]
    return pd.DataFrame(rows)


def _marker(
    ws: Workspace, run: str, compare: list[str], pairs: Path | None, sections: list[page.Section]
) -> dict:
    """report.json: what was reported, which figures were drawn and what was missing."""
    return {
        "run": run,
        "compare": compare,
        "pairs": str(pairs) if pairs else None,
        "workspace": str(ws.root),
        "version": __version__,
        "figures": [f.name for sec in sections for f in sec.figures],
        "notes": [n for sec in sections for n in sec.notes],
    }
