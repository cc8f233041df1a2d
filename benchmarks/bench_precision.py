"""Can a bf16 run's scores be trusted? They should agree with an fp32 run of the same recipe as
closely as two fp32 runs with different seeds agree with each other.

Three runs of one recipe (LeNet-5 members on MNIST, ../shared/data/mnist): fp32 with seed 0, fp32
with seed 1, bf16 autocast with seed 0. For each split, the Pearson and Spearman correlation of
accessibility between fp32-s0 and bf16-s0 is set beside the one between fp32-s0 and fp32-s1, and
each run's own split-half correlation (two disjoint halves of its members). The time per run is
reported too, with the CPU's bf16 flags: on a CPU without AMX or AVX512-BF16, bf16 is emulated and
slower, which is why `train.precision = auto` keeps fp32 there.

    python benchmarks/bench_precision.py [--members 4] [--epochs 3]

Figures go to benchmarks/results/precision.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
MNIST = ROOT.parent / "shared" / "data" / "mnist"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads per run (0 = all cores)")
    ap.add_argument("--work", default=str(ROOT / "benchmarks" / ".work" / "precision"))
    args = ap.parse_args()
    if not MNIST.exists():
        sys.exit(f"{MNIST} is absent (shared data)")

    import duckdb
    import numpy as np
    from scipy import stats

    from curate.cli import main as curate
    from curate.train.precision import BF16_CPU_FLAGS, cpu_flags

    w = ["--workspace", args.work]
    load_before = __import__("os").getloadavg()[0]  # > 0.5: timings are shared with other work
    assert curate(["ingest", "mnist", "--source", str(MNIST), *w]) == 0
    runs = {"fp32-s0": ("fp32", 0), "fp32-s1": ("fp32", 1), "bf16-s0": ("bf16", 0)}
    seconds = {}
    for run, (precision, seed) in runs.items():
        t0 = time.perf_counter()
        args_ = ["--members", str(args.members), "--epochs", str(args.epochs), "--seed", str(seed)]
        rc = curate(
            ["train", "mnist", "--run-name", run, *args_, "--set", f"train.precision={precision}"]
            + ["--set", f"train.threads={args.threads}", *w]
        )
        assert rc == 0, run
        seconds[run] = time.perf_counter() - t0
        assert curate(["score", run, *w]) == 0

    con = duckdb.connect(str(Path(args.work) / "catalog.duckdb"), read_only=True)

    def access(run: str, split: str) -> np.ndarray:
        rows = con.execute(
            "SELECT accessibility FROM instance_scores WHERE run = ? AND split = ? ORDER BY idx",
            [run, split],
        ).fetchall()
        return np.array([r[0] for r in rows])

    def half(run: str, split: str) -> float:
        row = con.execute(
            "SELECT pearson_r FROM ensemble_comparison WHERE run_a = ? AND run_b = ? "
            "AND split = ? AND kind = 'accessibility'",
            [run, run, split],
        ).fetchone()
        return float(row[0]) if row else float("nan")

    res = {
        "cpu_bf16_flags": sorted(f for f in cpu_flags() if f in BF16_CPU_FLAGS),
        "members": args.members,
        "epochs": args.epochs,
        "threads": args.threads,
        "load_average_before": load_before,
        "train_seconds": seconds,
        "bf16_over_fp32_time": seconds["bf16-s0"] / seconds["fp32-s0"],
        "splits": {},
    }
    for split in ("train", "test"):
        a, b, c = (access(r, split) for r in runs)
        res["splits"][split] = {
            "fp32_vs_bf16_same_seed": {
                "pearson": float(stats.pearsonr(a, c)[0]),
                "spearman": float(stats.spearmanr(a, c)[0]),
            },
            "fp32_vs_fp32_other_seed": {
                "pearson": float(stats.pearsonr(a, b)[0]),
                "spearman": float(stats.spearmanr(a, b)[0]),
            },
            "split_half_pearson": {r: half(r, split) for r in runs},
        }
        s = res["splits"][split]
        print(
            f"{split}: accessibility r fp32 vs bf16 (same seed) {s['fp32_vs_bf16_same_seed']['pearson']:.3f}"
            f" (rho {s['fp32_vs_bf16_same_seed']['spearman']:.3f}); fp32 vs fp32 (other seed) "
            f"{s['fp32_vs_fp32_other_seed']['pearson']:.3f} (rho "
            f"{s['fp32_vs_fp32_other_seed']['spearman']:.3f}); split-half "
            + ", ".join(f"{r} {v:.3f}" for r, v in s["split_half_pearson"].items())
        )
    print(
        f"time: bf16 / fp32 = {res['bf16_over_fp32_time']:.2f} on this CPU (bf16 units: "
        f"{', '.join(res['cpu_bf16_flags']) or 'none'})"
    )
    dest = ROOT / "benchmarks" / "results" / "precision.json"
    dest.write_text(json.dumps(res, indent=1) + "\n")
    print(f"wrote {dest}")


if __name__ == "__main__":
    main()
