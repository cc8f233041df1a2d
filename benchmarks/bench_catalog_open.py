"""Opening the catalog for writing: every schema statement on every open (as curate did before the
schema version) against the versioned open, which skips them when the catalog is up to date.

    python benchmarks/bench_catalog_open.py [--workspace WS] [--repeats 20]

With --workspace, its catalog is copied to a temporary folder first (the original is not touched);
without, a fresh catalog with every table is timed. Both paths open the same file, run the same
view refresh, BEGIN and COMMIT an empty transaction and close. Figures go to
benchmarks/results/catalog_open.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def old_open(ws) -> None:
    """What `write` did before the schema version: every CREATE/ALTER/COMMENT on every open."""
    import duckdb

    from curate import catalog

    con = duckdb.connect(str(ws.catalog))
    try:
        for stmt in catalog.create_statements():
            con.execute(stmt)
        catalog.refresh_views(con, ws)
        con.execute("BEGIN TRANSACTION")
        con.execute("COMMIT")
    finally:
        con.close()


def new_open(ws) -> None:
    from curate import catalog

    with catalog.write(ws):
        pass


def timed(fn, ws, repeats: int) -> list[float]:
    fn(ws)  # warm-up (and, for the new path, the one migration)
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn(ws)
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    from curate import catalog
    from curate.workspace import Workspace

    ap = argparse.ArgumentParser()
    ap.add_argument("--workspace", help="a workspace whose catalog to copy and time")
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    if args.repeats < 1:
        sys.exit("error: --repeats must be at least 1")
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace(Path(tmp))
        if args.workspace:
            src = Workspace(Path(args.workspace)).catalog
            if not src.exists():
                sys.exit(f"error: no catalog at {src}; pass a workspace made by `curate run`")
            shutil.copy2(src, ws.catalog)
        new_open(ws)  # a fresh catalog, or the copy migrated once
        old = timed(old_open, ws, args.repeats)
        new = timed(new_open, ws, args.repeats)
    o, n = statistics.median(old), statistics.median(new)
    result = {
        "catalog": args.workspace or "fresh",
        "statements_per_old_open": len(catalog.create_statements()),
        "repeats": args.repeats,
        "old_open_median_s": round(o, 5),
        "new_open_median_s": round(n, 5),
        "ratio_old_over_new": round(o / n, 2),
    }
    print(
        f"open for writing, median of {args.repeats}: every statement {o * 1000:.1f} ms, "
        f"versioned {n * 1000:.1f} ms; ratio {o / n:.1f}x"
    )
    out = ROOT / "benchmarks" / "results" / "catalog_open.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
