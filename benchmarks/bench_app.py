"""Explorer responsiveness on an ImageNet-size catalog: every view's queries against the synthetic
1.28-million-instance catalog of bench_scores.py (run that first), each timed after one warm-up call.
Target: every view under 1 s.

    python benchmarks/bench_app.py [--work benchmarks/.work/scores/full]

Figures go to benchmarks/results/app.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    import duckdb

    from curate import explore

    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default=str(ROOT / "benchmarks" / ".work" / "scores" / "full"))
    ap.add_argument("--run", default="full")
    args = ap.parse_args()
    cat = Path(args.work) / "catalog.duckdb"
    if not cat.exists():
        sys.exit(f"{cat} is absent: run benchmarks/bench_scores.py first")
    from curate import catalog
    from curate.workspace import Workspace

    with catalog.write(Workspace(Path(args.work))):  # bring an older catalog's schema up to date
        pass
    con = duckdb.connect(str(cat), read_only=True)
    run, split = args.run, "train"
    n = con.execute("SELECT count(*) FROM instance_scores WHERE run = ?", [run]).fetchone()[0]
    impossible = explore.Subset(["impossible"], score="accessibility", score_range=(0, 0.2))
    clause, params = explore.subset_where(run, split, impossible)
    late = explore.Subset(["in-between"], where="learned_epoch > 40")
    clause2, params2 = explore.subset_where(run, split, late)
    views = {
        "Run overview": lambda: explore.run_overview(con, run),
        "TP-agreement": lambda: explore.tpa_heatmap(con, run, split),
        # as the app runs them: in a query worker (started by the untimed first call)
        "Subset explorer (count + first page)": lambda: (
            explore.call(args.work, "subset_count", clause, params),
            explore.call(args.work, "subset_page", clause, params, 0),
        ),
        "Subset explorer (SQL filter, page 100)": lambda: (
            explore.call(args.work, "subset_count", clause2, params2),
            explore.call(args.work, "subset_page", clause2, params2, 100),
        ),
        "Image detail (scores)": lambda: explore.instance_detail(con, run, split, 123_456),
        "Image detail (timeline from the log)": lambda: explore.prediction_timeline(
            con, run, split, 123_456
        ),
        "Agreement vs statistics": lambda: (
            explore.agreement_curves(con, run, split),
            explore.correlation_table(con, run, split),
        ),
        "Members": lambda: (
            explore.consistency_matrix(con, run, split, "all"),
            explore.consistency_matrix(con, run, split, "in-between"),
        ),
        "SQL console": lambda: explore.sql_console(
            args.work,
            "SELECT ddd, count(*), avg(accessibility) FROM difficulty "
            "WHERE run = 'full' GROUP BY ddd",
        ),
        "sidebar (datasets, runs, splits)": lambda: (
            explore.datasets(con),
            explore.runs(con),
            explore.splits(con, run),
        ),
    }
    results = {"instances": n}
    for name, fn in views.items():
        fn()
        t0 = time.perf_counter()
        fn()
        results[name] = time.perf_counter() - t0
        print(f"{name:<42} {results[name] * 1000:8.1f} ms")
    worst = max(v for k, v in results.items() if k != "instances")
    print(f"slowest view: {worst * 1000:.0f} ms (target 1000 ms) over {n:,} instances")
    out = ROOT / "benchmarks" / "results" / "app.json"
    out.write_text(json.dumps(results, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
