"""benchmarks/bench_recipes.py's score table: validity (Spearman rho with a reference) and split-half
reliability of accessibility, confidence, aum, el2n and forgetting, from the prediction log."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest

from curate.train.predlog import shard_path, write_shard
from tests.conftest import catalog_rows

ROOT = Path(__file__).resolve().parent.parent


def _bench():
    spec = importlib.util.spec_from_file_location(
        "bench_recipes", ROOT / "benchmarks" / "bench_recipes.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


br = _bench()

# A hand-built log: 2 members, 3 epochs, 6 instances with idx 10..15, 3 classes.
IDX = np.arange(10, 16)
Y = np.array([0, 1, 2, 0, 1, 2])
# correct[m][e - 1][n], epochs 1..3 (every member is wrong everywhere at epoch 0)
CORRECT = np.array(
    [
        [[1, 0, 1, 0, 0, 1], [1, 1, 0, 0, 0, 1], [1, 1, 1, 0, 1, 0]],
        [[1, 1, 0, 0, 1, 0], [1, 0, 1, 0, 1, 1], [1, 1, 1, 1, 0, 1]],
    ],
    bool,
)
RNG = np.random.default_rng(0)
P_TRUE = RNG.uniform(0, 1, (2, 4, 6)).astype(np.float32)  # epochs 0..3
MARGIN = RNG.normal(0, 2, (2, 4, 6)).astype(np.float32)
EL2N = RNG.uniform(0, 1.4, (2, 4, 6)).astype(np.float32)


def _hand_log(run_dir: Path) -> None:
    for m in range(2):
        for e in range(4):
            ok = CORRECT[m, e - 1] if e else np.zeros(6, bool)
            pred = np.where(ok, Y, (Y + 1) % 3)
            write_shard(
                shard_path(run_dir, "eval", "train", m, e),
                IDX,
                pred,
                P_TRUE[m, e],
                MARGIN[m, e],
                el2n=EL2N[m, e],
            )


def test_split_half_by_hand(tmp_path):
    run_dir = tmp_path / "runs" / "hand"
    _hand_log(run_dir)
    order = np.array([3, 0, 5, 1, 4, 2])  # the catalog's labels, in another order than the log's
    log = br.read_log(run_dir, "train", [0, 1], 3, (IDX[order], Y[order]), el2n_epoch=2)
    assert np.array_equal(log.idx, IDX) and log.epochs == 3

    # by hand, member 0 is half a and member 1 half b
    access = {0: [1, 2 / 3, 2 / 3, 0, 1 / 3, 2 / 3], 1: [1, 2 / 3, 2 / 3, 1 / 3, 2 / 3, 2 / 3]}
    # forgetting events (1 -> 0 between epochs 1..3); member 0 never gets instance 3 right: NULL
    forget = {0: [0, 0, 1, math.nan, 0, 1], 1: [0, 1, 0, 0, 1, 0]}
    hand = {
        "accessibility": access,
        "confidence": {m: P_TRUE[m, 1:].astype(float).mean(axis=0) for m in (0, 1)},
        "aum": {m: MARGIN[m, 1:].astype(float).mean(axis=0) for m in (0, 1)},
        "el2n": {m: EL2N[m, 2].astype(float) for m in (0, 1)},
        "forgetting": forget,
    }
    ref = np.full(16, np.nan)
    ref[IDX] = (np.array(access[0]) + np.array(access[1])) / 2  # the ensemble's accessibility
    table = br.table_from_log(log, ref[IDX])
    assert table["halves"] == [[0], [1]] and table["n"] == 6 and table["el2n_epoch"] == 2
    scores = table["scores"]
    assert list(scores) == ["accessibility", "confidence", "aum", "el2n", "forgetting"]
    for name, by_member in hand.items():
        a, b = np.asarray(by_member[0], float), np.asarray(by_member[1], float)
        ok = np.isfinite(a) & np.isfinite(b)
        want = np.corrcoef(a[ok], b[ok])[0, 1]
        assert scores[name]["split_half_r"] == pytest.approx(want, abs=1e-6), name
        assert scores[name]["split_half_n"] == ok.sum()
    # the forgetting NULL: one instance never learned by half a, none by the whole ensemble
    assert scores["forgetting"]["null_halves"] == [1, 0]
    assert scores["forgetting"]["null_full"] == 0
    assert scores["forgetting"]["split_half_n"] == 5
    assert scores["accessibility"]["spearman_cscore"] == pytest.approx(1.0)
    assert scores["accessibility"]["validity"] == pytest.approx(1.0)
    assert scores["el2n"]["direction"] == "higher = harder"
    r = scores["accessibility"]["split_half_r"]
    assert scores["accessibility"]["full_ensemble_r_predicted"] == pytest.approx(2 * r / (1 + r))
    # the ceiling: validity 1 over the root of the stepped-up reliability
    ceiling = scores["accessibility"]["validity_ceiling"]
    assert ceiling == pytest.approx(1 / math.sqrt(2 * r / (1 + r)))
    # the reference is read at idx (its standard order), not at row positions
    path = tmp_path / "ref.npz"
    np.savez(path, scores=ref, labels=np.zeros(16, int))
    values, labels = br.load_reference(path, IDX)
    assert np.array_equal(values, ref[IDX]) and len(labels) == 6
    with pytest.raises(ValueError, match="indexed by idx"):
        br.load_reference(path, np.array([0, 16]))


def _digest(path: Path) -> str:
    return hashlib.blake2b(path.read_bytes()).hexdigest()


def test_score_table_on_a_scored_run(small_scored_ws, tmp_path):
    ws = small_scored_ws
    rows = catalog_rows(
        ws,
        "SELECT s.idx, s.accessibility, i.true_label FROM instance_scores s JOIN instances i "
        "ON i.dataset = s.dataset AND i.split = s.split AND i.idx = s.idx "
        "WHERE s.run = 'digits' AND s.split = 'train' ORDER BY s.idx",
    )
    idx = np.array([r[0] for r in rows])
    fake = np.full(idx.max() + 1, np.nan)  # a fake C-score: the accessibility itself, at idx
    fake[idx] = [r[1] for r in rows]
    labels = np.full(idx.max() + 1, -1)
    labels[idx] = [r[2] for r in rows]
    ref = tmp_path / "fake-cscores.npz"
    np.savez(ref, scores=fake, labels=labels)
    before = _digest(ws / "catalog.duckdb")

    t = br.score_table(ws, "digits", ref)
    assert t["members"] == [0, 1, 2, 3] and t["halves"] == [[0, 1], [2, 3]]
    assert t["epochs"] == 2 and t["n"] == len(idx)
    assert t["el2n_epoch"] == 1 and t["el2n_epoch_from"] == "instance_scores.el2n_epoch"
    assert t["reference_label_agreement"] == 1.0
    assert set(t["scores"]) == set(br.SCORES)
    keys = {"spearman_cscore", "validity", "split_half_r", "split_half_rho", "n_cscore"}
    for name, row in t["scores"].items():
        assert keys <= set(row), name
        assert -1 <= row["split_half_r"] <= 1, name
        # the log read here gives the scores `curate score` stored
        assert t["checks"][f"max_abs_diff_{name}_vs_instance_scores"] < 1e-6, name
    assert t["scores"]["accessibility"]["spearman_cscore"] == pytest.approx(1.0)
    assert t["scores"]["accessibility"]["split_half_r"] == pytest.approx(
        t["checks"]["catalog_split_half_r_accessibility"]
    )

    # --analyse-only: a row added to the results, earlier rows kept, the workspace untouched
    out = tmp_path / "recipes.json"
    out.write_text(json.dumps({"recipes": [{"recipe": "old", "cpu_minutes": 2.0}]}))
    timed = tmp_path / "time.log"
    timed.write_text(
        '\tCommand being timed: "python -m curate run x"\n'
        "\tUser time (seconds): 90.00\n\tSystem time (seconds): 30.00\n"
    )
    args = ["--analyse-only", str(ws), "digits", "--name", "digits-4x2", "--out", str(out)]
    br.main([*args, "--cscores", str(ref), "--time-log", str(timed)])
    got = json.loads(out.read_text())
    assert [r["recipe"] for r in got["recipes"]] == ["old", "digits-4x2"]
    row = got["recipes"][1]
    assert row["source"] == "analyse-only" and row["cpu_minutes"] == pytest.approx(2.0)
    assert row["members"] == 4 and row["epochs"] == 2
    assert set(row["scores"]) == set(br.SCORES)
    assert row["scores"]["accessibility"]["spearman_cscore"] == pytest.approx(1.0)
    # analysed again under the same name, without CPU figures: the earlier row's are kept
    br.main([*args, "--cscores", str(ref)])
    got = json.loads(out.read_text())
    assert [r["recipe"] for r in got["recipes"]] == ["old", "digits-4x2"]
    assert got["recipes"][1]["cpu_minutes"] == pytest.approx(2.0)
    assert _digest(ws / "catalog.duckdb") == before

    # a run whose log stops short of its epochs is refused
    ident = ws / "runs" / "digits" / "run.json"
    text = ident.read_text()
    data = json.loads(text)
    data["train"]["epochs"] = 3
    ident.write_text(json.dumps(data))
    try:
        with pytest.raises(ValueError, match="not finished"):
            br.score_table(ws, "digits", ref)
    finally:
        ident.write_text(text)


def test_grid_covers_arch_members_epochs_precision():
    from curate.config import load_recipe

    names = [n for n in br.RECIPES if n.startswith(("lenet5-", "fastconv"))]
    for arch in ("lenet5", "fastconv16", "fastconv32", "fastconv48"):
        for p in ("fp32", "bf16"):
            assert any(n.startswith(arch + "-") and n.endswith(p) for n in names)
    recipe, sets = br.RECIPES["fastconv48-16x10-bf16"]
    train = load_recipe(recipe, br.COMMON + sets).train
    assert (train.arch, train.width, train.members, train.epochs, train.precision) == (
        "fastconv",
        48,
        16,
        10,
        "bf16",
    )
    assert br.select(["fastconv32-*-bf16"]) == [
        n for n in br.RECIPES if n.startswith("fastconv32-") and n.endswith("-bf16")
    ]
