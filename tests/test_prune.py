"""Pruning: the strategies against hand-made scores, `curate prune` files, training on a subset
(only its instances are drawn, the run records its checksum), EL2N, and every refusal."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import catalog_rows

from curate import prune as pr
from curate.cli import main
from curate.errors import CurateError

# ----------------------------------------------------------------------------- selection by hand


def _toy(n_per_class: int = 10, classes: int = 2):
    """Scores 0..n-1 in every class (higher = easier), labels in blocks."""
    score = np.tile(np.arange(n_per_class, dtype=float), classes)
    labels = np.repeat(np.arange(classes), n_per_class)
    return score, labels


def test_hard_and_easy_keep_the_two_ends_of_every_class():
    score, labels = _toy()
    hard = pr.select(score, labels, 0.3, "hard")
    easy = pr.select(score, labels, 0.3, "easy")
    # class 0 at positions 0..9 (score = position), class 1 at 10..19
    assert hard.tolist() == [0, 1, 2, 10, 11, 12]
    assert easy.tolist() == [7, 8, 9, 17, 18, 19]
    # lower-is-easier scores flip the ends
    assert pr.select(score, labels, 0.3, "hard", higher_is_easier=False).tolist() == easy.tolist()


def test_class_balance_and_no_balance():
    score = np.arange(20, dtype=float)  # class 1 (positions 10..19) is the easier class
    labels = np.repeat([0, 1], 10)
    balanced = pr.select(score, labels, 0.5, "easy")
    assert np.bincount(labels[balanced]).tolist() == [5, 5]
    whole = pr.select(score, labels, 0.6, "easy", balanced=False)
    assert np.bincount(labels[whole], minlength=2).tolist() == [2, 10]
    with pytest.raises(CurateError, match="keeps no instance of class 0"):
        pr.select(score, labels, 0.5, "easy", balanced=False)


def test_quotas_sum_to_the_rounded_total():
    labels = np.repeat([0, 1, 2], [7, 7, 6])
    q = pr.class_quotas(labels, 0.5)
    assert sum(q.values()) == 10 and sorted(q.values()) == [3, 3, 4]


def test_in_between_drops_trivial_and_impossible_first():
    n = 20
    score = np.arange(n, dtype=float)  # higher = easier
    ddd = np.array(["impossible"] * 4 + ["in-between"] * 8 + ["trivial"] * 8)
    labels = np.zeros(n, int)
    keep = pr.select(score, labels, 0.4, "in-between", ddd=ddd)  # 8 = exactly the in-between
    assert (ddd[keep] == "in-between").all() and len(keep) == 8
    keep = pr.select(score, labels, 0.7, "in-between", ddd=ddd)  # 14: drop 6 of 12 ends
    # trivial shrink 8 -> 4 and impossible 4 -> 2, at the same rate, from their outer ends
    assert sorted(keep[ddd[keep] == "trivial"].tolist()) == [12, 13, 14, 15]
    assert sorted(keep[ddd[keep] == "impossible"].tolist()) == [2, 3]
    keep = pr.select(score, labels, 0.2, "in-between", ddd=ddd)  # 4 of the 8: the middle ones
    assert sorted(keep.tolist()) == [6, 7, 8, 9]


def test_ccs_drops_the_hardest_then_covers_the_strata():
    rng = np.random.default_rng(0)
    # hardness: 900 instances bunched at easy scores, 100 spread; higher = easier
    score = np.concatenate([rng.uniform(0.9, 1.0, 900), np.linspace(0, 0.9, 100)])
    labels = np.zeros(len(score), int)
    keep = pr.select(score, labels, 0.2, "ccs", beta=0.05, strata=10, seed=1)
    assert len(keep) == 200
    hardest = np.argsort(score)[:50]  # beta = 5 % of 1,000
    assert not set(hardest) & set(keep.tolist())
    # coverage: far more of the sparse hard range kept than a random 20 % would (~20 of 100)
    assert (keep >= 900).sum() > 35
    assert pr.ccs_beta(0.9) == 0 and pr.ccs_beta(0.3) == 0.1 and pr.ccs_beta(0.1) == 0.3


def test_random_is_seeded_and_nan_counts_as_hardest():
    score, labels = _toy()
    a = pr.select(score, labels, 0.5, "random", seed=3)
    assert a.tolist() == pr.select(score, labels, 0.5, "random", seed=3).tolist()
    assert a.tolist() != pr.select(score, labels, 0.5, "random", seed=4).tolist()
    score[[9, 19]] = np.nan  # the easiest become NULL: now the hardest
    assert 9 not in pr.select(score, labels, 0.1, "easy").tolist()
    assert pr.select(score, labels, 0.1, "hard").tolist() == [9, 19]


def test_drawn_among_ties_by_hand():
    # one class; hard keeps the highest. Values 3 (x1), 2 (x2), 1 (x3)
    score = np.array([1.0, 1, 1, 2, 2, 3])
    labels = np.zeros(6, int)
    count = pr.drawn_among_ties
    assert count(score, labels, np.array([3, 4, 5])) == 0  # the cut falls between 2 and 1
    assert count(score, labels, np.array([0, 3, 4, 5])) == 1  # one of the three 1s, by the seed
    assert count(score, labels, np.array([4, 5])) == 1  # one of the two 2s
    assert count(score, labels, np.array([0, 1, 3, 4, 5])) == 2
    # two classes: a value is a tie only within its class. Class 0 keeps its 5; class 1 keeps one
    # of its two 5s
    score, labels = np.array([5.0, 1, 5, 5]), np.array([0, 0, 1, 1])
    assert count(score, labels, np.array([0, 2])) == 1
    assert count(score, labels, np.array([0, 2]), balanced=False) == 2  # one pool: 5 kept, 5 not
    # NaN is one value: two NaN, one kept
    assert count(np.array([np.nan, np.nan, 0.0]), np.zeros(3, int), np.array([0])) == 1
    # select's hard on all-tied scores: every kept instance came from the seed
    pos = pr.select(np.ones(10), np.zeros(10, int), 0.4, "hard")
    assert count(np.ones(10), np.zeros(10, int), pos) == 4


@pytest.mark.parametrize("keep", [0, -0.1, 1.01, float("nan")])
def test_keep_outside_the_unit_interval(keep):
    score, labels = _toy()
    with pytest.raises(CurateError, match=r"in \(0, 1\]"):
        pr.select(score, labels, keep, "easy")


def test_error_norm_by_hand():
    from curate.train.logits import error_norm

    z = torch.tensor([[[0.0, 0.0]], [[np.log(3.0), 0.0]]])  # (B=2, M=1, K=2)
    y = torch.tensor([0, 1])
    # softmax (0.5, 0.5) vs (1, 0): sqrt(0.25 + 0.25); (0.75, 0.25) vs (0, 1): sqrt(2) 0.75
    got = error_norm(z, y)[0].numpy()
    assert np.allclose(got, [np.sqrt(0.5), np.sqrt(2) * 0.75], atol=1e-6)
    ml = error_norm(torch.zeros(1, 1, 3), torch.tensor([0b101]), multilabel=True)
    assert abs(float(ml) - np.sqrt(3 * 0.25)) < 1e-6  # sigmoids 0.5 against 1, 0, 1


# ----------------------------------------------------------------------------- with a scored run


def _prune(ws, *args: str) -> int:
    return main(["prune", "digits", *args, "--workspace", str(ws)])


def test_prune_writes_a_subset_and_its_sidecar(small_scored_ws, tmp_path, capsys):
    out = tmp_path / "half.csv"
    assert _prune(small_scored_ws, "--keep", "0.5", "--strategy", "easy", "--out", str(out)) == 0
    import pandas as pd

    df = pd.read_csv(out)
    side = json.loads(pr.sidecar_path(out).read_text())
    (n_train,) = catalog_rows(
        small_scored_ws,
        "SELECT count(*) FROM instance_scores WHERE run = 'digits' AND split = 'train'",
    )[0]
    assert side["n"] == len(df) == round(0.5 * n_train) and side["dataset"] == "digits"
    assert side["checksum"] == pr.checksum(df["idx"].to_numpy())
    assert side["score_epoch"] == 2  # accessibility of epochs 1..2
    el2n = tmp_path / "el2n.npy"
    assert (
        _prune(
            small_scored_ws,
            "--keep",
            "0.5",
            "--strategy",
            "hard",
            "--score",
            "el2n",
            "--out",
            str(el2n),
        )
        == 0
    )
    assert json.loads(pr.sidecar_path(el2n).read_text())["score_epoch"] == 1  # --el2n-epoch 1
    # easy by accessibility: the kept ones are at least as accessible as the dropped, per class
    rows = catalog_rows(
        small_scored_ws,
        "SELECT idx, label, accessibility FROM instance_scores WHERE run = 'digits' "
        "AND split = 'train'",
    )
    kept = set(df["idx"])
    for k in range(10):
        acc_in = [a for i, lab, a in rows if lab == k and i in kept]
        acc_out = [a for i, lab, a in rows if lab == k and i not in kept]
        assert min(acc_in) >= max(acc_out) - 1e-12  # ties broken at random, so >=
    printed = capsys.readouterr().out
    assert "kept" in printed
    # accessibility of 2 epochs of a few members takes few values: most of a half is tie-drawn
    n_ties = side["drawn_among_ties"]
    assert ("drawn at random (--seed 0)" in printed) == (n_ties >= 0.1 * side["n"])
    assert 0 < n_ties <= side["n"] and side["score_values"] >= 2
    assert n_ties == pr.drawn_among_ties(
        np.array([a for _, _, a in rows], float),
        np.array([lab for _, lab, _ in rows]),
        np.flatnonzero(np.isin([i for i, _, _ in rows], df["idx"])),
    )
    assert json.loads(pr.sidecar_path(el2n).read_text())["drawn_among_ties"] == 0  # continuous


@pytest.mark.parametrize(
    ("strategy", "acc", "warned"),
    [
        ("hard", 0.55, True),  # under HELD_OUT_LOW: hard lost to random in every such benchmark
        ("hard", 0.80, False),  # HELD_OUT_LOW itself is not under it
        ("hard", 0.99, False),
        ("easy", 0.90, True),  # HELD_OUT_HIGH itself counts
        ("easy", 0.899, False),
        ("easy", 0.30, False),
        ("random", 0.99, False),
        ("ccs", 0.10, False),
        ("hard", None, False),  # no held-out split logged: nothing to say
        ("hard", float("nan"), False),
    ],
)
def test_regime_note_by_hand(strategy, acc, warned):
    assert pr.regime_note("hard", 0.55, keep=0.9) is None  # mild pruning went both ways
    assert pr.regime_note("hard", 0.55, keep=0.7) is not None
    note = pr.regime_note(strategy, acc)
    assert (note is not None) == warned
    if warned:
        assert f"made {strategy} lose to random" in note


def test_held_out_prefers_test_then_val():
    assert pr.held_out({"train": 0.9, "test": 0.7, "val": 0.8}) == ("test", 0.7)
    assert pr.held_out({"train": 0.9, "val": 0.8}) == ("val", 0.8)
    assert pr.held_out({"train": 0.9, "holdout": 0.6}) == ("holdout", 0.6)
    assert pr.held_out({"train": 0.9}) is None and pr.held_out({}) is None


def test_prune_records_the_runs_accuracy_and_says_when_it_goes_against_it(
    small_scored_ws, tmp_path, capsys
):
    rows = catalog_rows(
        small_scored_ws,
        "SELECT split, acc_mean, epoch FROM epoch_metrics WHERE run = 'digits' "
        "AND epoch = (SELECT max(epoch) FROM epoch_metrics WHERE run = 'digits') ORDER BY split",
    )
    assert {r[0] for r in rows} == {"train", "test"}
    test_acc, epoch = next((a, e) for s, a, e in rows if s == "test")
    for strategy in ("easy", "hard"):
        out = tmp_path / f"{strategy}.npy"
        capsys.readouterr()
        assert (
            _prune(small_scored_ws, "--keep", "0.5", "--strategy", strategy, "--out", str(out)) == 0
        )
        side = json.loads(pr.sidecar_path(out).read_text())
        assert side["run_acc_epoch"] == epoch
        assert all(abs(side["run_acc"][s] - a) < 1e-12 for s, a, _ in rows)
        printed = capsys.readouterr().out
        expected = pr.regime_note(strategy, test_acc, 0.5)
        assert ("which strategy for which regime" in printed) == (expected is not None)
        if expected:
            assert expected in printed and f"score {test_acc:.3f} on test" in printed


def test_el2n_is_the_members_mean_at_the_chosen_epoch(small_scored_ws):
    import pyarrow.parquet as pq

    from curate.train import predlog

    run_dir = small_scored_ws / "runs" / "digits"
    idx = pq.read_table(predlog.shard_path(run_dir, "eval", "train", 0, 1))["idx"].to_numpy()
    per_member = [
        pq.read_table(predlog.shard_path(run_dir, "eval", "train", m, 1))["el2n"].to_numpy()
        for m in range(4)
    ]
    expect = dict(zip(idx.tolist(), np.mean(per_member, axis=0), strict=True))
    rows = catalog_rows(
        small_scored_ws,
        "SELECT idx, el2n, el2n_epoch FROM instance_scores WHERE run = 'digits' "
        "AND split = 'train'",
    )
    assert {e for _, _, e in rows} == {1}
    assert max(abs(v - expect[i]) for i, v, _ in rows) < 1e-6  # float32 shards
    assert 0 <= min(v for _, v, _ in rows) and max(v for _, v, _ in rows) <= np.sqrt(2) + 1e-6


def test_training_on_a_subset_draws_only_from_it(small_scored_ws, tmp_path):
    ws = str(small_scored_ws)
    out = tmp_path / "hard.npy"
    assert _prune(small_scored_ws, "--keep", "0.3", "--strategy", "hard", "--out", str(out)) == 0
    args = ["--workspace", ws, "--set", "train.members=2", "--set", "train.epochs=1"]
    args += ["--set", "train.log_train_pass=true", "--set", "train.precision=fp32"]
    assert main(["train", "digits", "--run", "sub", "--subset", str(out), *args]) == 0
    import pyarrow.parquet as pq

    run_dir = small_scored_ws / "runs" / "sub"
    fwd = list((run_dir / "predictions" / "pass=train-forward").rglob("*.parquet"))
    seen = set(np.concatenate([pq.read_table(p)["idx"].to_numpy() for p in fwd]).tolist())
    subset = set(np.load(out).tolist())
    assert len(fwd) == 2 and seen <= subset and len(seen) > 0.8 * len(subset)
    # every split is still evaluated, on all its instances
    ev = pq.read_table(
        next((run_dir / "predictions" / "pass=eval" / "split=train").rglob("*.parquet"))
    )
    assert len(ev) > len(subset)
    ((recorded,),) = catalog_rows(small_scored_ws, "SELECT subset FROM runs WHERE run = 'sub'")
    assert recorded == pr.checksum(np.load(out))
    ident = json.loads((run_dir / "run.json").read_text())
    assert ident["train"]["subset"] == recorded
    # another subset under the same run name is another recipe: refused, nothing written
    other = tmp_path / "easy.npy"
    assert _prune(small_scored_ws, "--keep", "0.3", "--strategy", "easy", "--out", str(other)) == 0
    assert main(["train", "digits", "--run", "sub", "--subset", str(other), *args]) == 2
    assert json.loads((run_dir / "run.json").read_text()) == ident


def test_equal_steps_epochs_by_hand():
    from curate.train.run import equal_steps_epochs

    # round(E / F), halves up: 3 / 0.5 = 6, 3 / 0.3 = 10, 3 / 0.7 = 4.29, 3 / 0.9 = 3.33,
    # 1 / 0.4 = 2.5 (up to 3), 2 / 0.8 = 2.5 (3), and never below one epoch
    cases = [(3, 0.5, 6), (3, 0.3, 10), (3, 0.7, 4), (3, 0.9, 3), (1, 0.4, 3), (2, 0.8, 3)]
    for epochs, keep, want in cases:
        assert equal_steps_epochs(epochs, keep) == want, (epochs, keep)
    assert equal_steps_epochs(1, 1.0) == 1


def test_equal_steps_trains_the_subset_for_as_many_steps(small_scored_ws, tmp_path):
    """Half of the train split at E = 1 trains 2 epochs; the run records them; without a subset the
    key changes nothing."""
    import pyarrow.parquet as pq

    ws = str(small_scored_ws)
    out = tmp_path / "half.npy"
    assert _prune(small_scored_ws, "--keep", "0.5", "--strategy", "random", "--out", str(out)) == 0
    ((n_train,),) = catalog_rows(
        small_scored_ws,
        "SELECT count(*) FROM instances WHERE dataset = 'digits' AND split = 'train'",
    )
    assert abs(len(np.load(out)) / n_train - 0.5) < 1 / n_train  # 1 / F within 2 +- 0.01: 2 epochs
    args = ["--workspace", ws, "--set", "train.members=2", "--set", "train.epochs=1"]
    args += ["--set", "train.log_train_pass=true", "--set", "train.precision=fp32"]
    assert (
        main(["train", "digits", "--run", "eq", "--subset", str(out), "--equal-steps", *args]) == 0
    )
    run_dir = small_scored_ws / "runs" / "eq"
    ident = json.loads((run_dir / "run.json").read_text())
    assert ident["train"]["epochs"] == 2 and ident["train"]["equal_steps"] is True
    rows = catalog_rows(small_scored_ws, "SELECT epochs_done FROM members WHERE run = 'eq'")
    assert sorted(rows) == [(2,), (2,)]
    fwd = list((run_dir / "predictions" / "pass=train-forward").rglob("*.parquet"))
    seen = sum(
        pq.read_table(p).num_rows for p in fwd
    )  # instances drawn over both epochs, both members
    assert 2 * 2 * (len(np.load(out)) - 64) <= seen <= 2 * 2 * len(np.load(out))
    # no subset: equal steps keeps the epochs
    assert (
        main(["train", "digits", "--run", "eq-full", "--set", "train.equal_steps=true", *args]) == 0
    )
    rows = catalog_rows(small_scored_ws, "SELECT epochs_done FROM members WHERE run = 'eq-full'")
    assert sorted(rows) == [(1,), (1,)]


def test_log_splits_logs_only_those(small_scored_ws):
    args = ["--workspace", str(small_scored_ws), "--set", "train.members=2"]
    args += ["--set", "train.epochs=1", "--set", "train.log_splits=test"]
    assert main(["train", "digits", "--run", "testonly", *args]) == 0
    logged = sorted(
        p.name
        for p in (small_scored_ws / "runs" / "testonly" / "predictions" / "pass=eval").iterdir()
    )
    assert logged == ["split=test"]
    bad = ["--workspace", str(small_scored_ws), "--set", "train.log_splits=val"]
    assert main(["train", "digits", "--run", "badsplits", *bad]) == 2
    assert not (small_scored_ws / "runs" / "badsplits").exists()


# ----------------------------------------------------------------------------- refusals


def _refused(capsys, code: int, *words: str) -> None:
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error:"), err
    for w in words:
        assert w in err[0], err


@pytest.mark.parametrize("keep", ["0", "1.5", "-0.2"])
def test_prune_refuses_keep_outside(small_scored_ws, tmp_path, capsys, keep):
    out = tmp_path / "s.npy"
    code = _prune(small_scored_ws, "--keep", keep, "--strategy", "easy", "--out", str(out))
    _refused(capsys, code, "--keep", "(0, 1]")
    assert not out.exists() and not pr.sidecar_path(out).exists()


def test_prune_refuses_a_fraction_leaving_a_class_empty(small_scored_ws, tmp_path, capsys):
    out = tmp_path / "s.npy"
    code = _prune(small_scored_ws, "--keep", "0.001", "--strategy", "easy", "--out", str(out))
    _refused(capsys, code, "empty")
    assert not out.exists()


def test_prune_refuses_an_unknown_run(small_scored_ws, tmp_path, capsys):
    out = tmp_path / "s.npy"
    code = main(
        ["prune", "nosuch", "--keep", "0.5", "--strategy", "easy", "--out", str(out)]
        + ["--workspace", str(small_scored_ws)]
    )
    _refused(capsys, code, "unknown run 'nosuch'")
    assert not out.exists()


def test_prune_refuses_an_unknown_score(small_scored_ws, tmp_path, capsys):
    out = tmp_path / "s.npy"
    code = _prune(
        small_scored_ws, "--keep", "0.5", "--strategy", "easy", "--score", "nope", "--out", str(out)
    )
    _refused(capsys, code, "unknown score 'nope'")
    assert not out.exists()


def test_prune_does_not_overwrite_a_users_file(small_scored_ws, tmp_path, capsys):
    out = tmp_path / "mine.csv"
    out.write_text("precious\n")
    code = _prune(small_scored_ws, "--keep", "0.5", "--strategy", "easy", "--out", str(out))
    _refused(capsys, code, "curate did not write it", "--force")
    assert out.read_text() == "precious\n"


def _train_refused(ws, subset, capsys, *words):
    args = ["train", "digits", "--run", "refused", "--subset", str(subset), "--workspace", str(ws)]
    _refused(capsys, main(args + ["--set", "train.members=2", "--set", "train.epochs=1"]), *words)
    assert not (ws / "runs" / "refused").exists()


def test_train_refuses_a_subset_of_another_dataset(small_scored_ws, tmp_path, capsys):
    out = tmp_path / "s.npy"
    assert _prune(small_scored_ws, "--keep", "0.5", "--strategy", "easy", "--out", str(out)) == 0
    side = pr.sidecar_path(out)
    meta = json.loads(side.read_text())
    side.write_text(json.dumps(meta | {"dataset": "cifar10"}))
    _train_refused(small_scored_ws, out, capsys, "made for dataset 'cifar10'")


def test_train_refuses_idx_outside_the_split(small_scored_ws, tmp_path, capsys):
    out = tmp_path / "s.npy"
    np.save(out, np.array([0, 1, 2, 10_000_000], np.int64))
    _train_refused(small_scored_ws, out, capsys, "does not have", "10000000")


def test_train_refuses_a_missing_subset(small_scored_ws, tmp_path, capsys):
    _train_refused(small_scored_ws, tmp_path / "gone.npy", capsys, "does not exist")


def test_report_draws_accuracy_against_the_fraction_kept(small_scored_ws, tmp_path):
    from curate.report import pruning
    from curate.workspace import Workspace

    ws = Workspace.resolve(str(small_scored_ws))
    args = ["--workspace", str(small_scored_ws), "--set", "train.members=2"]
    args += ["--set", "train.epochs=1", "--set", "train.log_splits=test"]
    args += ["--set", "train.precision=fp32", "--set", "train.seed=5"]
    for keep in ("0.5", "0.8"):
        out = tmp_path / f"r{keep}.npy"
        assert (
            _prune(small_scored_ws, "--keep", keep, "--strategy", "random", "--out", str(out)) == 0
        )
        assert main(["train", "digits", "--run", f"rep-{keep}", "--subset", str(out), *args]) == 0
    half = ["--subset", str(tmp_path / "r0.5.npy"), "--equal-steps"]  # 2 epochs, the steps of 1
    assert main(["train", "digits", "--run", "rep-0.5-eq", *half, *args]) == 0
    assert main(["train", "digits", "--run", "rep-full", *args]) == 0
    sec = pruning.section(ws, "digits", tmp_path)
    assert sec is not None and (tmp_path / "pruning_accuracy.png").stat().st_size > 1000
    pruned, full = pruning.retrainings(ws, "digits")
    mine = pruned[pruned["run"].str.startswith("rep-")]
    assert mine["family"].nunique() == 1  # equal steps: the family of the E it was asked for
    family = mine["family"].iloc[0]
    # only the run of the same recipe counts as full data
    assert set(full[full["family"] == family]["run"]) == {"rep-full"}
    accs = catalog_rows(
        small_scored_ws,
        "SELECT final_acc->>'test' FROM members WHERE run = 'rep-full' ORDER BY member",
    )
    full_acc = float(np.mean([float(a) for (a,) in accs]))
    by_name = {h.quantity: h.values["test"] for h in sec.headlines}
    assert abs(by_name["accuracy on full data, same recipe"] - full_acc) < 1e-9
    assert set(zip(mine["keep"], mine["steps"], strict=True)) == {
        (0.5, "equal epochs"),
        (0.8, "equal epochs"),
        (0.5, "equal steps"),
    }
    # the caption gives the scoring run's held-out accuracy, what the regime is read off
    accs, epoch = pr.run_accuracy(ws, "digits")
    assert f"reach {accs['test']:.3f} on test at epoch {epoch}" in sec.figures[0].caption
    # no retraining drew from another run's scores
    assert pruning.section(ws, "no-such-run", tmp_path) is None


@pytest.mark.slow
def test_a_streamed_jpeg_dataset_trains_on_its_subset(tmp_path):
    """JPEG storage streams from ffcv: the subset becomes the loader's indices."""
    import pyarrow.parquet as pq
    from test_ingest import _imagenet_tree

    _imagenet_tree(tmp_path / "ILSVRC", flat_val=True)
    ws = tmp_path / "ws"
    over = ["--set", "dataset.source=" + repr(str(tmp_path / "ILSVRC")).replace("'", '"')]
    assert main(["ingest", "imagenet", "--workspace", str(ws), *over]) == 0
    over += ["--set", "loader.crop_size=16", "--set", "loader.batch_size=2"]  # train reads these
    idx = sorted(i for (i,) in catalog_rows(ws, "SELECT idx FROM instances WHERE split = 'train'"))
    keep = np.array(idx[::2], np.int64)
    np.save(tmp_path / "half.npy", keep)
    args = ["train", "imagenet-mini", "--workspace", str(ws), "--run", "jpeg-sub", "--arch", "mlp"]
    args += ["--members", "2", "--epochs", "1", "--subset", str(tmp_path / "half.npy"), *over]
    assert main(args + ["--set", "train.log_train_pass=true"]) == 0
    fwd = list((ws / "runs" / "jpeg-sub" / "predictions" / "pass=train-forward").rglob("*.parquet"))
    seen = set(np.concatenate([pq.read_table(p)["idx"].to_numpy() for p in fwd]).tolist())
    assert len(fwd) == 2 and seen <= set(keep.tolist()) and len(seen) >= len(keep) - 1
