"""edge_strength_pmi: the crisp-boundary map of Isola et al. 2014 (speedy settings) against the
authors' MATLAB code run under GNU Octave (tests/data/pmi, see its README), and on hand cases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from curate import catalog
from curate.stats import pmi
from curate.workspace import Workspace

DATA = Path(__file__).resolve().parent / "data" / "pmi"
# given Octave's kernels, compared map to map; step64 (noise-free) is left out: its local-variance
# features are rank-deficient, so their principal axes are set by rounding (they differ by 4e-5)
EXACT = ("disc32", "two32", "grey32", "scene96x128")
SEEDED = ("disc32", "two32", "grey32", "step64")  # compared over seeds (32 x 32 and 64 x 64: fast)


def ref(name: str) -> dict:
    return dict(np.load(DATA / f"{name}.npz"))


# ----------------------------------------------------------------------------- hand cases


def test_constant_image_has_no_boundaries():
    for img in (np.full((32, 32, 3), 90, np.uint8), np.zeros((40, 24, 1), np.uint8)):
        e = pmi.pmi_boundaries(img)
        assert e.shape == ((img.shape[0] + 1) // 2, (img.shape[1] + 1) // 2)
        assert (e == 0).all() and pmi.edge_strength_pmi(img) == 0.0  # returned as 0, not computed


def test_too_small_for_dncuts_is_zero():
    # 8 x 8 halves to 4 x 4, which DNCuts decimates to one node: no non-constant eigenvector
    img = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    assert pmi.edge_strength_pmi(img) == 0.0  # the early return: a literal 0, not computed
    assert (
        pmi.edge_strength_pmi(np.random.default_rng(1).integers(0, 256, (40, 6, 3), np.uint8))
        == 0.0
    )


def test_step_image_has_one_boundary_along_the_step():
    # red | blue, step between columns 31 and 32; halved: between columns 15 and 16 of 32
    img = np.zeros((64, 64, 3), np.uint8)
    img[:, :32] = (200, 40, 40)
    img[:, 32:] = (40, 40, 200)
    e = pmi.pmi_boundaries(img)
    assert e.shape == (32, 32)
    assert set(np.argmax(e, axis=1)) <= {14, 15, 16}  # every row's strongest boundary: the step
    cols = e.sum(axis=0)
    assert np.argmax(cols) in (14, 15, 16)
    assert cols[[15, 16]].mean() > 1.5 * np.median(cols)  # one boundary stands out
    # the step along the other axis gives the transposed picture
    et = pmi.pmi_boundaries(np.ascontiguousarray(img.transpose(1, 0, 2)))
    assert set(np.argmax(et, axis=0)) <= {14, 15, 16}


def test_grey_and_seed_rules():
    rng = np.random.default_rng(3)
    g = rng.integers(0, 256, (24, 24, 1), dtype=np.uint8)
    assert pmi.edge_strength_pmi(g) == pmi.edge_strength_pmi(np.repeat(g, 3, axis=2))
    assert pmi.edge_strength_pmi(g[..., 0]) == pmi.edge_strength_pmi(g)
    img = ref("two32")["image"]
    assert pmi.edge_strength_pmi(img, seed=4) == pmi.edge_strength_pmi(img, seed=4)
    assert pmi.edge_strength_pmi(img, seed=4) != pmi.edge_strength_pmi(img, seed=5)
    with pytest.raises(ValueError, match="expected an"):
        pmi.pmi_boundaries(np.zeros((4, 4, 2), np.uint8))


def test_float_or_wide_pixels_refused():
    """Values are read as 0..255 grey levels: a float image in 0..1 (or uint16) would be read as
    near black (or beyond white) and scored silently; refused, saying how to convert it."""
    rng = np.random.default_rng(0)
    for img in (rng.random((32, 32, 3)), rng.integers(0, 65535, (32, 32, 3), dtype=np.uint16)):
        with pytest.raises(ValueError, match="uint8"):
            pmi.pmi_boundaries(img)
        with pytest.raises(ValueError, match="uint8"):
            pmi.edge_strength_pmi(img)


def test_local_pairs_and_kernel_sampling_by_hand():
    i, j = pmi.local_pairs(3, 4, radius=1)  # 4-neighbours, each once: 3 x 3 across + 2 x 4 down
    assert len(i) == 3 * 3 + 2 * 4 and (i < j).all()
    assert set(zip(i.tolist(), j.tolist(), strict=True)) == {
        (p, p + d)
        for p in range(12)
        for d in (1, 4)
        if (d == 4 and p + 4 < 12) or (d == 1 and p % 4 < 3)
    }
    i, j = pmi.local_pairs(20, 20)
    assert len(set(j - i)) == 40  # half of the 80 offsets within 5 px, in the interior
    f = np.random.default_rng(0).random((10, 12, 3))
    k = pmi.sample_kernels(f, np.random.default_rng(1))
    assert k.shape[1] == 6 and (k[:, 0] >= k[:, 3]).all()  # orderAB: channel 0 of A the larger
    flat = f.reshape(-1, 3)
    for row in k[:5]:  # channels 1, 2 of A and of B are one pixel's each
        assert np.isclose(flat[:, 1:], row[1:3]).all(axis=1).any()
        assert np.isclose(flat[:, 1:], row[4:6]).all(axis=1).any()


def test_pmi_affinity_by_hand():
    # one kernel at A = B = (0.5, 0.5, 0.5); pixels 0 and 1 sit on it, pixel 2 is far away
    f = np.array([[[0.5, 0.5, 0.5], [0.5, 0.5, 0.5], [0.9, 0.1, 0.9]]])
    k = np.array([[0.5] * 6])
    w = pmi.pmi_affinity(f, k, np.array([0, 0]), np.array([1, 2]))
    peak = 1 / (4 / 3 * pmi.BANDWIDTH) ** 3  # one normalised 3-D Epanechnikov kernel at its centre
    joint, marg = peak**2, peak  # P(A,B) at (centre, centre); pooled marginal at the centre
    assert w[0] == pytest.approx((100 + joint / 2) ** 1.25 / (marg * marg + 100))
    assert w[1] == pytest.approx(100**1.25 / 100)  # P(A,B) = 0 and P(B) = 0: the regulariser only
    # the grid evaluation (large images) equals the dense one
    rng = np.random.default_rng(2)
    f = rng.random((12, 14, 3)) * 0.3
    kern = pmi.sample_kernels(f, rng)
    i, j = pmi.local_pairs(12, 14)
    dense = pmi.pmi_affinity(f, kern, i, j)
    old, pmi.DENSE_KDE = pmi.DENSE_KDE, 0
    try:
        grid = pmi.pmi_affinity(f, kern, i, j)
    finally:
        pmi.DENSE_KDE = old
    assert np.allclose(grid, dense, rtol=1e-12)


# ----------------------------------------------------------------------------- against Octave


def test_matlab_helpers_equal_octave():
    """imresize(., 0.5), oeFilter_custom and borderSuppress as Octave computes them (1e-12)."""
    p = dict(np.load(DATA / "parts.npz"))
    assert np.abs(pmi.halve(p["R"]) - p["Rh"]).max() < 1e-12
    for o in range(8):
        assert np.abs(pmi.oe_filter(np.pi / 8 * (o + 1)) - p["filt"][:, :, o]).max() < 1e-12
    ch_per = [4, 3, 2, 1, 8, 7, 6, 5]  # the code stores orientation o in channel ch_per[o]
    for key, shape in (("bs16x16", (16, 16)), ("bs30x41", (30, 41))):
        b = pmi.border_suppressor(*shape)
        for o in range(8):
            assert np.abs(b[o] - p[key][:, :, ch_per[o] - 1]).max() < 1e-12


@pytest.mark.parametrize("name", EXACT)
def test_features_equal_octave(name):
    r = ref(name)
    colour, var = pmi.features(r["image"] / 255.0)
    assert np.abs(colour - r["colour"]).max() < 1e-8
    assert np.abs(var - r["var"]).max() < 1e-8


@pytest.mark.parametrize("name", EXACT)
def test_map_equals_octave_given_its_kernels(name):
    """With the kernels Octave sampled, the map is Octave's up to its KDE tolerance.

    Octave's KDE is a dual-tree approximation (relative tolerance 1e-3 on each density), so
    affinities differ by a median 1e-4 and at most a few per cent; from one affinity matrix the two
    spectral steps agree to 1e-12. Observed: sums within 1e-4, map correlation above 0.99999.
    Hence the bounds: sum within 0.1 %, correlation >= 0.9999."""
    r = ref(name)
    feats = pmi.features(r["image"] / 255.0)
    e = pmi.boundaries_from_features(feats, [r["kernels_colour"], r["kernels_var"]])
    assert e.shape == r["map_first"].shape
    assert e.sum() == pytest.approx(r["map_first"].sum(), rel=1e-3)
    assert np.corrcoef(e.ravel(), r["map_first"].ravel())[0, 1] >= 0.9999


@pytest.mark.parametrize("name", SEEDED)
def test_statistic_agrees_with_octave_over_seeds(name):
    """Our own sampling (20 seeds, 8 for step64) against Octave's (its 10 or 5 seeds): the pair sampling makes the
    statistic noisy (seed-to-seed CV 5-15 % on these images), so compare distributions: the means
    differ by less than 3.5 standard errors, and the mean maps correlate at >= 0.9 (Octave's single
    maps correlate with the mean of its other seeds at 0.73-0.92; the mean maps, at 0.96-0.98)."""
    r = ref(name)
    seeds = 8 if name == "step64" else 20  # step64: 1,024 pixels and ~900 kernels, slower
    maps = np.stack([pmi.pmi_boundaries(r["image"], seed=s) for s in range(seeds)])
    ours, theirs = maps.sum(axis=(1, 2)), r["sums"]
    se = np.sqrt(ours.var(ddof=1) / len(ours) + theirs.var(ddof=1) / len(theirs))
    assert abs(ours.mean() - theirs.mean()) < 3.5 * se
    assert abs(ours.mean() / theirs.mean() - 1) < 0.15
    assert np.corrcoef(maps.mean(axis=0).ravel(), r["map_mean"].ravel())[0, 1] >= 0.9


# ----------------------------------------------------------------------------- the statistics pass


def test_stats_pass_holds_edge_strength_pmi():
    from curate.stats.compute import stats_of_images

    r = ref("two32")
    big = np.random.default_rng(2).integers(0, 256, (260, 20, 3), dtype=np.uint8)
    df = stats_of_images([r["image"], np.full((32, 32, 3), 7, np.uint8), big])
    assert df["edge_strength_pmi"][0] == pytest.approx(pmi.edge_strength_pmi(r["image"], seed=0))
    assert df["edge_strength_pmi"][1] == 0.0  # a constant image: the early return, a literal 0
    assert pmi.shrink(big).shape == (256, 20, 3)  # over 256 px: shrunk first
    assert df["edge_strength_pmi"][2] == pytest.approx(pmi.edge_strength_pmi(pmi.shrink(big)))


def two_image_folder(tmp_path):
    """A workspace holding dataset `f`: an image folder of two classes (the disc and the two-region
    reference images), one image per class and split."""
    from conftest import ingest_cli
    from PIL import Image

    root = tmp_path / "f"
    for split in ("train", "test"):
        for c in ("a", "b"):
            (root / split / c).mkdir(parents=True)
            Image.fromarray(ref("disc32" if c == "a" else "two32")["image"]).save(
                root / split / c / "x.png"
            )
    ws = tmp_path / "ws"
    assert ingest_cli("imagefolder", "--source", str(root), "--workspace", str(ws)) == 0
    return ws


def test_older_catalog_gains_the_column(tmp_path):
    """A catalog whose image_stats predates edge_strength_pmi: `curate stats` adds the column (last)
    and fills it by name, the other statistics unchanged."""
    import duckdb
    from PIL import Image

    from curate.cli import main

    ws = two_image_folder(tmp_path)
    assert main(["stats", "f", "--workspace", str(ws), "--workers", "1"]) == 0
    cat = str(ws / "catalog.duckdb")
    con = duckdb.connect(cat)  # raw, to make the catalog an older version would have left
    before = con.execute("SELECT * EXCLUDE (edge_strength_pmi) FROM image_stats ORDER BY ALL").df()
    con.execute(
        "ALTER TABLE image_stats DROP COLUMN edge_strength_pmi"
    )  # as an older version made it
    con.execute(
        "ALTER TABLE image_stats ADD COLUMN older_extra VARCHAR"
    )  # and column order differs
    con.execute("DROP TABLE catalog_meta")  # an older version kept no schema version
    con.close()
    assert main(["stats", "f", "--workspace", str(ws), "--workers", "1"]) == 0
    con = catalog.read(Workspace(ws))
    cols = [r[0] for r in con.execute("DESCRIBE image_stats").fetchall()]
    assert cols[-1] == "edge_strength_pmi"
    after = con.execute(
        "SELECT * EXCLUDE (edge_strength_pmi, older_extra) FROM image_stats ORDER BY ALL"
    ).df()
    vals = con.execute(
        "SELECT i.source, s.edge_strength_pmi FROM image_stats s JOIN instances i USING (dataset, split, idx)"
    ).fetchall()
    con.close()
    assert after.equals(before)  # the same images through the same code: bit for bit
    assert len(vals) == 4  # two classes x two splits, one image each
    for source, v in vals:
        img = np.asarray(Image.open(source).convert("RGB"))
        assert v == pytest.approx(pmi.edge_strength_pmi(img, seed=0)) and v > 0


def test_joins_difficulty_and_correlations(small_scored_ws):

    con = catalog.read(Workspace(small_scored_ws))
    try:
        n, n_pmi = con.execute(
            "SELECT count(*), count(edge_strength_pmi) FROM difficulty WHERE run = 'digits'"
        ).fetchone()
        stats = {
            r[0] for r in con.execute("SELECT DISTINCT statistic FROM correlations").fetchall()
        }
    finally:
        con.close()
    assert n > 0 and n_pmi == n  # 8 x 8 digits: too small for DNCuts, 0 each, but present
    assert "edge_strength_pmi" in stats


def test_dncuts_sparse_path_solves_the_generalised_problem():
    """Graphs over 2 x 100 nodes take ARPACK (eigsh, shift-invert): its 100 eigenpairs are the
    smallest of (D - W + 1e-10 I) v = lambda D v, as a dense solver finds them (Octave's eigs gets
    this case wrong, so no Octave reference covers it; tests/data/pmi/README.md)."""
    from scipy import linalg, sparse

    h, w = 68, 60  # decimated twice: 17 x 15 = 255 nodes > 200
    rng = np.random.default_rng(0)
    i, j = pmi.local_pairs(h, w)
    region = (np.arange(h * w) % w) < w // 2  # two regions: strong inside, weak across
    aff = np.where(region[i] == region[j], 50.0, 1.0) * rng.uniform(0.5, 1.5, len(i))
    wm = sparse.coo_matrix((aff, (i, j)), shape=(h * w, h * w)).tocsr()
    wm = (wm + wm.T).tocsr()
    vals, vecs = pmi._dncuts(wm, h, w, pmi.N_VEC)
    assert vecs.shape == (h * w, pmi.N_VEC - 1)
    # the decimated graph, densely
    a = wm.tocsc()
    rows, cols = h, w
    for _ in range(2):
        keep = np.flatnonzero(
            ((np.arange(rows)[:, None] % 2 == 1) & (np.arange(cols)[None, :] % 2 == 1)).ravel()
        )
        a_sub = a[:, keep].T.toarray()
        b = (a_sub / (a_sub.sum(axis=0) + np.finfo(float).eps)).T
        a = sparse.csc_matrix(a_sub @ b)
        rows, cols = rows // 2, cols // 2
    a = a.toarray()
    deg = a.sum(axis=0)
    dense = linalg.eigh(np.diag(deg) - a + 1e-10 * np.eye(len(a)), np.diag(deg), eigvals_only=True)
    assert np.allclose(vals, dense[1 : pmi.N_VEC], rtol=1e-6, atol=1e-9)
    assert np.allclose(vecs.T @ vecs / len(vecs), np.eye(pmi.N_VEC - 1), atol=1e-6)  # whitened


def test_no_pmi_leaves_the_column_null_and_the_rest_unchanged(tmp_path):
    """`curate stats --no-pmi` (score.pmi = false): edge_strength_pmi NULL, every other statistic as
    with it; turning it back on recomputes (the parts of a pass without it are not reused)."""

    from curate.cli import main

    ws = two_image_folder(tmp_path)
    w = ["--workspace", str(ws), "--workers", "1"]

    def table():
        con = catalog.read(Workspace(ws))
        try:
            return con.execute("SELECT * FROM image_stats ORDER BY split, idx").df()
        finally:
            con.close()

    assert main(["stats", "f", "--no-pmi", *w]) == 0
    without = table()
    assert without["edge_strength_pmi"].isna().all() and len(without) == 4
    assert main(["stats", "f", *w]) == 0
    with_pmi = table()
    assert (with_pmi["edge_strength_pmi"] > 0).all()
    rest = [c for c in with_pmi.columns if c != "edge_strength_pmi"]
    assert with_pmi[rest].equals(without[rest])
