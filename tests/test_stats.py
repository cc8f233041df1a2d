"""Image statistics on images whose values are known by hand, the stats stage, and the correlations."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ingest_cli
from scipy import stats

from curate import catalog
from curate.cli import main
from curate.stats import correlate as cr
from curate.stats import definitions as sd
from curate.stats.compute import stats_of_images
from curate.workspace import Workspace


def test_grey_level_is_the_weighted_sum_not_rounded():
    img = np.array([[[10, 20, 30]]], np.uint8)
    assert sd.grey(img)[0, 0] == pytest.approx(0.2989 * 10 + 0.5870 * 20 + 0.1140 * 30)
    # one channel: the value itself, as float; rounding only
    assert sd.grey(np.full((2, 2, 1), 7, np.uint8))[0, 0] == pytest.approx(7.0, abs=1e-12)


def test_entropy_by_hand():
    constant = np.full((16, 16, 3), 90, np.uint8)
    assert sd.mean_local_entropy(constant) == pytest.approx(0.0, abs=1e-12)  # 0 bits; rounding only
    hundred = np.arange(100, dtype=np.uint8).reshape(10, 10, 1)  # one window, 100 distinct values
    assert sd.mean_local_entropy(hundred) == pytest.approx(np.log2(100))
    half = np.zeros((10, 10, 1), np.uint8)
    half[:, 5:] = 200  # 50 and 50: one bit
    assert sd.mean_local_entropy(half) == pytest.approx(1.0)
    # 11 x 10 with row 10 = row 1: two windows, rows 0-9 (100 distinct values) and rows 1-10, where
    # 10..19 appear twice (10 pairs, p = 2/100) and 20..99 once (80 singletons, p = 1/100)
    two = np.vstack([hundred, hundred[1:2]])
    h2 = 0.8 * np.log2(100) + 0.2 * np.log2(50)
    assert sd.mean_local_entropy(two) == pytest.approx((np.log2(100) + h2) / 2)
    assert np.isnan(sd.mean_local_entropy(np.zeros((9, 30, 3), np.uint8)))  # below the window


def test_entropy_counts_grey_levels_not_rgb_triples():
    # two different colours with (almost) the same grey level are still two values
    a = np.zeros((10, 10, 3), np.uint8)
    a[:, :5] = (100, 0, 0)
    a[:, 5:] = (0, 51, 0)  # grey 29.89 vs 29.937: distinct floats
    assert sd.mean_local_entropy(a) == pytest.approx(1.0)


def test_dct_by_hand():
    assert sd.dct_pct(np.full((8, 8, 1), 200, np.uint8)) == pytest.approx(
        100 / 64
    )  # only the DC coefficient
    assert sd.dct_pct(np.zeros((8, 8, 3), np.uint8)) == pytest.approx(0.0, abs=1e-12)  # no energy
    # a pure cosine along x: one AC coefficient beside the DC
    x = np.arange(16)
    wave = 128 + 100 * np.cos(np.pi * (2 * x + 1) * 3 / 32)
    img = np.tile(wave, (16, 1))[..., None]
    from scipy import fft

    d = fft.dctn(img[..., 0] / 255, norm="ortho")
    assert (np.abs(d) > 1e-9).sum() == 2
    assert sd.dct_pct_batch(img[None, ..., 0]) == pytest.approx([100 * 2 / 256])


def test_sobel_step_edge_by_hand():
    step = np.zeros((10, 10, 1), np.uint8)
    step[:, 5:] = 255
    # the two columns beside the edge have |Sx| = (1 + 2 + 1) * 1 = 4, every other pixel 0: 2 * 10 * 4
    assert sd.edge_strength_sobel(step) == pytest.approx(80.0)
    flat = np.full((10, 10, 3), 77, np.uint8)
    assert sd.edge_strength_sobel(flat) == pytest.approx(
        0.0, abs=1e-12
    )  # no gradient; rounding only
    from scipy import ndimage

    g = np.random.default_rng(3).random((9, 13))  # the same as scipy's Sobel
    ref = np.hypot(ndimage.sobel(g, axis=1), ndimage.sobel(g, axis=0)).sum()
    assert sd.edge_strength_sobel((g * 255)[..., None]) == pytest.approx(ref)


def test_felzenszwalb_two_colours_two_segments():
    img = np.zeros((16, 40, 3), np.uint8)
    img[:, 20:] = 255
    assert sd.segment_count(img) == 2
    assert sd.segment_count(np.full((32, 32, 1), 9, np.uint8)) == 1
    # sigma = 0.5 blurs a hard edge into two intermediate columns; 32 pixels tall they exceed
    # min_size = 20 and stay regions of their own: 2 colours, 4 segments (skimage's documented smoothing)
    tall = np.zeros((32, 32, 3), np.uint8)
    tall[:, 16:] = 255
    assert sd.segment_count(tall) == 4


def test_intensity_colour_and_jpeg():
    red = np.zeros((8, 8, 3), np.uint8)
    red[..., 0] = 255
    assert sd.colourfulness(red) == pytest.approx(0.3 * np.hypot(255, 127.5))
    grey = np.full((4, 4, 1), 3, np.uint8)
    assert sd.colourfulness(grey) == pytest.approx(0.0, abs=1e-12)  # no colour; rounding only
    bw = np.zeros((4, 4, 1), np.uint8)
    bw[:2] = 255
    # the mean of 8 x 255 and 8 x 0, and its contrast: rounding only, hence abs=1e-12
    assert sd.mean_grey(bw) == pytest.approx(127.5, abs=1e-12)
    assert sd.rms_contrast(bw) == pytest.approx(0.5, abs=1e-12)
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    assert sd.jpeg_bytes(noise) > sd.jpeg_bytes(
        np.zeros((32, 32, 3), np.uint8)
    )  # noise compresses worse


def test_batched_equals_one_by_one():
    rng = np.random.default_rng(1)
    imgs = [rng.integers(0, 256, (24, 20, 3), dtype=np.uint8) for _ in range(5)]
    batched = stats_of_images(imgs)
    for i, a in enumerate(imgs):
        assert batched["mean_local_entropy"][i] == pytest.approx(sd.mean_local_entropy(a))
        assert batched["dct_pct"][i] == pytest.approx(sd.dct_pct(a))
        assert batched["edge_strength_sobel"][i] == pytest.approx(sd.edge_strength_sobel(a))
        assert batched["rms_contrast"][i] == pytest.approx(sd.rms_contrast(a))
        assert batched["colourfulness"][i] == pytest.approx(sd.colourfulness(a))


def test_awkward_images_follow_the_rules():
    one = np.array([[[5, 6, 7]]], np.uint8)
    small = np.zeros((6, 9, 1), np.uint8)
    df = stats_of_images([one])
    assert np.isnan(df["mean_local_entropy"][0]) and "smaller than the 10x10" in df["stats_note"][0]
    # a 1 x 1 image has only the DC coefficient: 100 %, rounding only
    assert df["dct_pct"][0] == pytest.approx(100.0, abs=1e-9) and df["segment_count"][0] == 1
    assert np.isnan(stats_of_images([small])["mean_local_entropy"][0])
    big = np.random.default_rng(2).integers(0, 256, (1300, 300, 3), dtype=np.uint8)
    row = stats_of_images([big]).iloc[0]
    g = sd.shrink(sd.grey(big))
    assert g.shape == (128, 128)  # entropy and DCT on the 128 x 128 resize
    assert row["dct_pct"] == pytest.approx(float(sd.dct_pct_batch(g[None])[0]))
    assert row["segment_count"] > 1 and np.isfinite(row["mean_local_entropy"])


# ----------------------------------------------------------------------------- correlations


def test_strict_mean_and_pearson_by_hand():
    strict = np.array([[1, 0, 0], [1, 1, 0], [1, 1, 1]], bool)  # epochs 0..2, instances a, b, c
    f = np.array([1.0, 3.0, np.nan])
    # means of 1 and 3: rounding only; NaN statistics left out
    assert cr.strict_mean_of_stat(strict, f).tolist() == pytest.approx([1.0, 2.0, 2.0], abs=1e-12)
    epochs = np.arange(10)
    sa = np.array([0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.3, 0.4, 0.5, 0.6])
    assert (
        cr.correlation_epochs(epochs, sa).tolist() == [False] * 6 + [True] * 4
    )  # e > 5 and sa >= 0.2
    n = 4
    strict = np.zeros((10, n), bool)
    for e in range(10):
        strict[e, : min(n, max(1, e - 5))] = True  # instances join as training goes on
    f = np.array([1.0, 2.0, 3.0, 4.0])
    res = cr.agreement_correlation(epochs, sa, strict, f)
    # epochs 6..9: sa .3 .4 .5 .6, mu 1, 1.5, 2, 2.5: a perfect line
    assert res["epochs"] == [6, 7, 8, 9] and res["n"] == 4
    assert res["r"] == pytest.approx(1.0, abs=1e-12)  # an exact line: rounding only
    assert res["p"] < cr.ALPHA and res["not_significant"] is False  # a line is significant
    # swap b and c: mu 1, 2, 2, 2.5 over sa .3 .4 .5 .6, r = 0.923 on 4 points, p = 0.077: not
    res = cr.agreement_correlation(epochs, sa, strict, np.array([1.0, 3.0, 2.0, 4.0]))
    want = stats.pearsonr([0.3, 0.4, 0.5, 0.6], [1.0, 2.0, 2.0, 2.5])
    assert res["r"] == pytest.approx(want[0], abs=1e-12) and res["p"] == pytest.approx(want[1])
    assert res["p"] >= cr.ALPHA and res["not_significant"] is True


def test_spearman_and_category_fractions():
    access = np.array([0.9, 0.8, 0.1, 0.2])
    res = cr.accessibility_correlation(access, np.array([1.0, 2.0, 4.0, 3.0]))
    assert res["r"] == pytest.approx(-1.0) and res["n"] == 4
    strict = np.array([[1, 0, 1, 0], [1, 1, 1, 0]], bool)
    fr = cr.category_fractions(strict, np.array(["cat", "cat", "dog", "dog"]))
    got = {(r.category, r.epoch): r.frac_strict for r in fr.itertuples()}
    assert got == {("cat", 0): 0.5, ("cat", 1): 1.0, ("dog", 0): 0.5, ("dog", 1): 0.5}


# ----------------------------------------------------------------------------- the stage


def test_stats_stage_resumes_and_joins_difficulty(digits_ws, capsys):
    ws = digits_ws
    assert main(["stats", "digits", "--workspace", str(ws), "--workers", "1"]) == 0
    con = catalog.read(Workspace(ws))
    assert con.execute(
        "SELECT count(*), count(segment_count) FROM image_stats WHERE dataset='digits'"
    ).fetchone() == (1797, 1797)
    con.close()
    parts = sorted((ws / "stats" / "digits").rglob("part-*.parquet"))
    keep = parts[0].stat().st_mtime_ns
    parts[-1].unlink()  # as if interrupted before the last chunk
    assert main(["stats", "digits", "--workspace", str(ws), "--workers", "1"]) == 0
    assert parts[0].stat().st_mtime_ns == keep and parts[-1].exists()
    assert main(["stats", "--reference", "--workspace", str(ws)]) == 0
    assert "segment_count" in capsys.readouterr().out


def test_stats_from_jpeg_sources_rgba_and_grey(tmp_path):
    from PIL import Image

    root = tmp_path / "f"
    for split in ("train", "test"):
        for c in ("a", "b"):
            (root / split / c).mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 30, 4), dtype=np.uint8), "RGBA").save(
        root / "train" / "a" / "x.png"
    )
    Image.fromarray(rng.integers(0, 256, (20, 50), dtype=np.uint8), "L").save(
        root / "train" / "b" / "y.png"
    )
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(root / "test" / "a" / "z.png")
    Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(
        root / "test" / "b" / "w.png"
    )
    ws = tmp_path / "ws"
    assert ingest_cli("imagefolder", "--source", str(root), "--workspace", str(ws)) == 0
    assert main(["stats", "f", "--workspace", str(ws), "--workers", "1"]) == 0
    con = catalog.read(Workspace(ws))
    rows = con.execute(
        "SELECT i.source, s.mean_local_entropy, s.colourfulness, s.stats_note FROM image_stats s "
        "JOIN instances i USING (dataset, split, idx) ORDER BY i.source"
    ).fetchall()
    by = {r[0].rsplit("/", 1)[1]: r[1:] for r in rows}
    assert by["y.png"][1] == pytest.approx(0.0, abs=1e-9)  # grey: no colour; rounding only
    assert by["x.png"][0] > 0 and by["x.png"][1] > 0  # RGBA read as RGB
    assert (
        by["z.png"][0] is None and "smaller" in by["z.png"][2]
    )  # 1 pixel: no entropy, with the reason


def test_sliding_histogram_equals_sorting_every_window():
    rng = np.random.default_rng(5)
    imgs = rng.integers(0, 6, (7, 23, 17, 3), dtype=np.uint8) * 40  # few levels: many repeats
    ref = np.array([sd.local_entropy_map(sd.grey(a)[None]).mean() for a in imgs])
    assert sd.mean_local_entropy_batch(imgs) == pytest.approx(ref, abs=1e-9)
    hundred = np.arange(100, dtype=np.uint8).reshape(1, 10, 10, 1)
    assert sd.mean_local_entropy_batch(hundred)[0] == pytest.approx(np.log2(100))


@pytest.mark.slow
def test_stats_sharded_over_two_torchrun_ranks(tmp_path):
    import subprocess
    import sys

    from conftest import ROOT, free_port

    ws = tmp_path / "ws"
    assert ingest_cli("digits", "--workspace", str(ws)) == 0
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        f"--master_port={port}",
        "-m",
        "curate",
        "stats",
        "digits",
        "--workspace",
        str(ws),
        "--workers",
        "1",
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    con = catalog.read(Workspace(ws))
    sharded = con.execute(
        "SELECT split, idx, dct_pct, segment_count FROM image_stats ORDER BY split, idx"
    ).fetchall()
    con.close()
    assert len(sharded) == 1797
    import shutil

    shutil.rmtree(ws / "stats")
    assert main(["stats", "digits", "--workspace", str(ws), "--workers", "1"]) == 0
    con = catalog.read(Workspace(ws))
    single = con.execute(
        "SELECT split, idx, dct_pct, segment_count FROM image_stats ORDER BY split, idx"
    ).fetchall()
    assert sharded == single
