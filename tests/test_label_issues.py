"""Label issues: the signals on a hand-built log whose answers were worked out by hand, `--labels` in
every file form and every bad form, `label_noise_eval` against an independent computation on digits
with seeded synthetic noise, `curate label-issues` and `curate evaluate`."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from curate import catalog
from curate.cli import main
from curate.scores import label_issues as li
from curate.scores.engine import score_split
from curate.train import predlog
from curate.workspace import Workspace

ROOT = Path(__file__).resolve().parent.parent


def _write_log(run_dir, idx, pred, margin):
    """pred, margin (M, T, N): a log with epochs 0..T-1."""
    m_count, t_count, n = pred.shape
    for m in range(m_count):
        for e in range(t_count):
            predlog.write_shard(
                predlog.shard_path(run_dir, "eval", "train", m, e),
                idx,
                pred[m, e],
                np.full(n, 0.5, np.float32),
                margin[m, e],
            )
            predlog.mark_epoch_done(run_dir, m, e, {"acc": {}, "seconds": 0})


def test_signals_on_a_hand_built_log(tmp_path):
    # 2 members, epochs 0..4 (E = 4, late epochs 3 and 4), five instances:
    # n0 label 0: both members say class 2 at every epoch, margin -3          -> flagged as 2
    # n1 label 1: wrong (3) at epochs 1-2 with margin -4, right at 3-4, +2  -> learned late: aum < 0
    #    over the whole run, but late_aum > 0                                  -> not flagged
    # n2 label 2: scattered wrong answers, margin -1; late votes 0, 3, 1, 1 -> suggests 1 at 0.5,
    #    late_aum -1                                                           -> flagged as 1
    # n3 label 3: late votes 3, 0, 0, 3 (a tie: the given label wins), margin -0.5 -> not flagged
    # n4 label 0: right throughout, margin 4
    y = np.array([0, 1, 2, 3, 0])
    pred = np.zeros((2, 5, 5), np.int64)  # (M, T, N); epoch 0 is ignored by every signal
    pred[:, 1:, 0] = 2
    pred[:, 1:3, 1], pred[:, 3:, 1] = 3, 1
    pred[0, 1:, 2], pred[1, 1:, 2] = [0, 1, 0, 3], [3, 0, 1, 1]
    pred[0, 1:, 3], pred[1, 1:, 3] = [3, 3, 3, 0], [0, 0, 0, 3]
    pred[:, 1:, 4] = 0
    margin = np.zeros((2, 5, 5), np.float32)
    margin[:, 1:, 0] = -3
    margin[:, 1:3, 1], margin[:, 3:, 1] = -4, 2
    margin[:, 1:, 2] = -1
    margin[:, 1:, 3] = -0.5
    margin[:, 1:, 4] = 4
    margin[:, 0] = -9  # epoch 0 (before training) counts in neither mean
    idx = np.array([10, 11, 12, 13, 14])
    _write_log(tmp_path, idx, pred, margin)
    i = score_split(tmp_path, "train", (idx, y)).instance

    assert list(li.late_epochs(4)) == [3, 4] and list(li.late_epochs(1)) == [1]
    np.testing.assert_allclose(i["aum"], [-3, -1, -1, -0.5, 4])  # n1: (-4 - 4 + 2 + 2) / 4
    np.testing.assert_allclose(i["late_aum"], [-3, 2, -1, -0.5, 4])
    assert i["suggested_label"].tolist() == [2, 1, 1, 3, 0]
    np.testing.assert_allclose(i["consensus"], [1, 1, 0.5, 0.5, 1])
    np.testing.assert_allclose(i["issue_score"], [3, -2, 1, 0.5, -4])  # -late_aum
    assert i["flagged"].tolist() == [True, False, True, False, False]


def test_auroc_and_noise_eval_by_hand():
    score = np.array([0.9, 0.8, 0.3, 0.3, 0.1])
    wrong = np.array([True, False, True, False, False])
    # positives 0.9 and 0.3 against negatives 0.8, 0.3, 0.1: 0.9 beats 3; 0.3 beats 0.1, ties 0.3
    assert li.auroc(score, wrong) == pytest.approx((3 + 1.5) / 6)
    assert li.auroc(score, wrong) == pytest.approx(roc_auc_score(wrong, score))
    label = np.array([0, 1, 2, 0, 1])
    true = np.where(wrong, [1, 1, 0, 0, 1], label)  # instances 0 and 2 carry a wrong label
    flagged = np.array([True, True, False, False, False])
    suggested = np.array([1, 2, 0, 0, 1])
    r = li.noise_eval(label, true, score, flagged, suggested)
    assert (r["n"], r["n_wrong"], r["n_flagged"]) == (5, 2, 2)
    # ratios of counts (2/5, 1/2, 1/2, 1/1): rounding only, hence abs=1e-12
    assert [r["noise_rate"], r["precision"], r["recall"]] == pytest.approx(
        [0.4, 0.5, 0.5], abs=1e-12
    )
    assert r["f1"] == pytest.approx(0.5, abs=1e-12)
    assert r["recovery"] == pytest.approx(1.0, abs=1e-12)  # flagged wrong 0: suggests 1


# --- --labels -------------------------------------------------------------------------------


def _q(ws, sql, params=()):
    con = catalog.read(Workspace(ws))
    try:
        return con.execute(sql, list(params)).df()
    finally:
        con.close()


def _ingest(ws, *args):
    return main(["ingest", "digits", "--workspace", str(ws), *args])


@pytest.fixture(scope="module")
def digits_sizes(tmp_path_factory):
    ws = tmp_path_factory.mktemp("plain")
    assert _ingest(ws) == 0
    df = _q(ws, "SELECT split, idx, label, true_label FROM instances ORDER BY split, idx")
    return ws, df


def test_labels_from_every_file_form(tmp_path, digits_sizes):
    _, plain = digits_sizes
    train = plain[plain.split == "train"]
    n = len(train)
    noisy = (train.label.to_numpy() + (np.arange(n) % 3 == 0)) % 10  # every third label moved on
    np.save(tmp_path / "noisy.npy", noisy)
    np.savez(tmp_path / "sets.npz", worse=noisy, clean=train.label.to_numpy())
    ws = tmp_path / "ws"
    assert _ingest(ws, "--labels", str(tmp_path / "noisy.npy")) == 0
    got = _q(
        ws,
        "SELECT dataset, idx, label, true_label FROM instances WHERE split = 'train' ORDER BY idx",
    )
    assert (
        got.dataset == "digits-labels-noisy"
    ).all()  # the default name says where labels came from
    assert np.array_equal(got.label, noisy) and np.array_equal(got.true_label, train.label)
    test = _q(ws, "SELECT label, true_label FROM instances WHERE split = 'test'")
    assert (test.label == test.true_label).all()  # an array replaces only the train split
    meta = _q(ws, "SELECT labels_file FROM datasets")
    assert meta.labels_file[0] == str(tmp_path / "noisy.npy")

    assert _ingest(ws, "--labels", f"{tmp_path / 'sets.npz'}:worse", "--name", "worse") == 0
    got = _q(
        ws, "SELECT label FROM instances WHERE dataset = 'worse' AND split = 'train' ORDER BY idx"
    )
    assert np.array_equal(got.label, noisy)

    # a CSV of some rows of both splits, with class indices and class names
    names = [str(k) for k in range(10)]  # digits' classes are named "0".."9"
    test_plain = plain[plain.split == "test"]
    rows = pd.DataFrame(
        {
            "split": ["train", "test", "test"],
            "idx": [
                int(train.idx.iloc[5]),
                int(test_plain.idx.iloc[0]),
                int(test_plain.idx.iloc[1]),
            ],
            "label": [7, names[(int(test_plain.label.iloc[0]) + 1) % 10], "3"],
        }
    )
    rows.to_csv(tmp_path / "fix.csv", index=False)
    assert _ingest(ws, "--labels", str(tmp_path / "fix.csv"), "--name", "fixed") == 0
    got = _q(ws, "SELECT split, idx, label, true_label FROM instances WHERE dataset = 'fixed'")
    changed = got[got.label != got.true_label]
    expect = {("train", int(train.idx.iloc[5]))} if int(train.label.iloc[5]) != 7 else set()
    expect.add(("test", int(test_plain.idx.iloc[0])))
    if int(test_plain.label.iloc[1]) != 3:
        expect.add(("test", int(test_plain.idx.iloc[1])))
    assert set(zip(changed.split, changed.idx.astype(int), strict=True)) == expect
    row = got[(got.split == "test") & (got.idx == int(test_plain.idx.iloc[0]))]
    assert int(row.label.iloc[0]) == (int(test_plain.label.iloc[0]) + 1) % 10

    # the same command again is up to date; a changed file needs --force
    assert _ingest(ws, "--labels", str(tmp_path / "noisy.npy")) == 0
    np.save(tmp_path / "noisy.npy", train.label.to_numpy())
    assert _ingest(ws, "--labels", str(tmp_path / "noisy.npy")) == 2


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d, n: np.save(d / "f.npy", np.zeros(n - 1, int)), "labels for a train split"),
        (lambda d, n: np.save(d / "f.npy", np.full(n, 10)), "outside 0..9"),
        (lambda d, n: np.save(d / "f.npy", np.full(n, -1)), "outside 0..9"),
        (lambda d, n: np.save(d / "f.npy", np.zeros((n, 2))), "1-d array"),
        (lambda d, n: (d / "f.npy").write_bytes(b"not numpy"), "not a readable numpy file"),
        (
            lambda d, n: (d / "f.csv").write_text("split,idx,label\ntrain,0,cat\n"),
            "unknown class 'cat'",
        ),
        (
            lambda d, n: (d / "f.csv").write_text("split,idx,label\ntrain,999999,1\n"),
            "has no idx 999999",
        ),
        (lambda d, n: (d / "f.csv").write_text("split,idx,label\nval,0,1\n"), "split 'val' is not"),
        (
            lambda d, n: (d / "f.csv").write_text("split,idx,label\ntrain,0,1\ntrain,0,2\n"),
            "listed twice",
        ),
        (
            lambda d, n: (d / "f.csv").write_text("image,label\n0,1\n"),
            "header must be split,idx,label",
        ),
        (lambda d, n: (d / "f.txt").write_text("1\n"), "unknown file type"),
        (lambda d, n: np.savez(d / "f.npz", a=np.zeros(n, int)), "name the array"),
    ],
)
def test_bad_label_files(tmp_path, digits_sizes, capsys, make, message):
    _, plain = digits_sizes
    make(tmp_path, int((plain.split == "train").sum()))
    f = next(tmp_path.glob("f.*"))
    ws = tmp_path / "ws"
    capsys.readouterr()
    assert _ingest(ws, "--labels", str(f)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not (ws / "datasets").exists() or not any((ws / "datasets").iterdir())  # nothing written
    if (ws / "catalog.duckdb").exists():
        assert _q(ws, "SELECT count(*) n FROM datasets").n[0] == 0


def test_labels_conflicts_and_missing_file(tmp_path, capsys):
    assert _ingest(tmp_path / "ws", "--labels", str(tmp_path / "nope.npy")) == 2
    assert "no such file" in capsys.readouterr().err
    np.save(tmp_path / "f.npy", np.zeros(3, int))
    assert (
        _ingest(tmp_path / "ws", "--labels", str(tmp_path / "f.npy"), "--random-labels", "1") == 2
    )
    assert "give one of them" in capsys.readouterr().err


# --- end to end on digits with synthetic noise --------------------------------------------------


@pytest.fixture(scope="module")
def noisy_run(tmp_path_factory, digits_sizes):
    """Digits with 20 % of the train labels moved to a seeded random other class; 4 MLPs, 6 epochs."""
    _, plain = digits_sizes
    train = plain[plain.split == "train"]
    rng = np.random.default_rng(7)
    y = train.label.to_numpy()
    wrong = rng.random(len(y)) < 0.2
    noisy = np.where(wrong, (y + rng.integers(1, 10, len(y))) % 10, y)
    d = tmp_path_factory.mktemp("noisy")
    np.save(d / "noisy.npy", noisy)
    ws = d / "ws"
    assert _ingest(ws, "--labels", str(d / "noisy.npy"), "--name", "noisy") == 0
    sets = ["--set", "dataset.name=noisy", "--set", "dataset.labels=" + str(d / "noisy.npy")]
    sets += ["--set", "train.members=4", "--set", "train.epochs=6", "--set", "score.stats=false"]
    sets += ["--set", "train.precision=fp32"]  # detection levels tested: same precision on any CPU
    assert main(["run", "digits", "--run-name", "noisy", "--workspace", str(ws), *sets]) == 0
    return ws, d


def test_label_noise_eval_matches_an_independent_computation(noisy_run):
    ws, _ = noisy_run
    df = _q(
        ws,
        "SELECT s.idx, s.label, i.true_label, s.issue_score, s.flagged, s.suggested_label, s.aum, "
        "s.accessibility FROM instance_scores s JOIN instances i USING (dataset, split, idx) "
        "WHERE run = 'noisy' AND split = 'train'",
    )
    wrong = (df.label != df.true_label).to_numpy()
    flagged = df.flagged.to_numpy()
    tp = int((wrong & flagged).sum())
    ev = _q(ws, "SELECT * FROM label_noise_eval WHERE run = 'noisy'")
    assert ev.split.tolist() == ["train"]  # the test split keeps its true labels
    r = ev.iloc[0]
    assert r.n == len(df) and r.n_wrong == wrong.sum() and r.n_flagged == flagged.sum()
    assert r.noise_rate == pytest.approx(wrong.mean())
    assert r.auroc == pytest.approx(roc_auc_score(wrong, df.issue_score))
    assert r.auroc_aum == pytest.approx(roc_auc_score(wrong, -df.aum))
    assert r.auroc_accessibility == pytest.approx(roc_auc_score(wrong, -df.accessibility))
    assert r.precision == pytest.approx(tp / flagged.sum())
    assert r.recall == pytest.approx(tp / wrong.sum())
    hit = wrong & flagged
    assert r.recovery == pytest.approx((df.suggested_label[hit] == df.true_label[hit]).mean())
    assert r.auroc > 0.8  # four small MLPs find seeded wrong labels far above chance (0.5)
    # the view carries every instance, with class names
    view = _q(ws, "SELECT * FROM label_issues WHERE run = 'noisy' AND split = 'train'")
    assert len(view) == len(df)
    flagged_rows = view[view.flagged]
    assert (flagged_rows.suggested_class == flagged_rows.suggested_label.astype(str)).all()


def test_label_issues_command(noisy_run, tmp_path, capsys):
    ws, _ = noisy_run
    capsys.readouterr()
    assert main(["label-issues", "noisy", "--workspace", str(ws), "--top", "5"]) == 0
    out = capsys.readouterr().out
    assert "issue_score" in out and "source" in out and len(out.strip().splitlines()) == 6
    assert (
        main(["label-issues", "noisy", "--workspace", str(ws), "--out", str(tmp_path / "l.csv")])
        == 0
    )
    listed = pd.read_csv(tmp_path / "l.csv")
    flagged = _q(
        ws,
        "SELECT count(*) n FROM instance_scores WHERE run = 'noisy' AND split = 'train' AND flagged",
    )
    assert len(listed) == flagged.n[0] and listed.issue_score.is_monotonic_decreasing
    assert main(["label-issues", "nope", "--workspace", str(ws)]) == 2
    assert "has no scores" in capsys.readouterr().err
    assert main(["label-issues", "noisy", "--split", "val", "--workspace", str(ws)]) == 2
    assert "choose --split from test, train" in capsys.readouterr().err
    target = ws / "catalog.duckdb"
    assert main(["label-issues", "noisy", "--workspace", str(ws), "--out", str(target)]) == 2


def test_a_catalog_of_an_older_curate(noisy_run, tmp_path, capsys):
    # a catalog written before late_aum existed: the column and the view's column are absent
    import shutil

    src, _ = noisy_run
    ws = tmp_path / "ws"
    shutil.copytree(src, ws, ignore=shutil.ignore_patterns("sources", "datasets"))
    con = duckdb.connect(str(ws / "catalog.duckdb"))  # raw: to take the catalog back in time
    view = con.execute(
        "SELECT sql FROM duckdb_views() WHERE view_name = 'label_issues' AND NOT temporary"
    ).fetchone()[0]
    con.execute("ALTER TABLE instance_scores DROP COLUMN late_aum")
    con.execute("DROP TABLE catalog_meta")  # an older curate kept no schema version
    con.execute(view.replace("s.late_aum, ", "").replace("CREATE VIEW", "CREATE OR REPLACE VIEW"))
    con.close()
    capsys.readouterr()
    assert main(["label-issues", "noisy", "--workspace", str(ws)]) == 2
    assert "rescore it: curate score noisy" in capsys.readouterr().err
    # rescoring adds the column at the end of the table; every column still lands in its own place
    assert main(["score", "noisy", "--workspace", str(ws)]) == 0
    out = tmp_path / "l.csv"
    assert main(["label-issues", "noisy", "--workspace", str(ws), "--out", str(out)]) == 0
    listed = pd.read_csv(out)
    assert len(listed) and listed.consensus.between(0, 1).all()
    np.testing.assert_allclose(listed.issue_score, -listed.late_aum)
    assert (listed.late_aum < 0).all() and (listed.suggested_label != listed.label).all()


def test_evaluate_against_references(noisy_run, tmp_path, capsys):
    ws, d = noisy_run
    df = _q(
        ws,
        "SELECT idx, accessibility, label FROM difficulty WHERE run = 'noisy' AND split = 'train' ORDER BY idx",
    )
    truth = _q(
        ws,
        "SELECT true_label FROM instances WHERE dataset = 'noisy' AND split = 'train' ORDER BY idx",
    )
    wrong = (df.label != truth.true_label).to_numpy()
    # a CSV of part of the split: the reference is accessibility squared (monotone: Spearman 1)
    part = df.iloc[::3]
    pd.DataFrame({"idx": part.idx, "easy": part.accessibility**2}).to_csv(
        tmp_path / "r.csv", index=False
    )
    capsys.readouterr()
    assert (
        main(["evaluate", "noisy", "--reference", str(tmp_path / "r.csv"), "--workspace", str(ws)])
        == 0
    )
    assert "Spearman 1.000" in capsys.readouterr().out
    # a boolean .npy in idx order: AUROC of the score for the wrong labels
    np.save(tmp_path / "wrong.npy", wrong)
    args = [
        "evaluate",
        "noisy",
        "--reference",
        str(tmp_path / "wrong.npy"),
        "--score",
        "issue_score",
    ]
    assert main([*args, "--workspace", str(ws)]) == 0
    rows = _q(ws, "SELECT * FROM reference_agreement ORDER BY created_at")
    assert len(rows) == 2 and rows.n.tolist() == [len(part), len(df)]
    assert rows.spearman[0] == pytest.approx(1.0) and pd.isna(rows.auroc[0])
    issue = _q(
        ws,
        "SELECT issue_score FROM instance_scores WHERE run = 'noisy' AND split = 'train' ORDER BY idx",
    )
    assert rows.auroc[1] == pytest.approx(roc_auc_score(wrong, issue.issue_score))
    # again: the row is replaced, not added
    assert main([*args, "--workspace", str(ws)]) == 0
    assert len(_q(ws, "SELECT * FROM reference_agreement")) == 2
    # bad input: one error line, exit 2
    for bad, message in (
        (["--reference", str(tmp_path / "nope.npy")], "no such file"),
        (["--reference", str(tmp_path / "wrong.npy"), "--score", "ddd"], "--score 'ddd'"),
        (["--reference", str(tmp_path / "wrong.npy"), "--split", "val"], "no split 'val'"),
    ):
        capsys.readouterr()
        assert main(["evaluate", "noisy", *bad, "--workspace", str(ws)]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
    np.save(tmp_path / "short.npy", wrong[:-1])
    assert (
        main(
            [
                "evaluate",
                "noisy",
                "--reference",
                str(tmp_path / "short.npy"),
                "--workspace",
                str(ws),
            ]
        )
        == 2
    )


def test_explorer_label_issues_view(noisy_run, monkeypatch):
    from streamlit.testing.v1 import AppTest

    ws, _ = noisy_run
    monkeypatch.setenv("CURATE_WORKSPACE", str(ws))
    at = AppTest.from_file(str(ROOT / "app" / "app.py"), default_timeout=120)
    at.run()
    at.sidebar.selectbox[1].set_value("noisy").run()  # the run
    at.sidebar.selectbox[2].set_value("train").run()
    at.sidebar.radio[0].set_value("Label issues").run()
    assert not at.exception, at.exception
    ev = _q(ws, "SELECT * FROM label_noise_eval WHERE run = 'noisy'").iloc[0]
    assert at.metric[1].value == f"{ev.auroc:.3f}"
    pair = at.selectbox[0]  # the class pair filter, below the heat map
    first = pair.options[1]
    given, suggested = first.split(" -> ")
    pair.set_value(first).run()
    assert not at.exception, at.exception
    shown = at.dataframe[0].value
    assert len(shown) and (shown.class_name == given).all()
    assert (shown.suggested_class == suggested).all()
    assert shown.issue_score.is_monotonic_decreasing
    at.sidebar.radio[0].set_value("References").run()
    assert not at.exception, at.exception


def test_evaluate_compares_every_score_strongest_first(noisy_run, tmp_path, capsys):
    """`--score all`: one stored row per compared score; printed by |Spearman|, strongest first.
    The reference is -confidence, so confidence agrees perfectly (Spearman -1) and comes first."""
    from curate.evaluate import COMPARED

    ws, _ = noisy_run
    conf = _q(
        ws,
        "SELECT confidence FROM instance_scores WHERE run = 'noisy' AND split = 'train' "
        "ORDER BY idx",
    ).confidence.to_numpy()
    np.save(tmp_path / "hard.npy", -conf)
    args = ["evaluate", "noisy", "--reference", str(tmp_path / "hard.npy"), "--score", "all"]
    capsys.readouterr()
    assert main([*args, "--score", "aum", "--workspace", str(ws)]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if " vs hard.npy " in ln]
    assert len(lines) == len(COMPARED)  # `aum` again is not compared twice
    assert ": confidence vs" in lines[0] and "Spearman -1.000" in lines[0]
    rhos = [abs(float(ln.split("Spearman ")[1].split()[0])) for ln in lines]
    assert rhos == sorted(rhos, reverse=True)
    mine = "SELECT score FROM reference_agreement WHERE reference LIKE '%hard.npy'"
    assert sorted(_q(ws, mine).score) == sorted(COMPARED)
    before = len(_q(ws, "SELECT * FROM reference_agreement"))
    capsys.readouterr()
    assert main([*args, "--score", "nope", "--workspace", str(ws)]) == 2
    assert len(_q(ws, "SELECT * FROM reference_agreement")) == before  # nothing more stored
