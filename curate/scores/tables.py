"""A run's scores as catalog rows: `instance_scores`, `epoch_metrics`, `error_consistency`,
`ensemble_comparison`, `score_reliability` and `label_noise_eval`, replaced for the run in one
transaction."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from curate import catalog
from curate.scores.engine import SplitScores
from curate.workspace import Workspace


def _list_column(matrix: np.ndarray) -> pa.Array:
    """(T, N) -> N lists of length T."""
    flat = np.ascontiguousarray(matrix.T).reshape(-1)
    return pa.FixedSizeListArray.from_arrays(pa.array(flat), matrix.shape[0])


def instance_table(
    run: str, dataset: str, sc: SplitScores, tol: int, el2n_epoch: int = 1
) -> pa.Table:
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
            "epochs": pa.array(np.full(n, len(sc.correct_by_epoch) - 1, np.int32)),
            "aum": pa.array(i["aum"]),
            "late_aum": pa.array(i["late_aum"]),
            "suggested_label": pa.array(i["suggested_label"].astype(np.int32)),
            "consensus": pa.array(i["consensus"]),
            "issue_score": pa.array(i["issue_score"]),
            "flagged": pa.array(i["flagged"]),
            "el2n": nan_to_null(i["el2n"]),
            "el2n_epoch": pa.array(np.full(n, el2n_epoch, np.int32)),
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


def kappa_frame(run: str, sc: SplitScores) -> pd.DataFrame:
    kappa = pd.DataFrame(
        sc.kappa_rows,
        columns=["epoch", "subset", "member_i", "member_j", "n", "c_obs", "c_exp", "kappa"],
    )
    kappa.insert(0, "split", sc.split)
    kappa.insert(0, "run", run)
    return kappa


def write_scores(
    ws: Workspace,
    run: str,
    dataset: str,
    results: list[SplitScores],
    comparisons: list[dict],
    tol: int,
    reliability: list[dict] | None = None,
    noise: list[dict] | None = None,
    el2n_epoch: int = 1,
    estimate: list[dict] | None = None,
) -> None:
    """Replace the run's rows of the score tables, all in one transaction."""
    with catalog.write(ws) as con:
        for table, key in (
            ("instance_scores", "run"),
            ("epoch_metrics", "run"),
            ("error_consistency", "run"),
            ("ensemble_comparison", "run_a"),
            ("score_reliability", "run"),
            ("label_noise_eval", "run"),
            ("label_noise_estimate", "run"),
        ):
            con.execute(f"DELETE FROM {table} WHERE {key} = ?", [run])  # names are constants
        for sc in results:
            catalog.insert_frame(
                con, "instance_scores", instance_table(run, dataset, sc, tol, el2n_epoch)
            )
            catalog.insert_frame(con, "epoch_metrics", epoch_frame(run, dataset, sc, tol))
            catalog.insert_frame(con, "error_consistency", kappa_frame(run, sc))
        cols = [c for c, _, _ in catalog.SCHEMA["ensemble_comparison"]]
        catalog.insert_frame(
            con, "ensemble_comparison", pd.DataFrame(comparisons).reindex(columns=cols)
        )
        for table, rows in (
            ("score_reliability", reliability),
            ("label_noise_eval", noise),
            ("label_noise_estimate", estimate),
        ):
            if rows:
                cols = [c for c, _, _ in catalog.SCHEMA[table]]
                catalog.insert_frame(con, table, pd.DataFrame(rows).reindex(columns=cols))
