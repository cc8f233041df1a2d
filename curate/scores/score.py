"""`curate score`: the score stage's entry point. A run's prediction log -> `instance_scores`,
`epoch_metrics`, `error_consistency` and `ensemble_comparison` in the catalog, in one transaction.

Only the score tables are written here; the statistics' `correlations` belong to the stats stage
(`curate.stats.correlate.compute_correlations`), which callers run after scoring where they need it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from curate import catalog, runlog
from curate.config import name_problem
from curate.data.positions import find_positions
from curate.errors import CurateError
from curate.scores import definitions as d
from curate.scores import label_issues as li
from curate.scores import reliability as rel
from curate.scores.comparison import halves_rows, runs_rows
from curate.scores.engine import SplitScores, log_layout, prefix_end, score_split
from curate.scores.tables import write_scores
from curate.workspace import Workspace


@dataclass
class RunInfo:
    run: str
    dataset: str
    members: int
    splits: list[str]


def run_info(ws: Workspace, run: str) -> RunInfo:
    """The run's dataset, ensemble size and splits; a clear error when the run or its dataset is
    missing."""
    run_dir = ws.run_dir(run)
    manifest = runlog.load_manifest(run_dir) if not name_problem(run) else None
    if manifest is None:
        have = runlog.run_names(ws.runs)
        raise CurateError(
            f"no run {run!r} in {ws.root / 'runs'} (have: {', '.join(have) or 'none'}); "
            "make it first (`curate train`, a curate.Recorder in your training loop, or "
            "`curate import-log`) or pass the right --workspace"
        )
    con = catalog.read(ws)
    try:
        row = con.execute(
            "SELECT splits FROM datasets WHERE dataset = ?", [manifest.dataset]
        ).fetchone()
    finally:
        con.close()
    if row is None:
        raise CurateError(
            f"run {run!r} trained on {manifest.dataset!r}, which the catalog no longer has; "
            "re-ingest it"
        )
    # the splits the log holds (the manifest's; None: every split of the dataset)
    splits = [s for s in row[0] if manifest.splits is None or s in manifest.splits]
    return RunInfo(run, manifest.dataset, manifest.members, splits)


def score_run(
    ws: Workspace,
    run: str,
    tol: int = 0,
    compare: list[str] | tuple[str, ...] = (),
    quiet: bool = False,
    epochs: int | None = None,
    el2n_epoch: int = 1,
) -> dict:
    """Score every split of `run` and write the score tables.

    Parameters
    ----------
    ws : the workspace.
    run : a trained run.
    tol : the ddd split tolerance: 0 = strict, 1 = all except one.
    compare : other runs on the same dataset to compare the ensemble with.
    quiet : no progress bar.
    epochs : score epochs 1..epochs only, a prefix of the log (None: every logged epoch).
    el2n_epoch : the early epoch whose logged error norms give `el2n` (Paul et al.: about a tenth
        of the training; 1 by default, where short CPU runs are a quarter in).

    Returns
    -------
    A short summary per split (`summarize`), for `curate.scores.summary.print_summary`.
    """
    info = run_info(ws, run)
    runlog.check_complete(ws.run_dir(run), epochs)  # a recorded run's missing parts, by name
    results, comparisons, reliability, noise, estimate = [], [], [], [], []
    for sc, halves in _score_splits(ws, info, tol, quiet, epochs, el2n_epoch):
        results.append(sc)
        comparisons += halves_rows(run, sc, halves)
        reliability += reliability_rows(run, sc, tol)
        noise += noise_rows(ws, info, sc)
        estimate += estimate_rows(info.run, sc)
    for other in compare:
        comparisons += _compare_with(ws, info, other, results)
    write_scores(
        ws, run, info.dataset, results, comparisons, tol, reliability, noise, el2n_epoch, estimate
    )
    return {
        sc.split: summarize(sc, [r for r in reliability if r["split"] == sc.split])
        | {"label_noise": next((r for r in noise if r["split"] == sc.split), None)}
        | {"flagged": int(sc.instance["flagged"].sum())}
        | {"noise_by_class": [r for r in estimate if r["split"] == sc.split]}
        for sc in results
    }


def estimate_rows(run: str, sc: SplitScores) -> list[dict]:
    """`label_noise_estimate` rows of one split: per class, instances, estimated wrong labels,
    their rate and the number flagged; none where no estimate was made (multilabel, old logs)."""
    b = sc.noise_by_class
    if b is None:
        return []
    return [
        {
            "run": run,
            "split": sc.split,
            "label": int(k),
            "n": int(n),
            "est_wrong": float(w),
            "noise_rate": float(w / n) if n else float("nan"),
            "n_flagged": int(f),
        }
        for k, n, w, f in zip(b["label"], b["n"], b["est_wrong"], b["n_flagged"], strict=True)
        if n
    ]


def noise_rows(ws: Workspace, info: RunInfo, sc: SplitScores) -> list[dict]:
    """The `label_noise_eval` row of a split whose given labels differ from the true ones
    somewhere; none otherwise."""
    true_idx, true = catalog.split_labels(ws, info.dataset, sc.split, "true_label")
    true = true[find_positions(true_idx, sc.idx)]  # the log's instance order
    if np.array_equal(true, sc.labels):
        return []
    i = sc.instance
    row = li.noise_eval(sc.labels, true, i["issue_score"], i["flagged"], i["suggested_label"])
    wrong = sc.labels != true
    row["auroc_aum"] = li.auroc(-i["aum"], wrong)
    row["auroc_accessibility"] = li.auroc(1 - i["accessibility"], wrong)
    return [{"run": info.run, "split": sc.split} | row]


def reliability_rows(run: str, sc: SplitScores, tol: int) -> list[dict]:
    """`score_reliability` rows of one split: the member curve and the epoch curve."""
    members, epochs = len(sc.members), len(sc.correct_by_epoch) - 1
    rows = [
        {
            "run": run,
            "split": sc.split,
            "curve": "members",
            "x": r["m"],
            "fraction": r["m"] / members,
        }
        | {k: r[k] for k in ("pearson", "pearson_std", "spearman", "predicted", "extrapolated")}
        | {"draws": r["draws"]}
        for r in rel.member_curve(sc.member_hits, epochs)
    ]
    rows += [
        {"run": run, "split": sc.split, "curve": "epochs", "x": r["e"], "fraction": r["fraction"]}
        | {"spearman": r["spearman"], "ddd_same": r["ddd_same"]}
        for r in rel.epoch_curve(sc.correct_by_epoch, members, tol)
    ]
    return rows


def _score_splits(
    ws: Workspace, info: RunInfo, tol: int, quiet: bool, epochs: int | None, el2n_epoch: int = 1
):
    """Yield (scores, halves) per split; halves: the two member halves compared with each other."""
    run_dir = ws.run_dir(info.run)
    total = 0
    for s in info.splits:
        end = prefix_end(log_layout(run_dir, s)[1], epochs, s)
        if not 1 <= el2n_epoch <= end:  # before anything is read
            raise CurateError(
                f"--el2n-epoch {el2n_epoch}: split {s!r} has epochs 1..{end} to score; choose one"
            )
        try:
            d.check_tol(len(log_layout(run_dir, s)[0]), tol)
        except ValueError as e:
            raise CurateError(f"{e}; lower --tol") from None
        total += end + 1
    with tqdm(total=total, desc=f"score {info.run}", unit="epoch", disable=quiet) as bar:
        for split in info.splits:
            members, _ = log_layout(run_dir, split)
            half = len(members) // 2
            halves = {"a": members[:half], "b": members[half:]}
            labels = catalog.split_labels(ws, info.dataset, split)
            sc = score_split(
                run_dir,
                split,
                labels,
                tol=tol,
                groups={**halves, "all": members},
                progress=bar,
                last_epoch=epochs,
                el2n_epoch=el2n_epoch,
            )
            yield sc, halves


def _compare_with(
    ws: Workspace, info: RunInfo, other: str, results: list[SplitScores]
) -> list[dict]:
    """Rows comparing the run's whole ensemble with another run's, split by split."""
    oi = run_info(ws, other)
    if oi.dataset != info.dataset:
        raise CurateError(
            f"cannot compare run {info.run!r} ({info.dataset}) with {other!r} ({oi.dataset}): "
            "ensembles must be scored on the same dataset"
        )
    rows = []
    for sc in results:
        other_members, _ = log_layout(ws.run_dir(other), sc.split)
        osc = score_split(
            ws.run_dir(other),
            sc.split,
            catalog.split_labels(ws, info.dataset, sc.split),
            tol=0,
            groups={"all": other_members},
        )
        rows += runs_rows(info.run, sc, other, osc)
    return rows


def summarize(sc: SplitScores, reliability: list[dict] | None = None) -> dict:
    e = sc.epoch
    last = -1
    return {
        "reliability": reliability_summary(reliability or [], len(sc.members)),
        "members": len(sc.members),
        "instances": len(sc.idx),
        "acc_by_member": e["acc_by_member"][last].tolist(),
        "strict_agreement": float(e["strict_agreement"][last]),
        "lower_bound": float(e["lower_bound"][last]),
        "random_agreement_normalized": float(e["random_agreement_normalized"][last]),
        "bimodality": e["bimodality"].tolist(),
        "bimodality_null": e["bimodality_null"].tolist(),
        "frac_trivial": float(e["frac_trivial"][last]),
        "frac_in_between": float(e["frac_in_between"][last]),
        "frac_impossible": float(e["frac_impossible"][last]),
    }


def reliability_summary(rows: list[dict], members: int) -> dict:
    """The three numbers the summary prints: split-half r at the run's size, the size predicted to
    reach r = 0.95, and the first epoch whose scores agree at rho >= 0.9 with the full run."""
    at_full = next(
        (r["pearson"] for r in rows if r["curve"] == "members" and r["x"] == members), None
    )
    epoch_rows = [{"e": r["x"], "spearman": r["spearman"]} for r in rows if r["curve"] == "epochs"]
    ok = at_full is not None and at_full == at_full  # not nan
    return {
        "split_half_r": at_full if ok else None,
        "members_for_095": rel.size_for(at_full, members) if ok else None,
        "epochs_for_rho_09": rel.first_epoch_reaching(epoch_rows, 0.9),
        "epochs": len(epoch_rows),
    }
