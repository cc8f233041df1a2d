"""Shared fixtures: tiny real-format files written byte for byte, and the shared data when present."""

from __future__ import annotations

import fcntl
import gzip
import os
import pickle
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from curate import catalog
from curate.workspace import Workspace

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"


def shared(name: str) -> Path:
    p = SHARED_DATA / name
    if not p.exists():
        pytest.skip(f"{p} is absent (shared test data)")
    return p


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> Path:
    """An IDX file as MNIST's: 0, 0, 0x08 (ubyte), ndim, big-endian int32 dims, then the bytes."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape)
    data = header + np.ascontiguousarray(array, np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def make_mnist_dir(
    root: Path, n_train: int = 30, n_test: int = 10, gz: bool = False, seed: int = 0
):
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        write_idx(root / f"{prefix}-images-idx3-ubyte", images, gz)
        write_idx(root / f"{prefix}-labels-idx1-ubyte", labels, gz)
        out[prefix] = (images, labels)
    return out


def write_cifar_batch(path: Path, images: np.ndarray, labels, label_key: bytes = b"labels") -> None:
    """A CIFAR python batch: dict with bytes keys, data (N, 3072) uint8 in CHW order, protocol 2."""
    data = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    d = {
        b"batch_label": b"test batch",
        label_key: list(map(int, labels)),
        b"data": data,
        b"filenames": [f"{i}.png".encode() for i in range(len(images))],
    }
    with open(path, "wb") as f:
        pickle.dump(d, f, protocol=2)


def make_cifar10_dir(root: Path, per_batch: int = 6, n_test: int = 8, seed: int = 0):
    rng = np.random.default_rng(seed)
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True, exist_ok=True)
    names = [
        b"airplane",
        b"automobile",
        b"bird",
        b"cat",
        b"deer",
        b"dog",
        b"frog",
        b"horse",
        b"ship",
        b"truck",
    ]
    with open(base / "batches.meta", "wb") as f:
        pickle.dump(
            {b"label_names": names, b"num_cases_per_batch": per_batch, b"num_vis": 3072},
            f,
            protocol=2,
        )
    train_imgs, train_labels = [], []
    for b in range(1, 6):
        imgs = rng.integers(0, 256, (per_batch, 32, 32, 3), dtype=np.uint8)
        labels = rng.integers(0, 10, per_batch)
        write_cifar_batch(base / f"data_batch_{b}", imgs, labels)
        train_imgs.append(imgs)
        train_labels.append(labels)
    test_imgs = rng.integers(0, 256, (n_test, 32, 32, 3), dtype=np.uint8)
    test_labels = rng.integers(0, 10, n_test)
    write_cifar_batch(base / "test_batch", test_imgs, test_labels)
    return (
        base,
        (np.concatenate(train_imgs), np.concatenate(train_labels)),
        (test_imgs, test_labels),
    )


def make_image_folder(
    root: Path,
    classes=("cat", "dog"),
    per_class: int = 3,
    size=(12, 10),
    ext: str = ".png",
    integer_names: bool = True,
    seed: int = 0,
):
    """<root>/{train,test}/<class>/<file>; returns {split: [(idx, class, pixels)]}."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = {}
    for split in ("train", "test"):
        rows, k = [], 0
        for c in classes:
            d = root / split / c
            d.mkdir(parents=True, exist_ok=True)
            for _ in range(per_class):
                a = rng.integers(0, 256, (size[0], size[1], 3), dtype=np.uint8)
                name = f"{k:05d}{ext}" if integer_names else f"img_{c}_{k}{ext}"
                Image.fromarray(a).save(d / name)
                rows.append((k, c, a))
                k += 1
        out[split] = rows
    return out


def catalog_rows(ws: Path, sql: str) -> list[tuple]:
    """The rows of one query over a workspace's catalog, opened read-only."""
    con = catalog.read(Workspace(ws))
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def ingest_cli(*args: str) -> int:
    from curate.cli import main

    return main(["ingest", *args])


def read_all(dataset: str, split: str, ws: Path, batch_size: int = 7):
    """Every instance of a split through the eval loader, as raw pixel values (not normalised)."""
    import torch

    from curate.config import LoaderConfig
    from curate.data.loader import LoaderSpec, make_loader

    spec = LoaderSpec(cfg=LoaderConfig(normalize=False), batch_size=batch_size)
    ld = make_loader(dataset, split, "eval", workspace=str(ws), spec=spec)
    xs, ys, ids = [], [], []
    for x, y, i in ld:
        xs.append(x)
        ys.append(y)
        ids.append(i)
    x = torch.cat(xs)
    return x.permute(0, 2, 3, 1).numpy(), torch.cat(ys).numpy(), torch.cat(ids).numpy()


def _shared_tmp(tmp_path_factory) -> Path:
    """This session's temporary root: shared by every worker under `pytest -n`, this process's own
    otherwise (never a directory an earlier session left behind)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def _built_once(tmp_path_factory, name: str, build) -> Path:
    """A workspace `build(path)` makes once per session: the first worker to ask builds it under a
    lock, the others wait; nobody writes to it afterwards (tests get copies)."""
    ws = _shared_tmp(tmp_path_factory) / f"{name}-template"
    with open(str(ws) + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # blocks until the builder is done
        if not (ws / ".built").exists():
            shutil.rmtree(ws, ignore_errors=True)  # a build that failed part-way
            build(ws)
            (ws / ".built").touch()
    return ws


def _module_copy(template: Path, tmp_path_factory, name: str) -> Path:
    ws = tmp_path_factory.mktemp(name) / "ws"
    shutil.copytree(template, ws, ignore=shutil.ignore_patterns(".built"))
    return ws


def _ingest_digits(ws: Path) -> None:
    assert ingest_cli("digits", "--workspace", str(ws)) == 0


def _run_small_digits(ws: Path) -> None:
    from curate.cli import main

    args = ["--set", "train.members=4", "--set", "train.epochs=2", "--set", "score.tol=1"]
    assert main(["run", "digits", "--workspace", str(ws), *args]) == 0


@pytest.fixture(scope="session")
def _digits_template(tmp_path_factory) -> Path:
    return _built_once(tmp_path_factory, "digits", _ingest_digits)


@pytest.fixture(scope="session")
def _small_scored_template(tmp_path_factory) -> Path:
    return _built_once(tmp_path_factory, "small-scored", _run_small_digits)


@pytest.fixture(scope="module")
def digits_ws(_digits_template, tmp_path_factory) -> Path:
    """sklearn's digits, ingested (no runs): a fresh copy per test module."""
    return _module_copy(_digits_template, tmp_path_factory, "digits-ws")


@pytest.fixture(scope="module")
def small_scored_ws(_small_scored_template, tmp_path_factory) -> Path:
    """`curate run digits` with 4 members, 2 epochs, split tolerance 1: a small real catalog with
    image statistics, scores and a prediction log (run `digits`), a fresh copy per test module, so
    the runs one module adds never reach another's assertions."""
    return _module_copy(_small_scored_template, tmp_path_factory, "small-scored")


def headless_chromium(tmp_path: Path, downloads: Path | None = None, window: str = "1400,1000"):
    """A Selenium driver of Debian's chromium (skips the test when chromium or chromedriver is missing)."""
    import shutil

    chrome, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chrome or not driver:
        pytest.skip("Debian's chromium and chromium-driver are not installed")
    from selenium import webdriver

    opts = webdriver.ChromeOptions()
    opts.binary_location = chrome
    for a in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--allow-file-access-from-files",
        f"--window-size={window}",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        opts.add_argument(a)
    if downloads is not None:
        opts.add_experimental_option(
            "prefs",
            {"download.default_directory": str(downloads), "download.prompt_for_download": False},
        )
    browser = webdriver.Chrome(
        options=opts, service=webdriver.ChromeService(executable_path=driver)
    )
    if downloads is not None:
        browser.execute_cdp_cmd(
            "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
        )
    return browser


def free_port() -> int:
    """A TCP port on localhost nobody listens on (for torchrun and the app server)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(proc, grace: float = 30.0) -> None:
    """SIGTERM, then SIGKILL if the process has not ended within `grace` seconds (a Streamlit
    server on a loaded machine can take longer than 10 s to shut down)."""
    import subprocess

    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(grace)


def labels_only_ws(tmp_path: Path, sizes: dict[str, int], k: int, name: str = "odd") -> Path:
    """A workspace holding one labels-only dataset `name`: split -> size, label idx % k."""
    import pandas as pd

    from curate.cli import main

    rows = [(s, i, i % k) for s, n in sizes.items() for i in range(n)]
    pd.DataFrame(rows, columns=["split", "idx", "label"]).to_csv(tmp_path / "l.csv", index=False)
    ws = tmp_path / "ws"
    args = ["ingest", "labels", "--labels", str(tmp_path / "l.csv"), "--name", name]
    assert main([*args, "--workspace", str(ws)]) == 0
    return ws
