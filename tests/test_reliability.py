"""Score reliability: Spearman-Brown, split-half curves and prefix scores, on hand-built logs whose
answers were worked out by hand, and prefix scoring against a log truncated on disk."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest

from curate import catalog
from curate.cli import main
from curate.scores import reliability as rel
from curate.workspace import Workspace


def test_spearman_brown_by_hand():
    assert rel.spearman_brown(0.5, 2) == pytest.approx(2 * 0.5 / 1.5)  # 0.6667
    assert rel.spearman_brown(0.8, 0.5) == pytest.approx(0.4 / 0.6)  # halving: 0.6667
    # k r / (1 + (k - 1) r) at r = 1 and 0: 7/7 and 0/1, rounding only
    assert rel.spearman_brown(1.0, 7) == pytest.approx(1.0, abs=1e-12)
    assert rel.spearman_brown(0.0, 7) == pytest.approx(0.0, abs=1e-12)
    assert rel.spearman_brown(0.6, 1) == pytest.approx(0.6)
    assert math.isnan(rel.spearman_brown(-0.5, 3))  # 1 + 2(-0.5) = 0: no prediction
    with pytest.raises(ValueError):
        rel.spearman_brown(0.5, 0)


def test_members_needed_by_hand():
    # r = 0.723 at 4 members: k = 0.95 * 0.277 / (0.723 * 0.05) = 7.279; 4 k = 29.1 -> 30
    assert rel.size_for(0.723, 4) == 30
    assert rel.spearman_brown(0.723, 30 / 4) >= 0.95 > rel.spearman_brown(0.723, 29 / 4)
    assert rel.size_for(0.96, 8) == 8  # already there
    assert rel.size_for(0.0, 8) is None and rel.size_for(-0.2, 8) is None


def test_identical_members_are_perfectly_reliable():
    rng = np.random.default_rng(0)
    one = rng.integers(0, 6, 500)  # epochs 1..5 one member got right, per instance
    hits = np.tile(one, (6, 1))
    rows = rel.member_curve(hits, epochs=5, draws=4)
    measured = [r for r in rows if not r["extrapolated"]]
    assert [r["m"] for r in measured] == [2, 3, 4, 5, 6]
    for r in measured:
        assert r["pearson"] == pytest.approx(1.0) and r["spearman"] == pytest.approx(1.0)
    assert all(r["predicted"] == pytest.approx(1.0) for r in rows)
    assert max(r["m"] for r in rows) == 24  # predictions up to 4 M


def test_independent_coin_flip_members_are_not_reliable():
    rng = np.random.default_rng(1)
    hits = rng.binomial(5, 0.5, (8, 20_000))  # 8 members, 5 epochs, each a fair coin
    rows = rel.member_curve(hits, epochs=5, draws=5)
    measured = [r for r in rows if not r["extrapolated"]]
    assert [r["m"] for r in measured] == list(range(2, 9))  # measured for 2..8 of the 8 members
    for r in measured:
        assert abs(r["pearson"]) < 0.05 and abs(r["spearman"]) < 0.05
    p, s = rel.split_half(hits, 5, 8, draws=3)
    assert p.shape == s.shape == (3,)


def test_epoch_curve_by_hand():
    # 2 members, epochs 0..2, 4 instances: members correct per epoch
    counts = np.array([[0, 0, 0, 0], [2, 0, 1, 0], [2, 2, 0, 0]])
    rows = rel.epoch_curve(counts, members=2, tol=0)
    # prefix 1..1: accessibility [1, 0, .5, 0]; full: [1, .5, .25, 0]; ranks [4, 1.5, 3, 1.5] and
    # [4, 3, 2, 1]: rho = 3 / sqrt(4.5 * 5) = 0.6325
    assert rows[0]["e"] == 1 and rows[0]["fraction"] == pytest.approx(0.5, abs=1e-12)  # 1 of 2
    assert rows[0]["spearman"] == pytest.approx(3 / math.sqrt(22.5))
    # ddd at epoch 1: trivial, impossible, in-between, impossible; at 2: T, T, I, I -> 2 of 4 agree
    assert rows[0]["ddd_same"] == pytest.approx(0.5, abs=1e-12)  # 2 of 4, rounding only
    assert rows[1]["spearman"] == pytest.approx(1.0, abs=1e-12)  # identical orders: rounding only
    assert rows[1]["ddd_same"] == pytest.approx(1.0, abs=1e-12)  # 4 of 4


def test_first_epoch_that_stays_in_agreement():
    rows = [{"e": e, "spearman": r} for e, r in enumerate([0.5, 0.95, 0.85, 0.92, 1.0], 1)]
    assert rel.first_epoch_reaching(rows, 0.9) == 4  # epoch 2 reached it but did not stay
    assert rel.first_epoch_reaching(rows, 0.99) == 5
    assert rel.first_epoch_reaching([{"e": 1, "spearman": float("nan")}], 0.9) is None


def _scores(ws, run="digits"):
    con = catalog.read(Workspace(ws))
    try:
        inst = con.execute(
            "SELECT * EXCLUDE (run, epochs) FROM instance_scores WHERE run = ? ORDER BY split, idx",
            [run],
        ).df()
        ep = con.execute(
            "SELECT * EXCLUDE (run) FROM epoch_metrics WHERE run = ? ORDER BY split, epoch", [run]
        ).df()
        epochs = con.execute(
            "SELECT DISTINCT epochs FROM instance_scores WHERE run = ?", [run]
        ).fetchall()
        rel_rows = con.execute(
            "SELECT count(*) FROM score_reliability WHERE run = ? AND curve = 'epochs'", [run]
        ).fetchone()[0]
    finally:
        con.close()
    return inst, ep, epochs, rel_rows


def test_prefix_scores_equal_scores_of_a_truncated_log(small_scored_ws, tmp_path, capsys):
    prefix, cut = tmp_path / "prefix", tmp_path / "cut"
    shutil.copytree(small_scored_ws, prefix)
    shutil.copytree(small_scored_ws, cut)
    assert (
        main(["score", "digits", "--tol", "1", "--epochs", "1..1", "--workspace", str(prefix)]) == 0
    )
    out = capsys.readouterr().out
    assert "accessibility is reproducible at r =" in out and "members would reach" in out
    # the same log with epoch 2 removed from disk: its shards and its progress records
    run = cut / "runs" / "digits"
    for shard in run.glob("predictions/*/*/*/epoch=2"):
        shutil.rmtree(shard)
    for prog in (run / "progress").glob("member=*.json"):
        rec = json.loads(prog.read_text())
        rec["epochs"].pop("2")
        prog.write_text(json.dumps(rec))
    assert main(["score", "digits", "--tol", "1", "--workspace", str(cut)]) == 0
    a, b = _scores(prefix), _scores(cut)
    assert a[2] == b[2] == [(1,)]  # the tables say which epochs they cover
    assert a[3] == b[3] == 2  # one epoch-curve row per split
    for x, y in ((a[0], b[0]), (a[1], b[1])):
        assert list(x.columns) == list(y.columns) and len(x) == len(y) > 0
        for col in x.columns:
            xs, ys = x[col].tolist(), y[col].tolist()
            assert str(xs) == str(ys), col


@pytest.mark.parametrize("bad", ["0", "1..9", "2..3", "many"])
def test_bad_epoch_prefix(small_scored_ws, tmp_path, capsys, bad):
    ws = tmp_path / "ws"
    shutil.copytree(small_scored_ws, ws)
    assert main(["score", "digits", "--epochs", bad, "--workspace", str(ws)]) == 2
    assert "--epochs" in capsys.readouterr().err


def test_the_summary_line_says_when_the_target_is_reached_already():
    from curate.scores.summary import reliability_line

    base = {"epochs_for_rho_09": 3, "epochs": 10}
    past = reliability_line({**base, "split_half_r": 0.996, "members_for_095": 4})
    assert "past r = 0.95 already" in past and "would reach" not in past
    short = reliability_line({**base, "split_half_r": 0.9, "members_for_095": 9})
    assert "9 members would reach r = 0.95 (predicted)" in short
    none = reliability_line({**base, "split_half_r": -0.1, "members_for_095": None})
    assert "no ensemble size reaches" in none
