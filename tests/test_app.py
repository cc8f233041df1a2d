"""The explorer: its query functions, every view through Streamlit's AppTest on a small real catalog,
and the app served on localhost and rendered in headless Chromium."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import free_port, headless_chromium

from curate import db, explore
from curate.cli import main
from curate.workspace import Workspace

ROOT = __import__("pathlib").Path(__file__).resolve().parent.parent
APP = str(ROOT / "app" / "app.py")


@pytest.fixture(scope="module")
def ws(small_scored_ws, tmp_path_factory):
    """A copy: AppTest runs the app in this process, and its cached read-only connection would stop
    other tests from writing to the shared workspace."""
    import shutil

    copy = tmp_path_factory.mktemp("app") / "ws"
    shutil.copytree(small_scored_ws, copy)
    return copy


@pytest.fixture()
def con(ws):
    with db.read(Workspace(ws)) as c:  # the sandboxed reader the app uses
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
    assert (np.diff(page["accessibility"]) >= 0).all()
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
        explore.sql_console(con, "DELETE FROM instances")


def _apptest(ws, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("CURATE_WORKSPACE", str(ws))
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    return at


@pytest.mark.parametrize(
    "view",
    [
        "Run overview",
        "TP-agreement",
        "Subset explorer",
        "Image detail",
        "Agreement vs statistics",
        "Members",
        "Label issues",
        "References",
        "SQL console",
    ],
)
def test_every_view_renders(ws, monkeypatch, view):
    at = _apptest(ws, monkeypatch)
    at.sidebar.radio[0].set_value(view).run()
    assert not at.exception, at.exception
    assert at.header[0].value == view
    if view == "Subset explorer":
        assert any("images; page" in n.label for n in at.number_input)
    if view == "Agreement vs statistics":  # the per-category curves, class_name at least
        assert "strict agreement per category" in [h.value for h in at.subheader]
        assert "class_name" in next(s for s in at.selectbox if s.label == "attribute").options
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
        server.terminate()
        server.wait(10)


def test_reliability_curves_are_queried(con):
    rel = explore.reliability(con, "digits", "test")
    assert set(rel["curve"]) == {"members", "epochs"}
    mem = rel[rel["curve"] == "members"]
    assert mem["x"].min() == 2 and mem["extrapolated"].any()
    ep = rel[rel["curve"] == "epochs"]
    assert ep["spearman"].iloc[-1] == 1.0  # the full run against itself
