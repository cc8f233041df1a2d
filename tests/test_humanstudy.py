"""Human-study pairs: the export, the browser experiment end to end in headless Chromium, the analysis."""

from __future__ import annotations

import os
import time

import numpy as np
import pandas as pd
import pytest
from conftest import headless_chromium

from curate import catalog
from curate.cli import main
from curate.humanstudy import choose_pairs, observer_accuracy
from curate.workspace import Workspace


def test_choose_pairs_by_hand():
    df = pd.DataFrame(
        {
            "idx": range(8),
            "label": [0, 0, 1, 1, 0, 1, 0, 1],
            "ddd": ["trivial"] * 4 + ["impossible"] * 4,
            "accessibility": [1, 0.9, 0.95, 0.8, 0.0, 0.1, 0.05, 0.2],
        }
    )
    pairs = choose_pairs(df, 3, same_class=False, seed=0)
    assert len(pairs) == 3 and len({t for t, _ in pairs}) == 3 and all(t < 4 <= i for t, i in pairs)
    assert choose_pairs(df, 3, False, 0) == pairs  # seeded
    same = choose_pairs(df, 4, same_class=True, seed=1)
    assert all(df.label[t] == df.label[i] for t, i in same)
    from curate.errors import CurateError

    with pytest.raises(CurateError, match="4 trivial and 4 impossible"):
        choose_pairs(df, 5, False, 0)


def test_observer_accuracy_binomial():
    r = observer_accuracy(np.array([1] * 9 + [0], bool))
    assert abs(r["accuracy"] - 0.9) < 1e-12 and r["p"] == pytest.approx(
        22 / 1024
    )  # P(X >= 9) * 2 for Binomial(10, .5)


@pytest.fixture(scope="module")
def scored(small_scored_ws):
    return small_scored_ws


def test_export_and_refusals(scored, tmp_path, capsys):
    out = tmp_path / "study"
    assert (
        main(
            [
                "pairs",
                "digits",
                "--n",
                "6",
                "--train-trials",
                "2",
                "--seed",
                "4",
                "--out",
                str(out),
                "--workspace",
                str(scored),
            ]
        )
        == 0
    )
    man = pd.read_csv(out / "manifest.csv")
    assert list(man["phase"]) == ["training"] * 2 + ["test"] * 6
    assert set(man["impossible_side"]) <= {"left", "right"} and man["seed"].eq(4).all()
    from PIL import Image

    for f in pd.concat([man["left_file"], man["right_file"]]):
        assert Image.open(out / f).size == (224, 224)

    con = catalog.read(Workspace(scored))
    ddd = dict(
        con.execute(
            "SELECT idx, ddd FROM difficulty WHERE run='digits' AND split='test'"
        ).fetchall()
    )
    for r in man.itertuples():
        imp = r.left_idx if r.impossible_side == "left" else r.right_idx
        triv = r.right_idx if r.impossible_side == "left" else r.left_idx
        assert ddd[imp] == "impossible" and ddd[triv] == "trivial"
    assert (
        main(["pairs", "digits", "--out", str(out), "--workspace", str(scored)]) == 2
    )  # exists: kept
    assert "not empty" in capsys.readouterr().err
    assert (
        main(
            [
                "pairs",
                "digits",
                "--n",
                "100000",
                "--out",
                str(tmp_path / "big"),
                "--workspace",
                str(scored),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "trivial" in err and "impossible" in err and not (tmp_path / "big").exists()


def test_experiment_in_headless_chromium(scored, tmp_path):
    from selenium.webdriver.common.by import By

    out = tmp_path / "study"
    assert (
        main(
            [
                "pairs",
                "digits",
                "--n",
                "6",
                "--train-trials",
                "2",
                "--out",
                str(out),
                "--workspace",
                str(scored),
            ]
        )
        == 0
    )
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    browser = headless_chromium(tmp_path, downloads)
    try:
        browser.get(f"file://{out / 'index.html'}")
        browser.find_element(By.ID, "start").click()
        body = browser.find_element(By.TAG_NAME, "body")
        man = pd.read_csv(out / "manifest.csv")
        chosen = []
        for k in range(len(man)):
            assert browser.find_element(By.ID, "progress").text == f"trial {k + 1} / {len(man)}"
            if k % 3 == 2:
                browser.find_element(By.ID, "right").click()
                chosen.append("right")
            else:
                body.send_keys("f" if k % 2 == 0 else "j")
                chosen.append("left" if k % 2 == 0 else "right")
        assert browser.find_element(By.ID, "done").is_displayed()
        deadline = time.time() + 20
        while time.time() < deadline and not list(downloads.glob("answers-*.csv")):
            time.sleep(0.1)
        files = list(downloads.glob("answers-*.csv"))
        assert len(files) == 1, "the answers CSV was not downloaded"
        ans = pd.read_csv(files[0])
        assert list(ans["trial"]) == list(range(len(man))) and list(ans["chosen_side"]) == chosen
        assert (ans["rt_ms"] >= 0).all()
        browser.save_screenshot(str(tmp_path / "done.png"))
    finally:
        browser.quit()
    # the analysis of that observer and a second, made-up one
    other = ans.assign(chosen_side=np.where(ans["chosen_side"] == "left", "right", "left"))
    other.to_csv(tmp_path / "observer2.csv", index=False)
    assert main(["pairs-analyse", str(out), str(files[0]), str(tmp_path / "observer2.csv")]) == 0
    table = pd.read_csv(out / "analysis.csv")
    assert table["n"].tolist() == [6, 6] and table["accuracy"].sum() == pytest.approx(
        1.0
    )  # opposite answers
    cons = pd.read_csv(out / "consistency.csv")
    assert cons["kappa"][0] == pytest.approx(-1.0)
    assert (out / "analysis.png").stat().st_size > 1000


def test_analyse_refuses_bad_files(scored, tmp_path, capsys):
    out = tmp_path / "s"
    assert (
        main(
            [
                "pairs",
                "digits",
                "--n",
                "3",
                "--train-trials",
                "0",
                "--out",
                str(out),
                "--workspace",
                str(scored),
            ]
        )
        == 0
    )
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    assert main(["pairs-analyse", str(out), str(bad)]) == 2
    assert "lacks columns" in capsys.readouterr().err
    assert main(["pairs-analyse", str(tmp_path / "nowhere"), str(bad)]) == 2
    capsys.readouterr()
    # an empty file, a folder, a FIFO (reading it once blocked for ever): one line each
    empty, folder, fifo = tmp_path / "empty.csv", tmp_path / "folder.csv", tmp_path / "fifo.csv"
    empty.write_text("")
    folder.mkdir()
    os.mkfifo(fifo)
    for answers, words in ((empty, "is empty"), (folder, "not a regular"), (fifo, "not a regular")):
        assert main(["pairs-analyse", str(out), str(answers)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and words in err, err
    # a manifest without its columns
    (out / "manifest.csv").write_text("x,y\n1,2\n")
    assert main(["pairs-analyse", str(out), str(bad)]) == 2
    err = capsys.readouterr().err
    assert "lacks columns ['trial', 'phase', 'impossible_side']" in err and "--out" not in err
    assert not (out / "analysis.csv").exists()


def test_observer_names_with_dollars_are_drawn_as_text(tmp_path):
    """Observer names are answer files' names: 'a$^{$b.csv' stopped analysis.png with matplotlib's
    mathtext ParseSyntaxException; it is drawn as written."""
    import pandas as pd

    from curate.humanstudy import _plot

    names = ["a$^{$b", "c"]
    table = pd.DataFrame({"observer": names, "accuracy": [0.5, 1.0], "n": [2, 2]})
    cons = pd.DataFrame({"observer_a": ["a$^{$b"], "observer_b": ["c"], "kappa": [0.0]})
    _plot(table, cons, names, tmp_path / "analysis.png")
    assert (tmp_path / "analysis.png").stat().st_size > 0
