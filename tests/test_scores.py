"""Scoring a prediction log: the streaming engine against the pure definitions, the CLI, the tables
and views, `curate query`, and the science that must come out of small CPU runs."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest

from curate import catalog
from curate.cli import main
from curate.scores import definitions as d
from curate.scores.engine import score_split
from curate.train import predlog
from curate.workspace import Workspace


def fake_log(run_dir, m=5, t=7, n=300, k=4, seed=0):
    """A log with shared difficulty: instance n is learned by member m at a time that depends on n."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    hardness = rng.random(n)
    pred = np.empty((m, t, n), np.int64)
    p_true = rng.random((m, t, n)).astype(np.float32)
    for mm in range(m):
        for e in range(t):
            right = rng.random(n) < (e / (t - 1)) * (1 - hardness) + 0.1
            pred[mm, e] = np.where(right, y, (y + rng.integers(1, k, n)) % k)
    idx = np.sort(rng.choice(n * 2, n, replace=False))  # ids with gaps, as after --skip-corrupt
    for mm in range(m):
        for e in range(t):
            predlog.write_shard(
                predlog.shard_path(run_dir, "eval", "train", mm, e),
                idx,
                pred[mm, e],
                p_true[mm, e],
                np.zeros(n),
            )
            predlog.mark_epoch_done(run_dir, mm, e, {"acc": {}, "seconds": 0})
    return idx, y, pred, p_true


def test_engine_matches_the_pure_definitions(tmp_path):
    idx, y, pred, p_true = fake_log(tmp_path)
    c = pred == y
    shuffled = np.random.default_rng(1).permutation(
        len(idx)
    )  # the catalog's row order does not matter
    sc = score_split(
        tmp_path,
        "train",
        (idx[shuffled], y[shuffled]),
        tol=1,
        groups={"a": [0, 1], "b": [2, 3, 4]},
    )
    assert np.array_equal(sc.idx, idx) and np.array_equal(sc.labels, y)
    inst = sc.instance
    for name, fn in (
        ("accessibility", d.accessibility),
        ("learned_epoch", d.learned_epoch),
        ("first_learned", d.first_learned),
        ("forgetting_events", d.forgetting_events),
    ):
        np.testing.assert_allclose(inst[name], fn(c), err_msg=name)
    np.testing.assert_allclose(
        inst["confidence"], d.confidence(p_true.astype(np.float64)), rtol=1e-12
    )
    np.testing.assert_allclose(
        inst["variability"], d.variability(p_true.astype(np.float64)), atol=1e-9
    )
    assert np.array_equal(inst["ddd"], d.ddd(d.final_correct(c), 5, tol=1))
    assert np.array_equal(sc.correct_by_epoch, d.correct_counts(c))
    assert np.array_equal(sc.agree_by_epoch, d.agreement_counts(pred))
    ref = d.epoch_metrics(c, pred, tol=1)
    for name, value in ref.items():
        np.testing.assert_allclose(sc.epoch[name], value, err_msg=name)
    kappa = {(e, s, i, j): k for e, s, i, j, _, _, _, k in sc.kappa_rows}
    for e in (0, 3, 6):
        assert kappa[(e, "all", 1, 3)] == pytest.approx(d.error_consistency(c[1, e], c[3, e]))
        mid = sc.instance["ddd"] == "in-between"
        assert kappa[(e, "in-between", 0, 4)] == pytest.approx(
            d.error_consistency(c[0, e, mid], c[4, e, mid])
        )
    assert np.array_equal(sc.groups_correct["b"], d.majority_vote(pred[2:]) == y)
    np.testing.assert_allclose(sc.groups_accessibility["a"], d.accessibility(c[:2]))


def test_incomplete_log_is_refused(tmp_path):
    fake_log(tmp_path)
    predlog.shard_path(tmp_path, "eval", "train", 2, 4).unlink()
    from curate.errors import CurateError

    with pytest.raises(CurateError, match="member 2"):
        score_split(tmp_path, "train", (np.arange(10), np.zeros(10, int)))


@pytest.fixture(scope="module")
def scored_ws(tmp_path_factory):
    """`curate run digits` end to end: what `make scores` does, in a fresh workspace."""
    ws = tmp_path_factory.mktemp("scored")
    # fp32 pinned: the science checks below test accuracy levels, and `auto` picks bf16 on a CPU with
    # AVX512-BF16 or AMX
    assert main(["run", "digits", "--workspace", str(ws), "--set", "train.precision=fp32"]) == 0
    return ws


def q(ws, sql):
    con = catalog.read(Workspace(ws))
    try:
        return con.execute(sql).df()
    finally:
        con.close()


@pytest.mark.slow
def test_pipeline_tables_and_views(scored_ws):
    ws = scored_ws
    n = q(ws, "SELECT count(*) n FROM instances WHERE dataset = 'digits'")["n"][0]
    assert q(ws, "SELECT count(*) n FROM instance_scores WHERE run = 'digits'")["n"][0] == n
    assert q(ws, "SELECT count(*) n FROM difficulty WHERE run = 'digits'")["n"][0] == n
    parts = sum(
        q(ws, f"SELECT count(*) n FROM {v} WHERE run = 'digits'")["n"][0]
        for v in ("trivial", "in_between", "impossible")
    )
    assert parts == n
    em = q(ws, "SELECT * FROM epoch_metrics WHERE run = 'digits' AND split = 'test' ORDER BY epoch")
    assert list(em["epoch"]) == list(range(13))
    last = q(
        ws,
        "SELECT frac_trivial, frac_in_between, frac_impossible FROM epoch_metrics "
        "WHERE run = 'digits' AND split = 'test' AND epoch = 12",
    )
    by_view = q(
        ws,
        "SELECT ddd, count(*) / sum(count(*)) OVER () f FROM difficulty WHERE run = 'digits' "
        "AND split = 'test' GROUP BY ddd",
    ).set_index("ddd")["f"]
    assert by_view.get("trivial", 0) == pytest.approx(last["frac_trivial"][0])
    pairs = q(
        ws,
        "SELECT count(*) n FROM error_consistency WHERE run = 'digits' AND subset = 'all' AND epoch = 3 "
        "AND split = 'train'",
    )["n"][0]
    assert pairs == 8 * 7 // 2
    comp = q(
        ws, "SELECT * FROM ensemble_comparison WHERE run_a = 'digits' AND kind = 'accessibility'"
    )
    assert (
        len(comp) == 2 and (comp["pearson_r"] > 0.5).all()
    )  # two disjoint halves order the data alike
    # the correct_by_epoch lists are the tpa per epoch
    row = q(
        ws,
        "SELECT correct_by_epoch, accessibility, members FROM instance_scores WHERE run = 'digits' LIMIT 1",
    )
    lst = np.array(row["correct_by_epoch"][0])
    assert row["accessibility"][0] == pytest.approx(lst[1:].mean() / row["members"][0])
    assert (
        q(
            ws,
            "SELECT count(*) n FROM predictions WHERE run = 'digits' AND epoch = 0 AND member = 0",
        )["n"][0]
        == n
    )


@pytest.mark.slow
def test_tolerance_one_moves_instances_out_of_in_between(scored_ws):
    assert main(["score", "digits", "--tol", "1", "--workspace", str(scored_ws)]) == 0
    t1 = q(
        scored_ws,
        "SELECT frac_in_between FROM epoch_metrics WHERE run='digits' AND split='train' AND epoch=12",
    )
    assert main(["score", "digits", "--workspace", str(scored_ws)]) == 0
    t0 = q(
        scored_ws,
        "SELECT frac_in_between FROM epoch_metrics WHERE run='digits' AND split='train' AND epoch=12",
    )
    assert t1["frac_in_between"][0] < t0["frac_in_between"][0]


@pytest.mark.slow
def test_science_digits_agreement_beyond_chance(scored_ws):
    """Pliushch/Hacohen on the default dataset: over the learning phase, strict agreement exceeds what
    independent members would give, which exceeds the lower bound; TP-agreement is more bimodal than
    its null."""
    for split in ("train", "test"):
        em = q(
            scored_ws,
            f"SELECT * FROM epoch_metrics WHERE run='digits' AND split='{split}' ORDER BY epoch",
        )
        middle = em[(em["epoch"] >= 1) & (em["acc_mean"] < 0.9)]
        assert len(middle) >= 2
        assert (middle["strict_agreement"] > middle["random_agreement_normalized"] + 0.05).all()
        assert (middle["random_agreement"] >= middle["lower_bound"]).all()
        assert (middle["strict_agreement"] > middle["lower_bound"]).all()
        # bimodality: while members are still learning (mean accuracy up to 0.85). Near the ceiling the
        # statistic is dominated by the skew of a distribution piled at 1 and exceeds the null's 2 - 2/M.
        learning = em[(em["epoch"] >= 1) & (em["acc_mean"] <= 0.85)]
        assert len(learning) >= 1
        assert (learning["bimodality"] < learning["bimodality_null"] - 0.3).all()


def _run_control(ws, recipe, *over):
    over = (
        *over,
        "train.precision=fp32",
    )  # accuracy levels compared: the same precision on any CPU
    assert (
        main(["run", recipe, "--workspace", str(ws), *[x for o in over for x in ("--set", o)]]) == 0
    )
    return q(
        ws, f"SELECT * FROM epoch_metrics WHERE run='{recipe}' AND split='train' ORDER BY epoch"
    )


@pytest.mark.slow
def test_science_gaussian_control_looks_like_the_null(tmp_path):
    """Hacohen §5: on gaussian-2class, while the members learn, TP-agreement is distributed close to the
    independent null, unlike natural data. (Random labels on digits do not show this: see the README.)"""
    em = _run_control(
        tmp_path,
        "gaussian-2class",
        "train.members=6",
        "train.epochs=3",
        "train.lr=0.002",
        "dataset.train_per_class=1500",
        "dataset.test_per_class=100",
    )
    learning = em[(em["epoch"] >= 1) & (em["acc_mean"].between(0.55, 0.85))]
    assert len(learning) >= 1
    assert (abs(learning["bimodality"] - learning["bimodality_null"]) < 0.15).all()
    assert (learning["strict_agreement"] < learning["random_agreement_normalized"] + 0.1).all()


# ----------------------------------------------------------------------------- curate query


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_query_formats_and_refusals(digits_ws, tmp_path, capsys):
    ws = str(digits_ws)
    assert (
        main(
            [
                "query",
                "SELECT idx, label FROM instances WHERE split='test' ORDER BY idx LIMIT 3",
                "--format",
                "csv",
                "--workspace",
                ws,
            ]
        )
        == 0
    )
    assert capsys.readouterr().out.splitlines()[0] == "idx,label"
    assert (
        main(
            [
                "query",
                "SELECT count(*) AS n FROM instances WHERE dataset = 'digits'",  # shared workspace
                "--format",
                "json",
                "--workspace",
                ws,
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out) == [{"n": 1797}]
    out = tmp_path / "x.parquet"
    assert (
        main(
            [
                "query",
                "SELECT * FROM instances WHERE dataset = 'digits'",
                "--format",
                "parquet",
                "--out",
                str(out),
                "--workspace",
                ws,
            ]
        )
        == 0
    )
    assert len(pd.read_parquet(out)) == 1797
    assert main(["query", "--tables", "--workspace", ws]) == 0
    listing = capsys.readouterr().out
    assert (
        "instance_scores (table)" in listing
        and "difficulty (view)" in listing
        and "higher = easier" in listing
    )
    before = _digest(digits_ws / "catalog.duckdb")
    for sql, needle in (
        ("DELETE FROM instances", "read-only"),
        ("DROP TABLE datasets", "read-only"),
        ("SELEC * FROM instances", "SQL error"),
        ("SELECT nope FROM instances", "SQL error"),
    ):
        assert main(["query", sql, "--workspace", ws]) == 2
        assert needle in capsys.readouterr().err
    assert _digest(digits_ws / "catalog.duckdb") == before


def test_query_without_catalog(tmp_path, capsys):
    assert main(["query", "SELECT 1", "--workspace", str(tmp_path)]) == 2
    assert "no catalog" in capsys.readouterr().err


def test_score_unknown_run(digits_ws, capsys):
    assert main(["score", "nope", "--workspace", str(digits_ws)]) == 2
    assert "no run 'nope'" in capsys.readouterr().err


def test_summary_query_hint_survives_quotes_in_names(tmp_path, capsys):
    """The printed `curate query` line is a command that runs as printed, whatever the run's name
    (quotes, semicolons) or the workspace's path (spaces)."""
    import shlex

    from curate.scores.summary import print_summary
    from curate.workspace import Workspace

    ws = Workspace(tmp_path / "my ws")
    run = """o'brien "x"; --"""
    print_summary(ws, run, {})
    line = capsys.readouterr().out.strip().splitlines()[-1]
    argv = shlex.split(line.split("try: ", 1)[1])
    assert argv[:2] == ["curate", "query"] and argv[3:] == ["--workspace", str(ws.root)]
    assert (
        argv[2]
        == """SELECT ddd, count(*) FROM difficulty WHERE run = 'o''brien "x"; --' GROUP BY ddd"""
    )
    print_summary(ws, "digits", {})  # the usual case reads as before
    assert (
        "\"SELECT ddd, count(*) FROM difficulty WHERE run = 'digits' GROUP BY ddd\""
        in capsys.readouterr().out
    )
