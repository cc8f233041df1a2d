"""Curricula: pacing functions against their formulas, orderings, samplers, export, training with one."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from curate import catalog
from curate import curriculum as cu
from curate.cli import main
from curate.workspace import Workspace


@pytest.mark.parametrize("t, expected", [(0, 40), (99, 40), (100, 76), (250, 144), (10_000, 1000)])
def test_fixed_exponential_pacing(t, expected):
    # min(1, 0.04 * 1.9 ** floor(t / 100)) * 1000
    assert cu.fixed_exp(t, 1000) == expected


@pytest.mark.parametrize(
    "kind, t, expected",
    [
        ("linear", 0, 200),
        ("linear", 40, 600),
        ("linear", 80, 1000),
        ("linear", 95, 1000),
        ("quad", 40, 400),  # 200 + 800 * (40 / 80)^2
        ("root", 20, 600),  # 200 + 800 * sqrt(20 / 80)
        ("step", 79, 200),
        ("step", 80, 1000),  # 200 + 1000 * floor(t / 80), capped
        ("exp", 40, 205),  # 200 + 800 (e^5 - 1) / (e^10 - 1) = 205.35
        ("log", 40, 944),  # 200 + 800 (1 + ln(0.5 + e^-10) / 10) = 944.56
    ],
)
def test_wu_pacing_functions(kind, t, expected):
    assert cu.wu_pacing(kind, t, n=1000, total_steps=100, a=0.8, b=0.2) == expected


def test_pacing_function_bounds_and_errors():
    g = cu.pacing_function("linear", 10, 100, a=0.5, b=0.0)
    assert g(0) == 1 and g(1000) == 10  # at least one instance, at most all
    assert cu.pacing_function("none", 7, 5)(0) == 7
    from curate.errors import CurateError

    with pytest.raises(CurateError):
        cu.pacing_function("cubic", 10, 10)


@pytest.mark.parametrize(
    "kind, params, words",
    [
        ("linear", {"a": 0}, "--pacing-a 0: must be in (0, 1]"),  # once a division by zero
        ("linear", {"a": float("nan")}, "--pacing-a nan"),  # once NaN in the sidecar's JSON
        ("root", {"b": -1}, "--pacing-b -1"),
        ("fixed-exp", {"step": 0}, "--pacing-step 0: must be a whole number in 1..1e9"),
        ("fixed-exp", {"step": -3}, "--pacing-step -3"),
        ("fixed-exp", {"inc": 0}, "--pacing-inc 0: must be in (1, 1e6]"),
        ("exp", {"c": 0}, "--pacing-c 0: must be in (0, 700]"),
        ("linear", {"inc": 2.0}, "pacing 'linear' takes --pacing-a, --pacing-b"),
        ("none", {"a": 0.5}, "takes no parameter"),
    ],
)
def test_pacing_values_that_cannot_be_are_refused_before_anything_is_written(
    kind, params, words, small_scored_ws, tmp_path
):
    from curate.curriculum import CurriculumSpec, export_curriculum
    from curate.errors import CurateError
    from curate.workspace import Workspace

    with pytest.raises(CurateError) as e:
        cu.pacing_function(kind, 10, 100, **params)
    assert words in str(e.value)
    with pytest.raises(CurateError, match=words.split(":")[0].replace("(", r"\(")):
        spec = CurriculumSpec(pacing=kind, params=params)
        export_curriculum(Workspace(small_scored_ws), "digits", tmp_path / "o.npy", spec)
    assert not list(tmp_path.iterdir())


def test_orderings_by_hand():
    score = np.array([0.9, 0.8, 0.7, 0.95, 0.1, 0.5])
    labels = np.array([0, 0, 1, 1, 2, 0])
    assert cu.make_ordering(score, labels).tolist() == [3, 0, 1, 2, 5, 4]
    assert cu.make_ordering(score, labels, "anti").tolist() == [4, 5, 2, 1, 0, 3]
    # balanced: groups of every class's j-th easiest: (3, 0, 4), (1, 2), (5)
    assert cu.make_ordering(score, labels, balanced=True).tolist() == [3, 0, 4, 1, 2, 5]
    assert cu.make_ordering(score, labels, higher_is_easier=False).tolist() == [4, 5, 2, 1, 0, 3]
    r1, r2 = (
        cu.make_ordering(score, labels, "random", seed=1),
        cu.make_ordering(score, labels, "random", seed=1),
    )
    assert r1.tolist() == r2.tolist() and sorted(r1) == list(range(6))


def test_ties_are_broken_by_the_seed():
    score = np.zeros(50)
    a, b = cu.order_by_score(score, seed=0), cu.order_by_score(score, seed=1)
    assert sorted(a) == list(range(50)) and a.tolist() != b.tolist()
    assert cu.order_by_score(score, seed=0).tolist() == a.tolist()


def test_sampler_draws_from_the_easiest_and_resumes():
    order = np.array([7, 3, 9, 1, 0, 2, 4, 5, 6, 8])
    g = cu.pacing_function("linear", 10, 20, a=0.5, b=0.2)  # 2 at first, all 10 from step 10
    s = cu.CurriculumSampler(order, batch_size=2, pacing=g, total_steps=20, seed=3)
    flat = list(s)
    assert len(flat) == len(s) == 40
    assert set(flat[:2]) == {7, 3}  # step 0: the two easiest, without replacement
    resumed = list(cu.CurriculumSampler(order, 2, g, 20, seed=3, start_step=5))
    assert resumed == flat[10:]
    import torch

    ds = torch.utils.data.TensorDataset(torch.arange(10))
    batches = [b[0].tolist() for b in torch.utils.data.DataLoader(ds, batch_size=2, sampler=s)]
    assert batches[0] == flat[:2]


def test_ffcv_traversal_order(digits_ws):
    from curate.config import LoaderConfig
    from curate.data.loader import LoaderSpec, make_loader

    spec = LoaderSpec(cfg=LoaderConfig(batch_size=16))
    ld = make_loader("digits", "train", "train", workspace=str(digits_ws), spec=spec)
    easiest = np.arange(100, 120)
    order = np.concatenate([easiest, np.setdiff1d(np.arange(1438), easiest)])
    pace = cu.pacing_function(
        "fixed-exp", len(order), 1000, b=20 / 1438
    )  # 20 instances for 100 steps
    ld.loader.traversal_order = cu.ffcv_order(order, 16, pace, seed=0)(ld.loader)
    seen = np.concatenate([i.numpy() for _, _, i in ld])
    assert set(seen) <= set(easiest) and len(seen) == (1438 // 16) * 16


@pytest.fixture(scope="module")
def scored_digits(small_scored_ws):
    return small_scored_ws


def test_export_writes_every_format(scored_digits, tmp_path, capsys):
    """Each format is the file the user names, with its own sidecar <name>.json beside it, and
    nothing else: no sibling formats written over a user's files."""
    flags = ["--score", "accessibility", "--pacing", "fixed-exp", "--balanced"]
    flags += ["--where", "ddd <> 'impossible'", "--workspace", str(scored_digits)]
    for suffix in (".csv", ".parquet", ".npy"):
        assert main(["curriculum", "digits", *flags, "--out", str(tmp_path / f"cur{suffix}")]) == 0
        assert f"cur{suffix}.json" in capsys.readouterr().out  # the companion file is named
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == [
        "cur.csv",
        "cur.csv.json",
        "cur.npy",
        "cur.npy.json",
        "cur.parquet",
        "cur.parquet.json",
    ]
    csv = pd.read_csv(tmp_path / "cur.csv")
    assert (pd.read_parquet(tmp_path / "cur.parquet")["idx"] == csv["idx"]).all()
    assert np.array_equal(np.load(tmp_path / "cur.npy"), csv["idx"].to_numpy())
    side = json.loads((tmp_path / "cur.npy.json").read_text())
    assert (
        side["run"] == "digits"
        and side["pacing"] == "fixed-exp"
        and side["balanced"]
        and side["seed"] == 0
        and side["file"] == "cur.npy"
    )

    con = catalog.read(Workspace(scored_digits))
    pool = con.execute(
        "SELECT count(*) FROM difficulty WHERE run='digits' AND split='train' "
        "AND ddd <> 'impossible'"
    ).fetchone()[0]
    assert len(csv) == pool
    # not balanced: scores never increase along the ordering
    assert (
        main(
            [
                "curriculum",
                "digits",
                "--out",
                str(tmp_path / "plain.csv"),
                "--workspace",
                str(scored_digits),
            ]
        )
        == 0
    )
    plain = pd.read_csv(tmp_path / "plain.csv")
    assert (np.diff(plain["score"]) <= 1e-12).all()
    assert (
        main(
            [
                "curriculum",
                "digits",
                "--score",
                "learned_epoch",
                "--anti",
                "--out",
                str(tmp_path / "le.npy"),
                "--workspace",
                str(scored_digits),
            ]
        )
        == 0
    )
    assert json.loads((tmp_path / "le.npy.json").read_text())["higher_is_easier"] is False


def test_export_refusals(scored_digits, tmp_path, capsys):
    ws = str(scored_digits)
    assert (
        main(
            [
                "curriculum",
                "digits",
                "--score",
                "nope",
                "--out",
                str(tmp_path / "x.csv"),
                "--workspace",
                ws,
            ]
        )
        == 2
    )
    assert "not a column" in capsys.readouterr().err
    assert (
        main(
            [
                "curriculum",
                "digits",
                "--where",
                "idx <",
                "--out",
                str(tmp_path / "x.csv"),
                "--workspace",
                ws,
            ]
        )
        == 2
    )
    assert "is not one SQL condition" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:  # the pacing's choices come from its registry
        main(["curriculum", "digits", "--pacing", "cubic", "--out", str(tmp_path / "x.csv")])
    assert exit_.value.code == 2 and "invalid choice: 'cubic'" in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists()


def test_train_with_a_curriculum_draws_from_the_easiest(scored_digits, tmp_path):
    ws = str(scored_digits)
    out = tmp_path / "easy.npy"
    assert (
        main(
            ["curriculum", "digits", "--pacing", "fixed-exp", "--out", str(out), "--workspace", ws]
        )
        == 0
    )
    assert (
        main(
            [
                "train",
                "digits",
                "--run",
                "paced",
                "--curriculum",
                str(out.with_suffix(".npy")),
                "--workspace",
                ws,
                "--set",
                "train.members=2",
                "--set",
                "train.epochs=1",
                "--set",
                "train.log_train_pass=true",
            ]
        )
        == 0
    )
    order = np.load(out.with_suffix(".npy"))
    allowed = set(
        order[: int(0.04 * len(order))]
    )  # fixed-exp: 4 % until step 100 (22 steps an epoch here)
    import pyarrow.parquet as pq

    shards = list(
        (scored_digits / "runs" / "paced" / "predictions" / "pass=train-forward").rglob("*.parquet")
    )
    seen = set(np.concatenate([pq.read_table(p)["idx"].to_numpy() for p in shards]))
    assert len(shards) == 2 and seen <= allowed and len(seen) > 10


def test_an_ordering_and_a_sidecar_of_two_exports_are_told_apart(small_scored_ws, tmp_path):
    """A kill between an export's two renames, or a file swapped by hand, left an ordering beside
    another export's sidecar, and training read the pair unchecked; the sidecar now keeps the
    ordering's digest (and prune's its subset's checksum), and training refuses a pair that
    does not match."""
    import shutil

    from curate.curriculum import CurriculumSpec, export_curriculum
    from curate.errors import CurateError
    from curate.prune import load_subset, prune
    from curate.train.paced import load_paced
    from curate.workspace import Workspace

    ws = Workspace(small_scored_ws)
    easy, hard = tmp_path / "easy.npy", tmp_path / "hard.npy"
    export_curriculum(ws, "digits", easy, CurriculumSpec(pacing="linear"))
    export_curriculum(ws, "digits", hard, CurriculumSpec(pacing="linear", mode="anti"))
    split = np.sort(np.load(easy))
    assert len(load_paced(str(easy), split, 10, 2).order) == len(split)  # a pair that matches
    shutil.copyfile(hard, easy)  # the anti ordering beside the curriculum's sidecar
    with pytest.raises(CurateError, match="do not belong together"):
        load_paced(str(easy), split, 10, 2)
    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    prune(ws, "digits", 0.5, "easy", a)
    prune(ws, "digits", 0.5, "hard", b)
    assert len(load_subset(a, "digits", split).idx) > 0
    shutil.copyfile(b, a)
    with pytest.raises(CurateError, match="do not belong together"):
        load_subset(a, "digits", split)


def test_training_takes_each_export_for_what_it_is(small_scored_ws, tmp_path):
    """An ordering naming an idx twice (once trained on), a curriculum given as a subset (once
    accepted as one) and a subset given as a curriculum ("its sidecar is missing"): each refused,
    naming what the file is."""
    import shutil

    from curate.curriculum import CurriculumSpec, export_curriculum
    from curate.errors import CurateError
    from curate.prune import load_subset, prune
    from curate.train.paced import load_paced
    from curate.workspace import Workspace

    ws = Workspace(small_scored_ws)
    order, keep = tmp_path / "order.csv", tmp_path / "keep.npy"
    export_curriculum(ws, "digits", order, CurriculumSpec(pacing="linear"))
    prune(ws, "digits", 0.5, "easy", keep)
    split = np.sort(pd.read_csv(order)["idx"].to_numpy())
    with pytest.raises(CurateError, match="is a curriculum .*not a subset"):
        load_subset(order, "digits", split)
    with pytest.raises(CurateError, match="is a subset .*not a curriculum"):
        load_paced(str(keep), split, 10, 2)
    twice = tmp_path / "twice.csv"
    table = pd.read_csv(order)
    table.loc[1, "idx"] = table.loc[0, "idx"]
    table.to_csv(twice, index=False)
    side = json.loads((tmp_path / "order.csv.json").read_text())
    side.pop("order")  # as an earlier version wrote it: no digest to catch the edit
    (tmp_path / "twice.csv.json").write_text(json.dumps(side))
    shutil.copymode(order, twice)
    with pytest.raises(CurateError, match="lists an idx more than once"):
        load_paced(str(twice), split, 10, 2)
