"""`curate score`: a run's prediction log -> `instance_scores`, `epoch_metrics`, `error_consistency`,
`ensemble_comparison` in the catalog, in one transaction."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
from tqdm.auto import tqdm

from curate import db
from curate.errors import CurateError
from curate.scores import definitions as d
from curate.scores.engine import SplitScores, compare_groups, log_layout, score_split
from curate.workspace import Workspace


@dataclass
class RunInfo:
    run: str
    dataset: str
    members: int
    splits: list[str]


def run_info(ws: Workspace, run: str) -> RunInfo:
    run_dir = ws.run_dir(run)
    rec = run_dir / "run.json"
    if not rec.exists():
        have = sorted(p.name for p in (ws.root / "runs").glob("*") if (p / "run.json").exists())
        raise CurateError(
            f"no run {run!r} in {ws.root / 'runs'} (have: {', '.join(have) or 'none'}); "
            f"train it first: curate train {run} --workspace {ws.root}"
        )
    ident = json.loads(rec.read_text())
    con = db.read(ws)
    try:
        row = con.execute(
            "SELECT splits FROM datasets WHERE dataset = ?", [ident["dataset"]]
        ).fetchone()
    finally:
        con.close()
    if row is None:
        raise CurateError(
            f"run {run!r} trained on {ident['dataset']!r}, which the catalog no longer has; re-ingest it"
        )
    return RunInfo(run, ident["dataset"], ident["train"]["members"], list(row[0]))


def _list_column(matrix: np.ndarray) -> pa.Array:
    """(T, N) -> N lists of length T."""
    flat = np.ascontiguousarray(matrix.T).reshape(-1)
    return pa.FixedSizeListArray.from_arrays(pa.array(flat), matrix.shape[0])


def instance_table(run: str, dataset: str, sc: SplitScores, tol: int) -> pa.Table:
    n = len(sc.idx)
    i = sc.instance
    nan_to_null = lambda a: pa.array(a, mask=np.isnan(a))  # noqa: E731
    return pa.table(
        {
            "run": pa.array([run] * n),
            "dataset": pa.array([dataset] * n),
            "split": pa.array([sc.split] * n),
            "idx": pa.array(sc.idx.astype(np.int32)),
            "label": pa.array(sc.labels.astype(np.int32)),
            "members": pa.array(np.full(n, len(sc.members), np.int32)),
            "accessibility": pa.array(i["accessibility"]),
            "tpa_final": pa.array(i["tpa_final"]),
            "strict_final": pa.array(i["strict_final"]),
            "agreement_final": pa.array(i["agreement_final"]),
            "learned_epoch": nan_to_null(i["learned_epoch"]),
            "first_learned": nan_to_null(i["first_learned"]),
            "forgetting_events": nan_to_null(i["forgetting_events"]),
            "never_learned": pa.array(i["never_learned"]),
            "confidence": pa.array(i["confidence"]),
            "variability": pa.array(i["variability"]),
            "final_correct": pa.array(i["final_correct"].astype(np.int32)),
            "ddd": pa.array(i["ddd"].astype(str)),
            "tol": pa.array(np.full(n, tol, np.int32)),
            "correct_by_epoch": _list_column(sc.correct_by_epoch),
            "agree_by_epoch": _list_column(sc.agree_by_epoch),
        }
    )


def epoch_frame(run: str, dataset: str, sc: SplitScores, tol: int) -> pd.DataFrame:
    e = sc.epoch
    t = len(e["epoch"])
    cols = {"run": run, "dataset": dataset, "split": sc.split, "epoch": e["epoch"].astype(np.int32)}
    for k in (
        "acc_mean",
        "acc_std",
        "strict_agreement",
        "lower_bound",
        "random_agreement",
        "random_agreement_normalized",
        "bimodality",
        "bimodality_null",
        "frac_trivial",
        "frac_in_between",
        "frac_impossible",
    ):
        cols[k] = e[k]
    cols["correct_count_hist"] = [list(map(int, e["correct_count_hist"][j])) for j in range(t)]
    cols["correct_count_null"] = [list(map(float, e["correct_count_null"][j])) for j in range(t)]
    cols["flip_rate"] = e["flip_rate"]
    cols["label_change_rate"] = e["label_change_rate"]
    cols["acc_by_member"] = [list(map(float, e["acc_by_member"][j])) for j in range(t)]
    cols["tol"] = tol
    return pd.DataFrame(cols)


def _comparison_rows(
    run_a, members_a, run_b, members_b, split, access_a, access_b, correct_a, correct_b, epochs
):
    rows = [
        {
            "run_a": run_a,
            "members_a": members_a,
            "run_b": run_b,
            "members_b": members_b,
            "split": split,
            "kind": "accessibility",
            "n": len(access_a),
            **d.accessibility_correlation(access_a, access_b),
        }
    ]
    for r in compare_groups(correct_a, correct_b, epochs):
        rows.append(
            {
                "run_a": run_a,
                "members_a": members_a,
                "run_b": run_b,
                "members_b": members_b,
                "split": split,
                "kind": "matched-epoch",
                "n": len(access_a),
                **r,
            }
        )
    return rows


def score_run(
    ws: Workspace,
    run: str,
    tol: int = 0,
    compare: list[str] | tuple[str, ...] = (),
    quiet: bool = False,
) -> dict:
    """Score every split of `run` and write the tables; returns a short summary per split."""
    info = run_info(ws, run)
    run_dir = ws.run_dir(run)
    results: list[SplitScores] = []
    comparisons: list[dict] = []
    total = sum(log_layout(run_dir, s)[1] + 1 for s in info.splits)
    with tqdm(total=total, desc=f"score {run}", unit="epoch", disable=quiet) as bar:
        for split in info.splits:
            members, _ = log_layout(run_dir, split)
            try:
                d.check_tol(len(members), tol)
            except ValueError as e:
                raise CurateError(f"{e}; lower --tol") from None
            half = len(members) // 2
            groups = {"a": members[:half], "b": members[half:], "all": members}
            sc = score_split(
                run_dir,
                split,
                db.split_labels(ws, info.dataset, split),
                tol=tol,
                groups=groups,
                progress=bar,
            )
            results.append(sc)
            comparisons += _comparison_rows(
                run,
                groups["a"],
                run,
                groups["b"],
                split,
                sc.groups_accessibility["a"],
                sc.groups_accessibility["b"],
                sc.groups_correct["a"],
                sc.groups_correct["b"],
                sc.epoch["epoch"],
            )
    for other in compare:
        oi = run_info(ws, other)
        if oi.dataset != info.dataset:
            raise CurateError(
                f"cannot compare run {run!r} ({info.dataset}) with {other!r} ({oi.dataset}): "
                "ensembles must be scored on the same dataset"
            )
        for sc in results:
            om, _ = log_layout(ws.run_dir(other), sc.split)
            osc = score_split(
                ws.run_dir(other),
                sc.split,
                db.split_labels(ws, info.dataset, sc.split),
                tol=0,
                groups={"all": om},
            )
            mine = sc
            t = min(len(sc.epoch["epoch"]), len(osc.epoch["epoch"]))
            comparisons += _comparison_rows(
                run,
                sc.members,
                other,
                om,
                sc.split,
                sc.instance["accessibility"],
                osc.instance["accessibility"],
                mine.groups_correct["all"][:t],
                osc.groups_correct["all"][:t],
                sc.epoch["epoch"][:t],
            )

    with db.write(ws) as con:
        for table, key in (
            ("instance_scores", "run"),
            ("epoch_metrics", "run"),
            ("error_consistency", "run"),
            ("ensemble_comparison", "run_a"),
        ):
            con.execute(f"DELETE FROM {table} WHERE {key} = ?", [run])
        for sc in results:
            con.register("new_instance_scores", instance_table(run, info.dataset, sc, tol))
            con.execute("INSERT INTO instance_scores SELECT * FROM new_instance_scores")
            con.register("new_epoch_metrics", epoch_frame(run, info.dataset, sc, tol))
            con.execute("INSERT INTO epoch_metrics SELECT * FROM new_epoch_metrics")
            kappa = pd.DataFrame(
                sc.kappa_rows,
                columns=["epoch", "subset", "member_i", "member_j", "n", "c_obs", "c_exp", "kappa"],
            )
            kappa.insert(0, "split", sc.split)
            kappa.insert(0, "run", run)
            con.register("new_kappa", kappa)
            con.execute("INSERT INTO error_consistency SELECT * FROM new_kappa")
        cols = [c for c, _, _ in db.SCHEMA["ensemble_comparison"]]
        con.register("new_comparison", pd.DataFrame(comparisons).reindex(columns=cols))
        con.execute("INSERT INTO ensemble_comparison SELECT * FROM new_comparison")
    from curate.stats.correlate import compute_correlations

    compute_correlations(ws, info.dataset)  # when image statistics exist
    return {sc.split: summarize(sc) for sc in results}


def summarize(sc: SplitScores) -> dict:
    e = sc.epoch
    last = -1
    return {
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
