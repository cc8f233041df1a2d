"""The worked example pipelines/resnet18_cifar10_recorder.py: torchvision's resnet18 in a plain
loop with the Recorder, one tiny epoch on CPU over the first 64 images of each split of the shared
CIFAR-10 (skipped when ../shared/data is absent), then scored by `curate score`."""

from __future__ import annotations

import os
import subprocess
import sys

import duckdb
import pytest
from conftest import ROOT, shared

from curate.cli import main


@pytest.mark.slow  # reading the shared archive and two resnet18 members on CPU: about a minute
def test_resnet18_recorder_example_one_tiny_epoch(tmp_path):
    data = shared("cifar10-jpeg.tar.gz")
    ws = tmp_path / "ws"
    cmd = [sys.executable, str(ROOT / "pipelines" / "resnet18_cifar10_recorder.py"),
           "--data", str(data), "--workspace", str(ws), "--subset", "64", "--members", "2",
           "--epochs", "1", "--device", "cpu", "--batch-size", "32", "--eval-batch-size", "64"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "complete" in out.stdout
    assert main(["score", "resnet18-cifar10", "--workspace", str(ws)]) == 0
    con = duckdb.connect(str(ws / "catalog.duckdb"), read_only=True)
    try:
        row = con.execute(
            "SELECT r.arch, r.members, r.epochs, d.storage, count(*) FROM instance_scores s "
            "JOIN runs r USING (run) JOIN datasets d ON d.dataset = r.dataset "
            "WHERE run = 'resnet18-cifar10' GROUP BY ALL"
        ).fetchone()
    finally:
        con.close()
    assert row == ("torchvision-resnet18", 2, 1, "none", 128)
