"""`curate report`: one self-contained HTML page (plus its PNGs and a CSV of the headline numbers)
that reproduces, for one scored run, the figure types of the three papers, each captioned with what
the paper found and what the run shows.

The package owns the report; `curate/scores/summary.py` is the unrelated short text summary that
`curate run` prints. Modules: `catalog` (what is read, read-only), `plot` (matplotlib style),
`pliushch`, `hacohen`, `meding`, `reliability`, `pruning` (one section each), `page` (the HTML).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from curate import __version__
from curate.errors import CurateError
from curate.locks import exclusive
from curate.workspace import Workspace, atomic_path

MARKER = (
    "report.json"  # present in every folder `curate report` wrote; only such folders are replaced
)
HTML = "index.html"
HEADLINE_CSV = "headline.csv"


def default_out(ws: Workspace, run: str) -> Path:
    """Where a report goes without --out: <workspace>/reports/<run>."""
    return ws.root / "reports" / run


def _report_files(out: Path) -> set[str] | None:
    """The files `curate report` wrote into `out`, from its report.json; None when `out` holds no
    report.json of curate (another tool may write a file of that name)."""
    try:
        marker = json.loads((out / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    keys = {"run", "workspace", "version", "figures"}
    if not isinstance(marker, dict) or not keys <= marker.keys():
        return None
    if not isinstance(marker["figures"], list):
        return None
    return {HTML, HEADLINE_CSV, MARKER, *map(str, marker["figures"])}


def _remove_killed(out: Path) -> None:
    """The temporary folders `atomic_path` left beside `out` when a report was killed (SIGKILL
    runs no cleanup); called holding the folder's lock, so none is another report's work."""
    pattern = re.compile(rf"^\.{re.escape(out.name)}\.[a-z0-9_]{{8}}\.tmp$")
    for p in out.parent.iterdir():
        if pattern.match(p.name) and p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)


def check_out(out: Path, keep: list[Path] = ()) -> None:
    """Refuse to replace anything but an empty folder or a previous report holding only what the
    report wrote, or a folder holding any of `keep` (the workspace, the --pairs folder)."""
    if out.is_symlink():
        raise CurateError(
            f"--out {out} is a symbolic link; name the folder itself, or a new folder"
        )
    if out.exists() and not out.is_dir():
        raise CurateError(
            f"--out {out} is a file, not a folder; choose a new folder for the report"
        )
    real = out.resolve()
    for k in keep:
        if k.resolve() == real or real in k.resolve().parents:
            raise CurateError(
                f"--out {out} is or holds {k}, which the report reads and would replace; choose "
                "a folder that has it neither as itself nor inside"
            )
    if out.is_dir() and any(out.iterdir()):
        written = _report_files(out)
        if written is None:
            raise CurateError(
                f"--out {out} is a folder with other files in it (not a report of curate); choose "
                "a new or empty folder, the report replaces its folder as a whole"
            )
        mine = sorted(p.name for p in out.iterdir() if p.name not in written)
        if mine:
            raise CurateError(
                f"--out {out} is a previous report, but {', '.join(mine[:3])} in it was not written "
                "by curate report and would be deleted; move it out, or choose a new folder"
            )
    parent = out.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent  # the nearest existing ancestor: where folders would be made
    if not parent.is_dir():
        raise CurateError(f"--out {out}: {parent} is not a folder; choose another place")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise CurateError(f"--out {out}: {parent} is not writable; choose another place")


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
    check_out(out, keep + ([pairs_dir] if pairs_dir is not None else []))
    if pairs_dir is not None:
        meding.read_pairs(pairs_dir)  # a bad --pairs fails before anything is drawn
    data = catalog.load(ws, run, compare)
    lock = out.parent / f".{out.name}.lock"
    try:  # permissions alone do not tell (root, /proc, a read-only mount): try it
        out.parent.mkdir(parents=True, exist_ok=True)
        lock.touch()
    except OSError as e:
        raise CurateError(
            f"--out {out}: cannot write in {out.parent} ({e.strerror}); choose another place"
        ) from None
    with exclusive(lock, f"report folder {out}", "wait for it"):
        _remove_killed(out)
        with atomic_path(out) as tmp:
            tmp.mkdir()
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
                    f"{s} ({int(sum(data.last(s)['correct_count_hist']))} images)"
                    for s in data.splits
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
    return out
