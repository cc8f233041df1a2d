"""Finding wrong labels in CIFAR-10 with real human label noise (CIFAR-10N): curate's training-
dynamics signals against cleanlab's confident learning, at the same training compute.

Data: ../shared/data/cifar10-jpeg.tar.gz, trained on the CIFAR-10N `worse_label` set (40.2 % of the
50,000 train labels wrong; `--sets worse aggre clean` adds `aggre_label`, 9.0 %, and the clean
labels, where every flag is a false alarm), from
../shared/data/refs/cifar10n-human-labels-train.npz. A label is wrong where it differs from the
CIFAR-10 label.

- curate: `curate run` of an ensemble of M members for E epochs on the noisy labels (`--labels
  FILE.npz:KEY`); its `label_noise_eval` row (AUROC of issue_score, precision / recall / F1 of
  `flagged`, recovery), and the AUROC of the single signals beside it.
- cleanlab: `cleanlab.filter.find_label_issues` on out-of-sample probabilities from K-fold
  cross-validation: in each fold, M / (K - 1) members of the same architecture, recipe and epochs
  are trained on the other folds (curate's own learner and batches) and their mean softmax on the
  held-out fold is taken. K (M / (K - 1)) E (K - 1) / K N = M E N training images: the same
  training compute. Its ranking for AUROC: 1 - `cleanlab.rank.get_label_quality_scores`.

CPU seconds (user + sys, this process and its children) are measured per side.

    python benchmarks/bench_label_noise.py [--recipe cifar10-label-issues] [--members 4] [--epochs 5]
        [--arch fastconv] [--sets worse aggre]

Figures go to benchmarks/results/label_noise.json.
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data"
SOURCE = DATA / "cifar10-jpeg.tar.gz"
NOISY = DATA / "refs" / "cifar10n-human-labels-train.npz"


def cpu_seconds() -> float:
    own, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def curate(*args: str, log: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "curate", *args]
    with open(log, "w") as out:
        res = subprocess.run(cmd, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    if res.returncode != 0:
        raise SystemExit(f"failed ({res.returncode}): {' '.join(cmd)}; see {log}")


def recipe_sets(args, name: str, key: str, only: str = "") -> list[str]:
    sets = [
        f"dataset.source={SOURCE}",
        f"dataset.name={name}",
        f"dataset.labels={NOISY}:{key}",
        "score.stats=false",
    ]
    sets += [
        f"train.{k}={getattr(args, k)}" for k in ("arch", "members", "epochs") if getattr(args, k)
    ]
    sets += args.extra
    return [a for s in sets if s.startswith(only) for a in ("--set", s)]  # ingest: [dataset]


def run_curate(args, ws: Path, name: str, key: str) -> dict:
    """Ingest with the noisy labels, then `curate run`; the label_noise_eval row and CPU time."""
    import duckdb

    curate(
        "ingest",
        args.recipe,
        "--workspace",
        str(ws),
        *recipe_sets(args, name, key, only="dataset."),
        log=ws / f"{name}-ingest.log",
    )
    c0, t0 = cpu_seconds(), time.perf_counter()
    curate(
        "run",
        args.recipe,
        "--run-name",
        name,
        "--workspace",
        str(ws),
        *recipe_sets(args, name, key),
        log=ws / f"{name}.log",
    )
    cpu, wall = cpu_seconds() - c0, time.perf_counter() - t0
    con = duckdb.connect(str(ws / "catalog.duckdb"), read_only=True)
    try:
        rows = con.execute(
            "SELECT * FROM label_noise_eval WHERE run = ? AND split = 'train'", [name]
        ).df()
        # clean labels (--sets clean) have no label_noise_eval row: what was flagged is the figure
        row = rows.iloc[0].to_dict() if len(rows) else flagged_row(con, name)
        true = con.execute(
            "SELECT true_label FROM instances WHERE dataset = ? AND split = 'train' ORDER BY idx",
            [name],
        ).fetchnumpy()["true_label"]
        acc = json.loads(
            con.execute("SELECT mean_final_acc FROM runs WHERE run = ?", [name]).fetchone()[0]
        )
    finally:
        con.close()
    row = {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
    return row | {"cpu_seconds": cpu, "wall_seconds": wall, "test_acc": acc.get("test")}, true


def flagged_row(con, run: str) -> dict:
    """For a split whose labels are all right: instances, flagged and the estimated wrong labels
    (`label_noise_estimate`), every flag a false alarm."""
    n, flagged = con.execute(
        "SELECT count(*), count(*) FILTER (WHERE flagged) FROM instance_scores "
        "WHERE run = ? AND split = 'train'",
        [run],
    ).fetchone()
    est = con.execute(
        "SELECT sum(est_wrong) FROM label_noise_estimate WHERE run = ? AND split = 'train'", [run]
    ).fetchone()[0]
    return {
        "run": run,
        "split": "train",
        "n": n,
        "n_wrong": 0,
        "noise_rate": 0.0,
        "n_flagged": flagged,
        "flagged_fraction": flagged / n,
        "est_wrong": est,
    }


def cv_probs(args, ws: Path, name: str, folds: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-sample softmax (N, K) of every train instance from K-fold cross-validation, with
    curate's learner, recipe and batches; and the given labels (N,), both in idx order."""
    import torch

    import curate.train.learners  # noqa: F401  (registers the learners)
    from curate.config import load_recipe
    from curate.data.loader import dataset_info
    from curate.train.feed import InMemoryFeed
    from curate.train.learner import TrainSetup, learner_class
    from curate.train.learners.neural import auto_strategy
    from curate.train.placement import place
    from curate.train.seeds import member_seeds
    from curate.workspace import Workspace

    flags = recipe_sets(args, name, "x")
    recipe = load_recipe(args.recipe, [v for v in flags[1::2]])
    t = recipe.train
    epochs = args.cleanlab_epochs or t.epochs  # more than curate's: the same CPU time, not training
    per_fold = max(1, round(t.members / (folds - 1)))
    where = place("cpu", t.threads)
    info = dataset_info(name, Workspace(ws))
    strategy = (
        t.strategy if t.strategy != "auto" else auto_strategy(t.arch, info.storage, where.device)
    )
    seeds = {m: member_seeds(t.seed + 1000, m) for m in range(folds * per_fold)}  # fresh members
    feed = InMemoryFeed(info, recipe, where.device, seeds)
    full = feed.splits["train"]
    x_all, y_all, idx_all = full.x, full.y, full.idx
    n, k = len(y_all), info.num_classes
    fold_of = np.random.default_rng(seed).permutation(n) % folds
    probs = np.zeros((n, k), np.float32)
    for f in range(folds):
        train_rows = torch.from_numpy(np.flatnonzero(fold_of != f))
        held = np.flatnonzero(fold_of == f)
        full.x, full.y, full.idx = x_all[train_rows], y_all[train_rows], idx_all[train_rows]
        feed.steps_per_epoch = len(train_rows) // recipe.loader.batch_size
        setup = TrainSetup(recipe, info, feed, seeds, where.device)
        learner = learner_class(strategy)(setup)
        members = list(range(f * per_fold, (f + 1) * per_fold))
        out = np.zeros((len(held), k), np.float32)
        for group in learner.groups(members):
            unit = learner.build(group)
            for epoch in range(1, epochs + 1):
                unit.fit_epoch(epoch, False, lambda _: None)
            out += fold_softmax(
                unit, x_all, full.mean, full.std, held, recipe.loader.eval_batch_size
            )
        probs[held] = out / len(members)
        print(
            f"  fold {f + 1}/{folds}: {len(members)} members x {epochs} epochs on "
            f"{len(train_rows)} images; held-out accuracy (given labels) "
            f"{(probs[held].argmax(1) == y_all[held].numpy()).mean():.3f}",
            flush=True,
        )
    full.x, full.y, full.idx = x_all, y_all, idx_all
    return probs, y_all.numpy()


def fold_softmax(unit, x_all, mean, std, rows: np.ndarray, batch: int) -> np.ndarray:
    """The unit's summed member softmax on rows of the split, (len(rows), K)."""
    import torch

    from curate.data.augment import normalize

    unit.model.eval()
    parts = []
    with torch.inference_mode():
        for s in range(0, len(rows), batch):
            x = normalize(x_all[torch.from_numpy(rows[s : s + batch])], mean, std)
            logits = unit.forward_shared(x.contiguous(memory_format=torch.channels_last)).float()
            parts.append(torch.softmax(logits, -1).sum(1).numpy())  # (B, M_u, K) -> (B, K)
    return np.concatenate(parts)


def run_cleanlab(args, ws: Path, name: str, true: np.ndarray) -> dict:
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    from curate.scores import label_issues as li

    c0, t0 = cpu_seconds(), time.perf_counter()
    probs, given = cv_probs(args, ws, name, args.folds)
    flagged = find_label_issues(given, probs)
    quality = get_label_quality_scores(given, probs)
    cpu, wall = cpu_seconds() - c0, time.perf_counter() - t0
    row = li.noise_eval(given, true, 1 - quality, flagged, probs.argmax(1))
    return row | {
        "epochs": args.cleanlab_epochs or args.epochs,
        "cpu_seconds": cpu,
        "wall_seconds": wall,
        "cv_accuracy_given": float((probs.argmax(1) == given).mean()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sets", nargs="+", default=["worse"], choices=["worse", "aggre", "clean"])
    ap.add_argument(
        "--recipe", default="cifar10-label-issues", help="recipe the settings below override"
    )
    ap.add_argument("--arch", help="default: the recipe's")
    ap.add_argument("--members", type=int, help="default: the recipe's")
    ap.add_argument("--epochs", type=int, help="default: the recipe's")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument(
        "--only", choices=["cleanlab"], help="rerun cleanlab's side, keeping curate's last figures"
    )
    ap.add_argument(
        "--cleanlab-epochs",
        type=int,
        help="epochs of cleanlab's fold members (default: curate's, the same training compute); "
        "more gives cleanlab the CPU time curate spends on its per-epoch evaluation passes",
    )
    ap.add_argument(
        "--previous",
        type=Path,
        help="with --only cleanlab: the results file holding curate's figures (default: --out)",
    )
    ap.add_argument("--set", dest="extra", action="append", default=[], help="more overrides")
    ap.add_argument("--work", type=Path, default=ROOT / "benchmarks" / ".work" / "label-noise")
    ap.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "label_noise.json"
    )
    args = ap.parse_args()
    from curate.config import load_recipe

    t = load_recipe(args.recipe, []).train
    args.arch, args.members, args.epochs = (
        args.arch or t.arch,
        args.members or t.members,
        args.epochs or t.epochs,
    )
    for p in (SOURCE, NOISY):
        if not p.exists():
            raise SystemExit(f"{p} is absent (shared data)")
    if args.cleanlab_epochs is not None and args.cleanlab_epochs < 1:
        raise SystemExit(f"--cleanlab-epochs {args.cleanlab_epochs}: give at least 1")
    if args.members % (args.folds - 1):
        raise SystemExit(
            f"--members {args.members} must be a multiple of --folds - 1 = {args.folds - 1} "
            "for equal training compute"
        )
    ws = args.work.resolve()
    ws.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()[0]
    results = []
    for s in args.sets:
        name = f"cifar10n-{s}"
        previous = {r["set"]: r for r in _previous(args.previous or args.out)}
        if args.only == "cleanlab":  # keep the measured curate side
            if s not in previous:
                raise SystemExit(
                    f"--only cleanlab: {args.previous or args.out} holds no curate figures for "
                    f"--sets {s}; run without --only first (or name the file with --previous)"
                )
            ours = previous[s]["curate"]
            true = np.load(NOISY)["clean_label"]
        else:
            print(
                f"== {name}: curate, {args.members} x {args.arch}, {args.epochs} epochs", flush=True
            )
            ours, true = run_curate(args, ws, name, f"{s}_label")
            results.append({"set": s, "curate": ours, "cleanlab": None})
            write(args, results, load)
            results.pop()
        clean = np.load(NOISY)["clean_label"]
        assert np.array_equal(true, clean), (
            "the ingested CIFAR-10 labels differ from CIFAR-10N's clean_label"
        )
        print(f"== {name}: cleanlab, {args.folds}-fold cross-validation", flush=True)
        theirs = run_cleanlab(args, ws, name, true)
        results.append({"set": s, "curate": ours, "cleanlab": theirs})
        write(args, results, load)
    print(
        f"\n{'set':6s} {'method':9s} {'noise':>6s} {'AUROC':>6s} {'prec':>6s} {'recall':>6s} {'F1':>6s} "
        f"{'recov':>6s} {'CPU min':>8s}"
    )
    for r in results:
        for method in ("curate", "cleanlab"):
            m = r[method]
            print(
                f"{r['set']:6s} {method:9s} {m['noise_rate']:6.3f} {m['auroc']:6.3f} {m['precision']:6.3f} "
                f"{m['recall']:6.3f} {m['f1']:6.3f} {m['recovery']:6.3f} {m['cpu_seconds'] / 60:8.1f}"
            )
        c = r["curate"]
        print(
            f"       curate single signals: AUROC of -aum {c['auroc_aum']:.3f}, of 1 - accessibility "
            f"{c['auroc_accessibility']:.3f}"
        )
    print(f"\nwrote {args.out}")


def _previous(path: Path) -> list[dict]:
    return json.loads(path.read_text()).get("results", []) if path.exists() else []


def write(args, results: list[dict], load: float) -> None:
    import torch

    out = {
        "what": "wrong-label detection on CIFAR-10N (real human noise): curate's label_noise_eval "
        "against cleanlab find_label_issues on K-fold out-of-sample probabilities, same "
        "architecture and training compute",
        "command": " ".join(["python", "benchmarks/bench_label_noise.py", *sys.argv[1:]]),
        "arch": args.arch,
        "members": args.members,
        "epochs": args.epochs,
        "folds": args.folds,
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "load_average_before": load,
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2, default=float) + "\n")


if __name__ == "__main__":
    main()
