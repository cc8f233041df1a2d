"""`curate.pipeline.run_pipeline`, the stages of `curate run`: each announced in order, the run
recorded and scored, a rerun resuming rather than retraining; the CLI's bad input refused."""

from __future__ import annotations

from conftest import catalog_rows

from curate.cli import main
from curate.config import load_recipe
from curate.pipeline import run_pipeline
from curate.workspace import Workspace

SETS = ["train.members=2", "train.epochs=1", "score.stats=false", "train.precision=fp32"]


def test_run_pipeline_announces_every_stage_and_scores_the_run(tmp_path, capsys):
    recipe = load_recipe("digits", SETS)
    summary = run_pipeline(recipe, Workspace(tmp_path), run="pipe")
    out = capsys.readouterr().out
    stages = ["== ingest digits", "== train digits: 2 x mlp, 1 epochs", "== score pipe"]
    at = [out.index(s) for s in stages]
    assert at == sorted(at), out
    assert "image statistics" not in out  # score.stats = false skips them
    assert set(summary) == {"train", "test"} and summary["test"]["members"] == 2
    assert catalog_rows(tmp_path, "SELECT run, members, epochs FROM runs") == [("pipe", 2, 1)]
    (n,) = catalog_rows(tmp_path, "SELECT count(*) FROM instance_scores WHERE run = 'pipe'")[0]
    assert n == 1797  # every instance of both splits scored
    # a rerun finds the dataset current and the run trained: it rescores without retraining
    run_pipeline(recipe, Workspace(tmp_path), run="pipe")
    again = capsys.readouterr().out
    assert "digits: up to date" in again, again


def test_curate_run_refuses_an_unknown_recipe(tmp_path, capsys):
    assert main(["run", "no-such-recipe", "--workspace", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert not (tmp_path / "catalog.duckdb").exists()  # nothing half-written
