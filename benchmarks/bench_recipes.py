"""CIFAR-10 recipes for CPUs: reliability of the scores per CPU-minute (issue 12).

Each recipe runs end to end (`curate run`: train, then score) on ../shared/data/cifar10-jpeg.tar.gz
in a fresh run folder of one workspace, in a subprocess. Measured per recipe:

- CPU minutes: user + sys of the `curate run` process and its children (rusage of the children of
  this script, before and after), so noise from other processes on the machine does not count;
- test accuracy: `runs.mean_final_acc` (mean over members at the last epoch);
- split-half r, train and test: `ensemble_comparison`, the Pearson r of accessibility between two
  disjoint halves of the members (what `curate score` writes by default). The train split (50,000
  images) is the one users curate, so it is the target.

The baseline is 8 LeNet-5 members, 10 epochs with the recipe defaults; the candidates are the
`cifar10-cpu` recipe and other settings given as --set overrides (RECIPES below). Ingest runs once, before, and is
not counted; image statistics are off (`score.stats = false`) for every recipe.

    python benchmarks/bench_recipes.py [--only baseline cifar10-cpu] [--work DIR]
        [--set train.epochs=2 ...]   # extra overrides for every recipe (a quick look)

Figures go to benchmarks/results/recipes.json (unless --out says otherwise).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"
DATASET = "cifar10-jpeg"
COMMON = [f"dataset.source={SOURCE}", f"dataset.name={DATASET}", "score.stats=false"]

# name -> (recipe, overrides)
RECIPES: dict[str, tuple[str, list[str]]] = {
    "baseline": (
        "imagefolder",
        ["train.arch=lenet5", "train.members=8", "train.epochs=10"],
    ),
    "cifar10-cpu": ("cifar10-cpu", []),  # 20 x 4 LeNet-5, fused in groups of 10 (= lenet-20x4)
    # the baseline's member-epochs spent on more members, fewer epochs (same defaults otherwise)
    "lenet-16x5": (
        "imagefolder",
        ["train.arch=lenet5", "train.members=16", "train.epochs=5", "train.fuse_members=8"],
    ),
    "lenet-20x4": (
        "imagefolder",
        ["train.arch=lenet5", "train.members=20", "train.epochs=4", "train.fuse_members=10"],
    ),
    # an airbench-style net: higher accuracy per epoch, but about 3.5x LeNet-5's CPU per member-epoch
    "fastconv-8x8": (
        "imagefolder",
        [
            "train.arch=fastconv",
            "train.width=16",
            "train.members=8",
            "train.epochs=8",
            "train.strategy=separate",
            "train.lr=0.1",
            "train.nesterov=true",
            "train.label_smoothing=0.1",
            "train.schedule=onecycle",
            "loader.batch_size=256",
            "loader.eval_batch_size=2000",
            "loader.flip=true",
            "loader.translate=2",
        ],
    ),
}


def cpu_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def curate(*args: str, log: Path | None = None) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "curate", *args]
    with open(log, "w") if log else open(os.devnull, "w") as out:
        res = subprocess.run(cmd, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    if res.returncode != 0:
        raise SystemExit(
            f"failed ({res.returncode}): {' '.join(cmd)}" + (f"; see {log}" if log else "")
        )


def catalog_figures(ws: Path, run: str) -> dict:
    import duckdb

    con = duckdb.connect(str(ws / "catalog.duckdb"), read_only=True)
    try:
        acc = json.loads(
            con.execute("SELECT mean_final_acc FROM runs WHERE run = ?", [run]).fetchone()[0]
        )
        rows = con.execute(
            "SELECT split, pearson_r, spearman_rho, len(members_a), len(members_b) "
            "FROM ensemble_comparison WHERE run_a = ? AND run_b = ? AND kind = 'accessibility'",
            [run, run],
        ).fetchall()
        arch, members, epochs = con.execute(
            "SELECT arch, members, epochs FROM runs WHERE run = ?", [run]
        ).fetchone()
    finally:
        con.close()
    r = {split: (p, s) for split, p, s, _, _ in rows}
    return {
        "arch": arch,
        "members": members,
        "epochs": epochs,
        "test_acc": acc.get("test"),
        "train_acc": acc.get("train"),
        "split_half_r_train": r.get("train", (None, None))[0],
        "split_half_r_test": r.get("test", (None, None))[0],
        "split_half_rho_train": r.get("train", (None, None))[1],
        "split_half_rho_test": r.get("test", (None, None))[1],
    }


def run_recipe(ws: Path, name: str, extra: list[str]) -> dict:
    recipe, overrides = RECIPES[name]
    sets = [a for o in COMMON + overrides + extra for a in ("--set", o)]
    shutil.rmtree(ws / "runs" / name, ignore_errors=True)
    load = os.getloadavg()[0]
    c0, t0 = cpu_children(), time.perf_counter()
    curate("run", recipe, "--run-name", name, "--workspace", str(ws), *sets, log=ws / f"{name}.log")
    cpu, wall = cpu_children() - c0, time.perf_counter() - t0
    row = {"recipe": name, "recipe_file": recipe, "overrides": overrides + extra}
    row |= {"cpu_minutes": cpu / 60, "wall_minutes": wall / 60}
    row |= {"load_average_before": load, "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
    return row | catalog_figures(ws, name)


def fmt(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--only", nargs="+", choices=list(RECIPES), default=["baseline", "cifar10-cpu"])
    ap.add_argument("--work", type=Path, default=ROOT / "benchmarks" / ".work" / "recipes")
    ap.add_argument("--set", dest="extra", action="append", default=[], help="override for all")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "recipes.json")
    args = ap.parse_args()
    if not SOURCE.exists():
        raise SystemExit(f"{SOURCE} is missing")
    ws = args.work.resolve()
    ws.mkdir(parents=True, exist_ok=True)
    ingest = ["imagefolder", "--source", str(SOURCE), "--name", DATASET, "--workspace", str(ws)]
    curate("ingest", *ingest, log=ws / "ingest.log")

    rows: list[dict] = []
    if args.out.exists():  # figures of recipes not rerun now are kept (CPU minutes are rusage)
        old = json.loads(args.out.read_text()).get("recipes", [])
        rows = [r for r in old if r["recipe"] not in args.only]
    for name in args.only:
        print(f"running {name} ...", flush=True)
        rows.append(run_recipe(ws, name, args.extra))
        write(args.out, rows)  # after each recipe, so a stopped benchmark keeps what it measured
        r = rows[-1]
        print(
            f"  {r['cpu_minutes']:.1f} CPU-min, test acc {fmt(r['test_acc'], '.3f')}, "
            f"r train {fmt(r['split_half_r_train'], '.3f')} test {fmt(r['split_half_r_test'], '.3f')}",
            flush=True,
        )

    base = next((r for r in rows if r["recipe"] == "baseline"), None)
    head = f"{'recipe':18s} {'members x epochs x arch':26s} {'CPU min':>8s} {'vs base':>7s}"
    head += f" {'test acc':>8s} {'r train':>8s} {'r test':>7s}"
    print("\nsplit-half r: Pearson r of accessibility between two disjoint halves of the members;")
    print(
        "'r train' (50,000 train images) is the target (>= 0.95 within the baseline's CPU time)\n"
    )
    print(head)
    for r in rows:
        ratio = r["cpu_minutes"] / base["cpu_minutes"] if base else None
        what = f"{r['members']} x {r['epochs']} x {r['arch']}"
        print(
            f"{r['recipe']:18s} {what:26s} {r['cpu_minutes']:8.1f} {fmt(ratio, '7.2f')} "
            f"{fmt(r['test_acc'], '8.3f')} {fmt(r['split_half_r_train'], '8.3f')} "
            f"{fmt(r['split_half_r_test'], '7.3f')}"
        )
    print(f"\nwrote {args.out}")


def write(path: Path, rows: list[dict]) -> None:
    import torch

    base = next((r for r in rows if r["recipe"] == "baseline"), None)
    for r in rows:
        r["cpu_vs_baseline"] = r["cpu_minutes"] / base["cpu_minutes"] if base else None
    out = {
        "what": "CIFAR-10 (cifar10-jpeg) recipes on this CPU: CPU minutes of `curate run` (train + "
        "score, children's rusage), mean final test accuracy, split-half Pearson r of "
        "accessibility on train (the target) and test",
        "command": " ".join(["python", "benchmarks/bench_recipes.py", *sys.argv[1:]]),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "recipes": rows,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
