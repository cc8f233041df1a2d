"""`curate report`: every section's figures written and embedded, the headline numbers equal to the
catalog's, the human study read from `pairs-analyse` output, and the refusals."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from curate.cli import main
from curate.report import HEADLINE_CSV, HTML, MARKER
from curate.report.hacohen import shown_epochs
from curate.report.page import format_value
from curate.sql import fetch
from curate.workspace import Workspace

# figures every scored digits run with image statistics has, per split
PER_SPLIT = [
    "pliushch_agreement",
    "pliushch_statistics",
    "pliushch_category_class_name",
    "hacohen_tpa_hist",
    "hacohen_bimodality",
    "hacohen_learned_epoch",
    "hacohen_accessibility",
    "hacohen_binned",
    "meding_correct_count",
    "meding_ddd",
    "meding_consistency",
    "meding_flips",
    "reliability",
]


def test_shown_epochs_by_hand():
    # geomspace(1, 12, 6) = 1, 1.64, 2.70, 4.43, 7.30, 12 -> rounded 1, 2, 3, 4, 7, 12
    assert shown_epochs(12) == [1, 2, 3, 4, 7, 12]
    assert shown_epochs(2) == [1, 2]
    assert shown_epochs(1) == [1]
    assert shown_epochs(0) == [0]


def test_format_value_by_hand():
    assert format_value(0.8333333) == "0.833"
    assert format_value(0.8333333, "%") == "83.3 %"
    assert format_value(11.0, "d") == "11"
    assert format_value(None) == "—" and format_value(float("nan")) == "—"


def _hand_catalog(root, rows: list[tuple]) -> Workspace:
    """A catalog holding only instance_scores rows (run, split, idx, accessibility, learned_epoch)."""
    from curate import catalog

    ws = Workspace(root)
    with catalog.write(ws) as con:
        con.executemany(
            "INSERT INTO instance_scores (run, split, idx, accessibility, learned_epoch, members, "
            "epochs) VALUES (?, ?, ?, ?, ?, 4, 3)",
            rows,
        )
    return ws


def test_learned_by_accessibility_by_hand(tmp_path, monkeypatch):
    from curate.report import catalog

    monkeypatch.setattr(catalog, "FIG6_BINS", 2)
    acc = [0.9, 0.0, 0.7, 0.1, 0.8, 0.2]
    learned = [1, None, 3, None, 1, 4]
    ws = _hand_catalog(
        tmp_path,
        [("r", "test", i, a, le) for i, (a, le) in enumerate(zip(acc, learned, strict=True))],
    )
    bins = catalog.learned_by_accessibility(ws, "r", "test")
    # bin 1 = accessibility 0.0, 0.1, 0.2 with learned epochs inf, inf, 4 -> sorted 4, inf, inf:
    # 25 % -> 4 (1 of 3 values at or below), median and 75 % -> inf ("not learned")
    # bin 2 = 0.7, 0.8, 0.9 with 3, 1, 1 -> sorted 1, 1, 3: 25 % -> 1, median -> 1, 75 % -> 3
    assert bins["n"].tolist() == [3, 3]
    assert bins["accessibility"].tolist() == pytest.approx([0.1, 0.8])
    assert bins["q25"].tolist() == [4, 1]
    assert bins["median"].tolist() == [np.inf, 1]
    assert bins["q75"].tolist() == [np.inf, 3]


def test_runs_accessibility_by_hand(tmp_path):
    from curate.report.catalog import runs_accessibility

    rows = [("a", "test", i, v, 1) for i, v in enumerate([0, 0.5, 1])]
    rows += [("b", "test", i, v, 1) for i, v in enumerate([0, 1, 1])]
    rows += [("b", "train", 0, 0.3, 1)]  # another split: not joined
    ws = _hand_catalog(tmp_path, rows)
    sample, agg = runs_accessibility(ws, "a", "b", "test")
    # deviations (-1/2, 0, 1/2) and (-2/3, 1/3, 1/3): r = (1/2) / sqrt((1/2) (2/3)) = sqrt(3) / 2
    assert agg["n"] == 3 and agg["r"] == pytest.approx(np.sqrt(3) / 2, abs=1e-12)
    assert sample["a"].tolist() == [0, 0.5, 1] and sample["b"].tolist() == [0, 1, 1]


@pytest.fixture(scope="module")
def pairs_dir(small_scored_ws, tmp_path_factory):
    """A 3-trial 2AFC export with two observers' answers, analysed: alice picks the impossible
    image every time, bob misses the first trial."""
    out = tmp_path_factory.mktemp("study") / "pairs"
    ws = str(small_scored_ws)
    args = ["pairs", "digits", "--n", "3", "--train-trials", "0", "--out", str(out)]
    assert main([*args, "--workspace", ws]) == 0
    man = pd.read_csv(out / "manifest.csv")
    right = man["impossible_side"].to_numpy()
    wrong = np.where(right == "left", "right", "left")
    files = []
    for name, sides in (("alice", right), ("bob", np.r_[wrong[:1], right[1:]])):
        f = out / f"{name}.csv"
        pd.DataFrame({"trial": man["trial"], "chosen_side": sides}).to_csv(f, index=False)
        files.append(str(f))
    assert main(["pairs-analyse", str(out), *files]) == 0
    return out


@pytest.fixture(scope="module")
def report(small_scored_ws, pairs_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "digits"
    ws = str(small_scored_ws)
    assert (
        main(["report", "digits", "--workspace", ws, "--out", str(out), "--pairs", str(pairs_dir)])
        == 0
    )
    return out


def test_every_section_written_and_embedded(report, small_scored_ws):
    ws = Workspace(small_scored_ws)
    html = (report / HTML).read_text()
    meta = json.loads((report / MARKER).read_text())
    splits = fetch(ws, "SELECT DISTINCT split FROM epoch_metrics WHERE run = 'digits'")["split"]
    matched = set(
        fetch(
            ws,
            "SELECT DISTINCT split FROM ensemble_comparison WHERE run_a = 'digits' AND "
            "kind = 'matched-epoch'",
        )["split"]
    )
    expected = {f"{f}_{s}.png" for f in PER_SPLIT for s in splits}
    expected |= {f"hacohen_matched_{s}.png" for s in matched}
    expected.add("meding_human_study.png")
    assert expected <= set(meta["figures"])
    for name in meta["figures"]:
        data = (report / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        assert base64.b64encode(data).decode() in html  # embedded, byte for byte
    for section in ("pliushch", "hacohen", "meding", "reliability"):
        assert f'id="{section}"' in html
    # every figure has a caption naming its paper figure and this run's numbers
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", html, re.S)
    assert len(captions) == len(meta["figures"])
    # the pruning figure (present once a test trained on a pruned subset of this workspace) names
    # the pruning papers instead of a figure of the three papers
    assert all("Paper" in c or "Hacohen et al. found" in c or "Paul et al." in c for c in captions)


def test_page_is_self_contained(report):
    html = (report / HTML).read_text()
    text = re.sub(r'src="data:image/png;base64,[A-Za-z0-9+/=]*"', "", html)  # all but the images
    assert "//" not in text and "url(" not in text  # no address of any kind, no remote style
    assert re.findall(r'src="([^"]*)"', html) and all(
        s.startswith("data:image/png;base64,") for s in re.findall(r'src="([^"]*)"', html)
    )
    assert "<script" not in html and "<link" not in html
    assert all(h.startswith("#") for h in re.findall(r'href="([^"]*)"', html))
    assert not list(report.parent.glob(".*curate-tmp"))  # the temporary folder is gone


def _row(head: pd.DataFrame, quantity: str, split: str) -> pd.Series:
    r = head[(head["quantity"] == quantity) & (head["split"] == split)]
    assert len(r) == 1, quantity
    return r.iloc[0]


def test_headline_numbers_are_the_catalogs(report, small_scored_ws):
    ws = Workspace(small_scored_ws)
    head = pd.read_csv(report / HEADLINE_CSV, keep_default_na=False, na_values=[""])
    html = (report / HTML).read_text()
    em = fetch(ws, "SELECT * FROM epoch_metrics WHERE run = 'digits' ORDER BY split, epoch")
    for split, g in em.groupby("split"):
        last = g.iloc[-1]
        trained = g[g["epoch"] >= 1]
        star = trained.iloc[int(np.argmin(trained["bimodality"].to_numpy()))]
        halves = fetch(
            ws,
            "SELECT pearson_r FROM ensemble_comparison WHERE run_a = 'digits' AND run_b = "
            "'digits' AND kind = 'accessibility' AND split = ?",
            [split],
        )["pearson_r"][0]
        kappa = fetch(
            ws,
            "SELECT subset, avg(kappa) AS k FROM error_consistency WHERE run = 'digits' AND "
            "split = ? AND epoch = ? GROUP BY subset",
            [split, int(last["epoch"])],
        ).set_index("subset")["k"]
        rel = fetch(
            ws,
            "SELECT pearson FROM score_reliability WHERE run = 'digits' AND split = ? AND "
            "curve = 'members' AND NOT extrapolated ORDER BY x DESC LIMIT 1",
            [split],
        )["pearson"][0]
        expected = {
            "mean member accuracy at E": last["acc_mean"],
            "strict agreement at E": last["strict_agreement"],
            "random agreement at E (union-normalised)": last["random_agreement_normalized"],
            "lower bound at E": last["lower_bound"],
            "bimodality at the most bimodal epoch": star["bimodality"],
            "its independent-members null": star["bimodality_null"],
            "the most bimodal epoch (1..E)": star["epoch"],
            "accessibility Pearson r, two halves of the run": halves,
            "trivial at E": last["frac_trivial"],
            "in-between at E": last["frac_in_between"],
            "impossible at E": last["frac_impossible"],
            "mean kappa between members at E, all images": kappa["all"],
            "mean kappa at E, in-between images only": kappa["in-between"],
            "flip rate at epoch 1": trained.iloc[0]["flip_rate"],
            "flip rate at E": last["flip_rate"],
            "split-half r of accessibility at the run's size": rel,
            # the hand-made study: alice 3 of 3, bob 2 of 3; bob's only miss is a trial alice
            # got right, so c_obs = 2/3 = c_exp and kappa = 0
            "human 2AFC accuracy (trivial vs impossible)": 5 / 6,
            "kappa between observers": 0.0,
        }
        for quantity, value in expected.items():
            row = _row(head, quantity, split)
            assert row["value"] == pytest.approx(float(value), abs=1e-12), quantity
            assert f'<td class="num">{row["shown"]}</td>' in html, quantity
    # a quantity the catalog lacks (no wrong labels here) is said to be absent, not made up
    assert "label_noise_eval is empty" in html


def test_halves_scatter_is_the_log(small_scored_ws):
    """The scatter's points (from the prediction log) reproduce the catalog's halves r."""
    from curate.report.catalog import halves_accessibility

    ws = Workspace(small_scored_ws)
    row = fetch(
        ws,
        "SELECT members_a, members_b, pearson_r, n FROM ensemble_comparison WHERE run_a = "
        "'digits' AND run_b = 'digits' AND kind = 'accessibility' AND split = 'test'",
    ).iloc[0]
    pts = halves_accessibility(ws, "digits", "test", list(row["members_a"]), list(row["members_b"]))
    assert len(pts) == row["n"]  # 359 test images, all drawn
    assert np.corrcoef(pts["a"], pts["b"])[0, 1] == pytest.approx(row["pearson_r"], abs=1e-9)


def test_refusals(small_scored_ws, report, tmp_path, capsys):
    ws = str(small_scored_ws)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    assert main(["report", "digits", "--workspace", ws, "--out", str(mine)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "curate did not write" in err and err.count("\n") == 1
    assert (mine / "notes.txt").read_text() == "keep me" and len(list(mine.iterdir())) == 1
    for args, words in (
        (["nope"], "no run 'nope'"),
        (["digits", "--compare", "nope"], "--compare nope"),
        (["digits", "--pairs", str(tmp_path / "nowhere")], "no such folder"),
        (["digits", "--pairs", str(tmp_path)], "pairs-analyse"),
    ):
        out = tmp_path / "r"
        assert main(["report", *args, "--workspace", ws, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error:") and words in err, (args, err)
        assert not out.exists() and not list(tmp_path.glob(".*curate-tmp"))
    # a previous report is replaced as a whole
    stale = report / "stale.png"
    stale.write_bytes(b"x")
    assert (
        main(
            [
                "report",
                "digits",
                "--workspace",
                ws,
                "--out",
                str(report),
                "--pairs",
                str(report.parent),
            ]
        )
        == 2
    )
    assert stale.exists()  # refused (bad --pairs) before touching the old report


@pytest.mark.slow
def test_compare_runs_and_absent_parts(small_scored_ws, tmp_path):
    """A second run on the same dataset: stored comparison rows are shown as stored; a comparison
    the catalog lacks is computed on the spot and said to be; the human study is said absent."""
    ws = str(small_scored_ws)
    common = ["--workspace", ws, "--set", "train.members=2", "--set", "train.epochs=2"]
    assert main(["train", "digits", "--run-name", "report-b", *common]) == 0
    assert main(["score", "report-b", "--compare", "digits", "--workspace", ws]) == 0
    stored = tmp_path / "stored"
    assert main(["report", "report-b", "--workspace", ws, "--out", str(stored)]) == 0
    html = (stored / HTML).read_text()
    head = pd.read_csv(stored / HEADLINE_CSV)
    rows = fetch(
        Workspace(ws),
        "SELECT split, pearson_r FROM ensemble_comparison WHERE run_a = 'report-b' AND "
        "run_b = 'digits' AND kind = 'accessibility'",
    )
    assert len(rows) == 2
    for r in rows.itertuples():
        row = _row(head, "accessibility Pearson r against run digits", r.split)
        assert row["value"] == pytest.approx(r.pearson_r, abs=1e-12)
        assert f"against run digits: r = {r.pearson_r:.3f}" in html
    assert "Human study: absent" in html

    out = tmp_path / "computed"
    args = ["report", "digits", "--compare", "report-b", "--workspace", ws, "--out", str(out)]
    assert main(args) == 0
    html = (out / HTML).read_text()
    head = pd.read_csv(out / HEADLINE_CSV)
    r = fetch(
        Workspace(ws),
        "SELECT corr(a.accessibility, b.accessibility) AS r FROM instance_scores a JOIN "
        "instance_scores b USING (split, idx) WHERE a.run = 'digits' AND b.run = 'report-b' "
        "AND a.split = 'test'",
    )["r"][0]
    # not in ensemble_comparison as digits against report-b: r is computed, and the page says so
    assert "ensemble_comparison has no rows of digits against report-b" in html
    assert f"against run report-b: r = {r:.3f}" in html
    row = head[(head["quantity"] == "accessibility Pearson r against run report-b")]
    assert len(row) == 2 and row["value"].isna().all()  # no stored value to show


def test_out_never_deletes_a_user_folder(small_scored_ws, tmp_path, capsys):
    """A folder that merely holds a file named report.json (another tool's) is not a report: it is
    refused, not replaced."""
    ws = str(small_scored_ws)
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / MARKER).write_text('{"passed": 3}')
    (proj / "main.py").write_text("keep me")
    assert main(["report", "digits", "--workspace", ws, "--out", str(proj)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "curate did not write" in err and err.count("\n") == 1
    assert (proj / "main.py").read_text() == "keep me"
    # a parent that is a file, a parent that cannot be written: one error line, nothing made
    (tmp_path / "afile").write_text("x")
    for out, words in (
        (tmp_path / "afile" / "sub", "not a folder"),
        (tmp_path / "link", "symbolic link"),
        (Path("/proc/curate-report"), "/proc"),  # no files can be made there, even by root
    ):
        if out.name == "link":
            out.symlink_to(proj)
        assert main(["report", "digits", "--workspace", ws, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error:") and words in err and err.count("\n") == 1, err
    assert (tmp_path / "afile").read_text() == "x"
    assert not list(tmp_path.rglob(".*curate-tmp"))


def test_out_holding_user_files_or_the_workspace(report, small_scored_ws, tmp_path, capsys):
    """A previous report is replaced, but not once the user has put a file of their own in it, nor
    when the workspace or the --pairs folder lies inside it."""
    import shutil

    ws = str(small_scored_ws)
    prev = tmp_path / "prev"
    shutil.copytree(report, prev)
    (prev / "stale.png").unlink(missing_ok=True)  # test_refusals' stand-in for a user's file
    assert main(["report", "digits", "--workspace", ws, "--out", str(prev)]) == 0
    capsys.readouterr()
    (prev / "my notes.txt").write_text("keep me")
    assert main(["report", "digits", "--workspace", ws, "--out", str(prev)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "my notes.txt" in err and err.count("\n") == 1
    assert (prev / "my notes.txt").read_text() == "keep me"
    (prev / "my notes.txt").unlink()
    inner = prev / "ws"
    inner.mkdir()
    (inner / "catalog.duckdb").write_bytes((small_scored_ws / "catalog.duckdb").read_bytes())
    assert main(["report", "digits", "--workspace", str(inner), "--out", str(prev)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "holds" in err and err.count("\n") == 1
    assert (inner / "catalog.duckdb").is_file()


def test_a_killed_report_leaves_nothing_after_a_rerun(small_scored_ws, tmp_path):
    """SIGKILL mid-write leaves the temporary folder beside --out (the old report intact); the
    next report removes it. A live process's temporary and a folder of a similar name stay."""
    out = tmp_path / "rep"
    killed = tmp_path / ".rep.999999999-ab12cd34.curate-tmp"  # a process that is gone
    killed.mkdir()
    (killed / "hacohen_tpa_hist_train.png").write_bytes(b"half")
    alive = tmp_path / ".rep.1-ab12cd34.curate-tmp"  # pid 1 is alive: another report's work
    alive.mkdir()
    other = tmp_path / ".rep.mine.tmp"
    other.mkdir()
    assert main(["report", "digits", "--workspace", str(small_scored_ws), "--out", str(out)]) == 0
    assert (out / HTML).is_file() and not killed.exists() and other.is_dir() and alive.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == [alive.name, ".rep.mine.tmp", "rep"]


def test_an_unfinished_run_is_named_as_such(small_scored_ws, tmp_path, capsys):
    """A run killed mid-training can be scored (its epochs so far) but has no `runs` row until its
    training finishes: the report says so and how to finish it, not that the run does not exist."""
    ws = Workspace(small_scored_ws)
    from curate import catalog

    with catalog.write(
        ws
    ) as con:  # what `curate score` of a killed run leaves: scores, no runs row
        con.execute(
            "INSERT INTO epoch_metrics SELECT * REPLACE ('half' AS run) FROM epoch_metrics "
            "WHERE run = 'digits'"
        )
    try:
        for args in (["half"], ["digits", "--compare", "half"]):
            out = tmp_path / "r"
            w = ["--workspace", str(small_scored_ws), "--out", str(out)]
            assert main(["report", *args, *w]) == 2
            err = capsys.readouterr().err
            assert err.startswith("error:") and err.count("\n") == 1, err
            assert "'half'" in err and "not finished" in err and "curate train" in err, err
            assert not out.exists()
    finally:
        with catalog.write(ws) as con:
            con.execute("DELETE FROM epoch_metrics WHERE run = 'half'")


def test_names_with_dollars_are_drawn_as_text(tmp_path):
    """Run and class names are free text: 'm$^{$x' (a legal run name) stopped the report with
    matplotlib's mathtext ParseSyntaxException; it is drawn as written."""
    from curate.report import plot

    fig, ax = plot.figure()
    ax.set_title("run m$^{$x")
    ax.plot([0, 1], [0, 1], label="class a$b$c$")
    ax.legend()
    assert plot.save(fig, tmp_path, "t.png") == "t.png" and (tmp_path / "t.png").stat().st_size


def test_a_damaged_pairs_folder_is_refused(small_scored_ws, tmp_path, capsys):
    """analysis.csv with text where counts belong, or a folder of that name: one error line."""
    ws = str(small_scored_ws)
    bad = tmp_path / "text"
    bad.mkdir()
    (bad / "analysis.csv").write_text("observer,n,correct,accuracy,p\nbob,x,y,z,w\n")
    odd = tmp_path / "folder"
    (odd / "analysis.csv").mkdir(parents=True)
    for pairs, words in ((bad, "not a number"), (odd, "analysis.csv")):
        out = tmp_path / "r"
        args = ["report", "digits", "--workspace", ws, "--out", str(out), "--pairs", str(pairs)]
        assert main(args) == 2
        err = capsys.readouterr().err
        assert err.startswith("error:") and words in err and err.count("\n") == 1, err
        assert not out.exists()
