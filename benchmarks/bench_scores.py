"""Scoring at ImageNet scale: a synthetic log of N = 1.28 million instances, M = 10 members, E = 90
epochs (one split), written in the layout training writes, scored into every table.

Targets: at most 60 s wall time and 8 GB peak memory for the full log; against a straightforward
pandas group-by implementation on a 1 % subset (the same data, both timed here), the ratio.

    python benchmarks/bench_scores.py [--n 1281167] [--members 10] [--epochs 90] [--work DIR]

Figures go to benchmarks/results/scores.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from curate import catalog  # noqa: E402
from curate.train import predlog  # noqa: E402
from curate.workspace import Workspace  # noqa: E402

K = 1000  # classes


def make_workspace(work: Path, run: str, n: int, m: int, e: int, seed: int = 0) -> Workspace:
    """A catalog with one dataset split and a run whose log has a realistic structure: each instance has
    a difficulty drawn from a U-shaped Beta(0.3, 0.3); member m is right at epoch t with probability
    sigmoid(8 (progress(t) + skill_m - difficulty)), so easy images are learned early by everyone and
    hard ones late or never."""
    ws = Workspace(work)
    marker = work / f".{run}-complete"
    if marker.exists():
        return ws
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, K, n)
    difficulty = rng.beta(0.3, 0.3, n)
    idx = np.arange(n, dtype=np.int32)
    with catalog.write(ws) as con:
        con.execute("DELETE FROM datasets WHERE dataset = 'synthetic-imagenet'")
        con.execute("DELETE FROM instances WHERE dataset = 'synthetic-imagenet'")
        con.execute(
            "INSERT INTO datasets (dataset, format, splits, counts, num_classes) VALUES "
            "('synthetic-imagenet', 'synthetic', ['train'], [?], ?)",
            [n, K],
        )
        inst = pd.DataFrame(
            {
                "dataset": "synthetic-imagenet",
                "split": "train",
                "idx": idx,  # noqa: F841
                "label": labels.astype(np.int32),
                "true_label": labels.astype(np.int32),
            }
        )
        con.execute(
            "INSERT INTO instances (dataset, split, idx, label, true_label) SELECT * FROM inst"
        )
    run_dir = ws.run_dir(run)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "run.json").write_text(
        json.dumps({"dataset": "synthetic-imagenet", "train": {"members": m}})
    )
    skill = rng.normal(0, 0.05, m)
    t0 = time.perf_counter()
    for t in range(e + 1):
        progress = 1.15 * t / e
        p = 1 / (1 + np.exp(-8 * (progress + skill[:, None] - difficulty[None, :])))
        right = rng.random((m, n), dtype=np.float32) < p
        wrong_class = (labels + rng.integers(1, K, (m, n))) % K
        pred = np.where(right, labels, wrong_class).astype(np.int16)
        p_true = np.clip(p + rng.normal(0, 0.1, (m, n)), 0, 1).astype(np.float32)
        for mm in range(m):
            predlog.write_shard(
                predlog.shard_path(run_dir, "eval", "train", mm, t),
                idx,
                pred[mm],
                p_true[mm],
                p_true[mm] - 0.5,
            )
        print(
            f"\rwriting the synthetic log: epoch {t}/{e} ({time.perf_counter() - t0:.0f} s)",
            end="",
            flush=True,
        )
    print()
    for mm in range(m):
        prog = {"epochs": {str(t): {"acc": {}, "seconds": 0} for t in range(e + 1)}}
        predlog.progress_path(run_dir, mm).parent.mkdir(parents=True, exist_ok=True)
        predlog.progress_path(run_dir, mm).write_text(json.dumps(prog))
    marker.write_text("ok")
    return ws


def time_ours(work: Path, run: str) -> dict:
    """Score in a fresh process: wall time and peak resident memory of that process."""
    code = (
        "import sys, time, resource; sys.path.insert(0, %r)\n"
        "from curate.scores.score import score_run\nfrom curate.workspace import Workspace\n"
        "t = time.perf_counter(); score_run(Workspace(%r), %r, quiet=True)\n"
        "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    ) % (str(ROOT), str(work), run)
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    wall_process = time.perf_counter() - t0
    scoring_s, maxrss_kb = out.stdout.strip().splitlines()[-1].split()
    return {
        "wall_s_score_run": float(scoring_s),
        "wall_s_process": wall_process,
        "peak_rss_gb": int(maxrss_kb) / 1024**2,
    }


def baseline(work: Path, run: str) -> dict:
    """The straightforward way: every shard into one long pandas frame, then per-instance group-by with
    Python functions and per-epoch group-bys (what one writes in a notebook)."""
    t0 = time.perf_counter()
    ws = Workspace(work)
    run_dir = ws.run_dir(run)
    frames = []
    for p in sorted(
        (run_dir / "predictions" / "pass=eval" / "split=train").glob(
            "member=*/epoch=*/part.parquet"
        )
    ):
        df = pd.read_parquet(p, columns=["idx", "pred", "p_true"])
        df["member"] = int(p.parent.parent.name.split("=")[1])
        df["epoch"] = int(p.parent.name.split("=")[1])
        frames.append(df)
    log = pd.concat(frames, ignore_index=True)
    con = catalog.read(ws)
    labels = con.execute(
        "SELECT idx, label FROM instances WHERE dataset = 'synthetic-imagenet'"
    ).df()
    con.close()
    log = log.merge(labels, on="idx")
    log["c"] = log["pred"] == log["label"]
    m = log["member"].nunique()
    e_max = log["epoch"].max()

    def per_instance(g):
        g = g.sort_values(["member", "epoch"])
        scored = g[g["epoch"] >= 1]
        tpa = scored.groupby("epoch")["c"].mean()
        learned = []
        for _, gm in scored.groupby("member"):
            c = gm["c"].to_numpy()
            if not c[-1]:
                learned.append(np.inf)
                continue
            wrong = np.flatnonzero(~c)
            learned.append(wrong[-1] + 2 if len(wrong) else 1)
        med = np.median(learned)
        forget = 0
        for _, gm in scored.groupby("member"):
            c = gm["c"].to_numpy()
            forget += int(((c[:-1]) & (~c[1:])).sum())
        agree = g.groupby("epoch")["pred"].agg(lambda s: s.value_counts().iloc[0] / m)
        final = int(g[g["epoch"] == e_max]["c"].sum())
        return pd.Series(
            {
                "accessibility": tpa.mean(),
                "learned_epoch": med if np.isfinite(med) else np.nan,
                "forgetting": forget,
                "agreement_final": agree.iloc[-1],
                "final_correct": final,
                "confidence": scored["p_true"].mean(),
                "variability": scored.groupby("member")["p_true"].std(ddof=0).mean(),
            }
        )

    inst = log.groupby("idx").apply(per_instance)
    counts = log.groupby(["epoch", "idx"])["c"].sum()
    hist = counts.groupby("epoch").apply(lambda s: np.bincount(s, minlength=m + 1))
    acc = log.groupby(["epoch", "member"])["c"].mean().unstack()
    strict = counts.groupby("epoch").apply(lambda s: (s == m).sum() / max((s > 0).sum(), 1))
    lower = 1 - np.minimum((1 - acc).sum(axis=1), 1)
    rand = acc.prod(axis=1)
    _ = (inst, hist, strict, lower, rand)
    return {"wall_s": time.perf_counter() - t0}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_281_167)
    ap.add_argument("--members", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=90)
    ap.add_argument("--work", default=str(ROOT / "benchmarks" / ".work" / "scores"))
    ap.add_argument("--skip-full", action="store_true", help="only the 1 %% comparison")
    ap.add_argument(
        "--skip-subset", action="store_true", help="only the full log (keeps the last 1 %% figures)"
    )
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    results: dict = {
        "n": args.n,
        "members": args.members,
        "epochs": args.epochs,
        "cpus": os.cpu_count(),
    }

    out = ROOT / "benchmarks" / "results" / "scores.json"
    if args.skip_subset and out.exists():
        results["subset_1pct"] = json.loads(out.read_text()).get("subset_1pct")
    else:
        small_n = args.n // 100
        make_workspace(work / "subset", "subset", small_n, args.members, args.epochs, seed=1)
        ours_small = time_ours(work / "subset", "subset")
        base_small = baseline(work / "subset", "subset")
        results["subset_1pct"] = {
            "n": small_n,
            "ours": ours_small,
            "baseline_pandas": base_small,
            "speedup": base_small["wall_s"] / ours_small["wall_s_score_run"],
        }
        print(
            f"1 % subset ({small_n} instances): ours {ours_small['wall_s_score_run']:.2f} s, pandas group-by "
            f"{base_small['wall_s']:.1f} s: {results['subset_1pct']['speedup']:.0f}x"
        )

    if not args.skip_full:
        make_workspace(work / "full", "full", args.n, args.members, args.epochs, seed=0)
        ours = time_ours(work / "full", "full")
        results["full"] = ours
        print(
            f"full log ({args.n} x {args.members} x {args.epochs + 1} epochs): {ours['wall_s_score_run']:.1f} s "
            f"scoring ({ours['wall_s_process']:.1f} s with interpreter start), peak memory {ours['peak_rss_gb']:.2f} GB "
            f"(targets: 60 s, 8 GB)"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(f"wrote {out}")
    _ = resource


if __name__ == "__main__":
    main()
