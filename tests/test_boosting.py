"""Staged learners (Hacohen §6): AdaBoost's prediction log equals scikit-learn's staged_predict
on the same bootstrap sample, and a boosted run is scored like any other."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
from sklearn.ensemble import AdaBoostClassifier
from sklearn.linear_model import RidgeClassifier

from curate import catalog
from curate.cli import main
from curate.config import load_recipe
from curate.train.learners.boosting import bootstrap_weights
from curate.train.predlog import shard_path
from curate.train.seeds import member_seeds
from curate.workspace import Workspace


def test_bootstrap_weights_by_hand():
    w = bootstrap_weights(5, 3)
    draws = np.random.default_rng(3).integers(0, 5, 5)
    assert w.sum() == 5 and w.tolist() == np.bincount(draws, minlength=5).tolist()


@pytest.fixture(scope="module")
def boosted(tmp_path_factory):
    ws = tmp_path_factory.mktemp("boost")
    sets = ["--set", "train.members=3", "--set", "train.epochs=4", "--set", "score.stats=false"]
    sets += ["--set", "train.strategy=adaboost"]
    assert main(["run", "digits", "--run-name", "ada", "--workspace", str(ws), *sets]) == 0
    return ws


def test_adaboost_log_equals_staged_predict(boosted):
    ws = boosted
    con = catalog.read(Workspace(ws))
    try:
        cat = con.execute(
            "SELECT split, idx, label FROM instances WHERE dataset = 'digits' ORDER BY split, idx"
        ).df()
        strategy = con.execute("SELECT strategy FROM runs WHERE run = 'ada'").fetchone()[0]
    finally:
        con.close()
    assert strategy == "adaboost"
    # the features curate fits on: normalised pixels, as the train split's feed holds them
    import torch

    from curate.data.loader import dataset_info
    from curate.train.feed import InMemoryFeed
    from curate.train.learners.boosting import split_features

    recipe = load_recipe("digits", ["train.members=3", "train.epochs=4"])
    feed = InMemoryFeed(dataset_info("digits", Workspace(ws)), recipe, torch.device("cpu"), {})
    x, y, idx = split_features(feed, "train")
    xt, _, idx_t = split_features(feed, "test")
    for m in range(3):
        s = member_seeds(0, m)
        ref = AdaBoostClassifier(
            RidgeClassifier(alpha=1.0), n_estimators=4, random_state=s["init"] % 2**31
        )
        w = bootstrap_weights(len(y), s["order"])
        ref.fit(x[w > 0], y[w > 0], sample_weight=w[w > 0])
        for split, xs, ids in (("train", x, idx), ("test", xt, idx_t)):
            staged = list(ref.staged_predict(xs))
            for e in range(1, 5):
                t = pq.read_table(shard_path(ws / "runs" / "ada", "eval", split, m, e)).to_pandas()
                assert np.array_equal(t["idx"], ids)
                want = staged[min(e, len(staged)) - 1]
                assert np.array_equal(t["pred"], want), (m, split, e)
                # p_true is the softmax of the staged decision function at the given label
                lab = cat[cat.split == split].set_index("idx").loc[ids, "label"].to_numpy()
                assert ((t["margin"] > 0) == (t["pred"] == lab)).mean() > 0.99


def test_boosted_run_is_scored(boosted):
    con = catalog.read(Workspace(boosted))
    try:
        n = con.execute("SELECT count(*) FROM instance_scores WHERE run = 'ada'").fetchone()[0]
        acc = con.execute(
            "SELECT acc_mean FROM epoch_metrics WHERE run = 'ada' AND split = 'test' ORDER BY epoch"
        ).fetchnumpy()["acc_mean"]
    finally:
        con.close()
    assert n == 1797
    assert acc[-1] > 0.8 and acc[0] < 0.2  # linear AdaBoost learns digits; epoch 0 is untrained


def test_jpeg_dataset_is_refused_for_boosting(tmp_path, capsys):
    from PIL import Image

    root = tmp_path / "imgs"
    for split in ("train", "test"):
        for c in ("a", "b"):
            (root / split / c).mkdir(parents=True)
            for i in range(3):
                Image.new("RGB", (80, 70), (i * 40, 0, 0)).save(root / split / c / f"{i}.png")
    args = [
        "run",
        "imagefolder",
        "--set",
        f"dataset.source={root}",
        "--set",
        "train.strategy=adaboost",
    ]
    args += ["--set", "train.members=2", "--set", "train.epochs=1", "--set", "score.stats=false"]
    assert main([*args, "--workspace", str(tmp_path / "ws")]) == 2
    assert "stored as JPEG" in capsys.readouterr().err


def test_binned_comparison_by_hand():
    from curate.scores.comparison import binned

    a = np.array([0.0, 0.05, 0.5, 0.55, 1.0])
    b = np.array([0.2, 0.4, 0.6, 0.6, 1.0])
    rows = binned(a, b, bins=2)  # bins [0, .5) and [.5, 1]
    assert [r["n"] for r in rows] == [2, 3]
    assert rows[0]["mean_b"] == pytest.approx(0.3)
    assert rows[0]["se_b"] == pytest.approx(np.std([0.2, 0.4], ddof=1) / np.sqrt(2))
    assert rows[1]["mean_b"] == pytest.approx(2.2 / 3) and rows[1]["bin_hi"] == pytest.approx(
        1.0, abs=1e-12
    )  # top edge


def test_adaboost_against_a_network_fig11(boosted):
    ws = str(boosted)
    sets = ["--set", "train.members=2", "--set", "train.epochs=2", "--set", "score.stats=false"]
    sets += ["--set", "train.precision=fp32"]  # r > 0.3 tested: the same network on any CPU
    assert main(["run", "digits", "--run-name", "net", "--workspace", ws, *sets]) == 0
    assert main(["score", "ada", "--compare", "net", "--workspace", ws]) == 0
    con = catalog.read(Workspace(boosted))
    try:
        rows = con.execute(
            "SELECT split, n, bin_lo, mean_b, se_b FROM ensemble_comparison WHERE run_a = 'ada' "
            "AND run_b = 'net' AND kind = 'binned' ORDER BY split, bin_lo"
        ).df()
        r = con.execute(
            "SELECT pearson_r FROM ensemble_comparison WHERE run_a = 'ada' AND run_b = 'net' "
            "AND kind = 'accessibility' AND split = 'test'"
        ).fetchone()[0]
    finally:
        con.close()
    assert set(rows.split) == {"train", "test"}
    assert rows[rows.split == "test"].n.sum() == 359  # every test image in one bin
    assert r > 0.3  # the two learners find the same images easy (Hacohen Fig. 11)


@pytest.mark.parametrize("strategy", ["adaboost", "gboost"])
def test_a_bootstrap_sample_of_one_class(tmp_path, strategy):
    """dataset.max_per_split=1: one training image, so every bootstrap sample holds one class
    (as a small split can by chance). The member predicts that class at every stage, margin
    above 0 on it; it used to stop with scikit-learn's ZeroDivisionError or a shape mismatch."""
    ws = str(tmp_path / "ws")
    sets = ["--set", "dataset.max_per_split=1", "--set", "loader.batch_size=1"]
    sets += ["--set", f"train.strategy={strategy}", "--set", "train.members=2"]
    sets += ["--set", "train.epochs=2", "--run-name", "one"]
    assert main(["ingest", "digits", *sets[:2], "--workspace", ws]) == 0  # ingest reads [dataset]
    assert main(["train", "digits", *sets, "--workspace", ws]) == 0
    con = catalog.read(Workspace(ws))
    try:
        ((label,),) = con.execute("SELECT label FROM instances WHERE split = 'train'").fetchall()
    finally:
        con.close()
    for epoch in (1, 2):
        shard = shard_path(tmp_path / "ws" / "runs" / "one", "eval", "train", 1, epoch)
        t = pq.read_table(shard).to_pandas()
        assert t["pred"].tolist() == [label] and (t["margin"] > 0).all()
