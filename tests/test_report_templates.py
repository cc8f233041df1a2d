"""The pages from jinja2 templates (escaped names, shipped as package data) and the pruning
benchmarks' figures read in one place (`curate.findings`): the packaged file equals what
benchmarks/results give, and the regime note, the report's caption and the docs quote it."""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path

import pytest

from curate import findings
from curate.findings import fmt
from curate.humanstudy import render_html
from curate.report import page
from curate.report.page import Figure, Headline, Section

ROOT = Path(__file__).resolve().parent.parent
EVIL = "<script>alert(1)</script>"  # a class, run or observer name is free text
EVIL_TAG = '<img src=x onerror="alert(1)">'  # a legal run name (no slash)
PNG = b"\x89PNG\r\n\x1a\n"  # the page embeds the bytes as they are


def _evil_section(tmp_path: Path) -> Section:
    (tmp_path / "f.png").write_bytes(PNG)
    sec = Section("pliushch", f"Pliushch et al.: {EVIL}", f"intro {EVIL}")
    sec.notes.append(f"class {EVIL} has no images")
    sec.tables.append((f"observers {EVIL}", ["observer", "n"], [[EVIL, "3"]]))
    sec.figures.append(Figure("f.png", f"title {EVIL_TAG}", f"class {EVIL!r} is agreed on most"))
    sec.headlines.append(Headline(sec.title, f"quantity {EVIL}", EVIL, {"test": 0.5}))
    return sec


def test_report_page_escapes_every_name(tmp_path):
    title = f"curate report: {EVIL_TAG}"
    html = page.render(
        tmp_path, title, [f"run {EVIL_TAG} on {EVIL}"], ["test"], [_evil_section(tmp_path)]
    )
    assert "<script" not in html and "<img src=x" not in html  # no markup from a name
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in html
    assert html.count('src="data:image/png;base64,') == 1  # the figure itself is still embedded
    assert f"<title>curate report: {EVIL_TAG}</title>" not in html


def test_report_escapes_a_class_name_end_to_end(small_scored_ws, tmp_path):
    """Class names reach the page through the catalog (the per-class agreement caption)."""
    from curate import catalog
    from curate.cli import main
    from curate.report import HTML
    from curate.workspace import Workspace

    with catalog.write(Workspace(small_scored_ws)) as con:
        con.execute("UPDATE category_agreement SET category = ? || category", [EVIL])
    out = tmp_path / "report"
    assert main(["report", "digits", "--workspace", str(small_scored_ws), "--out", str(out)]) == 0
    html = (out / HTML).read_text()
    assert "<script" not in html
    assert "class_name &#39;&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_pairs_page_escapes_the_run_and_file_names():
    trials = [
        {"trial": 0, "phase": "test", "left_idx": 1, "right_idx": 2}
        | {"left_file": f"images/{EVIL}_1.png", "right_file": "images/t_2.png"}
    ]
    for run in (EVIL, "</script><script>alert(1)</script>", EVIL_TAG):
        html = render_html(trials, run)
        assert html.count("<script>") == 1 and html.count("</script>") == 1  # the page's own
        assert "<img src=x" not in html
        line = next(x for x in html.splitlines() if x.startswith("const TRIALS = "))
        m = re.fullmatch(r"const TRIALS = (.*); const RUN = (.*);", line)
        assert json.loads(m[2]) == run and json.loads(m[1]) == trials  # the same values in JS
    plain = render_html(trials[:0], "digits")
    assert 'const TRIALS = []; const RUN = "digits";' in plain


def test_templates_and_findings_are_package_data():
    """A wheel carries what setuptools' package-data names: every template and findings.json."""
    tomllib = pytest.importorskip("tomllib")
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    shipped = data["package-data"]
    templates = sorted((ROOT / "curate" / "report" / "templates").iterdir())
    assert {t.name for t in templates} >= {"report.html.j2", "pairs.html.j2"}
    for t in templates:
        rel = t.relative_to(ROOT / "curate" / "report").as_posix()
        assert any(fnmatch.fnmatch(rel, p) for p in shipped["curate.report"]), rel
    assert "findings.json" in shipped["curate"] and (ROOT / "curate" / "findings.json").is_file()
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert "jinja2>=3.1" in deps


# ----------------------------------------------------------------------------- findings


def test_packaged_findings_equal_the_benchmark_results(capsys):
    """curate/findings.json is what benchmarks/results/prune*.json give today; when a benchmark
    changes, `python -m curate.findings` writes it again (and this test says so until then)."""
    if not findings.RESULTS.is_dir():
        pytest.skip("benchmarks/results is not in this tree")
    assert findings.load() == findings.compute()
    assert findings.main(["--check"]) == 0, capsys.readouterr().out
    sources = sorted(p.name for p in findings.RESULTS.glob(findings.PATTERN))
    assert findings.load()["sources"] == sources


def test_fmt_rounds_halves_away_from_zero():
    assert fmt(5.15) == "5.2" and fmt(4.45) == "4.5" and fmt(1.35) == "1.4"
    assert fmt(-0.93) == "-0.9" and fmt(-0.95) == "-1.0"
    assert fmt(18.095, 0) == "18" and fmt(0.75575, 2) == "0.76" and fmt(0.936625, 3) == "0.937"
    # noise beyond 6 decimals (0.81665 stored as 0.81664999...) does not turn a half down
    assert fmt(0.8166499999999999, 4) == "0.8167" and fmt(0.816649, 4) == "0.8166"


def _result(held_out: float, cells: dict[str, tuple[str, str, float, float]]) -> dict:
    return {
        "setting": {"dataset": "CIFAR-10 (toy)"},
        "scoring_run": {"mean_final_acc": {"test": held_out, "train": 0.99}},
        "full": {"test_acc_mean": 0.9},
        "cells": {
            name: {"method": m, "strategy": s, "keep": k, "test_acc_mean": a}
            for name, (m, s, k, a) in cells.items()
        },
    }


def test_thresholds_by_hand(tmp_path):
    """hard lost to random at 50 % kept where the scoring run reached 0.55 and 0.71, beat it at
    0.93: the thresholds are 0.71 rounded up (0.8) and 0.93 rounded down (0.9)."""
    lost = {"random-random-50": ("random", "random", 0.5, 0.60)}
    lost["acc-hard-50"] = ("accessibility", "hard", 0.5, 0.50)
    beat = {"random-random-50": ("random", "random", 0.5, 0.60)}
    beat["el2n-hard-50"] = ("el2n@1", "hard", 0.5, 0.61)
    for name, r in (
        ("a", _result(0.55, lost)),
        ("b", _result(0.71, lost)),
        ("c", _result(0.93, beat)),
    ):
        (tmp_path / f"prune_{name}.json").write_text(json.dumps(r))
    runs = findings.settings(tmp_path)
    assert runs["prune_a"]["cells"][1]["vs_random"] == -10.0
    assert findings.thresholds(runs) == (0.8, 0.9)
    (tmp_path / "prune_d.json").write_text(json.dumps(_result(0.75, beat)))  # beat under 0.8
    with pytest.raises(ValueError, match="no longer separate"):
        findings.thresholds(findings.settings(tmp_path))


def test_regime_note_and_caption_quote_the_findings():
    from curate import prune as pr
    from curate.report.pruning import _regime

    f = findings.load()
    low, high = f["held_out_low"], f["held_out_high"]
    assert (pr.HELD_OUT_LOW, pr.HELD_OUT_HIGH) == (low, high) == (0.8, 0.9)
    least, most = f["low"]["hard_half_lost_by"]
    note = pr.regime_note("hard", low - 0.01)
    assert f"every scoring run under {low:.2f} on held-out data" in note
    assert f"(by {fmt(least)} to {fmt(most, 0)} points)" in note
    # the words around the figures: what the note says holds in the results
    assert least > 0  # every hard cell at 50 % kept under the low threshold lost to random
    assert f["low"]["hard_30_70"]["not_below_random"] == 1 and "all but one tie" in note
    assert fmt(f["low"]["hard_30_70"]["best_vs_random"]) in ("0.0", "-0.0")  # a tie
    assert f["high"]["easy"]["not_below_random"] == 0  # easy lost at every fraction measured
    assert f["high"]["hard_half_beat_by"][0] > 0  # hard beat random at 50 % kept
    assert f"every scoring run at {high:.2f} or more" in pr.regime_note("easy", high)
    caption = _regime(("test", 0.7), {"test": 0.7, "train": 0.9}, 3)
    assert f"reached {high:.2f} or more on held-out data" in caption
    assert f"stayed under {low:.2f}." in caption


def test_the_docs_quote_the_findings():
    """The figures of the pruning summary and recommendation (docs/benchmarks.md, the prune guide)
    are the findings' figures: a benchmark rerun that moves one fails here until the docs say it."""
    f = findings.load()
    q, lo, hi = f["quoted"], f["low"], f["high"]
    low, high = f["held_out_low"], f["held_out_high"]
    from curate.prune import HARD_WARN_KEEP

    ccs, c5k, c50k = q["ccs_vs_random"], q["cifar5k"], q["cifar50k_equal_steps_ccs_half"]
    below = q["cifar_half_best_below_full"]
    mnist = q["mnist_hard_half"]
    assert mnist["acc"] == mnist["full"]  # "keeps full data's"
    phrases = [
        # In short
        f"`hard` by accessibility keeps full data's {fmt(mnist['full'], 4)} at 50 % kept",
        f"at 50 % kept the best strategy is {fmt(below[0])} to {fmt(below[1])} points below full "
        "data",
        f"the 50 % target is met by `ccs`** ({fmt(c50k['acc'], 4)} against {fmt(c50k['full'], 4)}, "
        f"{fmt(c50k['vs_random'], 2)} points above random)",
        "only a random half comes within 1 point "
        f"({fmt(q['cifar10k_equal_steps_random_half_vs_full'])} at 3 epochs)",
        # Which strategy curate recommends
        f"CIFAR-10 at CPU scale reached {fmt(lo['held_out'][0], 2)} to {fmt(lo['held_out'][1], 2)} "
        f"on test, MNIST {fmt(hi['held_out'][0], 3)} and {fmt(hi['held_out'][1], 3)}",
        f"members that fit {fmt(100 * c5k['train_fit'], 0)} % of theirs still made `hard` lose by "
        f"{fmt(-c5k['hard_half_vs_random'], 0)} points at 50 % kept",
        f"**{high:.2f} or more on held-out data**",
        f"**Under {low:.2f}**",
        f"by {fmt(lo['hard_half_lost_by'][0])} to {fmt(lo['hard_half_lost_by'][1], 0)} points, "
        "whatever the score",
        f"+{fmt(c5k['easy_30_vs_random'])} points at 30 % kept, +{fmt(c5k['easy_90_vs_random'])} at "
        "90 %",
        f"(30 % kept: +{fmt(q['cifar10k_e10_ccs_30_vs_random'])} points over random)",
        f"**In between ({low:.2f} to {high:.2f}), or not known**",
        f"`ccs` by accessibility lost least ({fmt(-ccs['worst'])} points at worst, in "
        f"{ccs['cells']} cells) and gained up to {fmt(ccs['best'])} at "
        f"{100 * ccs['best_keep']:.0f} % kept",
        f"`hard` at {100 * HARD_WARN_KEEP:.0f} % kept or less from a run under {low:.2f} on "
        f"held-out data, `easy` from one at {high:.2f} or more",
    ]
    pages = [ROOT / "docs" / "benchmarks.md", ROOT / "docs" / "guide" / "prune.md"]
    text = " ".join(" ".join(p.read_text(encoding="utf-8") for p in pages).split())
    missing = [p for p in phrases if p not in text]
    assert not missing, missing
