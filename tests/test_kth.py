"""KTH-TIPS2-b ingest on trees written here in the database's own layout and file names, its
attributes, bad names, and the attribute side of the correlations on hand-made scores."""

from __future__ import annotations

import tarfile

import numpy as np
import pytest
from conftest import ingest_cli
from PIL import Image
from scipy import stats
from test_ingest_errors import assert_refused

from curate import catalog, explore
from curate.data.formats.kth import IMAGE_CONDITIONS, parse_name
from curate.errors import CurateError
from curate.stats.correlate import compute_correlations
from curate.workspace import Workspace

# (material, CUReT number) as in the database; three (scale, image number) per sample folder
MATERIALS = (("cork", 40), ("wool", 46))
SHOTS = ((2, 1), (10, 12), (5, 2))  # written in this order; ingest orders by scale, then image


def make_kth_tree(root, materials=MATERIALS, samples="abcd", seed=0):
    """<root>/KTH-TIPS2-b/<material>/sample_<x>/<curet><x>-scale_<s>_im_<i>_col.png, 12x10 RGB."""
    rng = np.random.default_rng(seed)
    base = root / "KTH-TIPS2-b"
    for material, curet in materials:
        for s in samples:
            d = base / material / f"sample_{s}"
            d.mkdir(parents=True, exist_ok=True)
            for scale, im in SHOTS:
                a = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
                Image.fromarray(a).save(d / f"{curet}{s}-scale_{scale}_im_{im}_col.png")
    return base


def refused(capsys, ws, code, *needles) -> str:
    """One `error:` line holding every needle, exit 2, no dataset and no instance row written."""
    err = assert_refused(capsys, ws, code, *needles)
    if (ws / "catalog.duckdb").exists():
        con = catalog.read(Workspace(ws))
        assert con.execute("SELECT count(*) FROM instances").fetchone()[0] == 0
        con.close()
    return err


def query(ws, sql, params=()):
    con = catalog.read(Workspace(ws))
    try:
        return con.execute(sql, list(params)).fetchall()
    finally:
        con.close()


# ----------------------------------------------------------------------------- file names


def test_image_numbers_map_to_pose_and_illumination():
    # the table of curate/data/formats/kth.py, written out: im -> (pose, illumination)
    want = {
        1: ("frontal", "frontal"),
        2: ("frontal", "45deg_top"),
        3: ("frontal", "45deg_side"),
        4: ("right_22.5deg", "frontal"),
        5: ("right_22.5deg", "45deg_top"),
        6: ("right_22.5deg", "45deg_side"),
        7: ("left_22.5deg", "frontal"),
        8: ("left_22.5deg", "45deg_top"),
        9: ("left_22.5deg", "45deg_side"),
        10: ("frontal", "ambient"),
        11: ("right_22.5deg", "ambient"),
        12: ("left_22.5deg", "ambient"),
    }
    assert IMAGE_CONDITIONS == want
    from pathlib import Path

    assert parse_name(Path("15d-scale_2_im_1_col.png"), "d") == (2, "frontal", "frontal")
    assert parse_name(Path("15a-scale_10_im_11_grey.png"), "a") == (10, "right_22.5deg", "ambient")
    for bad, why in (
        ("15d-scale_1_im_1_col.png", "scale 1 is outside 2..10"),
        ("15d-scale_2_im_13_col.png", "image number 13 is outside 1..12"),
        ("15c-scale_2_im_1_col.png", "says sample c"),
        ("scale_2_im_1_col.png", "does not parse"),
        ("15d-scale_2_im_1_col.txt", "not an image file"),
    ):
        with pytest.raises(ValueError, match=why):
            parse_name(Path(bad), "d")


# ----------------------------------------------------------------------------- ingest


def test_ingest_splits_labels_and_attributes(tmp_path):
    make_kth_tree(tmp_path / "src")
    ws = tmp_path / "ws"
    assert ingest_cli("kth-tips2b", "--source", str(tmp_path / "src"), "--workspace", str(ws)) == 0
    assert query(ws, "SELECT class_names, splits, counts FROM datasets") == [
        (["cork", "wool"], ["train", "test"], [18, 6])
    ]
    test = query(
        ws,
        "SELECT idx, label, class_name, source FROM instances WHERE split = 'test' ORDER BY idx",
    )
    # sample a only; per material by scale number (10 after 5), then image number
    names = [r[3].split("/")[-1] for r in test]
    assert names == [
        "40a-scale_2_im_1_col.png",
        "40a-scale_5_im_2_col.png",
        "40a-scale_10_im_12_col.png",
        "46a-scale_2_im_1_col.png",
        "46a-scale_5_im_2_col.png",
        "46a-scale_10_im_12_col.png",
    ]
    assert [(r[1], r[2]) for r in test] == [(0, "cork")] * 3 + [(1, "wool")] * 3
    assert all("/sample_a/" in r[3] for r in test)
    train_samples = query(
        ws,
        "SELECT category, count(*) FROM image_attributes WHERE split = 'train' "
        "AND attribute = 'sample' GROUP BY ALL ORDER BY 1",
    )
    assert train_samples == [("b", 6), ("c", 6), ("d", 6)]
    rows = query(
        ws,
        "SELECT attribute, value, category FROM image_attributes WHERE split = 'test' AND idx = 5 "
        "ORDER BY attribute",
    )
    assert rows == [
        ("illumination", None, "ambient"),
        ("pose", None, "left_22.5deg"),
        ("sample", None, "a"),
        ("scale", 10.0, None),
    ]
    assert query(ws, "SELECT count(*) FROM image_attributes")[0][0] == 4 * 24


def test_ingest_from_the_tar_archive(tmp_path):
    base = make_kth_tree(tmp_path / "src")
    archive = tmp_path / "kth-tips2-b_col_200x200.tar"
    with tarfile.open(archive, "w") as t:
        t.add(base, arcname="KTH-TIPS2-b")
    ws = tmp_path / "ws"
    assert ingest_cli("kth-tips2b", "--source", str(archive), "--workspace", str(ws)) == 0
    assert query(ws, "SELECT counts FROM datasets") == [([18, 6],)]


def test_bad_name_refused_then_skipped(tmp_path, capsys):
    base = make_kth_tree(tmp_path / "src")
    victim = base / "wool" / "sample_c" / "46c-scale_2_im_13_col.png"  # no image 13
    Image.fromarray(np.zeros((12, 10, 3), np.uint8)).save(victim)
    ws = tmp_path / "ws"
    refused(
        capsys,
        ws,
        ingest_cli("kth-tips2b", "--source", str(tmp_path / "src"), "--workspace", str(ws)),
        str(victim),
        "image number 13",
        "--skip-corrupt",
    )
    args = ("kth-tips2b", "--source", str(tmp_path / "src"), "--workspace", str(ws))
    assert ingest_cli(*args, "--skip-corrupt") == 0
    assert query(ws, "SELECT split, source FROM skipped") == [("train", str(victim))]
    assert query(ws, "SELECT counts FROM datasets") == [([18, 6],)]


@pytest.mark.parametrize(
    "make_bad, needles",
    [
        (lambda b: b / "cork" / "sample_b" / "photo.png", ("photo.png", "does not parse")),
        (lambda b: b / "cork" / "sample_b" / "40a-scale_2_im_1_col.png", ("says sample a",)),
        (lambda b: b / "cork" / "extra" / "40b-scale_2_im_1_col.png", ("extra", "sample_<a..d>")),
    ],
)
def test_misplaced_or_misnamed_files(tmp_path, capsys, make_bad, needles):
    base = make_kth_tree(tmp_path / "src")
    bad = make_bad(base)
    bad.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((12, 10, 3), np.uint8)).save(bad)
    ws = tmp_path / "ws"
    refused(
        capsys,
        ws,
        ingest_cli("kth-tips2b", "--source", str(tmp_path / "src"), "--workspace", str(ws)),
        *needles,
    )


def test_material_without_sample_a(tmp_path, capsys):
    make_kth_tree(tmp_path / "src", materials=(("cork", 40),))
    make_kth_tree(tmp_path / "src", materials=(("wool", 46),), samples="bcd")
    ws = tmp_path / "ws"
    refused(
        capsys,
        ws,
        ingest_cli("kth-tips2b", "--source", str(tmp_path / "src"), "--workspace", str(ws)),
        "wool",
        "sample_a",
    )


# ----------------------------------------------------------------------------- correlations

# members = 2; correct counts per instance at epochs 0, 1, 2 of the test split (idx order:
# cork 2/im1, 5/im2, 10/im12, wool 2/im1, 5/im2, 10/im12), strict = both members right
TEST_COUNTS = [[0, 2, 2], [0, 0, 2], [0, 1, 2], [0, 0, 0], [2, 2, 2], [0, 2, 1]]
TEST_ACCESS = [0.9, 0.1, 0.5, 0.0, 1.0, 0.6]


def _insert_run(ws: Workspace, run: str, dataset: str) -> None:
    """A scored run written by hand: instance_scores and epoch_metrics of both splits."""
    rows, metrics = [], []
    for idx, (counts, acc) in enumerate(zip(TEST_COUNTS, TEST_ACCESS, strict=True)):
        rows.append(("test", idx, acc, counts))
    metrics += [("test", e, sa) for e, sa in enumerate([1 / 6, 3 / 6, 4 / 6])]
    # train: 18 instances with scales 2, 5, 10 repeating; at epochs 0..6 the scale-2 ones are all
    # correct, at epoch 7 also the scale-5 ones, at epochs 8 and 9 all of them
    scales = np.array([2, 5, 10] * 6)
    for idx, s in enumerate(scales):
        counts = [2 if (s == 2 or (s == 5 and e >= 7) or e >= 8) else 1 for e in range(10)]
        rows.append(("train", idx, float(idx) / 17, counts))
    metrics += [("train", e, sa) for e, sa in enumerate([0.1] * 6 + [0.3, 0.6, 1.0, 1.0])]
    with catalog.write(ws) as con:
        con.execute("INSERT INTO runs (run, dataset, members) VALUES (?, ?, 2)", [run, dataset])
        for split, idx, acc, counts in rows:
            con.execute(
                "INSERT INTO instance_scores (run, dataset, split, idx, members, accessibility, "
                "correct_by_epoch) VALUES (?, ?, ?, ?, 2, ?, ?)",
                [run, dataset, split, idx, acc, counts],
            )
        for split, e, sa in metrics:
            con.execute(
                "INSERT INTO epoch_metrics (run, dataset, split, epoch, strict_agreement) "
                "VALUES (?, ?, ?, ?, ?)",
                [run, dataset, split, e, sa],
            )


def test_attribute_agreement_without_image_statistics(tmp_path):
    make_kth_tree(tmp_path / "src")
    ws = tmp_path / "ws"
    assert ingest_cli("kth-tips2b", "--source", str(tmp_path / "src"), "--workspace", str(ws)) == 0
    w = Workspace.resolve(str(ws))
    _insert_run(w, "hand", "kth-tips2b")
    assert query(ws, "SELECT count(*) FROM image_stats")[0][0] == 0  # attributes alone
    assert compute_correlations(w, "kth-tips2b") == 4  # scale: 2 kinds x 2 splits

    def fractions(attribute):
        got = query(
            ws,
            "SELECT category, epoch, n, frac_strict FROM category_agreement WHERE run = 'hand' "
            "AND split = 'test' AND attribute = ? ORDER BY category, epoch",
            [attribute],
        )
        return {(c, e): (n, pytest.approx(f)) for c, e, n, f in got}

    # strict at epochs 0, 1, 2: [0 0 0 0 1 0], [1 0 0 0 1 1], [1 1 1 0 1 0]
    assert fractions("illumination") == {
        ("45deg_top", 0): (2, 0.5),  # idx 1, 4
        ("45deg_top", 1): (2, 0.5),
        ("45deg_top", 2): (2, 1.0),
        ("ambient", 0): (2, 0.0),  # idx 2, 5
        ("ambient", 1): (2, 0.5),
        ("ambient", 2): (2, 0.5),
        ("frontal", 0): (2, 0.0),  # idx 0, 3
        ("frontal", 1): (2, 0.5),
        ("frontal", 2): (2, 0.5),
    }
    assert fractions("pose") == {
        ("frontal", 0): (4, 0.25),  # idx 0, 1, 3, 4
        ("frontal", 1): (4, 0.5),
        ("frontal", 2): (4, 0.75),
        ("left_22.5deg", 0): (2, 0.0),  # idx 2, 5
        ("left_22.5deg", 1): (2, 0.5),
        ("left_22.5deg", 2): (2, 0.5),
    }
    assert fractions("class_name") == {
        ("cork", 0): (3, 0.0),
        ("cork", 1): (3, 1 / 3),
        ("cork", 2): (3, 1.0),
        ("wool", 0): (3, 1 / 3),
        ("wool", 1): (3, 2 / 3),
        ("wool", 2): (3, 1 / 3),
    }
    corr = {
        (s, k): (r, n, e)
        for s, k, r, n, e in query(
            ws,
            "SELECT split, kind, r, n, epochs FROM correlations WHERE run = 'hand' "
            "AND statistic = 'scale'",
        )
    }
    test_scales = [2, 5, 10, 2, 5, 10]
    rho = stats.spearmanr(TEST_ACCESS, test_scales)[0]
    assert corr[("test", "accessibility~statistic (spearman)")][:2] == (pytest.approx(rho), 6)
    # train, epochs 6..9: strict agreement .3 .6 1 1, mean scale of the all-correct 2, 3.5, 17/3, 17/3
    r = stats.pearsonr([0.3, 0.6, 1.0, 1.0], [2, 3.5, 17 / 3, 17 / 3])[0]
    assert corr[("train", "strict_agreement~mean_over_agreed")] == (
        pytest.approx(r),
        4,
        [6, 7, 8, 9],
    )
    curve = query(
        ws,
        "SELECT epoch, mean_over_agreed FROM agreement_stat_curves WHERE run = 'hand' "
        "AND split = 'train' AND statistic = 'scale' AND epoch >= 6 ORDER BY epoch",
    )
    # means of a few small integers: rounding only, hence abs=1e-12
    assert [e for e, _ in curve] == [6, 7, 8, 9]
    assert [v for _, v in curve] == pytest.approx([2.0, 3.5, 17 / 3, 17 / 3], abs=1e-12)
    with catalog.read(w) as con:  # the explorer's scatter of accessibility against the attribute
        sample = explore.scatter_sample(con, "hand", "test", "scale")
        got = sorted(zip(sample["accessibility"], sample["value"], strict=True))
        assert got == sorted(zip(TEST_ACCESS, map(float, test_scales), strict=True))
        with pytest.raises(CurateError, match="unknown statistic 'pose'"):  # not numeric
            explore.scatter_sample(con, "hand", "test", "pose")
    # without statistics and attributes nothing is correlated (as before attributes existed)
    with catalog.write(w) as con:
        con.execute("DELETE FROM image_attributes")
    assert compute_correlations(w, "kth-tips2b") == 0


def test_odd_case_names_read_and_case_twins_refused(tmp_path, capsys):
    base = make_kth_tree(tmp_path / "src")
    shot = base / "cork" / "sample_b" / "40b-scale_5_im_2_col.png"
    upper = shot.with_name("40B-SCALE_5_IM_2_COL.PNG")  # the same shot in capitals: reads the same
    shot.rename(upper)
    ws = tmp_path / "ws"
    args = ("kth-tips2b", "--source", str(tmp_path / "src"), "--workspace", str(ws))
    assert ingest_cli(*args) == 0
    got = query(
        ws,
        "SELECT a.attribute, coalesce(a.category, a.value::VARCHAR) FROM image_attributes a "
        "JOIN instances i USING (dataset, split, idx) WHERE i.source = ? ORDER BY 1",
        [str(upper)],
    )
    assert got == [
        ("illumination", "45deg_top"),
        ("pose", "frontal"),
        ("sample", "b"),
        ("scale", "5.0"),
    ]
    # both spellings present: one shot twice, which would weigh it double; refused by name
    Image.fromarray(np.zeros((12, 10, 3), np.uint8)).save(shot)
    ws2 = tmp_path / "ws2"
    refused(
        capsys,
        ws2,
        ingest_cli("kth-tips2b", "--source", str(tmp_path / "src"), "--workspace", str(ws2)),
        shot.name,
        upper.name,
        "same image",
    )


def test_sample_folders_in_odd_case(tmp_path):
    """Folder names are read as case-blind as file names: Sample_A is sample a (the test split)."""
    base = make_kth_tree(tmp_path / "src")
    (base / "cork" / "sample_a").rename(base / "cork" / "Sample_A")
    (base / "wool" / "sample_b").rename(base / "wool" / "SAMPLE_B")
    ws = tmp_path / "ws"
    assert ingest_cli("kth-tips2b", "--source", str(tmp_path / "src"), "--workspace", str(ws)) == 0
    assert query(ws, "SELECT counts FROM datasets") == [([18, 6],)]
    got = query(
        ws,
        "SELECT split, category, count(*) FROM image_attributes WHERE attribute = 'sample' "
        "GROUP BY ALL ORDER BY 1, 2",
    )
    assert got == [("test", "a", 6), ("train", "b", 6), ("train", "c", 6), ("train", "d", 6)]
