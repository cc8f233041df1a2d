"""CIFAR-10 recipes for CPUs: validity and reliability of the scores per CPU-minute (issues 12 and
"Recipes chosen for validity and reliability together").

Each recipe runs end to end (`curate run`: train, then score) on ../shared/data/cifar10-jpeg.tar.gz
in a fresh run folder of one workspace, in a subprocess. Measured per recipe:

- CPU minutes: user + sys of the `curate run` process and its children (rusage of the children of
  this script, before and after), so noise from other processes on the machine does not count;
- test accuracy: `runs.mean_final_acc` (mean over members at the last epoch);
- split-half r of accessibility, train and test: `ensemble_comparison` (what `curate score` writes);
- per score (accessibility, confidence, aum, el2n, forgetting), on the train split, from the
  prediction log's shards directly (`score_table`):
  validity, the Spearman rho of the whole ensemble's score with the C-scores of Jiang et al.
  (../shared/data/refs/cifar10-cscores-train.npz, aligned by idx: the imagefolder ingest keeps the
  integer file names of cifar10-jpeg, NNNNN = the image's index in the standard CIFAR-10 order, as
  idx, and the C-scores are in that order, so the reference of instance idx is scores[idx]); and
  reliability, the split-half r: the Pearson r between the score of members 0..M/2-1 and the score
  of members M/2..M-1 (the halves `curate score` compares), both over epochs 1..E.

The baseline is 8 LeNet-5 members, 10 epochs with the recipe defaults; the candidates are the
`cifar10-cpu` recipe, other settings given as --set overrides, and a grid over architecture
(LeNet-5; fastconv at widths 16, 32, 48 with the `cifar10-label-issues` settings), members, epochs
and precision (RECIPES below; `--list` prints them). Ingest runs once, before, and is not counted;
image statistics are off (`score.stats = false`) for every recipe.

    python benchmarks/bench_recipes.py [--only baseline cifar10-cpu 'fastconv32-*-bf16'] [--work DIR]
        [--set train.epochs=2 ...]   # extra overrides for every recipe (a quick look)
    python benchmarks/bench_recipes.py --analyse-only WORKSPACE RUN [--name NAME]
        [--time-log FILE | --cpu-minutes X]   # a run trained elsewhere, added to the table

`--analyse-only` trains nothing and writes nothing into WORKSPACE (its catalog is opened read-only):
it computes the score table of the finished run RUN from its log and adds it as the row NAME
(default RUN), with the CPU minutes of a `/usr/bin/time -v` log (user + sys of every command it
timed) or as given.

Figures go to benchmarks/results/recipes.json (unless --out says otherwise): one row per recipe
under "recipes", the figures of `curate run` as before, and under "scores" one key per score.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import math
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python benchmarks/bench_recipes.py` from anywhere
    sys.path.insert(0, str(ROOT))

SHARED = ROOT.parent / "shared" / "data"
SOURCE = SHARED / "cifar10-jpeg.tar.gz"
CSCORES = SHARED / "refs" / "cifar10-cscores-train.npz"
DATASET = "cifar10-jpeg"
COMMON = [f"dataset.source={SOURCE}", f"dataset.name={DATASET}", "score.stats=false"]

# score -> (the `instance_scores` column it equals, +1 if higher = easier, -1 if higher = harder)
SCORES: dict[str, tuple[str, int]] = {
    "accessibility": ("accessibility", 1),
    "confidence": ("confidence", 1),
    "aum": ("aum", 1),
    "el2n": ("el2n", -1),
    "forgetting": ("forgetting_events", -1),
}
DEFAULT_EL2N_EPOCH = 1  # `curate score --el2n-epoch`'s default

# name -> (recipe, overrides)
RECIPES: dict[str, tuple[str, list[str]]] = {
    "baseline": (
        "imagefolder",
        ["train.arch=lenet5", "train.members=8", "train.epochs=10"],
    ),
    "cifar10-cpu": ("cifar10-cpu", []),  # the CPU recipe chosen by validity (its header)
    "cifar10-lenet-cpu": ("cifar10-lenet-cpu", []),  # 20 x 4 LeNet-5, fused by 10 (= lenet-20x4)
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
    # the wrong-label recipe as it is (4 fastconv width 32 x 5 epochs, precision auto)
    "cifar10-label-issues": ("cifar10-label-issues", []),
}

# The grid: architecture x members x epochs x precision, named `<arch>-<M>x<E>-<precision>`.
# LeNet-5 with the recipe defaults (as the baseline; more than 10 members fused in two groups);
# fastconv with the `cifar10-label-issues` settings (one-cycle SGD 0.2, label smoothing 0.1, flips,
# 2-pixel shifts) at widths 16, 32 (that recipe's) and 48 (`train.width`).
GRID_ARCHS: dict[str, tuple[str, list[str]]] = {
    "lenet5": ("imagefolder", ["train.arch=lenet5"]),
    "fastconv16": ("cifar10-label-issues", ["train.arch=fastconv", "train.width=16"]),
    "fastconv32": ("cifar10-label-issues", ["train.arch=fastconv", "train.width=32"]),
    "fastconv48": ("cifar10-label-issues", ["train.arch=fastconv", "train.width=48"]),
}
GRID_MEMBERS = (4, 8, 16)
GRID_EPOCHS = (5, 10)
GRID_PRECISIONS = ("fp32", "bf16")


def grid() -> dict[str, tuple[str, list[str]]]:
    """The grid's recipes, name -> (recipe, overrides)."""
    out = {}
    for arch, (recipe, base) in GRID_ARCHS.items():
        for m in GRID_MEMBERS:
            for e in GRID_EPOCHS:
                for p in GRID_PRECISIONS:
                    sets = [
                        *base,
                        f"train.members={m}",
                        f"train.epochs={e}",
                        f"train.precision={p}",
                    ]
                    if arch == "lenet5" and m > 10:
                        sets.append(f"train.fuse_members={m // 2}")
                    out[f"{arch}-{m}x{e}-{p}"] = (recipe, sets)
    return out


RECIPES |= grid()


# ----------------------------------------------------------------------------- the score table


class Log(NamedTuple):
    """One split of a run's eval-pass log, in member order `members`.

    idx (N,) the log's instances; labels (N,) their (given) labels; c (M, T, N) bool correct at
    epochs 0..E; p_true, margin (M, T, N) float32; el2n (M, N) float32 at epoch `el2n_epoch`
    (NaN where the log has no `el2n`); pred (M, T, N) the predicted classes.
    """

    members: list[int]
    idx: np.ndarray
    labels: np.ndarray
    c: np.ndarray
    p_true: np.ndarray
    margin: np.ndarray
    el2n: np.ndarray
    el2n_epoch: int
    pred: np.ndarray

    @property
    def epochs(self) -> int:
        return self.c.shape[1] - 1


def read_log(
    run_dir: Path,
    split: str,
    members: list[int],
    last: int,
    labels_by_idx: tuple[np.ndarray, np.ndarray],
    el2n_epoch: int = DEFAULT_EL2N_EPOCH,
) -> Log:
    """The shards of `members` at epochs 0..last of one split (`curate.train.predlog` layout:
    runs/<run>/predictions/pass=eval/split=<split>/member=<m>/epoch=<e>/part.parquet)."""
    import pyarrow.parquet as pq

    from curate.data.positions import find_positions
    from curate.train import predlog

    if not 1 <= el2n_epoch <= last:
        raise ValueError(f"el2n epoch {el2n_epoch}: the log has epochs 1..{last}")
    idx = None
    c = p_true = margin = el2n = pred = None
    for j, m in enumerate(members):
        for e in range(last + 1):
            path = predlog.shard_path(run_dir, "eval", split, m, e)
            names = pq.read_schema(path).names
            cols = ["idx", "pred", "p_true", "margin"]
            take_el2n = e == el2n_epoch and "el2n" in names
            t = pq.read_table(path, columns=cols + (["el2n"] if take_el2n else []))
            if idx is None:
                idx = t.column("idx").to_numpy().astype(np.int64)
                n, shape = len(idx), (len(members), last + 1, len(idx))
                pos = find_positions(labels_by_idx[0], idx)
                if (pos < 0).any():
                    raise ValueError(f"the log of {split!r} names instances the catalog lacks")
                y = np.asarray(labels_by_idx[1])[pos]
                c = np.zeros(shape, bool)
                pred = np.zeros(shape, np.int64)
                p_true, margin = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
                el2n = np.full((len(members), n), np.nan, np.float32)
            elif not np.array_equal(t.column("idx").to_numpy(), idx):
                raise ValueError(f"{path}: lists other instances than the first shard")
            pred[j, e] = t.column("pred").to_numpy()
            c[j, e] = pred[j, e] == y
            p_true[j, e] = t.column("p_true").to_numpy()
            margin[j, e] = t.column("margin").to_numpy()
            if take_el2n:
                el2n[j] = t.column("el2n").to_numpy()
    return Log(list(members), idx, y, c, p_true, margin, el2n, el2n_epoch, pred)


def member_scores(log: Log, rows) -> dict[str, np.ndarray]:
    """The five scores, (N,) each, of the members at positions `rows` of the log, with the
    definitions of `curate.scores.definitions` (epochs 1..E; EL2N at the log's el2n epoch).

    forgetting: forgetting events summed over these members; NaN (the catalog's NULL) for the
    instances none of them ever gets right at an epoch 1..E (Toneva et al.'s never-learned ones).
    """
    from curate.scores import definitions as d

    rows = np.asarray(rows)
    c = log.c[rows]
    return {
        "accessibility": d.accessibility(c),
        "confidence": d.confidence(log.p_true[rows].astype(np.float64)),
        "aum": log.margin[rows][:, 1:].astype(np.float64).mean(axis=(0, 1)),  # engine's aum
        "el2n": log.el2n[rows].astype(np.float64).mean(axis=0),  # engine.read_el2n
        "forgetting": d.forgetting_events(c),
    }


def correlate(a: np.ndarray, b: np.ndarray) -> dict:
    """Pearson r and Spearman rho of a and b over the instances where both are finite (n); NaN
    when fewer than 3 or either is constant there."""
    from scipy import stats

    ok = np.isfinite(a) & np.isfinite(b)
    x, y = a[ok], b[ok]
    if ok.sum() < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return {"r": math.nan, "rho": math.nan, "n": int(ok.sum())}
    r = float(stats.pearsonr(x, y).statistic)
    rho = float(stats.spearmanr(x, y).statistic)
    return {"r": r, "rho": rho, "n": int(ok.sum())}


def _never_as_hardest(score: np.ndarray) -> np.ndarray:
    """A harder-is-higher score with its NULLs (never learned) ranked above every value."""
    top = np.nanmax(score) if np.isfinite(score).any() else 0.0
    return np.where(np.isnan(score), top + 1, score)


def table_from_log(log: Log, ref: np.ndarray | None) -> dict:
    """Per score: validity (Spearman rho of the whole ensemble's score with `ref`, (N,) in the
    log's idx order, higher = easier; None = no reference) and reliability (the split-half r
    between members[:M//2] and members[M//2:], both over epochs 1..E)."""
    from curate.evaluate import agreement
    from curate.scores.reliability import spearman_brown

    m = len(log.members)
    if m < 2:
        raise ValueError("split-half reliability needs at least 2 members")
    half = m // 2
    full = member_scores(log, np.arange(m))
    sa, sb = member_scores(log, np.arange(half)), member_scores(log, np.arange(half, m))
    out = {}
    for name, (_, sign) in SCORES.items():
        sh = correlate(sa[name], sb[name])
        row = {
            "direction": "higher = easier" if sign > 0 else "higher = harder",
            "split_half_r": sh["r"],
            "split_half_rho": sh["rho"],
            "split_half_n": sh["n"],
            # the whole ensemble's reliability predicted from its halves' (Spearman-Brown, k = 2)
            "full_ensemble_r_predicted": (
                spearman_brown(sh["r"], 2) if math.isfinite(sh["r"]) else math.nan
            ),
            "null_full": int(np.isnan(full[name]).sum()),
            "null_halves": [int(np.isnan(sa[name]).sum()), int(np.isnan(sb[name]).sum())],
        }
        if ref is not None:
            a = agreement(full[name], ref)
            row |= {
                "spearman_cscore": a["spearman"],
                "spearman_cscore_p": a["spearman_p"],
                "pearson_cscore": a["pearson"],
                "n_cscore": a["n"],
                # rho with the sign that makes agreement with the C-scores positive
                "validity": sign * a["spearman"],
                # the validity of infinitely many such members: rho corrected for the ensemble's
                # own unreliability (Spearman's correction for attenuation, the reference taken
                # as it is); more members of this recipe cannot exceed it
                "validity_ceiling": (
                    sign * a["spearman"] / math.sqrt(spearman_brown(sh["r"], 2))
                    if math.isfinite(sh["r"]) and sh["r"] > 0
                    else math.nan
                ),
            }
            if name == "forgetting":
                b = agreement(_never_as_hardest(full[name]), ref)
                row["spearman_cscore_never_as_hardest"] = b["spearman"]
        out[name] = row
    return {
        "members": log.members,
        "halves": [log.members[:half], log.members[half:]],
        "epochs": log.epochs,
        "n": len(log.idx),
        "el2n_epoch": log.el2n_epoch,
        "scores": out,
        "_full": full,  # the whole ensemble's scores, for the checks (not written)
    }


def load_reference(path: Path, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(values, labels or None) of a per-image reference stored in the standard order of its split
    (`scores`, and `labels` when present, of an .npz; or a 1-d .npy), at the log's idx."""
    path = Path(path)
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            values = z["scores"]
            labels = z["labels"] if "labels" in z.files else None
    else:
        values, labels = np.load(path, allow_pickle=False), None
    if idx.min() < 0 or idx.max() >= len(values):
        raise ValueError(
            f"{path}: {len(values)} values, but the log has idx up to {int(idx.max())}; the "
            "reference must be indexed by idx (the standard order of the split)"
        )
    return values[idx].astype(np.float64), None if labels is None else labels[idx]


def score_table(
    workspace,
    run: str,
    cscores_path,
    split: str = "train",
    el2n_epoch: int | None = None,
) -> dict:
    """Validity and split-half reliability of the five scores of a finished run, from its log.

    Parameters
    ----------
    workspace : the workspace folder; only read (the catalog read-only, the log's shards).
    run : a finished run in it (scored or not).
    cscores_path : the C-scores (.npz with `scores` and `labels`, in the standard order of the
        split, so instance idx has scores[idx]); None = reliability only.
    split : the split scored (the C-scores are of train).
    el2n_epoch : the epoch EL2N is taken at; None = the one `instance_scores.el2n_epoch` records
        for the run, else `curate score`'s default (1).

    Returns
    -------
    A dict: run, dataset, split, members, halves, epochs, n, el2n_epoch (and where it came from),
    reference, reference_label_agreement (fraction of instances whose catalog label is the
    reference's: 1.0 when idx and the reference's order agree), forgetting_null (the rule), checks
    (the catalog's own figures where the run was scored), and scores: per score, direction,
    spearman_cscore (+ p, n), validity (the rho signed so that agreeing with the C-scores is
    positive), split_half_r, split_half_rho, split_half_n, full_ensemble_r_predicted, null counts.
    """
    from curate import catalog
    from curate.scores.engine import log_layout
    from curate.scores.score import run_info
    from curate.workspace import Workspace

    ws = Workspace(Path(workspace))
    info = run_info(ws, run)
    run_dir = ws.run_dir(run)
    members, last = log_layout(run_dir, split)
    planned = json.loads((run_dir / "run.json").read_text()).get("train", {}).get("epochs")
    if planned is not None and last < planned:
        raise ValueError(
            f"run {run!r} is not finished: epochs 0..{last} of {planned} logged for {split!r}"
        )
    stored = _catalog_scores(ws, run, split)
    source = "argument"
    if el2n_epoch is None:
        recorded = None if stored is None else stored.get("el2n_epoch")
        el2n_epoch = recorded if recorded else DEFAULT_EL2N_EPOCH
        source = "instance_scores.el2n_epoch" if recorded else "curate score's default"
    labels = catalog.split_labels(ws, info.dataset, split)
    log = read_log(run_dir, split, members, last, labels, el2n_epoch)
    ref, agree = None, None
    if cscores_path is not None:
        ref, ref_labels = load_reference(Path(cscores_path), log.idx)
        if ref_labels is not None:
            true_idx, true = catalog.split_labels(ws, info.dataset, split, "true_label")
            from curate.data.positions import find_positions

            agree = float((true[find_positions(true_idx, log.idx)] == ref_labels).mean())
    table = table_from_log(log, ref)
    full = table.pop("_full")
    checks = {}
    if stored is not None:
        for name, (col, _) in SCORES.items():
            checks[f"max_abs_diff_{name}_vs_instance_scores"] = _max_abs_diff(
                full[name], stored["idx"], stored[col], log.idx
            )
        checks["catalog_split_half_r_accessibility"] = stored.get("split_half_r")
    return {
        "run": run,
        "dataset": info.dataset,
        "split": split,
        **table,
        "el2n_epoch_from": source,
        "reference": None if cscores_path is None else str(Path(cscores_path).resolve()),
        "reference_label_agreement": agree,
        "forgetting_null": "never-learned instances (no member of the ensemble, or of the half, "
        "right at any epoch 1..E) are NULL (NaN), as in instance_scores; correlations drop them "
        "(pairwise complete). spearman_cscore_never_as_hardest ranks them above every count",
        "checks": checks,
    }


def _catalog_scores(ws, run: str, split: str) -> dict | None:
    """The run's scores of `split` in `instance_scores` (idx-ordered arrays by column), its
    el2n_epoch and the catalog's split-half r of accessibility; None when it was not scored."""
    from curate import catalog

    cols = [col for col, _ in SCORES.values()]
    with catalog.read(ws) as con:
        df = con.execute(
            f"SELECT idx, {', '.join(cols)}, el2n_epoch FROM instance_scores "
            "WHERE run = ? AND split = ? ORDER BY idx",
            [run, split],
        ).df()
        r = con.execute(
            "SELECT pearson_r FROM ensemble_comparison WHERE run_a = ? AND run_b = ? "
            "AND kind = 'accessibility' AND split = ?",
            [run, run, split],
        ).fetchone()
    if df.empty:
        return None
    out = {"idx": df["idx"].to_numpy(np.int64)}
    out |= {c: df[c].to_numpy(float) for c in cols}
    e = df["el2n_epoch"].dropna()
    out["el2n_epoch"] = int(e.iloc[0]) if len(e) else None
    out["split_half_r"] = None if r is None else float(r[0])
    return out


def _max_abs_diff(mine: np.ndarray, idx: np.ndarray, stored: np.ndarray, log_idx: np.ndarray):
    """Largest |difference| where both are finite; None when the NULLs differ or idx is missing."""
    from curate.data.positions import find_positions

    pos = find_positions(idx, log_idx)
    if (pos < 0).any():
        return None
    s = stored[pos]
    if not np.array_equal(np.isnan(s), np.isnan(mine)):
        return None
    ok = np.isfinite(s)
    return float(np.abs(s[ok] - mine[ok]).max()) if ok.any() else 0.0


# ----------------------------------------------------------------------------- running recipes


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
    """The run's settings and accuracy (`runs`) and the catalog's split-half figures of
    accessibility (`ensemble_comparison`, None where the run was not scored); read-only."""
    from curate import catalog
    from curate.workspace import Workspace

    with catalog.read(Workspace(Path(ws))) as con:
        found = con.execute(
            "SELECT arch, members, epochs, precision, mean_final_acc FROM runs WHERE run = ?",
            [run],
        ).fetchone()
        rows = con.execute(
            "SELECT split, pearson_r, spearman_rho FROM ensemble_comparison "
            "WHERE run_a = ? AND run_b = ? AND kind = 'accessibility'",
            [run, run],
        ).fetchall()
    arch, members, epochs, precision, acc = found or (None, None, None, None, None)
    acc = json.loads(acc) if isinstance(acc, str) else (acc or {})
    r = {split: (p, s) for split, p, s in rows}
    return {
        "arch": arch,
        "members": members,
        "epochs": epochs,
        "precision": precision,
        "test_acc": acc.get("test"),
        "train_acc": acc.get("train"),
        "split_half_r_train": r.get("train", (None, None))[0],
        "split_half_r_test": r.get("test", (None, None))[0],
        "split_half_rho_train": r.get("train", (None, None))[1],
        "split_half_rho_test": r.get("test", (None, None))[1],
    }


def analyse(ws: Path, run: str, cscores: Path | None) -> dict:
    """The score table of a run as row fields: `scores` (one key per score) and `score_setup`."""
    c0 = time.process_time()
    table = score_table(ws, run, cscores if cscores is not None and cscores.exists() else None)
    scores = table.pop("scores")
    table["analysis_cpu_seconds"] = time.process_time() - c0
    return {"scores": scores, "score_setup": table}


def run_recipe(ws: Path, name: str, extra: list[str], cscores: Path | None = CSCORES) -> dict:
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
    return row | catalog_figures(ws, name) | analyse(ws, name, cscores)


def cpu_from_time_log(path: Path) -> dict:
    """CPU minutes from a `/usr/bin/time -v` log: user + sys summed over every command it timed."""
    text = Path(path).read_text(errors="replace")
    cmds = re.findall(r'Command being timed: "(.*)"', text)
    user = [float(x) for x in re.findall(r"User time \(seconds\): ([0-9.]+)", text)]
    sys_ = [float(x) for x in re.findall(r"System time \(seconds\): ([0-9.]+)", text)]
    if not user or len(user) != len(sys_):
        raise SystemExit(f"{path}: no `/usr/bin/time -v` figures (User time, System time)")
    timed = [
        {"command": cmds[i] if i < len(cmds) else None, "user_s": u, "sys_s": s}
        for i, (u, s) in enumerate(zip(user, sys_, strict=True))
    ]
    return {"cpu_minutes": (sum(user) + sum(sys_)) / 60, "timed": timed}


def analyse_only_row(
    ws: Path,
    run: str,
    name: str,
    cscores: Path | None,
    time_log: Path | None = None,
    cpu_minutes: float | None = None,
) -> dict:
    """A row for a run trained elsewhere: nothing is trained or written into `ws`."""
    row = {"recipe": name, "source": "analyse-only", "workspace": str(ws), "run": run}
    row |= {"recipe_file": None, "overrides": [], "wall_minutes": None}
    if time_log is not None:
        t = cpu_from_time_log(time_log)
        row |= {"cpu_minutes": t["cpu_minutes"], "cpu_source": str(time_log), "timed": t["timed"]}
    else:
        row |= {"cpu_minutes": cpu_minutes, "cpu_source": "given" if cpu_minutes else None}
    row["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    return row | catalog_figures(ws, run) | analyse(ws, run, cscores)


def fmt(v, spec: str) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def select(patterns: list[str]) -> list[str]:
    """Recipe names matching the given names or shell patterns ('fastconv32-*-bf16'), in order."""
    out = []
    for p in patterns:
        hit = [n for n in RECIPES if fnmatch.fnmatchcase(n, p)]
        if not hit:
            raise SystemExit(f"--only {p}: no such recipe (see --list)")
        out += [n for n in hit if n not in out]
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--only", nargs="+", default=["baseline", "cifar10-cpu"], help="names/patterns")
    ap.add_argument("--list", action="store_true", help="print the recipes and exit")
    ap.add_argument("--work", type=Path, default=ROOT / "benchmarks" / ".work" / "recipes")
    ap.add_argument("--set", dest="extra", action="append", default=[], help="override for all")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "recipes.json")
    ap.add_argument("--cscores", type=Path, default=CSCORES, help="the C-scores (train)")
    ap.add_argument(
        "--analyse-only",
        nargs=2,
        metavar=("WORKSPACE", "RUN"),
        help="the score table of a finished run, without training",
    )
    ap.add_argument("--name", help="row name of --analyse-only (default RUN)")
    ap.add_argument("--time-log", type=Path, help="a /usr/bin/time -v log of the run (CPU minutes)")
    ap.add_argument("--cpu-minutes", type=float, help="CPU minutes of the run, if known")
    args = ap.parse_args(argv)
    if args.list:
        for n, (recipe, sets) in RECIPES.items():
            print(f"{n:26s} {recipe:22s} {' '.join(sets)}")
        return
    cscores = args.cscores if args.cscores.exists() else None
    if cscores is None:
        print(f"{args.cscores} is missing: reliability only, no validity", flush=True)

    rows: list[dict] = []
    if args.analyse_only:
        ws, run = Path(args.analyse_only[0]).resolve(), args.analyse_only[1]
        name = args.name or run
        rows = _kept(args.out, [name])
        earlier = next((r for r in _kept(args.out, []) if r["recipe"] == name), None)
        print(f"analysing {run} in {ws} ...", flush=True)
        row = analyse_only_row(ws, run, name, cscores, args.time_log, args.cpu_minutes)
        if earlier and args.time_log is None and args.cpu_minutes is None:
            # a row measured before (a grid run analysed again): keep what it measured
            kept = (
                "recipe_file",
                "overrides",
                "cpu_minutes",
                "wall_minutes",
                "load_average_before",
            )
            row |= {k: earlier[k] for k in kept if k in earlier}
            row["cpu_source"] = "the earlier row"
        rows.append(row)
        write(args.out, rows)
    else:
        names = select(args.only)
        if not SOURCE.exists():
            raise SystemExit(f"{SOURCE} is missing")
        ws = args.work.resolve()
        ws.mkdir(parents=True, exist_ok=True)
        ingest = ["imagefolder", "--source", str(SOURCE), "--name", DATASET, "--workspace", str(ws)]
        curate("ingest", *ingest, log=ws / "ingest.log")
        rows = _kept(args.out, names)  # figures of recipes not rerun now are kept
        for name in names:
            print(f"running {name} ...", flush=True)
            rows.append(run_recipe(ws, name, args.extra, cscores))
            write(
                args.out, rows
            )  # after each recipe, so a stopped benchmark keeps what it measured
            r = rows[-1]
            print(
                f"  {fmt(r['cpu_minutes'], '.1f')} CPU-min, test acc {fmt(r['test_acc'], '.3f')}, "
                f"r train {fmt(r['split_half_r_train'], '.3f')} "
                f"test {fmt(r['split_half_r_test'], '.3f')}",
                flush=True,
            )
    print_tables(rows)
    print(f"\nwrote {args.out}")


def _kept(out: Path, replaced: list[str]) -> list[dict]:
    """The rows of an earlier results file, except those about to be measured again."""
    if not out.exists():
        return []
    old = json.loads(out.read_text()).get("recipes", [])
    return [r for r in old if r["recipe"] not in replaced]


def print_tables(rows: list[dict]) -> None:
    base = next((r for r in rows if r["recipe"] == "baseline"), None)
    head = f"{'recipe':24s} {'members x epochs x arch':26s} {'CPU min':>8s} {'vs base':>7s}"
    head += f" {'test acc':>8s} {'r train':>8s} {'r test':>7s}"
    print("\nsplit-half r: Pearson r of accessibility between two disjoint halves of the members;")
    print(
        "'r train' (50,000 train images) is the target (>= 0.95 within the baseline's CPU time)\n"
    )
    print(head)
    for r in rows:
        cpu = r.get("cpu_minutes")
        ratio = cpu / base["cpu_minutes"] if base and cpu is not None else None
        what = f"{r.get('members')} x {r.get('epochs')} x {r.get('arch')}"
        print(
            f"{r['recipe']:24s} {what:26s} {fmt(cpu, '8.1f')} {fmt(ratio, '7.2f')} "
            f"{fmt(r.get('test_acc'), '8.3f')} {fmt(r.get('split_half_r_train'), '8.3f')} "
            f"{fmt(r.get('split_half_r_test'), '7.3f')}"
        )
    scored = [r for r in rows if r.get("scores")]
    if not scored:
        return
    print(
        "\nper score, train split: rho = Spearman with the C-scores (whole ensemble; negative "
        "expected for el2n and forgetting, higher = harder), r = split-half Pearson r, max = the "
        "validity more members of the recipe tend to (|rho| corrected for attenuation)\n"
    )
    print(f"{'recipe':24s} {'CPU min':>8s} " + " ".join(f"{s:>20s}" for s in SCORES))
    print(f"{'':24s} {'':>8s} " + " ".join(f"{'rho':>7s} {'r':>6s} {'max':>5s}" for _ in SCORES))
    for r in scored:
        cells = " ".join(
            f"{fmt(r['scores'][s].get('spearman_cscore'), '7.3f')} "
            f"{fmt(r['scores'][s]['split_half_r'], '6.3f')} "
            f"{fmt(r['scores'][s].get('validity_ceiling'), '5.3f')}"
            for s in SCORES
        )
        print(f"{r['recipe']:24s} {fmt(r.get('cpu_minutes'), '8.1f')} {cells}")


def write(path: Path, rows: list[dict]) -> None:
    import torch

    base = next((r for r in rows if r["recipe"] == "baseline"), None)
    for r in rows:
        cpu = r.get("cpu_minutes")
        r["cpu_vs_baseline"] = cpu / base["cpu_minutes"] if base and cpu is not None else None
    out = {
        "what": "CIFAR-10 (cifar10-jpeg) recipes on this CPU: CPU minutes of `curate run` (train + "
        "score, children's rusage), mean final test accuracy, split-half Pearson r of "
        "accessibility on train (the target) and test",
        "scores_what": "rows[].scores: per score (accessibility, confidence, aum, el2n, "
        "forgetting), train split, from the prediction log: spearman_cscore = Spearman rho of the "
        "whole ensemble's score with the C-scores (Jiang et al., aligned by idx = standard CIFAR-10 "
        "order; higher C-score = easier, so el2n and forgetting correlate negatively), validity = "
        "that rho signed so agreement is positive, split_half_r = Pearson r between the score of "
        "members 0..M/2-1 and of members M/2..M-1 over the same epochs 1..E, "
        "full_ensemble_r_predicted = its Spearman-Brown step-up to M members, validity_ceiling = "
        "validity / sqrt(full_ensemble_r_predicted), the validity more members of the recipe "
        "tend to (correction for attenuation); rows[].score_setup: "
        "members, halves, epochs, el2n_epoch, the NULL rule of forgetting, checks against the "
        "catalog. Rows with source = analyse-only were trained elsewhere (cpu_minutes from their "
        "/usr/bin/time log)",
        "command": " ".join(["python", "benchmarks/bench_recipes.py", *sys.argv[1:]]),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "recipes": rows,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_plain(out), indent=2, allow_nan=False) + "\n")


def _plain(o):
    """JSON-ready: numpy scalars as Python numbers, NaN (an undefined correlation) as null."""
    if isinstance(o, dict):
        return {k: _plain(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_plain(v) for v in o]
    if isinstance(o, np.generic):
        o = o.item()
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return o


if __name__ == "__main__":
    main()
