"""Ingest: every format on tiny files written byte for byte, round trips, re-runs, the shared data."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import catalog_rows as q
from conftest import (
    ingest_cli,
    make_cifar10_dir,
    make_image_folder,
    make_mnist_dir,
    read_all,
    shared,
    write_cifar_batch,
)


def test_digits_round_trip_bit_exact(digits_ws):
    from sklearn.datasets import load_digits

    d = load_digits()
    expected = np.rint(d.images * (255 / 16)).astype(np.uint8)
    rows = q(
        digits_ws,
        "SELECT idx, label, source_index FROM instances WHERE dataset='digits' AND split='train' ORDER BY idx",
    )
    x, y, idx = read_all("digits", "train", digits_ws)
    assert (
        list(idx) == [r[0] for r in rows] == list(range(len(rows)))
    )  # sequential, every instance once
    src = np.array([r[2] for r in rows])
    assert np.array_equal(y, d.target[src])
    assert np.array_equal(x[..., 0].astype(np.uint8), expected[src])
    assert np.array_equal(x[..., 0], expected[src].astype(np.float32))
    # the lossless 0..16 -> 0..255 mapping keeps every level distinct
    assert len(np.unique(expected)) == 17
    ((n_train, n_test),) = q(
        digits_ws, "SELECT counts[1], counts[2] FROM datasets WHERE dataset='digits'"
    )
    assert n_train + n_test == 1797 and n_test == pytest.approx(0.2 * 1797, abs=10)


def test_train_loader_is_seeded_permutation_with_augmentation(digits_ws):
    import torch

    from curate.config import LoaderConfig
    from curate.data.loader import LoaderSpec, make_loader

    cfg = LoaderConfig(batch_size=64, translate=2, flip=True)
    runs = []
    for _ in range(2):
        spec = LoaderSpec(cfg=cfg, seed=5)
        ld = make_loader("digits", "train", "train", workspace=str(digits_ws), spec=spec)
        epochs = []
        for _epoch in range(2):
            epochs.append([(x.clone(), i.clone()) for x, _, i in ld])
        runs.append(epochs)
    for (xa, ia), (xb, ib) in zip(
        runs[0][0], runs[1][0], strict=True
    ):  # same seed: same batches, bit for bit
        assert torch.equal(ia, ib) and torch.equal(xa, xb)
    ids0 = torch.cat([i for _, i in runs[0][0]])
    ids1 = torch.cat([i for _, i in runs[0][1]])
    assert len(ids0) == (1438 // 64) * 64  # drop_last in train mode
    assert len(set(ids0.tolist())) == len(ids0)  # no repeats within an epoch
    assert not torch.equal(ids0, ids1)  # a new permutation each epoch
    # ffcv's RANDOM order: np.random.default_rng(seed + epoch).permutation
    assert ids0.tolist() == list(np.random.default_rng(5).permutation(1438)[: len(ids0)])


def test_augment_translate_and_flip_by_hand():
    import torch

    from curate.data.augment import random_flip, random_translate

    x = torch.arange(16, dtype=torch.uint8).view(1, 1, 4, 4).repeat(64, 1, 1, 1)
    g = torch.Generator().manual_seed(0)
    out = random_translate(x, 1, g)
    # every output is the input shifted by (dy, dx) in {-1, 0, 1}^2 with zeros where it left the frame
    padded = torch.nn.functional.pad(x[0, 0], (1, 1, 1, 1))
    crops = {
        tuple(padded[dy : dy + 4, dx : dx + 4].flatten().tolist())
        for dy in range(3)
        for dx in range(3)
    }
    seen = {tuple(o[0].flatten().tolist()) for o in out}
    assert seen <= crops and len(seen) > 4
    flipped = random_flip(x, torch.Generator().manual_seed(1))
    kinds = {tuple(f[0, 0].tolist()) for f in flipped}
    assert kinds == {tuple(x[0, 0, 0].tolist()), tuple(x[0, 0, 0].flip(0).tolist())}


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx(tmp_path, gz):
    src = tmp_path / "raw"
    truth = make_mnist_dir(src, gz=gz)
    ws = tmp_path / "ws"
    assert ingest_cli("mnist", "--source", str(tmp_path), "--workspace", str(ws)) == 0  # finds raw/
    for split, prefix in (("train", "train"), ("test", "t10k")):
        x, y, idx = read_all("mnist", split, ws)
        images, labels = truth[prefix]
        assert np.array_equal(idx, np.arange(len(labels)))
        assert np.array_equal(y, labels)
        assert np.array_equal(x[..., 0].astype(np.uint8), images)
    assert q(ws, "SELECT class_names[1], storage, image_shape FROM datasets") == [
        ("0", "raw-uint8", [28, 28, 1])
    ]


def test_fashion_mnist_class_names(tmp_path):
    make_mnist_dir(tmp_path / "FashionMNIST" / "raw", gz=True)
    ws = tmp_path / "ws"
    assert ingest_cli("fashion-mnist", "--source", str(tmp_path), "--workspace", str(ws)) == 0
    assert q(ws, "SELECT class_name FROM instances WHERE split='train' AND idx=9") == [
        ("Ankle boot",)
    ]


def test_cifar10_pickles(tmp_path):
    base, (tr_x, tr_y), (te_x, te_y) = make_cifar10_dir(tmp_path)
    ws = tmp_path / "ws"
    assert ingest_cli("cifar10", "--source", str(tmp_path), "--workspace", str(ws)) == 0
    x, y, idx = read_all("cifar10", "train", ws)
    assert np.array_equal(x.astype(np.uint8), tr_x) and np.array_equal(y, tr_y)
    assert np.array_equal(idx, np.arange(30))
    x, y, _ = read_all("cifar10", "test", ws)
    assert np.array_equal(x.astype(np.uint8), te_x) and np.array_equal(y, te_y)
    src = q(ws, "SELECT source FROM instances WHERE split='train' AND idx=7")[0][0]
    assert src.endswith("data_batch_2#1")  # 6 per batch: row 7 is batch 2, row 1


def test_cifar100_pickles(tmp_path):
    rng = np.random.default_rng(1)
    base = tmp_path / "cifar-100-python"
    base.mkdir()
    import pickle

    with open(base / "meta", "wb") as f:
        pickle.dump(
            {
                b"fine_label_names": [f"c{i}".encode() for i in range(100)],
                b"coarse_label_names": [f"s{i}".encode() for i in range(20)],
            },
            f,
            protocol=2,
        )
    imgs = {
        s: rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        for s, n in (("train", 9), ("test", 4))
    }
    labels = {s: rng.integers(0, 100, len(imgs[s])) for s in imgs}
    for s in imgs:
        write_cifar_batch(base / s, imgs[s], labels[s], label_key=b"fine_labels")
    ws = tmp_path / "ws"
    assert ingest_cli("cifar100", "--source", str(base), "--workspace", str(ws)) == 0
    x, y, _ = read_all("cifar100", "test", ws)
    assert np.array_equal(x.astype(np.uint8), imgs["test"]) and np.array_equal(y, labels["test"])


def test_imagefolder_png_integer_names_keep_idx(tmp_path):
    truth = make_image_folder(tmp_path / "folder", per_class=3)
    ws = tmp_path / "ws"
    assert (
        ingest_cli("imagefolder", "--source", str(tmp_path / "folder"), "--workspace", str(ws)) == 0
    )
    x, y, idx = read_all("folder", "train", ws)
    assert list(idx) == [r[0] for r in truth["train"]]
    assert list(y) == [("cat", "dog").index(r[1]) for r in truth["train"]]
    assert np.array_equal(
        x.astype(np.uint8), np.stack([r[2] for r in truth["train"]])
    )  # PNG: lossless
    assert q(ws, "SELECT storage, image_shape FROM datasets") == [("raw-uint8", [12, 10, 3])]


def test_imagefolder_mixed_sizes_and_grey_go_jpeg(tmp_path):
    from PIL import Image

    make_image_folder(tmp_path / "f", per_class=2, integer_names=False)
    Image.fromarray(np.full((80, 50), 200, np.uint8)).save(
        tmp_path / "f" / "train" / "cat" / "big_grey.png"
    )
    Image.fromarray(np.zeros((20, 20, 4), np.uint8), "RGBA").save(
        tmp_path / "f" / "test" / "dog" / "alpha.png"
    )
    ws = tmp_path / "ws"
    assert (
        ingest_cli(
            "imagefolder",
            "--source",
            str(tmp_path / "f"),
            "--workspace",
            str(ws),
        )
        == 0
    )  # the crop size is the loader's (below); ingest reads [dataset] only
    assert q(ws, "SELECT storage FROM datasets") == [("jpeg",)]
    rows = q(
        ws,
        "SELECT idx, height, width, channels, source FROM instances WHERE split='train' ORDER BY idx",
    )
    assert [r[0] for r in rows] == list(range(5))  # non-integer names: positions in sorted order
    assert (80, 50, 1) in [r[1:4] for r in rows]
    from curate.config import LoaderConfig
    from curate.data.loader import LoaderSpec, make_loader

    spec = LoaderSpec(cfg=LoaderConfig(crop_size=16))
    ld = make_loader("f", "train", "eval", workspace=str(ws), spec=spec)
    batches = list(ld)
    assert sum(len(b[2]) for b in batches) == 5 and batches[0][0].shape[1:] == (3, 16, 16)


def _imagenet_tree(root, flat_val: bool):
    from PIL import Image

    rng = np.random.default_rng(0)
    wnids = ["n01440764", "n01443537", "n01484850"]
    (root / "LOC_synset_mapping.txt").parent.mkdir(parents=True, exist_ok=True)
    (root / "LOC_synset_mapping.txt").write_text(
        "n01440764 tench, Tinca tinca\nn01443537 goldfish, Carassius auratus\nn01484850 great white shark\n"
    )
    for w in wnids:
        d = root / "train" / w
        d.mkdir(parents=True)
        for k in range(2):
            Image.fromarray(rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)).save(
                d / f"{w}_{k}.JPEG"
            )
    rows = []
    for k, w in enumerate([wnids[2], wnids[0], wnids[1], wnids[0]]):
        name = f"ILSVRC2012_val_{k + 1:08d}"
        d = root / "val" if flat_val else root / "val" / w
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (30, 30, 3), dtype=np.uint8)).save(d / f"{name}.JPEG")
        rows.append(f"{name},{w} 1 2 3 4")
    if flat_val:
        (root / "LOC_val_solution.csv").write_text(
            "ImageId,PredictionString\n" + "\n".join(rows) + "\n"
        )


@pytest.mark.parametrize("flat_val", [False, True])
def test_imagenet_layout(tmp_path, flat_val):
    _imagenet_tree(tmp_path / "ILSVRC", flat_val)
    ws = tmp_path / "ws"
    assert (
        ingest_cli(
            "imagenet",
            "--source",
            str(tmp_path / "ILSVRC"),
            "--workspace",
            str(ws),
            "--set",
            "dataset.short_side=32",
        )
        == 0
    )
    assert q(ws, "SELECT storage, class_names FROM datasets") == [
        ("jpeg", ["tench", "goldfish", "great white shark"])
    ]
    val = q(ws, "SELECT idx, label, class_name FROM instances WHERE split='val' ORDER BY idx")
    assert [r[1] for r in val] == [0, 0, 1, 2]  # ImageFolder order: by wnid, then file name
    assert val[-1][2] == "great white shark"
    # short side resized to 32 before JPEG encoding: a 40x60 train image is stored as 32x48
    from ffcv.reader import Reader

    meta = Reader(str(ws / "datasets" / "imagenet" / "train.beton")).metadata
    assert set(zip(meta["f0"]["height"], meta["f0"]["width"], strict=True)) == {(32, 48)}


@pytest.mark.parametrize(
    "fmt, classes, shape, dtype",
    [
        ("gaussian-sigma", 4, (32, 32, 3), "raw-uint8"),
        ("gabor", 12, (32, 32, 3), "raw-uint8"),
        ("gaussian-2class", 2, (32, 32, 3), "float32"),
    ],
)
def test_synthetic_controls(tmp_path, fmt, classes, shape, dtype):
    ws = tmp_path / "ws"
    args = ["--set", "dataset.train_per_class=6", "--set", "dataset.test_per_class=2"]
    if fmt == "gaussian-sigma":
        args += ["--set", "dataset.num_classes=4"]
    assert ingest_cli(fmt, "--workspace", str(ws), *args) == 0
    assert q(ws, "SELECT num_classes, storage, image_shape, counts FROM datasets") == [
        (classes, dtype, list(shape), [6 * classes, 2 * classes])
    ]
    x, y, _ = read_all(fmt, "train", ws)
    if fmt == "gaussian-2class":
        assert x.dtype == np.float32 and abs(x[y == 1].mean() - x[y == 0].mean() - 0.1) < 0.05
    if fmt == "gaussian-sigma":  # class i has pixel std i around 128
        stds = [x[y == k].std() for k in range(4)]
        assert np.allclose(stds, [1, 2, 3, 4], rtol=0.1)


def test_gaussian_sigma_is_seeded():
    from curate.config import DatasetConfig
    from curate.data.formats.synthetic import read_gaussian_sigma

    cfg = DatasetConfig(format="gaussian-sigma", num_classes=3, train_per_class=2, test_per_class=1)
    a, b = read_gaussian_sigma(cfg, None), read_gaussian_sigma(cfg, None)
    assert a.checksum == b.checksum
    c = read_gaussian_sigma(
        DatasetConfig(
            format="gaussian-sigma", num_classes=3, train_per_class=2, test_per_class=1, seed=1
        ),
        None,
    )
    assert c.checksum != a.checksum


def test_random_labels_keep_true_labels(tmp_path):
    ws = tmp_path / "ws"
    assert ingest_cli("digits", "--random-labels", "3", "--workspace", str(ws)) == 0
    rows = q(
        ws, "SELECT dataset, label, true_label FROM instances WHERE split='train' ORDER BY idx"
    )
    assert rows[0][0] == "digits-random-labels-3"
    labels, true = np.array([r[1] for r in rows]), np.array([r[2] for r in rows])
    assert sorted(labels) == sorted(true)  # a permutation: class balance kept
    assert (labels != true).mean() > 0.8
    _, y, _ = read_all("digits-random-labels-3", "train", ws)
    assert np.array_equal(y, labels)  # the .beton holds the permuted labels
    assert q(ws, "SELECT random_labels_seed FROM datasets") == [(3,)]


def test_rerun_is_noop_and_change_needs_force(tmp_path, capsys):
    truth = make_image_folder(tmp_path / "f", per_class=2)
    ws = tmp_path / "ws"
    assert ingest_cli("imagefolder", "--source", str(tmp_path / "f"), "--workspace", str(ws)) == 0
    beton = ws / "datasets" / "f" / "train.beton"
    mtime = beton.stat().st_mtime_ns
    assert ingest_cli("imagefolder", "--source", str(tmp_path / "f"), "--workspace", str(ws)) == 0
    assert "up to date" in capsys.readouterr().out and beton.stat().st_mtime_ns == mtime
    from PIL import Image

    Image.fromarray(np.zeros((12, 10, 3), np.uint8)).save(
        tmp_path / "f" / "train" / "cat" / "00000.png"
    )
    assert ingest_cli("imagefolder", "--source", str(tmp_path / "f"), "--workspace", str(ws)) == 2
    assert "--force" in capsys.readouterr().err and beton.stat().st_mtime_ns == mtime
    assert (
        ingest_cli(
            "imagefolder", "--source", str(tmp_path / "f"), "--workspace", str(ws), "--force"
        )
        == 0
    )
    x, _, idx = read_all("f", "train", ws)
    assert idx[0] == 0 and x[0].max() == 0 and truth["train"][0][2].max() > 0


# ----------------------------------------------------------------------------- shared data


@pytest.fixture(scope="module")
def cifar_jpeg_ws(tmp_path_factory):
    tar = shared("cifar10-jpeg.tar.gz")
    ws = tmp_path_factory.mktemp("cifar-ws")
    assert ingest_cli("imagefolder", "--source", str(tar), "--workspace", str(ws)) == 0
    return ws


@pytest.mark.slow
def test_shared_cifar10_jpeg(cifar_jpeg_ws):
    ws = cifar_jpeg_ws
    counts = q(
        ws,
        "SELECT split, count(*), count(DISTINCT idx), min(idx), max(idx) FROM instances GROUP BY split ORDER BY split",
    )
    assert counts == [("test", 10000, 10000, 0, 9999), ("train", 50000, 50000, 0, 49999)]
    balance = q(
        ws,
        "SELECT split, min(n), max(n) FROM (SELECT split, label, count(*) n FROM instances GROUP BY ALL) GROUP BY split ORDER BY split",
    )
    assert balance == [("test", 1000, 1000), ("train", 5000, 5000)]
    # idx is the standard CIFAR-10 order: it equals the file name, and the labels match the published
    # C-score label sequence of the train split
    rows = q(ws, "SELECT idx, label, source FROM instances WHERE split='train' ORDER BY idx")
    assert all(int(r[2].rsplit("/", 1)[1].split(".")[0]) == r[0] for r in rows)
    ref = shared("refs/cifar10-cscores-train.npz")
    assert np.array_equal(np.array([r[1] for r in rows]), np.load(ref)["labels"])
    _, y, idx = read_all("cifar10-jpeg", "train", ws, batch_size=4096)
    assert np.array_equal(idx, np.arange(50000)) and np.array_equal(y, np.load(ref)["labels"])


@pytest.mark.slow
def test_shared_imagenet_mini(tmp_path):
    tar = shared("imagenet-mini.tar.gz")
    ws = tmp_path / "ws"
    assert ingest_cli("imagenet", "--source", str(tar), "--workspace", str(ws)) == 0
    assert q(ws, "SELECT num_classes, splits, counts, storage FROM datasets") == [
        (10, ["train", "val"], [5000, 500], "jpeg")
    ]
    balance = q(
        ws,
        "SELECT split, min(n), max(n) FROM (SELECT split, label, count(*) n FROM instances GROUP BY ALL) GROUP BY split ORDER BY split",
    )
    assert balance == [("train", 500, 500), ("val", 50, 50)]
    from curate.config import LoaderConfig
    from curate.data.loader import LoaderSpec, make_loader

    spec = LoaderSpec(cfg=LoaderConfig(crop_size=224))
    ld = make_loader("imagenet", "val", "eval", workspace=str(ws), spec=spec)
    x, y, i = next(iter(ld))
    assert x.shape[1:] == (3, 224, 224) and len(torch_cat_ids(ld)) == 500


def torch_cat_ids(ld):
    return [int(v) for _, _, i in ld for v in i]
