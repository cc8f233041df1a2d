"""Multilabel training: what the log records from sigmoid outputs (worked out by hand), and a tiny
synthetic VOC tree trained end to end on the CPU through `curate run` (BCE, sigmoid > 0.5)."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from voc_tree import make_voc_root

from curate import catalog
from curate.cli import main
from curate.train.logits import Collector, k_hot, multilabel_stats
from curate.workspace import Workspace


def sig(x: float) -> float:
    return 1 / (1 + np.exp(-x))


def test_k_hot_and_exact_set_statistics_by_hand():
    assert k_hot(torch.tensor([5, 0, 2]), 3).tolist() == [[1, 0, 1], [0, 0, 0], [0, 1, 0]]
    # one member, two instances, K = 3; logits z = (2, -1, 0.5): the predicted set is {0, 2} = 5
    z = torch.tensor([[[2.0, -1.0, 0.5]], [[2.0, -1.0, 0.5]]])  # (B = 2, M = 1, K = 3)
    y = torch.tensor([1, 5])  # {0} and {0, 2}
    pred, p_true, margin = multilabel_stats(z, y)
    assert pred.tolist() == [[5, 5]] and pred.dtype == torch.int32
    # {0}: sigma(2) (1 - sigma(-1)) (1 - sigma(0.5)); margin min(2, 1, -0.5)
    # {0, 2}: sigma(2) (1 - sigma(-1)) sigma(0.5); margin min(2, 1, 0.5) > 0: the exact match
    np.testing.assert_allclose(
        p_true[0].numpy(),
        [sig(2) * sig(1) * sig(-0.5), sig(2) * sig(1) * sig(0.5)],
        rtol=1e-6,
    )
    np.testing.assert_allclose(margin[0].numpy(), [-0.5, 0.5])
    # a logit at exactly 0 is sigma = 0.5, not > 0.5: the class is not predicted
    pred0, _, _ = multilabel_stats(torch.tensor([[[0.0, 1.0]]]), torch.tensor([2]))
    assert pred0.tolist() == [[2]]
    col = Collector(multilabel=True)
    col.add(z, y, torch.tensor([10, 11]))
    out = col.result()
    assert out.multilabel and out.accuracy().tolist() == pytest.approx([0.5], abs=1e-12)  # 1 of 2


CLASSES = {"aeroplane": 0, "bird": 1, "car": 2}  # which colour channel shows the class


def _synthetic_tree(base, n_train=48, n_test=12, seed=0):
    """Images 16 x 16 whose red / green / blue channel is bright when an aeroplane / bird / car is
    in the image; each image holds a random non-empty subset of the three."""
    rng = np.random.default_rng(seed)
    images, sets = {}, {"trainval": [], "test": []}
    content = {}
    for k in range(n_train + n_test):
        image_id = f"{k + 1:06d}"
        present = [c for c in CLASSES if rng.random() < 0.5] or [rng.choice(list(CLASSES))]
        objects = [(c, 1 + j, 1 + j, 12 + j, 12 + j, 0, 0) for j, c in enumerate(present)]
        if k == n_train:  # a test image with an extra difficult object of an absent class
            absent = next((c for c in CLASSES if c not in present), None)
            if absent:
                objects.append((absent, 2, 2, 5, 5, 0, 1))
        images[image_id] = (16, 16, objects)
        content[image_id] = present
        sets["trainval" if k < n_train else "test"].append(image_id)

    def pixels(image_id, w, h):
        a = rng.normal(60, 15, (h, w, 3))
        for c in content[image_id]:
            a[..., CLASSES[c]] += 140
        return np.clip(a, 0, 255).astype(np.uint8)

    return make_voc_root(base / "VOC2007", images, sets, pixels=pixels)


@pytest.mark.slow
def test_voc_run_end_to_end_on_cpu(tmp_path):
    root = _synthetic_tree(tmp_path)
    ws = tmp_path / "ws"
    args = ["run", "voc-cpu", "--workspace", str(ws), "--run-name", "tiny"]
    sets = {
        "dataset.source": str(root),
        "dataset.storage": "auto",  # 16 x 16 images: raw, in memory
        "train.arch": "mlp",
        "train.strategy": "auto",
        "train.members": "3",
        "train.epochs": "4",
        "train.lr": "0.3",
        "train.schedule": "cosine",
        "loader.batch_size": "8",
        "loader.flip": "false",
        "score.stats": "false",
    }
    for k, v in sets.items():
        args += ["--set", f"{k}={v}"]
    assert main(args) == 0
    con = catalog.read(Workspace(ws))
    try:
        n_scored = con.execute(
            "SELECT split, count(*) FROM instance_scores WHERE run = 'tiny' GROUP BY split ORDER BY 1"
        ).fetchall()
        acc = con.execute(
            "SELECT acc_mean FROM epoch_metrics WHERE run = 'tiny' AND split = 'test' ORDER BY epoch"
        ).fetchall()
        labels = dict(
            con.execute("SELECT idx, label FROM instances WHERE split = 'test'").fetchall()
        )
    finally:
        con.close()
    assert n_scored == [("test", 12), ("train", 48)]
    # the colour channels give the set away: exact-match accuracy rises well above chance (1/7)
    assert acc[-1][0] > 0.6, acc
    # the log: bitmask predictions as int32; margin > 0 exactly where the set matches
    shard = ws / "runs/tiny/predictions/pass=eval/split=test/member=0/epoch=4/part.parquet"
    t = pq.read_table(shard).to_pandas()
    assert str(t["pred"].dtype) == "int32"
    y = t["idx"].map(labels).to_numpy()
    correct = t["pred"].to_numpy() == y
    assert np.array_equal(t["margin"].to_numpy() > 0, correct)
    # p_true is a product of 20 sigmoids of signed logits, the smallest of which is sigma(margin):
    # sigma(margin)^20 <= p_true <= sigma(margin)
    s_min = 1 / (1 + np.exp(-t["margin"].to_numpy().astype(np.float64)))
    p = t["p_true"].to_numpy()
    assert np.all(p <= s_min * (1 + 1e-5)) and np.all(p >= s_min**20 * (1 - 1e-5))


@pytest.mark.parametrize(
    "setting, needle",
    [("train.strategy=adaboost", "predicts one class"), ("train.label_smoothing=0.1", "smoothing")],
)
def test_refused_for_multilabel(tmp_path, capsys, setting, needle):
    root = _synthetic_tree(tmp_path, n_train=8, n_test=2)
    ws = tmp_path / "ws"
    assert main(["ingest", "voc", "--source", str(root), "--workspace", str(ws)]) == 0
    capsys.readouterr()
    code = main(["train", "voc", "--workspace", str(ws), "--set", setting])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: ") and "multilabel" in err and needle in err, err
    assert not (ws / "runs" / "voc" / "predictions").exists()
