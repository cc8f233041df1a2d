"""`dataset.max_per_split`: ingest only the first N instances of every split (small experiments)."""

from __future__ import annotations

import numpy as np
from conftest import make_mnist_dir

from curate import catalog
from curate.cli import main
from curate.workspace import Workspace


def test_first_n_of_every_split(tmp_path):
    src = make_mnist_dir(tmp_path / "raw", n_train=30, n_test=10)
    ws = tmp_path / "ws"
    args = ["ingest", "mnist", "--source", str(tmp_path / "raw"), "--workspace", str(ws)]
    assert main([*args, "--set", "dataset.max_per_split=7"]) == 0
    con = catalog.read(Workspace(ws))
    try:
        rows = con.execute(
            "SELECT dataset, split, idx, label FROM instances ORDER BY split, idx"
        ).df()
    finally:
        con.close()
    assert set(rows.dataset) == {"mnist-first7"}  # a subset never takes the full set's name
    for split, prefix in (("train", "train"), ("test", "t10k")):
        r = rows[rows.split == split]
        assert r.idx.tolist() == list(range(7))
        assert np.array_equal(r.label.to_numpy(), src[prefix][1][:7])
    from curate.data.loader import dataset_info
    from curate.data.pixels import read_split

    px = read_split(dataset_info("mnist-first7", Workspace(ws)), "train")
    assert np.array_equal(px.images[..., 0], src["train"][0][:7])  # the first 7 images, bit-exact


def test_fewer_instances_than_n_keeps_them_all(tmp_path):
    make_mnist_dir(tmp_path / "raw", n_train=30, n_test=10)
    ws = tmp_path / "ws"
    args = ["ingest", "mnist", "--source", str(tmp_path / "raw"), "--workspace", str(ws)]
    assert main([*args, "--set", "dataset.max_per_split=20", "--random-labels", "1"]) == 0
    con = catalog.read(Workspace(ws))
    try:
        counts = dict(
            con.execute(
                "SELECT split, count(*) FROM instances WHERE dataset = "
                "'mnist-first20-random-labels-1' GROUP BY split"
            ).fetchall()
        )
    finally:
        con.close()
    assert counts == {"train": 20, "test": 10}


def test_datasets_ingested_before_the_key_are_unchanged():
    """An ingest without the key records no key, so older datasets are not 'changed settings'."""
    from curate.config import DatasetConfig
    from curate.data.ingest import content_config

    assert "max_per_split" not in content_config(DatasetConfig())
    assert content_config(DatasetConfig(max_per_split=5))["max_per_split"] == 5
