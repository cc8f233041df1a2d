"""Pruning CIFAR-10 by difficulty, proven by retraining: test accuracy of one fixed recipe trained
on subsets that keep 90 / 70 / 50 / 30 % of the train split, under each `curate prune` strategy and
under EL2N and forgetting scores, against the full-data accuracy.

1. Ingest `../shared/data/cifar10-jpeg.tar.gz` (`--train-n N`: the first N train images, the
   standard order; the test split keeps min(N, 10,000) images, so N >= 10,000 tests on all of it).
   `--source` names another dataset for `--recipe` (e.g. `../shared/data/mnist` for `mnist`).
2. One scoring run: the `cifar10-label-issues` recipe (fastconv, width 32, one-cycle SGD, flips and
   2-pixel shifts; `--recipe` names another), `--score-members` members x `--score-epochs` epochs
   (default `--epochs`), scored by `curate score`.
   Scores: accessibility (with the `ddd` split, used by in-between and, for ccs, as the score),
   forgetting_events (Toneva et al.: both from every epoch of the run) and el2n (Paul et al.: the
   members' mean error norm at epoch 1, `el2n@1`, and at the last epoch, `el2n@E`).
3. For every (score, strategy, fraction): `curate prune` (class-balanced) and a retraining run of
   the same recipe with `--retrain-members` members (seeds independent of the scoring run's, one
   run, so one eval pass serves both) for `--epochs` epochs on the subset, logging the test split
   only. Its cell: every member's test accuracy at the last epoch, mean and spread.
4. Full data: the same retraining on the whole (first N) train split.

Scoring compute of each method, in member-epochs of training the scores need and in measured CPU
seconds of the scoring run pro rata: accessibility and forgetting use every epoch of every member
(M x E); el2n@1 only the first epoch (M x 1, what an early-stopped run would cost); el2n@E the
whole run (the same as accessibility, the equal-compute comparison). `accessibility-b30-ccs` is
ccs with `--beta 0.3` at every fraction (the hardest 30 % dropped first, where the default drops
none at 50 % kept and above): the variant for noisy labels, whose wrong labels sit among the hardest.
`random-d1`, `random-d2` and `accessibility-d1-hard` are the same rules with other draws
(`curate prune --seed 1`, `2`): random another sample, `hard` its ties (a score of M x E
member-epochs takes M E + 1 values) in another order. A cell's spread is over the members trained
on one subset; these cells show how much of it is owed to the subset drawn (the summary's
`random_draw_std`, the population std over random's draws).

Resumable: the work dir (`benchmarks/.work/prune`) keeps the workspace; a finished retraining (its
catalog row) is not trained again. The JSON is written after every retraining with the cells still
missing listed, so a stopped benchmark leaves its partial figures. A work dir scored again (a fresh
clone) adds cells to an existing `--out` only if every subset it prunes has the checksum the
cells there recorded; the first scoring run's figures stay, the repeat's go to
`scoring_run_repeats`. `--stop-at HH:MM` (UTC) starts no new retraining after that time.

`--labels aggre` (or `worse`): train on CIFAR-10N's human labels instead of CIFAR-10's
(`../shared/data/refs/cifar10n-human-labels-train.npz`, `aggre_label`: 9.1 % of the first 10,000
wrong; `worse_label`: 41 %), passed to every command as `dataset.labels`; test accuracy stays on the
clean CIFAR-10 test labels. Each cell then also records the share of wrong labels in its subset
(`wrong_labels_kept`), against the full split's (`full.wrong_labels_kept`).

`--equal-steps`: the same cells at equal optimiser steps instead of equal epochs, trained with
`train.equal_steps = true`: a subset keeping the fraction F retrains for round(E / F) epochs
(nearest integer, halves up; F = 0.5 at E = 3 gives 6), so its steps match the full-data run's
E epochs to within one epoch of the subset. These cells go to their own section of the JSON,
`cells_equal_steps` (run names `<cell>-eqsteps`, each with its epochs), next to the fixed-epoch figures, which stay as they are; the scoring run, the subsets and
the full-data run are reused from the work dir (the JSON's `setting` must match, `--fractions`
aside). `--methods` restricts the cells to the labels named (`method-strategy` as in the JSON's
summary, e.g. `accessibility-easy,random-random`, or an accessibility strategy alone, e.g. `ccs`).

    python benchmarks/bench_prune.py                        # the full setting: 50,000 images
    python benchmarks/bench_prune.py --train-n 10000 --epochs 4   # a CPU-sized setting
    python benchmarks/bench_prune.py --train-n 10000 --epochs 3 --width 16 --threads 1 \
        --equal-steps --fractions 0.5 --methods easy,random-random   # at equal steps
    python benchmarks/bench_prune.py --train-n 10000 --epochs 10 --score-epochs 3 --width 16 \
        --threads 2 --fractions 0.5 0.7 --out benchmarks/results/prune_e10.json   # longer training
    python benchmarks/bench_prune.py --train-n 10000 --epochs 10 --score-epochs 10 --width 16 \
        --threads 2 --fractions 0.5 --work benchmarks/.work/prune-s10 \
        --out benchmarks/results/prune_e10_s10.json   # scores from a longer scoring run
    python benchmarks/bench_prune.py --recipe mnist --source ../shared/data/mnist --epochs 4 \
        --threads 2 --fractions 0.5 0.3 --work benchmarks/.work/prune-mnist \
        --out benchmarks/results/prune_mnist.json   # another recipe and dataset: MNIST, LeNet-5
    python benchmarks/bench_prune.py --epochs 10 --score-epochs 3 --width 16 --threads 2 \
        --fractions 0.5 --work benchmarks/.work/prune-c50k \
        --out benchmarks/results/prune_c50k_e10.json   # all 50,000 images
    python benchmarks/bench_prune.py --train-n 5000 --epochs 20 --threads 2 --precision bf16 \
        --work benchmarks/.work/prune-c5k \
        --out benchmarks/results/prune_c5k_e20.json   # members that fit the train split
    python benchmarks/bench_prune.py --recipe cifar10-prune-gpu --epochs 200 --score-epochs 20 \
        --precision auto --work benchmarks/.work/prune-gpu --out benchmarks/results/prune_gpu.json

Figures: benchmarks/results/prune.json. The ratio printed: accuracy at 50 % kept (best strategy)
over the full-data accuracy.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
SOURCE = DATA / "cifar10-jpeg.tar.gz"
NOISY = DATA / "refs" / "cifar10n-human-labels-train.npz"  # --labels aggre / worse
RECIPE = "cifar10-label-issues"  # --recipe: another one (pipelines/cifar10-prune-gpu.toml)
STRATEGIES = ("random", "easy", "hard", "in-between", "ccs")
# (method label, catalog score column, strategy); el2n@E and el2n@1 differ in the scored epoch
METHODS = [("accessibility", "accessibility", s) for s in STRATEGIES if s != "random"]
METHODS = [("random", "accessibility", "random"), *METHODS]
METHODS += [
    ("el2n@1", "el2n", "hard"),
    ("el2n@E", "el2n", "hard"),
    ("forgetting", "forgetting_events", "hard"),
    ("accessibility-b30", "accessibility", "ccs"),  # ccs dropping the hardest 30 % first
    # other draws of the same rule (curate prune --seed): how much a cell owes to the subset drawn
    ("random-d1", "accessibility", "random"),
    ("random-d2", "accessibility", "random"),
    ("accessibility-d1", "accessibility", "hard"),  # ties of the discrete score in another order
]
BETA = {"accessibility-b30": 0.3}  # --beta of the ccs cells that do not take ccs_beta(keep)
DRAW = {"random-d1": 1, "random-d2": 2, "accessibility-d1": 1}  # --seed of curate prune


def cpu_seconds_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def curate(args, *cli: str, log: Path) -> float:
    """Run a curate command in a subprocess; its CPU seconds."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "curate", *cli, "--workspace", str(args.work / "ws")]
    t0 = cpu_seconds_children()
    with open(log, "a") as out:
        res = subprocess.run(cmd, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    if res.returncode != 0:
        raise SystemExit(f"failed ({res.returncode}): {' '.join(cmd)}; see {log}")
    return cpu_seconds_children() - t0


def sets(args, *extra: str, epochs: int | None = None, only: str = "") -> list[str]:
    """The --set overrides of every command here; `only`: those of one section (what ingest reads)."""
    values = [
        f"dataset.source={args.source}",
        f"dataset.max_per_split={args.train_n}",
        f"train.epochs={epochs or args.epochs}",
        f"train.precision={args.precision}",
        f"train.threads={args.threads}",
        *([f"train.width={args.width}"] if args.width else []),
        *([f"dataset.labels={args.labels_file}"] if args.labels_file else []),
        *extra,
    ]
    return [a for v in values if v.startswith(only) for a in ("--set", v)]


def query(args, sql: str, params: list | None = None):
    import duckdb

    con = duckdb.connect(str(args.work / "ws" / "catalog.duckdb"), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def dataset_label(args) -> str:
    """The JSON's `setting.dataset`: CIFAR-10 for the default source, else recipe and source."""
    if args.source.resolve() != SOURCE.resolve():
        return f"{args.recipe} ({args.source.name})"
    return "CIFAR-10 (cifar10-jpeg)" + (
        f", CIFAR-10N {args.labels}_label train labels" if args.labels_file else ""
    )


def split_size(args, split: str) -> int:
    """Instances of `split` as ingested (the first --train-n, or every one)."""
    return int(query(args, "SELECT count(*) FROM instances WHERE split = ?", [split])[0][0])


def noisy_labels(args) -> tuple[Path | None, np.ndarray | None]:
    """`--labels aggre|worse`: the first N CIFAR-10N labels as a .npy in the work dir (the form
    `dataset.labels` takes: one label per train image, in idx order) and the (N,) mask of those
    that differ from the CIFAR-10 label; (None, None) for the clean labels."""
    if args.labels == "clean":
        return None, None
    if not NOISY.exists():
        raise SystemExit(f"{NOISY} is missing; see ../shared/data/README")
    z = np.load(NOISY)
    n = args.train_n or len(z["clean_label"])
    given, clean = z[f"{args.labels}_label"][:n].astype(np.int64), z["clean_label"][:n]
    path = args.work / f"cifar10n-{args.labels}-first{n}.npy"
    if not path.exists() or not np.array_equal(np.load(path), given):
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, given)
        tmp.replace(path)
    return path, given != clean


def check_labels(args) -> None:
    """The ingested train labels are the file's, and the source's are CIFAR-10N's clean_label:
    else the idx order is not the standard one and every wrong_labels_kept would be meaningless."""
    if args.wrong is None:
        return
    rows = query(
        args,
        "SELECT label <> true_label FROM instances WHERE split = 'train' ORDER BY idx",
    )
    got = np.array([r[0] for r in rows], dtype=bool)
    if not np.array_equal(got, args.wrong):
        raise SystemExit(
            f"the ingested train labels differ from CIFAR-10N's {args.labels}_label in "
            f"{int((got != args.wrong).sum())} images; ingest from the standard-order source"
        )


def wrong_share(args, subset: Path | None) -> float | None:
    """The share of wrong labels among the train images a run trains on (None: clean labels)."""
    if args.wrong is None:
        return None
    if subset is None:
        return float(args.wrong.mean())
    from curate.prune import read_idx

    return float(args.wrong[read_idx(subset)].mean())


def check_same_subsets(args, old: dict, subsets: Path) -> None:
    """Refuse to add cells to `--out` if this work dir's subsets are not the ones its cells were
    trained on (a work dir scored again, on another CPU, prunes at other boundaries)."""
    from curate.prune import checksum, read_idx

    cells = [*old.get("cells", {}).values(), *old.get("cells_equal_steps", {}).values()]
    differ = sorted(
        {
            c["run"].removesuffix("-eqsteps")
            for c in cells
            if c.get("subset_checksum")
            and (subsets / f"{c['run'].removesuffix('-eqsteps')}.npy").exists()
            and checksum(read_idx(subsets / f"{c['run'].removesuffix('-eqsteps')}.npy"))
            != c["subset_checksum"]
        }
    )
    if differ:
        print(
            f"error: the subsets in {subsets} differ from those {args.out}'s cells were trained "
            f"on, in {len(differ)} cells ({', '.join(differ[:3])}{', ...' * (len(differ) > 3)}): "
            "its scoring run is another; pass another --out",
            file=sys.stderr,
        )
        raise SystemExit(2)


def cell_name(method: str, strategy: str, keep: float) -> str:
    return f"{method}-{strategy}-{int(round(keep * 100))}".replace("@", "at")


def member_test_acc(args, run: str, epochs: int | None = None) -> list[float] | None:
    """Every member's test accuracy at the last epoch of a finished run; None if not finished."""
    rows = query(
        args, "SELECT final_acc, epochs_done FROM members WHERE run = ? ORDER BY member", [run]
    )
    if not rows or any(e < (epochs or args.epochs) for _, e in rows):
        return None
    return [json.loads(f)["test"] for f, _ in rows]


def retrain(
    args, run: str, subset: Path | None, log: Path, epochs: int | None = None, equal_steps=False
) -> dict:
    """Train the retraining recipe (on the subset, for `epochs`, default `--epochs`); its cell.
    equal_steps: `--epochs` with train.equal_steps, which trains the subset `epochs` epochs."""
    done = member_test_acc(args, run, epochs)
    cpu = None
    if done is None:
        extra = [
            f"train.members={args.retrain_members}",
            f"train.seed={args.retrain_seed}",
            "train.log_splits=test",
        ]
        if subset is not None:
            extra.append(f"train.subset={subset}")
        if equal_steps:
            extra.append("train.equal_steps=true")
        asked = None if equal_steps else epochs
        t0 = time.time()
        cpu = curate(
            args,
            "train",
            args.recipe,
            "--run-name",
            run,
            *sets(args, *extra, epochs=asked),
            log=log,
        )
        wall = time.time() - t0
        done = member_test_acc(args, run, epochs)
    else:
        wall = None
    acc = np.array(done)
    n = query(args, "SELECT recipe FROM runs WHERE run = ?", [run])
    return {
        "run": run,
        "test_acc_members": [float(a) for a in acc],
        "test_acc_mean": float(acc.mean()),
        "test_acc_std": float(acc.std()),  # population std over members (seeds)
        "test_acc_range": float(acc.max() - acc.min()),
        "cpu_seconds": cpu,
        "wall_seconds": wall,
        "subset_checksum": (json.loads(n[0][0])["train"].get("subset") or None) if n else None,
        **({"wrong_labels_kept": wrong_share(args, subset)} if args.wrong is not None else {}),
    }


def summarise(results: dict, fractions: list[float]) -> dict:
    """Per fraction: the best method, its margin over random and over full data; per method
    whether it beat random at every fraction measured."""
    full = results.get("full")
    cells = results["cells"]
    out: dict = {"by_fraction": {}}
    for keep in fractions:
        row = {
            f"{c['method']}-{c['strategy']}": c["test_acc_mean"]
            for c in cells.values()
            if c.get("keep") == keep
        }
        if not row:
            continue
        best = max(row, key=row.get)
        rnd = row.get("random-random")
        draws = [
            row[d] for d in ("random-random", "random-d1-random", "random-d2-random") if d in row
        ]
        out["by_fraction"][f"{keep:g}"] = {
            "best": best,
            "best_acc": row[best],
            "random_acc": rnd,
            "best_minus_random": None if rnd is None else row[best] - rnd,
            "best_minus_full": None if full is None else row[best] - full["test_acc_mean"],
            "acc": dict(sorted(row.items(), key=lambda kv: -kv[1])),
            **(
                {"random_draws": draws, "random_draw_std": float(np.std(draws))}
                if len(draws) > 1
                else {}
            ),
        }
    methods = {f"{m}-{s}" for m, _, s in METHODS} - {"random-random"}
    beats = {}
    for meth in sorted(methods):
        diffs = [
            r["acc"][meth] - r["random_acc"]
            for r in out["by_fraction"].values()
            if meth in r["acc"] and r["random_acc"] is not None
        ]
        if diffs:
            beats[meth] = {
                "fractions_measured": len(diffs),
                "min_margin_over_random": min(diffs),
                "above_random_at_every_measured_fraction": min(diffs) > 0,
            }
    out["vs_random"] = beats
    half = out["by_fraction"].get("0.5")
    if half and full:
        out["target_50pct_within_1pt_of_full"] = half["best_minus_full"] >= -0.01
    return out


def write(args, results: dict, planned: list[str]) -> None:
    results["missing_cells"] = [c for c in planned if c not in results["cells"]]
    if results.get("full") is None:
        results["missing_cells"].insert(0, "full")
    results["summary"] = summarise(results, results["setting"]["fractions"])
    if "cells_equal_steps" in results:  # their fixed-epoch comparisons may have just been run
        equal_steps_section(args, results, [])
    results["written_at"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=1))
    tmp.replace(args.out)


def select_methods(spec: str | None) -> list[tuple[str, str, str]]:
    """The METHODS named in `spec` (comma-separated `method-strategy` labels, or an accessibility
    strategy alone); all of them if `spec` is None."""
    if not spec:
        return list(METHODS)
    chosen = []
    for name in (n.strip() for n in spec.split(",") if n.strip()):
        hits = [t for t in METHODS if name in (f"{t[0]}-{t[2]}", cell_name(t[0], t[2], 0)[:-2])]
        hits = hits or [t for t in METHODS if t[0] in ("accessibility", "random") and t[2] == name]
        if len(hits) != 1:
            labels = ", ".join(f"{m}-{s}" for m, _, s in METHODS)
            print(
                f"error: --methods: unknown method {name!r}; use one of {labels}", file=sys.stderr
            )
            raise SystemExit(2)
        if hits[0] not in chosen:
            chosen.append(hits[0])
    return chosen


def equal_steps_section(args, results: dict, planned: list[str]) -> None:
    """The equal-steps section: its cells, the cells still missing, and per fraction each
    method's accuracy against full data and against the same cell at fixed epochs (the
    fixed-epoch cell as `results` has it now, which may have been run after the other)."""
    cells = results["cells_equal_steps"]
    full = results["full"]["test_acc_mean"] if results.get("full") else None
    by_fraction: dict = {}
    for run, c in cells.items():
        label = f"{c['method']}-{c['strategy']}"
        row = by_fraction.setdefault(f"{c['keep']:g}", {"epochs": c["epochs"], "acc": {}})
        same = results["cells"].get(run.removesuffix("-eqsteps"))
        if same is not None:
            c["fixed_epochs_test_acc_mean"] = same["test_acc_mean"]
        fixed = c.get("fixed_epochs_test_acc_mean")
        row["acc"][label] = {
            "equal_steps": c["test_acc_mean"],
            "minus_full": None if full is None else c["test_acc_mean"] - full,
            "fixed_epochs": fixed,
            "minus_fixed_epochs": None if fixed is None else c["test_acc_mean"] - fixed,
        }
    for row in by_fraction.values():
        best = max(row["acc"], key=lambda k: row["acc"][k]["equal_steps"])
        row["best"] = best
        row["best_minus_full"] = row["acc"][best]["minus_full"]
    sec = results.setdefault("equal_steps", {})
    sec["rule"] = (
        "a subset keeping F retrains for round(E / F) epochs (nearest, halves up), E = "
        f"{args.epochs}: training instances seen match the full-data run's to within one "
        "epoch of the subset; equal steps = equal training compute to full data"
    )
    sec["planned"] = sorted(set(sec.get("planned", [])) | set(planned))
    sec["missing_cells"] = [c for c in sec["planned"] if c not in cells]
    sec["by_fraction"] = by_fraction
    half = by_fraction.get("0.5")
    if half and half["best_minus_full"] is not None:
        sec["target_50pct_within_1pt_of_full"] = half["best_minus_full"] >= -0.01
    sec["written_at"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def write_equal_steps(args, results: dict, planned: list[str]) -> None:
    equal_steps_section(args, results, planned)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=1))
    tmp.replace(args.out)


def bare(setting: dict) -> dict:
    """A JSON's setting, fractions aside: what must match for its cells to be added to."""
    out = {k: v for k, v in setting.items() if k != "fractions"}
    return out | {"score_epochs": setting.get("score_epochs", setting.get("epochs"))}


def run_equal_steps(args, results: dict, old: dict, methods, subsets: Path, log: Path) -> None:
    """The equal-steps cells, added to the fixed-epoch figures already in `--out`."""
    if not old or bare(old.get("setting", {})) != bare(results["setting"]):
        print(
            f"error: --equal-steps adds to the fixed-epoch figures in {args.out}, whose setting "
            "differs or is missing; pass the setting recorded there (--train-n, --epochs, "
            "--width, --threads, --precision, members, seed) or run without --equal-steps first",
            file=sys.stderr,
        )
        raise SystemExit(2)
    check_same_subsets(args, old, subsets)
    res = old
    if res.get("full") is None and not past(args.stop):
        res["full"] = retrain(args, "full", None, log) | {"keep": 1.0}
    res.setdefault("cells_equal_steps", {})
    from curate.prune import read_sidecar  # <name>.npy.json, or <name>.subset.json of old runs

    planned = [f"{cell_name(m, s, k)}-eqsteps" for k in args.fractions for m, _, s in methods]
    write_equal_steps(args, res, planned)
    from curate.train.run import equal_steps_epochs  # the rule train.equal_steps applies

    n_full = res["setting"]["train_n"]
    for k in args.fractions:
        for m, c, s in methods:
            name = cell_name(m, s, k)
            run = f"{name}-eqsteps"
            if run in res["cells_equal_steps"]:
                continue
            side = read_sidecar(subsets / f"{name}.npy")
            epochs = equal_steps_epochs(args.epochs, side["n"] / n_full)
            if past(args.stop) and member_test_acc(args, run, epochs) is None:
                continue
            cell = retrain(args, run, subsets / f"{name}.npy", log, epochs, equal_steps=True)
            fixed = res["cells"].get(name)
            res["cells_equal_steps"][run] = cell | {
                "method": m,
                "score": c,
                "strategy": s,
                "keep": k,
                "n_train": side["n"],
                "epochs": epochs,
                "instances_seen_vs_full": epochs * side["n"] / (args.epochs * n_full),
                "fixed_epochs_test_acc_mean": fixed["test_acc_mean"] if fixed else None,
            }
            write_equal_steps(args, res, planned)
            print(
                f"{run} ({epochs} epochs): test acc {cell['test_acc_mean']:.4f} "
                f"+- {cell['test_acc_std']:.4f}",
                flush=True,
            )
    half = res["equal_steps"]["by_fraction"].get("0.5")
    if half and res.get("full"):
        ratio = res["equal_steps"]["by_fraction"]["0.5"]["acc"][half["best"]]["equal_steps"]
        ratio /= res["full"]["test_acc_mean"]
        print(f"ratio: best at 50 % kept, equal steps / full data = {ratio:.4f} ({half['best']})")
    print(f"wrote {args.out}; equal steps missing: {len(res['equal_steps']['missing_cells'])}")


def deadline(stop_at: str | None, now: dt.datetime | None = None) -> dt.datetime | None:
    """The next UTC time HH:MM from `now` on (tomorrow's when today's has gone): a benchmark
    started at 23:30 with --stop-at 00:55 stops at 00:55 the next day, not at once."""
    if not stop_at:
        return None
    try:
        h, m = map(int, stop_at.split(":"))
        now = now or dt.datetime.now(dt.timezone.utc)
        at = now.replace(hour=h, minute=m, second=0, microsecond=0)
    except ValueError:
        raise SystemExit(f"--stop-at {stop_at!r}: give a UTC time as HH:MM, e.g. 23:30") from None
    return at if at > now else at + dt.timedelta(days=1)


def past(stop: dt.datetime | None) -> bool:
    return stop is not None and dt.datetime.now(dt.timezone.utc) >= stop


def main() -> None:
    from curate.prune import read_sidecar  # <name>.npy.json, or <name>.subset.json of old runs

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", type=Path, default=SOURCE)
    ap.add_argument(
        "--recipe", default=RECIPE, help="the recipe of the scoring run and of every retraining"
    )
    ap.add_argument("--train-n", type=int, default=0, help="first N train images (0 = all)")
    ap.add_argument(
        "--epochs", type=int, default=5, help="epochs of the scoring and every retraining run"
    )
    ap.add_argument("--score-members", type=int, default=4)
    ap.add_argument(
        "--score-epochs",
        type=int,
        default=0,
        help="epochs of the scoring run (0 = --epochs); el2n@E is scored at its last epoch",
    )
    ap.add_argument(
        "--retrain-members", type=int, default=2, help="seeds per cell (members of one run)"
    )
    ap.add_argument("--retrain-seed", type=int, default=1)
    ap.add_argument(
        "--fractions",
        type=float,
        nargs="+",
        default=[0.5, 0.3, 0.7, 0.9],
        help="fractions kept, in the order they are run",
    )
    ap.add_argument("--work", type=Path, default=ROOT / "benchmarks" / ".work" / "prune")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "prune.json")
    ap.add_argument(
        "--precision", default="fp32", choices=["fp32", "bf16", "auto"], help="train.precision"
    )
    ap.add_argument(
        "--threads", type=int, default=0, help="torch threads per run (1 on a busy machine)"
    )
    ap.add_argument("--width", type=int, default=0, help="fastconv width (0 = the recipe's 32)")
    ap.add_argument("--stop-at", help="UTC HH:MM after which no new retraining starts")
    ap.add_argument(
        "--equal-steps",
        action="store_true",
        help="retrain each subset keeping F for round(E / F) epochs (cells_equal_steps)",
    )
    ap.add_argument(
        "--labels",
        default="clean",
        choices=["clean", "aggre", "worse"],
        help="train labels: CIFAR-10's, or CIFAR-10N's aggre_label (9 %% wrong) / worse_label",
    )
    ap.add_argument(
        "--methods",
        help="comma-separated cells to run, e.g. accessibility-easy,random-random (default all)",
    )
    args = ap.parse_args()
    args.score_epochs = args.score_epochs or args.epochs
    args.stop = deadline(args.stop_at)
    chosen = select_methods(args.methods)
    if not args.source.exists():
        raise SystemExit(f"{args.source} is missing; see ../shared/data/README")
    args.work.mkdir(parents=True, exist_ok=True)
    log = args.work / "log.txt"
    if args.labels != "clean" and args.source.resolve() != SOURCE.resolve():
        raise SystemExit(f"--labels {args.labels} holds CIFAR-10N labels: use it with {SOURCE}")
    args.labels_file, args.wrong = noisy_labels(args)
    state_path = args.work / "state.json"
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    # what the scoring run and the subsets depend on: another setting needs another work dir
    scoring = {
        "recipe": args.recipe,
        "source": str(args.source),
        "train_n": args.train_n,
        "score_members": args.score_members,
        "score_epochs": args.score_epochs,
        "precision": args.precision,
        "width": args.width,
        **({"labels": args.labels} if args.labels != "clean" else {}),
    }
    if "score_cpu_seconds" in state and "scoring" not in state and args.labels != "clean":
        print(
            f"error: {args.work} holds a scoring run made before --labels existed, on the clean "
            "labels; pass another --work for --labels " + args.labels,
            file=sys.stderr,
        )
        raise SystemExit(2)
    if state.get("scoring", scoring) != scoring:
        keys = dict.fromkeys(
            [*scoring, *state["scoring"]]
        )  # "labels" is recorded only if not clean
        diff = ", ".join(k for k in keys if state["scoring"].get(k) != scoring.get(k))
        print(
            f"error: {args.work} holds the scoring run of another setting ({diff} differ); "
            "pass another --work, or the setting recorded in its state.json",
            file=sys.stderr,
        )
        raise SystemExit(2)

    # 1-2. ingest, the scoring run, its scores
    if "score_cpu_seconds" not in state:
        curate(args, "ingest", args.recipe, *sets(args, only="dataset."), log=log)
        cpu = curate(
            args,
            "train",
            args.recipe,
            "--run-name",
            "score",
            *sets(args, f"train.members={args.score_members}", epochs=args.score_epochs),
            log=log,
        )
        state["score_cpu_seconds"] = cpu
        state["scoring"] = scoring
        state_path.write_text(json.dumps(state))
    subsets = args.work / "subsets"
    subsets.mkdir(exist_ok=True)
    planned = [cell_name(m, s, k) for k in args.fractions for m, _, s in METHODS]
    # subsets of every cell, el2n@E first (scored at the last epoch), then the rest at epoch 1
    for el2n_epoch, methods in (
        (args.score_epochs, ["el2n@E"]),
        (1, [m for m, _, _ in METHODS if m != "el2n@E"]),
    ):
        todo = [
            (m, c, s, k)
            for k in args.fractions
            for m, c, s in METHODS
            if m in methods and not (subsets / f"{cell_name(m, s, k)}.npy").exists()
        ]
        if not todo:
            continue
        curate(args, "score", "score", "--el2n-epoch", str(el2n_epoch), log=log)
        for m, c, s, k in todo:
            curate(
                args,
                "prune",
                "score",
                "--keep",
                str(k),
                "--strategy",
                s,
                "--score",
                c,
                *(["--beta", str(BETA[m])] if m in BETA else []),
                *(["--seed", str(DRAW[m])] if m in DRAW else []),
                "--out",
                str(subsets / f"{cell_name(m, s, k)}.npy"),
                log=log,
            )
    check_labels(args)
    run_row = query(args, "SELECT train_seconds, mean_final_acc FROM runs WHERE run = 'score'")
    m_e = args.score_members * args.score_epochs
    cpu = state["score_cpu_seconds"]
    results = {
        "benchmark": "bench_prune",
        "setting": {
            "dataset": dataset_label(args),
            "train_n": split_size(args, "train"),
            "test_n": split_size(args, "test"),
            "recipe": args.recipe,
            "epochs": args.epochs,
            "score_epochs": args.score_epochs,
            "score_members": args.score_members,
            "retrain_members": args.retrain_members,
            "retrain_seed": args.retrain_seed,
            "fractions": args.fractions,
            "class_balanced": True,
            "precision": args.precision,
            "threads": args.threads,
            "width": args.width or (32 if args.recipe == RECIPE else None),  # the recipe's
            "machine": f"{os.cpu_count()} cores, shared with other jobs",
        },
        "scoring_run": {
            "cpu_seconds": cpu,
            "train_seconds": run_row[0][0] if run_row else None,
            "mean_final_acc": json.loads(run_row[0][1]) if run_row else None,
        },
        "scoring_compute": {
            "accessibility": {"member_epochs": m_e, "cpu_seconds": cpu},
            "in-between/ccs (accessibility, ddd)": {"member_epochs": m_e, "cpu_seconds": cpu},
            "forgetting": {"member_epochs": m_e, "cpu_seconds": cpu},
            "el2n@E": {"member_epochs": m_e, "cpu_seconds": cpu},
            "el2n@1": {
                "member_epochs": args.score_members,
                "cpu_seconds": cpu / args.score_epochs,
            },
            "random": {"member_epochs": 0, "cpu_seconds": 0.0},
        },
        "full": None,
        "cells": {},
    }
    old = json.loads(args.out.read_text()) if args.out.exists() else {}
    if args.equal_steps:
        run_equal_steps(args, results, old, chosen, subsets, log)
        return
    if old and bare(old.get("setting", {})) == bare(results["setting"]):
        check_same_subsets(args, old, subsets)
        fractions = old["setting"]["fractions"]
        fractions += [k for k in args.fractions if k not in fractions]
        results["setting"]["fractions"] = fractions  # every fraction the JSON holds cells for
        planned = [cell_name(m, s, k) for k in fractions for m, _, s in METHODS]
        results["cells"] = old.get("cells", {})
        if "scoring_run" in old and old["scoring_run"] != results["scoring_run"]:
            # the same subsets from a run scored again: keep the figures of the run they came
            # from, and list the repeat's
            repeats = old.get("scoring_run_repeats", [])
            repeats += [results["scoring_run"]] if results["scoring_run"] not in repeats else []
            results["scoring_run"], results["scoring_run_repeats"] = old["scoring_run"], repeats
            results["scoring_compute"] = old.get("scoring_compute", results["scoring_compute"])
        results["full"] = old.get("full")
        for key in ("cells_equal_steps", "equal_steps"):  # a later fixed-epoch pass keeps them
            if key in old:
                results[key] = old[key]
    # 3-4. the full-data run, then every cell in the order planned
    if results["full"] is None and not past(args.stop):
        results["full"] = retrain(args, "full", None, log) | {"keep": 1.0}
        write(args, results, planned)
    for k in args.fractions:
        for m, c, s in chosen:
            name = cell_name(m, s, k)
            if name in results["cells"]:
                continue
            if past(args.stop) and member_test_acc(args, name) is None:
                continue
            cell = retrain(args, name, subsets / f"{name}.npy", log)
            side = read_sidecar(subsets / f"{name}.npy")
            results["cells"][name] = cell | {
                "method": m,
                "score": c,
                "strategy": s,
                "keep": k,
                "n_train": side["n"],
            }
            write(args, results, planned)
            print(
                f"{name}: test acc {cell['test_acc_mean']:.4f} +- {cell['test_acc_std']:.4f}",
                flush=True,
            )
    write(args, results, planned)
    half = results["summary"]["by_fraction"].get("0.5")
    if half and results["full"]:
        ratio = half["best_acc"] / results["full"]["test_acc_mean"]
        print(f"ratio: best at 50 % kept / full data = {ratio:.4f} ({half['best']})")
    print(f"wrote {args.out}; missing: {len(results['missing_cells'])} cells")


if __name__ == "__main__":
    main()
