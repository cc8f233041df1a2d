"""The pool prune and curriculum select from, checked once for both; the idx files both write."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from curate.cli import main
from curate.curriculum import CurriculumSpec, export_curriculum, load_sidecar
from curate.errors import CurateError
from curate.prune import read_sidecar as prune_sidecar
from curate.selection import (
    higher_is_easier,
    read_idx_file,
    read_sidecar,
    scored_pool,
    write_idx_file,
)
from curate.workspace import Workspace


@pytest.mark.parametrize("cmd", [["curriculum", "digits"], ["prune", "digits", "--keep", "0.5"]])
@pytest.mark.parametrize(
    "flags, words",
    [
        (["--score", "strict_final"], "not a numeric column"),  # a boolean column
        (["--score", "nope"], "unknown score 'nope'"),
        (["--where", "idx < 0"], "match --where"),
        (["--where", "1=1) OR (1=1"], "is not one SQL condition"),  # once: test rows joined in
        (["--where", "1=1) ORDER BY idx LIMIT 5 --"], "is not one SQL condition"),
    ],
)
def test_both_commands_refuse_the_same_pools(cmd, flags, words, small_scored_ws, tmp_path, capsys):
    """Today's checks hold for both commands: a boolean score, an unknown score, an empty pool."""
    extra = ["--strategy", "easy"] if cmd[0] == "prune" else []
    out = tmp_path / "x.npy"
    args = [*cmd, *extra, *flags, "--out", str(out), "--workspace", str(small_scored_ws)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and words in err and err.count("\n") == 1, err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("cmd", [["curriculum", "digits"], ["prune", "digits", "--keep", "0.5"]])
def test_a_filter_building_huge_values_stops_at_the_memory_limit(
    cmd, small_scored_ws, tmp_path, capsys, monkeypatch
):
    """--where is the user's SQL: it runs in a query worker within `curate query`'s memory limit,
    not in this process (10 GB asked for here, stopped at 1 GiB), and nothing is written."""
    import resource
    from pathlib import Path

    from curate import sql

    if not Path("/proc/self/statm").exists():
        pytest.skip("the worker's memory is read from /proc (Linux)")
    monkeypatch.setattr(sql, "MAX_QUERY_MEMORY", 2**30)
    where = "(SELECT sum(length(repeat('x', 100000000) || range)) FROM range(100)) > 0"
    extra = ["--strategy", "easy"] if cmd[0] == "prune" else []
    out = tmp_path / "x.npy"
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    args = [*cmd, *extra, "--where", where, "--out", str(out), "--workspace", str(small_scored_ws)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "more than 1.0 GiB of memory" in err, err
    assert err.count("\n") == 1, err
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before < 256 * 2**20
    assert not list(tmp_path.iterdir())


def test_unknown_run_and_bad_direction_for_curriculum(small_scored_ws, tmp_path):
    ws = Workspace(small_scored_ws)
    with pytest.raises(CurateError, match="unknown run 'ghost'"):
        export_curriculum(ws, "ghost", tmp_path / "o.npy")
    with pytest.raises(CurateError, match="--direction 'sideways'"):
        export_curriculum(ws, "digits", tmp_path / "o.npy", CurriculumSpec(direction="sideways"))
    assert not list(tmp_path.iterdir())


def test_direction_by_kind():
    """accessibility: higher is easier; el2n and forgetting: lower is easier; explicit wins."""
    assert higher_is_easier("accessibility") and not higher_is_easier("el2n")
    assert not higher_is_easier("forgetting_events")
    assert higher_is_easier("el2n", "higher") and not higher_is_easier("accessibility", "lower")


def test_pool_is_in_idx_order_with_its_scores(small_scored_ws):
    pool = scored_pool(Workspace(small_scored_ws), "digits", "accessibility")
    idx = pool.table["idx"].to_numpy()
    assert (np.diff(idx) > 0).all() and len(pool.values) == len(idx)
    assert ((pool.values >= 0) & (pool.values <= 1)).all()  # a mean of fractions


@pytest.mark.parametrize("suffix", [".npy", ".csv", ".parquet"])
def test_idx_file_round_trip_with_its_own_sidecar(suffix, tmp_path):
    table = pd.DataFrame({"idx": [5, 1, 3], "label": [0, 1, 0], "score": [0.5, -0.25, 1.0]})
    out = tmp_path / f"keep{suffix}"
    written = write_idx_file(out, table, {"kind": "k", "n": 3}, False, by="test")
    assert set(written) == {out, tmp_path / f"keep{suffix}.json"}
    assert read_idx_file(out).tolist() == [5, 1, 3]
    meta = read_sidecar(out, kind="k")
    assert meta == {"kind": "k", "n": 3, "file": f"keep{suffix}"}
    assert read_sidecar(out, kind="other") == {}


def test_sidecars_of_earlier_versions_are_still_read(tmp_path):
    """prune's <stem>.subset.json and curriculum's <stem>.json, as earlier versions named them."""
    np.save(tmp_path / "half.npy", np.array([1, 2], np.int64))
    (tmp_path / "half.subset.json").write_text(json.dumps({"kind": "curate-subset", "n": 2}))
    assert prune_sidecar(tmp_path / "half.npy")["n"] == 2
    np.save(tmp_path / "order.npy", np.array([2, 1], np.int64))
    (tmp_path / "order.json").write_text(json.dumps({"pacing": "linear"}))
    assert load_sidecar(tmp_path / "order.npy")["pacing"] == "linear"


@pytest.mark.parametrize(
    "content, words",
    [(b"", r"empty \(0 bytes\)"), (b"\x93NUMPY", "unreadable"), (None, "integer idx")],
)
def test_bad_idx_files_are_one_error(content, words, tmp_path):
    p = tmp_path / "s.npy"
    if content is None:
        np.save(p, np.array([0.5, 1.5]))
    else:
        p.write_bytes(content)
    with pytest.raises(CurateError, match=words):
        read_idx_file(p, "subset file")
