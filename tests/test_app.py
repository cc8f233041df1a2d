"""The explorer: its query functions, every view through Streamlit's AppTest on a small real catalog,
and the app served on localhost and rendered in headless Chromium."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import catalog_rows, free_port, headless_chromium, stop_process

from curate import catalog, explore
from curate.cli import main
from curate.workspace import Workspace

ROOT = __import__("pathlib").Path(__file__).resolve().parent.parent
APP = str(ROOT / "app" / "app.py")


@pytest.fixture(scope="module")
def ws(small_scored_ws):
    """This module's own copy of the small scored workspace (the app's cached read-only connection
    holds it open)."""
    return small_scored_ws


@pytest.fixture()
def con(ws):
    with catalog.read(Workspace(ws)) as c:  # the sandboxed reader the app uses
        yield c


def test_query_functions(ws, con):
    assert explore.datasets(con) == ["digits"]
    assert explore.runs(con)["run"].tolist() == ["digits"]
    ov = explore.run_overview(con, "digits")
    assert set(ov["split"]) == {"train", "test"} and len(ov) == 6
    epochs, obs, null = explore.tpa_heatmap(con, "digits", "test")
    assert (
        obs.shape == (5, 3)
        and np.allclose(obs.sum(axis=0), 359)
        and np.allclose(null.sum(axis=0), 359)
    )
    subset = explore.Subset(["impossible"], score="accessibility", score_range=(0.0, 0.5))
    clause, params = explore.subset_where("digits", "test", subset)
    n = explore.subset_count(con, clause, params)
    page = explore.subset_page(con, clause, params, page=0, page_size=5)
    assert len(page) == min(5, n) and (page["ddd"] == "impossible").all()
    assert (np.diff(page["confidence"]) >= 0).all()  # least confident (hardest) first
    row = explore.instance_detail(con, "digits", "test", 3)
    correct, pred, members, epochs = explore.prediction_timeline(con, "digits", "test", 3)
    assert correct.shape == (4, 3) and correct[:, -1].sum() == row["final_correct"]
    curves = explore.agreement_curves(con, "digits", "test")
    assert set(curves["statistic"]) >= {"dct_pct", "segment_count"}
    assert len(explore.scatter_sample(con, "digits", "train", "dct_pct", n=100)) == 100
    cats = explore.category_curves(con, "digits", "test")
    last = cats[(cats["attribute"] == "class_name") & (cats["epoch"] == cats["epoch"].max())]
    assert last["n"].sum() == 359 and len(last) == 10
    e = int(cats["epoch"].max())
    strict = con.execute(  # every member right at epoch e, per class, straight from the scores
        "SELECT class_name, avg((correct_by_epoch[?] = members)::INT) AS f FROM difficulty "
        "WHERE run = 'digits' AND split = 'test' GROUP BY class_name",
        [e + 1],
    ).df()
    got = last.set_index("category")["frac_strict"]
    assert np.allclose(strict.set_index("class_name")["f"].reindex(got.index), got)
    mat = explore.consistency_matrix(con, "digits", "test")
    assert mat.shape == (4, 4) and np.allclose(np.diag(mat), 1) and np.allclose(mat, mat.T)
    imgs = explore.thumbnails(ws, "digits", "test", [5, 1, 3])
    from sklearn.datasets import load_digits

    src = con.execute(
        "SELECT idx, source_index FROM instances WHERE split='test' AND idx IN (5, 1, 3)"
    ).fetchall()
    by = dict(src)
    raw = np.rint(load_digits().images * (255 / 16)).astype(np.uint8)
    for i, im in zip([5, 1, 3], imgs, strict=True):
        assert np.array_equal(im[..., 0], raw[by[i]])
    from curate.errors import CurateError

    with pytest.raises(CurateError):
        explore.subset_count(
            con, *explore.subset_where("digits", "test", explore.Subset(where="nope ="))
        )
    with pytest.raises(CurateError):
        explore.sql_console(ws, "DELETE FROM instances")


def _apptest(ws, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("CURATE_WORKSPACE", str(ws))
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    return at


def _load_app():
    """app/app.py as a module, imported the way a test or tool would: it must draw nothing."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("curate_explorer_app", APP)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_app_imports_without_drawing_and_lists_its_views():
    from streamlit.testing.v1 import AppTest

    app = _load_app()
    assert list(app.VIEWS) == VIEWS
    assert all(callable(f) and f.__module__ == "curate_explorer_app" for f in app.VIEWS.values())
    at = AppTest.from_file(APP, default_timeout=120)  # the sidebar offers the table's titles
    at.run()
    assert not at.exception, at.exception


VIEWS = [
    "Run overview",
    "TP-agreement",
    "Subset explorer",
    "Image detail",
    "Agreement vs statistics",
    "Members",
    "Label issues",
    "References",
    "SQL console",
]


def _chart_frames(at) -> list:
    """The data of every Altair chart on the page, as DataFrames (Streamlit ships it as Arrow)."""
    import pyarrow as pa

    frames = []
    for el in at.get("vega_lite_chart"):
        for ds in el.proto.datasets:
            frames.append(pa.ipc.open_stream(ds.data.data).read_all().to_pandas())
    return frames


@pytest.mark.parametrize("view", VIEWS)
def test_every_view_shows_a_catalog_value(ws, monkeypatch, tmp_path, view):
    """Each view renders and shows at least one figure read straight from the catalog (split test,
    the sidebar's first)."""
    rows = lambda sql: catalog_rows(ws, sql)  # noqa: E731
    where = "run = 'digits' AND split = 'test'"
    if view == "References":  # a reference comparison to show: one value per train instance
        n = rows("SELECT count(*) FROM instance_scores WHERE run = 'digits' AND split = 'train'")
        np.save(tmp_path / "ref.npy", np.arange(n[0][0], dtype=float))
        ref = ["evaluate", "digits", "--reference", str(tmp_path / "ref.npy")]
        assert main([*ref, "--workspace", str(ws)]) == 0
    at = _apptest(ws, monkeypatch)
    assert at.sidebar.radio[0].options == VIEWS
    assert at.sidebar.selectbox[2].value == "test"
    at.sidebar.radio[0].set_value(view).run()
    assert not at.exception, at.exception
    assert at.header[0].value == view
    if view == "Run overview":  # the table under the charts: the last epoch's mean accuracy
        (acc,) = rows(f"SELECT acc_mean FROM epoch_metrics WHERE {where} ORDER BY epoch DESC")[0]
        shown = at.dataframe[0].value.sort_values("epoch")["acc_mean"].iloc[-1]
        assert shown == pytest.approx(acc, abs=1e-12)  # the stored double, passed through Arrow
    if view == "TP-agreement":  # the epoch slider spans the logged epochs, at the last one
        epochs = [e for (e,) in rows(f"SELECT epoch FROM epoch_metrics WHERE {where} ORDER BY 1")]
        assert [int(e) for e in at.select_slider[0].options] == epochs
        assert int(at.select_slider[0].value) == epochs[-1]
    if view == "Subset explorer":  # the impossible instances of the split, all accessibilities
        (n,) = rows(f"SELECT count(*) FROM difficulty WHERE {where} AND ddd = 'impossible'")[0]
        assert any(
            x.label.startswith(f"{n} images, least confident first") for x in at.number_input
        )
    if view == "Image detail":  # instance 0's class and difficulty group
        name, ddd = rows(f"SELECT class_name, ddd FROM difficulty WHERE {where} AND idx = 0")[0]
        detail = at.dataframe[0].value["value"]
        assert detail["class_name"] == name and detail["ddd"] == ddd
    if view == "Agreement vs statistics":  # the correlation table and the per-category curves
        stats = rows(f"SELECT DISTINCT statistic FROM correlations WHERE {where} ORDER BY 1")
        assert sorted(set(at.dataframe[0].value["statistic"])) == [s for (s,) in stats]
        assert "strict agreement per category" in [h.value for h in at.subheader]
        assert "class_name" in next(s for s in at.selectbox if s.label == "attribute").options
    if view == "Members":  # the kappa heat map of all instances at the last epoch
        (kappa,) = rows(
            f"SELECT kappa FROM error_consistency WHERE {where} AND subset = 'all' AND member_i = 0 "
            "AND member_j = 1 AND epoch = (SELECT max(epoch) FROM error_consistency "
            f"WHERE {where})"
        )[0]
        shown = _chart_frames(at)[0]
        pair = shown[(shown["i"].astype(int) == 0) & (shown["j"].astype(int) == 1)]["kappa"]
        assert pair.iloc[0] == pytest.approx(kappa, abs=1e-12)  # the stored double
    if view == "Label issues":  # the flagged count in the caption, or the note that there is none
        (n,) = rows(f"SELECT count(*) FROM label_issues WHERE {where} AND flagged")[0]
        if n:
            assert any(c.value.startswith(f"{n} flagged labels") for c in at.caption)
        else:
            assert "No flagged labels" in at.info[0].value
    if view == "References":  # the comparison just stored, newest first
        (rho,) = rows("SELECT spearman FROM reference_agreement WHERE run = 'digits'")[0]
        assert at.dataframe[0].value["spearman"].iloc[0] == pytest.approx(rho, abs=1e-12)
    if view == "SQL console":
        at.text_area[0].set_value("SELECT count(*) AS n FROM instances").run()
        at.button[0].click().run()
        assert not at.exception and at.dataframe[0].value["n"][0] == 1797
        at.text_area[0].set_value("DROP TABLE instances").run()
        at.button[0].click().run()
        assert at.error and "SQL error" in at.error[0].value  # shown in the page, app still up
        at.text_area[0].set_value("SELECT count(*) AS n FROM instances").run()
        at.button[0].click().run()
        assert at.dataframe[0].value["n"][0] == 1797  # the catalog was not touched


def test_app_without_catalog_or_runs(tmp_path, monkeypatch):
    at = _apptest(tmp_path, monkeypatch)
    assert "No catalog" in at.warning[0].value
    assert main(["ingest", "digits", "--workspace", str(tmp_path)]) == 0
    at = _apptest(tmp_path, monkeypatch)
    assert "No scored run" in at.info[0].value


@pytest.mark.slow
def test_served_app_in_headless_chromium(ws, tmp_path):
    from selenium.webdriver.common.by import By

    browser = headless_chromium(tmp_path)  # skips before the server starts when chromium is missing
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            APP,
            "--server.port",
            str(port),
            "--server.headless",
            "true",
            "--browser.gatherUsageStats",
            "false",
            "--server.address",
            "127.0.0.1",
            "--",
            "--workspace",
            str(ws),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                time.sleep(0.5)
        browser.get(f"http://127.0.0.1:{port}")
        for view in (
            "Run overview",
            "TP-agreement",
            "Subset explorer",
            "Image detail",
            "Agreement vs statistics",
            "Members",
            "SQL console",
        ):
            deadline = time.time() + 90
            while time.time() < deadline:
                labels = [
                    e
                    for e in browser.find_elements(
                        By.CSS_SELECTOR, "[data-testid='stSidebar'] label"
                    )
                    if e.text.strip() == view
                ]
                if labels:
                    break
                time.sleep(0.5)
            assert labels, f"the sidebar never showed {view}"
            labels[0].click()
            deadline = time.time() + 90
            while time.time() < deadline:
                heads = [h.text for h in browser.find_elements(By.CSS_SELECTOR, "h2")]
                page = browser.find_element(By.TAG_NAME, "body").text.splitlines()
                busy = "Stop" in page or any(
                    "decoding images" in line for line in page
                )  # still running
                if view in heads and not busy:
                    break
                time.sleep(0.5)
            time.sleep(1.0)
            text = browser.find_element(By.TAG_NAME, "body").text
            assert view in text
            assert (
                "Traceback" not in text
                and "Exception" not in text
                and "Error" not in text.replace("error consistency", "")
            )
            browser.save_screenshot(str(artifacts / f"app-{view.lower().replace(' ', '-')}.png"))
    finally:
        browser.quit()
        stop_process(server)


def test_reliability_curves_are_queried(con):
    rel = explore.reliability(con, "digits", "test")
    assert set(rel["curve"]) == {"members", "epochs"}
    mem = rel[rel["curve"] == "members"]
    assert mem["x"].min() == 2 and mem["extrapolated"].any()
    ep = rel[rel["curve"] == "epochs"]
    # the full run against itself: identical orders, so 1 up to float rounding only
    assert abs(ep["spearman"].iloc[-1] - 1.0) < 1e-12
