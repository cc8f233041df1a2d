"""One recipe path for every command: what each command reads of a recipe (`Reads`), its `--set`
and flags merged and checked in one place, help texts and choices from the registries, and
pydantic's errors as one line naming the key."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, catalog_rows

from curate.cli import build_parser, main
from curate.config import SECTIONS, keys, load_recipe
from curate.errors import CurateError

# the positional arguments each command that takes --set needs to get as far as its recipe; a
# command that starts taking --set must be added here (the test below fails until it is)
POSITIONAL = {
    "ingest": ["digits"],
    "train": ["digits"],
    "score": ["digits"],
    "stats": ["digits"],
    "run": ["digits"],
}


def _commands() -> dict[str, object]:
    """Every subcommand's parser, by name (the order of `curate.cli.COMMANDS`)."""
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return dict(sub.choices)


def _takes_set() -> list[str]:
    return [name for name, p in _commands().items() if "--set" in p._option_string_actions]


def _reads(command: str):
    return _commands()[command].get_default("reads")


def _one_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def _refused(capsys, command: str, override: str, tmp_path: Path) -> str:
    ws = ["--workspace", str(tmp_path / "ws")]
    assert main([command, *POSITIONAL[command], "--set", override, *ws]) == 2
    return _one_error(capsys.readouterr().err)


# ----------------------------------------------------------------------------- --set contract


def test_every_command_taking_set_reads_a_recipe_and_only_those():
    takes = _takes_set()
    assert sorted(takes) == sorted(POSITIONAL), "add the new command to POSITIONAL"
    for name, parser in _commands().items():
        reads = parser.get_default("reads")
        assert (reads is not None) == (name in takes), name
        if reads is not None:
            assert reads.command == name and reads.sections
    assert _reads("run").sections == dict.fromkeys(SECTIONS)  # every key of every section


@pytest.mark.parametrize("command", sorted(POSITIONAL))
def test_a_bogus_key_is_refused_naming_what_the_command_reads(command, capsys, tmp_path):
    reads = _reads(command)
    for override in ("bogus.x=1", "nonsense.key=1"):
        line = _refused(capsys, command, override, tmp_path)
        assert "unknown recipe section" in line and override.split("=")[0] in line
        for section in reads.sections:
            assert f"[{section}]" in line, line
        assert f"curate {command} reads" in line
    section = next(iter(reads.sections))
    line = _refused(capsys, command, f"{section}.no_such_key=1", tmp_path)
    assert f"unknown recipe key {section}.no_such_key" in line and f"[{section}]" in line
    assert not (tmp_path / "ws" / "runs").exists()


@pytest.mark.parametrize("command", sorted(set(POSITIONAL) - {"run"}))  # run reads every key
def test_a_known_key_the_command_does_not_read_is_refused(command, capsys, tmp_path):
    reads = _reads(command)
    unread = [f"{s}.{k}" for s in SECTIONS for k in keys(s) if not reads.reads(s, k)]
    line = _refused(capsys, command, f"{unread[0]}=1", tmp_path)
    assert f"curate {command} does not read {unread[0]}" in line
    for section in reads.sections:
        assert f"[{section}]" in line


def test_commands_reading_no_recipe_take_no_set(capsys):
    for name in set(_commands()) - set(_takes_set()):
        assert _commands()[name].get_default("reads") is None
    with pytest.raises(SystemExit) as e:
        main(["query", "SELECT 1", "--set", "score.tol=1"])
    assert e.value.code == 2
    assert "unrecognized arguments: --set" in capsys.readouterr().err


def test_ingest_labels_refuses_set(capsys, tmp_path):
    code = main(["ingest", "labels", "--set", "dataset.name=x", "--workspace", str(tmp_path)])
    assert code == 2
    assert "reads no recipe key" in _one_error(capsys.readouterr().err)


def test_score_reads_tol_and_compare_runs_only(capsys, tmp_path):
    line = _refused(capsys, "score", "score.pmi=false", tmp_path)
    assert "curate score does not read score.pmi" in line
    assert "curate stats" in line and "curate run" in line  # who does read it
    assert "[score] (tol, compare_runs)" in line


# ----------------------------------------------------------------------------- --set takes effect


def _tols(ws: Path) -> set[int]:
    rows = catalog_rows(ws, "SELECT DISTINCT tol FROM epoch_metrics WHERE run = 'digits'")
    rows += catalog_rows(ws, "SELECT DISTINCT tol FROM instance_scores WHERE run = 'digits'")
    return {r[0] for r in rows}


def test_score_set_tol_takes_effect(small_scored_ws, tmp_path, capsys):
    ws = tmp_path / "ws"
    shutil.copytree(small_scored_ws, ws)
    w = ["--workspace", str(ws)]
    assert main(["score", "digits", *w]) == 0
    assert _tols(ws) == {0}  # the default
    assert main(["score", "digits", "--set", "score.tol=1", *w]) == 0
    assert _tols(ws) == {1}  # as `--tol 1` (test_a_flag_and_its_set_give_the_same_recipe)
    capsys.readouterr()
    assert main(["score", "digits", "--tol", "1", "--set", "score.tol=0", *w]) == 2
    assert "give score.tol two values" in _one_error(capsys.readouterr().err)


def _parsed_recipe(*argv: str):
    from curate.commands.common import recipe_of

    args = build_parser().parse_args(list(argv))
    target = getattr(args, "recipe", None) or getattr(args, "dataset", None)
    return recipe_of(args, target if args.command != "score" else None)


@pytest.mark.parametrize(
    "flag, override",
    [
        (["score", "r", "--tol", "1"], ["score", "r", "--set", "score.tol=1"]),
        (["score", "r", "--compare", "a"], ["score", "r", "--set", "score.compare_runs=['a']"]),
        (["stats", "digits", "--no-pmi"], ["stats", "digits", "--set", "score.pmi=false"]),
        (["train", "digits", "--members", "3"], ["train", "digits", "--set", "train.members=3"]),
        (
            ["train", "digits", "--learner", "gboost"],
            ["train", "digits", "--set", "train.strategy=gboost"],
        ),
        (
            ["train", "digits", "--subset", "s.npy"],
            ["train", "digits", "--set", "train.subset=s.npy"],
        ),
        (
            ["ingest", "digits", "--labels", "l.npy"],
            ["ingest", "digits", "--set", "dataset.labels=l.npy"],
        ),
        (
            ["ingest", "digits", "--skip-corrupt"],
            ["ingest", "digits", "--set", "dataset.skip_corrupt=true"],
        ),
    ],
)
def test_a_flag_and_its_set_give_the_same_recipe(flag, override):
    assert _parsed_recipe(*flag) == _parsed_recipe(*override)


def test_path_keys_are_absolute_however_given(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    recipe = _parsed_recipe(
        "train", "digits", "--set", "train.curriculum=c.npy", "--subset", "s.npy"
    )
    assert recipe.train.curriculum == str(tmp_path / "c.npy")
    assert recipe.train.subset == str(tmp_path / "s.npy")
    labels = _parsed_recipe("ingest", "digits", "--set", "dataset.labels=n.npz:worse")
    assert labels.dataset.labels == str(tmp_path / "n.npz:worse")


def test_the_tol_members_rule_needs_the_train_section():
    # curate score reads no [train]: the run's members decide (curate.scores checks them)
    assert load_recipe(None, ["score.tol=4"], reads={"score": ("tol",)}).score.tol == 4
    with pytest.raises(CurateError, match="score.tol = 4 leaves no in-between with 8 members"):
        load_recipe("digits", ["score.tol=4"], reads={"train": None, "score": None})


# ----------------------------------------------------------------------------- help from registries


def _help(capsys, monkeypatch, *argv: str) -> str:
    monkeypatch.setenv("COLUMNS", "100000")  # one line per option: no name broken at a hyphen
    with pytest.raises(SystemExit) as e:
        main([*argv, "--help"])
    assert e.value.code == 0
    return capsys.readouterr().out


def _listed(text: str, key: str) -> list[str]:
    m = re.search(rf"\({re.escape(key)}: one of ([^)]*)\)", text)
    assert m, f"{key} lists no choices in:\n{text}"
    return [s.strip() for s in m.group(1).split(",")]


def test_train_help_lists_every_architecture_and_learner(capsys, monkeypatch):
    from curate.train.models import ARCHS
    from curate.train.run import strategy_choices

    text = _help(capsys, monkeypatch, "train")
    assert _listed(text, "train.arch") == list(ARCHS)
    assert "fastconv" in _listed(text, "train.arch")
    assert _listed(text, "train.strategy") == list(strategy_choices())
    assert _listed(text, "train.device") == ["auto", "cpu", "cuda"]


def test_ingest_help_lists_every_format(capsys, monkeypatch):
    from curate.data.formats import FORMATS

    text = _help(capsys, monkeypatch, "ingest")
    assert _listed(text, "dataset.format") == list(FORMATS)
    assert "kth-tips2b" in _listed(text, "dataset.format")


def test_pacing_and_strategy_choices_come_from_their_registries(capsys, monkeypatch):
    from curate.curriculum import PACINGS
    from curate.prune import STRATEGIES

    text = _help(capsys, monkeypatch, "curriculum")
    assert ", ".join(PACINGS) in text
    assert ", ".join(STRATEGIES) in _help(capsys, monkeypatch, "prune")
    with pytest.raises(SystemExit):
        main(["curriculum", "r", "--pacing", "sideways", "--out", "x.npy"])
    assert "invalid choice: 'sideways'" in capsys.readouterr().err


# ----------------------------------------------------------------------------- pydantic's errors


@pytest.mark.parametrize(
    "override, needles",
    [
        ("train.epochs=0", ["train.epochs = 0", "must be >= 1", "default is 10"]),
        ("train.epochs=abc", ["train.epochs = 'abc'", "expected an integer >= 1"]),
        ("train.members=1", ["train.members = 1", ">= 2", "at least 2 members"]),
        ("train.lr=-1", ["train.lr = -1.0", "must be > 0"]),
        ("train.nesterov=1", ["train.nesterov = 1", "true or false"]),
        ("train.arch=resnet9000", ["unknown architecture 'resnet9000' (train.arch)", "fastconv"]),
        ("train.device=gpu", ["train.device = 'gpu'", "choose one of auto, cpu, cuda"]),
        ("dataset.format=mnistt", ["(dataset.format)", "mnistt", "kth-tips2b"]),
        ("dataset.name=../x", ["dataset.name = '../x'", "a name becomes a folder"]),
        ("loader.crop_ratio=2", ["loader.crop_ratio = 2.0", "must be <= 1"]),
        ("train.log_splits=[1]", ["train.log_splits = [1]", "a list of strings"]),
        ("train.epoch=3", ["unknown recipe key train.epoch", "did you mean train.epochs"]),
        ("train.lr_min=1", ["train.lr_min = 1", "exceeds train.lr"]),
    ],
)
def test_pydantic_errors_are_one_line_naming_the_key(override, needles):
    with pytest.raises(CurateError) as e:
        load_recipe("digits", [override])
    text = str(e.value)
    assert "\n" not in text and "validation error" not in text.lower()
    for needle in needles:
        assert needle in text, text


def test_a_bad_value_on_the_command_line_is_one_error_line(capsys, tmp_path):
    args = ["train", "digits", "--epochs", "0", "--workspace", str(tmp_path)]
    assert main(args) == 2
    assert "train.epochs = 0: must be >= 1" in _one_error(capsys.readouterr().err)
    bad = tmp_path / "bad.toml"
    bad.write_text('[train]\nmembers = "eight"\n')
    assert main(["run", str(bad), "--workspace", str(tmp_path)]) == 2
    assert "train.members = 'eight': expected an integer" in _one_error(capsys.readouterr().err)


def test_config_imports_no_torch():
    code = "import sys, curate.config; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
