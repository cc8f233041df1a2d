"""`curate report`: one self-contained HTML page (plus its PNGs and a CSV of the headline numbers)
that reproduces, for one scored run, the figure types of the three papers, each captioned with what
the paper found and what the run shows.

The package owns the report; `curate/scores/summary.py` is the unrelated short text summary that
`curate run` prints. Modules: `catalog` (what is read, read-only), `plot` (matplotlib style),
`pliushch`, `hacohen`, `meding`, `reliability`, `pruning` (one section each), `page` (the HTML).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from curate import __version__
from curate.outputs import check_folder, write_folder
from curate.workspace import Workspace

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
    from curate.report import catalog, hacohen, meding, page, pliushch, pruning, reliability

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
        sections = [
            pliushch.section(data, tmp),
            hacohen.section(ws, data, tmp, compare),
            meding.section(ws, data, tmp, pairs_dir),
            reliability.section(data, tmp),
        ]
        pruned = pruning.section(ws, run, tmp)  # only when retrainings on its subsets exist
        if pruned is not None:
            sections.append(pruned)
        info = data.info
        E = int(data.epoch_metrics["epoch"].max())
        facts = [
            f"run {run}: {info['members']} x {info['arch']} ({info['strategy']}, {info['device']}) "
            f"on {data.dataset}, {info['epochs']} epochs trained, epochs 1..{E} scored",
            "splits: "
            + ", ".join(
                f"{s} ({int(sum(data.last(s)['correct_count_hist']))} images)" for s in data.splits
            ),
            f"split tolerance {int(data.epoch_metrics['tol'].iloc[-1])}; compared with: "
            + (", ".join(compare) if compare else "the run's own two halves"),
            f"built by curate {__version__} from {ws.catalog} at "
            f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M')} UTC",
        ]
        title = f"curate report: {run}"
        (tmp / HTML).write_text(
            page.render(tmp, title, facts, data.splits, sections), encoding="utf-8"
        )
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
            for split in data.splits
        ]
        pd.DataFrame(rows).to_csv(tmp / HEADLINE_CSV, index=False)
        figures = [f.name for sec in sections for f in sec.figures]
        (tmp / MARKER).write_text(
            json.dumps(
                {
                    "run": run,
                    "compare": compare,
                    "pairs": str(pairs_dir) if pairs_dir else None,
                    "workspace": str(ws.root),
                    "version": __version__,
                    "figures": figures,
                    "notes": [n for sec in sections for n in sec.notes],
                },
                indent=1,
            )
        )

    return write_folder(out, build, keep=keep, by="curate report")
