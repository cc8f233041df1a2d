"""Every score of SCIENCE.md on a hand-built multilabel log: correctness is the exact match of the
predicted class set (a bitmask) with the label's; agreement compares predicted sets. The answers
below were worked out by hand from the tables in `LOG`.

Classes A = aeroplane (bit 0), B = person (bit 14), C = tvmonitor (bit 19: beyond int16, so the
log's int32 path is exercised). Four VOC test images, 3 members, epochs 0..2:

    label      n0 = {A,C}     n1 = {B}      n2 = {} (only a difficult object)   n3 = {A,B,C}
    epoch 0    every member predicts {} (the untrained net)
    epoch 1    A|C, A, A      B, B, B|C     {}, A, B                         A|B, A|B, A|B
    epoch 2    A|C x3         B, {}, B      {} x3                            A|B, A|B, A|B|C

c (members right):  epoch 0: n2 only (3); epoch 1: [1,0,0] [1,1,0] [1,0,0] [0,0,0];
epoch 2: [1,1,1] [1,0,1] [1,1,1] [0,0,1].
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import ingest_cli
from voc_tree import make_voc_root

from curate import catalog
from curate.cli import main
from curate.scores import definitions as d
from curate.scores.engine import score_split
from curate.train import predlog
from curate.workspace import Workspace

A, B, C = 1 << 0, 1 << 14, 1 << 19
LABELS = np.array([A | C, B, 0, A | B | C])
IDX = np.array([1, 2, 3, 4])
E0 = [[0, 0, 0, 0]] * 3
E1 = [[A | C, B, 0, A | B], [A, B, A, A | B], [A, B | C, B, A | B]]  # [member][instance]
E2 = [[A | C, B, 0, A | B], [A | C, 0, 0, A | B], [A | C, B, 0, A | B | C]]
PRED = np.array([E0, E1, E2]).transpose(1, 0, 2)  # (M, T, N)
P_TRUE = np.zeros((3, 3, 4), np.float32)
P_TRUE[:, 1], P_TRUE[:, 2] = 0.2, 0.6
P_TRUE[:, 1, 3], P_TRUE[:, 2, 3] = 0.1, 0.3
MARGIN = np.where(PRED == LABELS, 1.0, -1.0).astype(np.float32)  # > 0 exactly when correct


def write_log(run_dir, split="test"):
    for m in range(3):
        for e in range(3):
            predlog.write_shard(
                predlog.shard_path(run_dir, "eval", split, m, e),
                IDX,
                PRED[m, e],
                P_TRUE[m, e],
                MARGIN[m, e],
                wide=True,
            )
            predlog.mark_epoch_done(run_dir, m, e, {"acc": {}, "seconds": 0})


def test_exact_match_scores_by_hand(tmp_path):
    write_log(tmp_path)
    sc = score_split(tmp_path, "test", (IDX, LABELS), tol=0)
    c = PRED == LABELS
    assert c[:, 1].astype(int).tolist() == [[1, 1, 1, 0], [0, 1, 0, 0], [0, 0, 0, 0]]
    i = sc.instance
    third = 1 / 3
    np.testing.assert_allclose(i["accessibility"], [2 * third, 2 * third, 2 * third, 1 / 6])
    np.testing.assert_allclose(i["tpa_final"], [1, 2 * third, 1, third])
    assert i["strict_final"].tolist() == [True, False, True, False]
    np.testing.assert_allclose(i["agreement_final"], [1, 2 * third, 1, 2 * third])
    np.testing.assert_array_equal(i["learned_epoch"], [2, 2, 2, np.nan])
    np.testing.assert_array_equal(i["first_learned"], [2, 1, 2, np.nan])
    np.testing.assert_array_equal(i["forgetting_events"], [0, 1, 0, 0])
    assert not i["never_learned"].any()
    np.testing.assert_allclose(i["confidence"], [0.4, 0.4, 0.4, 0.2], rtol=1e-6)
    np.testing.assert_allclose(i["variability"], [0.2, 0.2, 0.2, 0.1], rtol=1e-6)
    assert i["final_correct"].tolist() == [3, 2, 3, 1]
    assert list(i["ddd"]) == ["trivial", "in-between", "trivial", "in-between"]
    # the members' per-epoch counts and label-agnostic agreement (largest group predicting one set)
    assert sc.correct_by_epoch.tolist() == [[0, 0, 3, 0], [1, 2, 1, 0], [3, 2, 3, 1]]
    assert sc.agree_by_epoch.tolist() == [[3, 3, 3, 3], [2, 2, 1, 3], [3, 2, 3, 2]]
    # label issues: the late epoch (2) votes; n3's members settle on {A,B}, not its label
    assert i["suggested_label"].tolist() == [A | C, B, 0, A | B]
    np.testing.assert_allclose(i["consensus"], [1, 2 * third, 1, 2 * third])
    np.testing.assert_allclose(i["aum"], [third, third, third, -2 * third], rtol=1e-6)
    assert i["flagged"].tolist() == [False, False, False, True]
    # late epoch 2 only: 3, 2, 3 and 1 of the 3 members exactly right, margins +-1
    np.testing.assert_allclose(i["late_aum"], [1, third, 1, -third], rtol=1e-6)
    np.testing.assert_allclose(i["issue_score"], [-1, -third, -1, third], rtol=1e-6)

    e = sc.epoch
    np.testing.assert_allclose(e["acc_mean"], [1 / 4, third, 3 / 4])
    np.testing.assert_allclose(e["acc_std"], [0, np.sqrt(14) / 12, np.sqrt(1 / 24)])
    np.testing.assert_allclose(
        e["acc_by_member"], [[1 / 4] * 3, [3 / 4, 1 / 4, 0], [3 / 4, 1 / 2, 1]]
    )
    np.testing.assert_allclose(e["strict_agreement"], [1, 0, 0.5])
    np.testing.assert_allclose(e["lower_bound"], [0, 0, 0.25])
    np.testing.assert_allclose(e["random_agreement"], [1 / 64, 0, 0.375])
    np.testing.assert_allclose(e["random_agreement_normalized"], [1 / 37, 0, 0.375])
    np.testing.assert_allclose(e["bimodality"], [0, 1, 512 / 1331], atol=1e-12)
    np.testing.assert_allclose(
        e["bimodality_null"],
        d.bimodality_null(np.array([[1 / 4, 3 / 4, 3 / 4], [1 / 4, 1 / 4, 1 / 2], [1 / 4, 0, 1]])),
    )
    assert e["correct_count_hist"].tolist() == [[3, 0, 0, 1], [1, 2, 1, 0], [0, 1, 1, 2]]
    # epoch 2: 4 instances x Binomial(3, 3/4) = 4 x (1, 9, 27, 27) / 64
    np.testing.assert_allclose(e["correct_count_null"][2], [1 / 16, 9 / 16, 27 / 16, 27 / 16])
    np.testing.assert_allclose(e["frac_trivial"], [1 / 4, 0, 1 / 2])
    np.testing.assert_allclose(e["frac_impossible"], [3 / 4, 1 / 4, 0])
    np.testing.assert_allclose(e["frac_in_between"], [0, 3 / 4, 1 / 2])
    np.testing.assert_allclose(e["flip_rate"][1:], [5 / 12, 7 / 12])
    np.testing.assert_allclose(e["label_change_rate"][1:], [11 / 12, 7 / 12])
    kappa = {(r[0], r[1], r[2], r[3]): r[5:] for r in sc.kappa_rows}
    # epoch 2, members 0 and 1: c = [1,1,1,0] vs [1,0,1,0]: c_obs 3/4, c_exp .75*.5 + .25*.5 = 1/2
    np.testing.assert_allclose(kappa[(2, "all", 0, 1)], [0.75, 0.5, 0.5])
    # on the in-between instances (n1, n3): [1,0] vs [0,0]: c_obs 1/2, c_exp 0 + 1/2 * 1: kappa 0
    np.testing.assert_allclose(kappa[(2, "in-between", 0, 1)], [0.5, 0.5, 0.0])


def test_scored_through_the_catalog(tmp_path, capsys):
    """The same log as a run of an ingested VOC test split: `curate score`, the tables, the
    '+'-joined class names in `label_issues` and the int32 `predictions` view."""
    root = make_voc_root(
        tmp_path / "VOC2007",
        {
            "000001": (8, 8, [("aeroplane", 1, 1, 4, 4, 0, 0), ("tvmonitor", 2, 2, 8, 8, 0, 0)]),
            "000002": (8, 8, [("person", 1, 1, 8, 8, 0, 0)]),
            "000003": (8, 8, [("bottle", 1, 1, 4, 4, 0, 1)]),  # difficult only: {}
            "000004": (
                8,
                8,
                [
                    ("aeroplane", 1, 1, 2, 2, 0, 0),
                    ("person", 3, 3, 4, 4, 0, 0),
                    ("tvmonitor", 5, 5, 6, 6, 0, 0),
                ],
            ),
        },
        {"test": ["000001", "000002", "000003", "000004"]},
    )
    ws = tmp_path / "ws"
    assert ingest_cli("voc", "--source", str(root), "--workspace", str(ws)) == 0
    run_dir = ws / "runs" / "hand"
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps({"dataset": "voc", "train": {"members": 3}}))
    write_log(run_dir)
    assert main(["score", "hand", "--workspace", str(ws)]) == 0
    con = catalog.read(Workspace(ws))
    try:
        rows = con.execute(
            "SELECT idx, label, class_name, suggested_class, flagged, accessibility FROM label_issues "
            "WHERE run = 'hand' ORDER BY idx"
        ).fetchall()
        preds = con.execute(
            "SELECT max(pred), count(*) FROM read_parquet(?, hive_partitioning = true)",
            [str(run_dir / "predictions/*/*/*/*/part.parquet")],
        ).fetchone()
        halves = con.execute(
            "SELECT members_a, members_b, pearson_r, spearman_rho FROM ensemble_comparison "
            "WHERE run_a = 'hand' AND pearson_r IS NOT NULL"
        ).fetchall()
        metrics = con.execute(
            "SELECT epoch, strict_agreement FROM epoch_metrics WHERE run = 'hand' ORDER BY epoch"
        ).fetchall()
    finally:
        con.close()
    assert [r[:5] for r in rows] == [
        (1, A | C, "aeroplane+tvmonitor", "aeroplane+tvmonitor", False),
        (2, B, "person", "person", False),
        (3, 0, "", "", False),
        (4, A | B | C, "aeroplane+person+tvmonitor", "aeroplane+person", True),
    ]
    assert [r[5] for r in rows] == pytest.approx([2 / 3, 2 / 3, 2 / 3, 1 / 6])
    assert preds == (A | B | C, 36)
    assert [e for e, _ in metrics] == [0, 1, 2]
    # fractions of 2 instances: rounding only, hence abs=1e-12
    assert [v for _, v in metrics] == pytest.approx([1.0, 0.0, 0.5], abs=1e-12)
    # halves: member 0's accessibility (1, 1, 1, 0) against members 1-2's (1/2, 1/2, 1/2, 1/4),
    # a linear function of it: r = rho = 1
    assert [h[:2] for h in halves] == [([0], [1, 2])]
    assert halves[0][2:] == pytest.approx((1.0, 1.0))
    # a single-label run's log (int16 pred, as every log before multilabel) beside it: the view
    # reads both
    old = ws / "runs" / "early"  # listed before "hand": its int16 type would come first
    predlog.write_shard(
        predlog.shard_path(old, "eval", "test", 0, 0),
        IDX,
        np.array([3, 1, 2, 0]),
        P_TRUE[0, 1],
        MARGIN[0, 1],
    )
    capsys.readouterr()
    sql = "SELECT run, max(pred) AS m, typeof(max(pred)) AS t FROM predictions GROUP BY run ORDER BY run"
    assert main(["query", sql, "--format", "csv", "--workspace", str(ws)]) == 0
    assert capsys.readouterr().out.split() == [
        "run,m,t",
        "early,3,INTEGER",
        f"hand,{A | B | C},INTEGER",
    ]
