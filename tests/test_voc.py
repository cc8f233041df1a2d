"""Pascal VOC ingest on devkit trees the tests write: labels as class-set bitmasks, difficult
objects ignored in test, per-image attributes, several roots, and every bad input."""

from __future__ import annotations

import os

import pytest
from conftest import catalog_rows as q
from conftest import ingest_cli
from test_ingest_errors import assert_refused
from voc_tree import annotation_xml, make_voc_root, small_devkit

from curate.data.formats.voc import VOC_CLASSES, image_id_to_idx, label_names, union_area_ratio


def bits(*names: str) -> int:
    return sum(1 << VOC_CLASSES.index(n) for n in names)


def test_class_bits_and_ids():
    assert VOC_CLASSES.index("chair") == 8 and VOC_CLASSES.index("person") == 14
    assert bits("chair", "person") == 256 + 16384
    assert label_names(256 + 16384) == "chair+person"
    assert label_names(0) == ""
    assert image_id_to_idx("000005") == 5
    assert image_id_to_idx("2008_000008") == 2_008_000_008 < 2**31
    with pytest.raises(ValueError):
        image_id_to_idx("cat_1")


def test_union_area_ratio_by_hand():
    # 10 x 8 image; boxes 5x4 and 5x6 overlapping on 2x2, and a disjoint 2x2: (20 + 30 - 4 + 4) / 80
    boxes = [(1, 1, 5, 4), (4, 3, 8, 8), (9, 7, 10, 8)]
    assert union_area_ratio(boxes, 10, 8) == pytest.approx(50 / 80)
    # a box sticking out of the image is clipped: 4 x 4 of 8 x 8
    assert union_area_ratio([(5, 5, 12, 12)], 8, 8) == pytest.approx(16 / 64)
    # the same box twice counts once
    assert union_area_ratio([(1, 1, 4, 4), (1, 1, 4, 4)], 8, 8) == pytest.approx(16 / 64)


def test_two_roots_combined(tmp_path):
    voc07, voc12 = small_devkit(tmp_path)
    ws = tmp_path / "ws"
    code = ingest_cli("voc", "--source", str(voc07), "--source", str(voc12), "--workspace", str(ws))
    assert code == 0
    rows = q(
        ws,
        "SELECT split, idx, label, true_label, class_name, source FROM instances "
        "WHERE dataset = 'voc' ORDER BY split, idx",
    )
    expected = [
        (
            "test",
            1,
            bits("dog"),
            "dog",
            voc07 / "JPEGImages" / "000001.jpg",
        ),  # difficult cat ignored
        ("test", 4, 0, "", voc07 / "JPEGImages" / "000004.jpg"),  # only a difficult bottle
        ("train", 5, bits("chair", "person"), "chair+person", voc07 / "JPEGImages" / "000005.jpg"),
        ("train", 7, bits("car"), "car", voc07 / "JPEGImages" / "000007.jpg"),
        # the difficult person counts in train
        (
            "train",
            2008000008,
            bits("horse", "person"),
            "horse+person",
            voc12 / "JPEGImages" / "2008_000008.jpg",
        ),
        (
            "train",
            2008000015,
            bits("aeroplane"),
            "aeroplane",
            voc12 / "JPEGImages" / "2008_000015.jpg",
        ),
    ]
    assert [(r[0], r[1], r[2], r[4], r[5]) for r in rows] == [
        (s, i, lab, name, str(path)) for s, i, lab, name, path in expected
    ]
    assert all(r[2] == r[3] for r in rows)  # true_label = label
    (fmt, ncls, names, splits, counts) = q(
        ws, "SELECT format, num_classes, class_names, splits, counts FROM datasets"
    )[0]
    assert (fmt, ncls, names, splits, counts) == ("voc", 20, VOC_CLASSES, ["train", "test"], [4, 2])
    attrs = q(
        ws,
        "SELECT split, idx, attribute, value FROM image_attributes WHERE dataset = 'voc' "
        "ORDER BY split, idx, attribute",
    )
    got = {(s, i, a): v for s, i, a, v in attrs}
    # (object_count, n_classes, bbox_area_ratio, truncated, difficult), worked out in voc_tree
    want = {
        ("train", 5): (3, 2, 50 / 80, 2, 1),
        ("train", 7): (1, 1, 1.0, 0, 0),
        ("train", 2008000008): (2, 2, 1.0, 0, 1),
        ("train", 2008000015): (1, 1, 25 / 100, 0, 0),
        ("test", 1): (2, 1, 32 / 64, 0, 1),
        ("test", 4): (1, 0, 16 / 64, 1, 1),
    }
    names_ = ("object_count", "n_classes", "bbox_area_ratio", "truncated", "difficult")
    assert len(got) == len(want) * len(names_)
    for (s, i), values in want.items():
        for a, v in zip(names_, values, strict=True):
            assert got[(s, i, a)] == pytest.approx(v), (s, i, a)
    meta = (ws / "datasets" / "voc" / "dataset.json").read_text()
    assert '"multilabel": true' in meta
    from curate.data.loader import dataset_info

    assert dataset_info("voc", str(ws)).multilabel


def test_devkit_folder_expands_to_its_years(tmp_path):
    small_devkit(tmp_path)
    ws = tmp_path / "ws"
    assert ingest_cli("voc", "--source", str(tmp_path / "VOCdevkit"), "--workspace", str(ws)) == 0
    assert q(ws, "SELECT counts FROM datasets")[0][0] == [4, 2]
    # the same in one dataset.source value, paths joined like PATH
    ws2 = tmp_path / "ws2"
    joined = os.pathsep.join(str(tmp_path / "VOCdevkit" / y) for y in ("VOC2007", "VOC2012"))
    assert ingest_cli("voc", "--set", f"dataset.source={joined}", "--workspace", str(ws2)) == 0
    assert q(ws2, "SELECT checksum FROM datasets") == q(ws, "SELECT checksum FROM datasets")


def test_train_and_val_lists_when_no_trainval(tmp_path):
    voc07, _ = small_devkit(tmp_path)
    (voc07 / "ImageSets" / "Main" / "trainval.txt").unlink()
    ws = tmp_path / "ws"
    assert ingest_cli("voc", "--source", str(voc07), "--workspace", str(ws)) == 0
    assert [r[0] for r in q(ws, "SELECT idx FROM instances WHERE split='train' ORDER BY idx")] == [
        5,
        7,
    ]


def _one_root(tmp_path, objects=None, sets=None):
    return make_voc_root(
        tmp_path / "VOC2007",
        {
            "000005": (8, 8, objects or [("dog", 1, 1, 4, 4, 0, 0)]),
            "000006": (8, 8, [("cat", 1, 1, 8, 8, 0, 0)]),
            "000009": (8, 8, [("cow", 1, 1, 8, 8, 0, 0)]),
        },
        sets or {"trainval": ["000005", "000006"], "test": ["000009"]},
    )


def _refuse(tmp_path, capsys, root, *needles):
    ws = tmp_path / "ws"
    return assert_refused(
        capsys, ws, ingest_cli("voc", "--source", str(root), "--workspace", str(ws)), *needles
    )


def _skip_lists(tmp_path, root, victim, reason_part, kept):
    ws = tmp_path / "ws"
    assert ingest_cli("voc", "--source", str(root), "--workspace", str(ws), "--skip-corrupt") == 0
    rows = q(ws, "SELECT split, source, reason FROM skipped")
    assert [(r[0], r[1]) for r in rows] == [("train", str(victim))]
    assert reason_part in rows[0][2]
    ids = [r[0] for r in q(ws, "SELECT idx FROM instances WHERE split='train' ORDER BY idx")]
    assert ids == kept
    n_attr = q(ws, "SELECT count(*) FROM image_attributes WHERE split='train'")[0][0]
    assert n_attr == 5 * len(kept)


def test_missing_annotation(tmp_path, capsys):
    root = _one_root(tmp_path)
    victim = root / "Annotations" / "000006.xml"
    victim.unlink()
    err = _refuse(tmp_path, capsys, root, "000006.xml", "no annotation", "--skip-corrupt")
    assert "trainval.txt" in err
    _skip_lists(tmp_path, root, victim, "no annotation", [5])


def test_annotation_without_objects(tmp_path, capsys):
    root = _one_root(tmp_path)
    victim = root / "Annotations" / "000005.xml"
    victim.write_text(annotation_xml("000005", "VOC2007", 8, 8, []))
    _refuse(tmp_path, capsys, root, "000005.xml", "no <object>")
    _skip_lists(tmp_path, root, victim, "no <object>", [6])


def test_listed_image_absent(tmp_path, capsys):
    root = _one_root(tmp_path)
    victim = root / "JPEGImages" / "000006.jpg"
    victim.unlink()
    _refuse(tmp_path, capsys, root, "000006.jpg", "absent", "trainval.txt")
    _skip_lists(tmp_path, root, victim, "absent", [5])


def test_unknown_class(tmp_path, capsys):
    root = _one_root(tmp_path, objects=[("dog", 1, 1, 4, 4, 0, 0), ("unicorn", 1, 1, 2, 2, 0, 0)])
    victim = root / "Annotations" / "000005.xml"
    err = _refuse(tmp_path, capsys, root, "000005.xml", "unknown class 'unicorn'")
    assert "aeroplane" in err  # the classes it knows
    _skip_lists(tmp_path, root, victim, "unicorn", [6])


def test_malformed_xml(tmp_path, capsys):
    root = _one_root(tmp_path)
    victim = root / "Annotations" / "000006.xml"
    victim.write_text(victim.read_text()[:120])
    _refuse(tmp_path, capsys, root, "000006.xml", "not well-formed XML")


def test_corrupt_jpeg_listed(tmp_path, capsys):
    root = _one_root(tmp_path)
    victim = root / "JPEGImages" / "000006.jpg"
    victim.write_bytes(victim.read_bytes()[:50])
    _refuse(tmp_path, capsys, root, "000006.jpg", "--skip-corrupt")
    _skip_lists(tmp_path, root, victim, "", [5])


def test_not_a_devkit_and_no_lists(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    _refuse(tmp_path, capsys, tmp_path / "empty", "not a VOC devkit folder", "ImageSets")
    root = _one_root(tmp_path)
    for f in (root / "ImageSets" / "Main").iterdir():
        f.unlink()
    _refuse(tmp_path, capsys, root, "trainval.txt", "Main")
    _refuse(tmp_path, capsys, tmp_path / "nope", "does not exist")


def test_image_listed_twice(tmp_path, capsys):
    voc07, _ = small_devkit(tmp_path)
    ws = tmp_path / "ws"
    code = ingest_cli("voc", "--source", str(voc07), "--source", str(voc07), "--workspace", str(ws))
    assert_refused(capsys, ws, code, "000005", "listed twice", "once")


def test_image_in_train_and_test_refused(tmp_path, capsys):
    voc07, _ = small_devkit(tmp_path)
    (voc07 / "ImageSets" / "Main" / "test.txt").write_text("000001\n000004\n000007\n")
    ws = tmp_path / "ws"
    code = ingest_cli("voc", "--source", str(voc07), "--workspace", str(ws))
    assert_refused(capsys, ws, code, "000007", "test split", "train split", "must not be trained")


def test_bad_id_and_per_class_list(tmp_path, capsys):
    root = _one_root(tmp_path, sets={"trainval": ["000005", "cat_7"]})
    _refuse(tmp_path, capsys, root, "cat_7", "not a VOC id")
    root2 = make_voc_root(
        tmp_path / "b" / "VOC2007",
        {"000005": (8, 8, [("dog", 1, 1, 4, 4, 0, 0)])},
        {"trainval": ["000005  1"]},
    )
    _refuse(tmp_path, capsys, root2, "trainval.txt line 1", "not one image id")


def test_labels_file_refused(tmp_path, capsys):
    import numpy as np

    root = _one_root(tmp_path)
    np.save(tmp_path / "l.npy", np.array([0, 1]))
    ws = tmp_path / "ws"
    code = ingest_cli(
        "voc", "--source", str(root), "--labels", str(tmp_path / "l.npy"), "--workspace", str(ws)
    )
    assert_refused(capsys, ws, code, "class sets", "--labels")


def test_trainval_and_test_archives_combined(tmp_path):
    """The devkit as distributed: VOCtrainval_06-Nov-2007.tar and VOCtest_06-Nov-2007.tar, each
    holding VOCdevkit/VOC2007 with its own lists."""
    import tarfile

    trainval = make_voc_root(
        tmp_path / "a" / "VOCdevkit" / "VOC2007",
        {
            "000005": (8, 8, [("chair", 1, 1, 4, 4, 0, 0)]),
            "000007": (8, 8, [("car", 1, 1, 8, 8, 0, 0)]),
        },
        {"train": ["000005"], "val": ["000007"], "trainval": ["000005", "000007"]},
    )
    test = make_voc_root(
        tmp_path / "b" / "VOCdevkit" / "VOC2007",
        {"000001": (8, 8, [("dog", 1, 1, 4, 4, 0, 0), ("cat", 5, 5, 8, 8, 0, 1)])},
        {"test": ["000001"]},
    )
    tars = []
    for root, name in (
        (trainval, "VOCtrainval_06-Nov-2007.tar"),
        (test, "VOCtest_06-Nov-2007.tar"),
    ):
        with tarfile.open(tmp_path / name, "w") as t:
            t.add(root.parent, arcname="VOCdevkit")
        tars.append(str(tmp_path / name))
    ws = tmp_path / "ws"
    assert ingest_cli("voc", "--source", tars[0], "--source", tars[1], "--workspace", str(ws)) == 0
    rows = q(ws, "SELECT split, idx, class_name FROM instances ORDER BY split, idx")
    assert rows == [("test", 1, "dog"), ("train", 5, "chair"), ("train", 7, "car")]
    # unchanged input: nothing to do
    assert ingest_cli("voc", "--source", tars[0], "--source", tars[1], "--workspace", str(ws)) == 0


def test_annotation_without_size_uses_the_jpeg(tmp_path):
    root = _one_root(tmp_path, objects=[("dog", 1, 1, 4, 2, 0, 0)])
    xml = root / "Annotations" / "000005.xml"
    text = xml.read_text()
    start, end = text.index("\t<size>"), text.index("</size>") + len("</size>")
    xml.write_text(text[:start] + text[end:])  # the JPEG is 8 x 8: the dog covers 4 x 2 of 64 px
    ws = tmp_path / "ws"
    assert ingest_cli("voc", "--source", str(root), "--workspace", str(ws)) == 0
    got = q(
        ws,
        "SELECT value FROM image_attributes WHERE idx = 5 AND attribute = 'bbox_area_ratio'",
    )
    assert got == [(pytest.approx(8 / 64),)]


def _xml_with(root, image_id, text):
    (root / "Annotations" / f"{image_id}.xml").write_text(text)


def test_xml_entities_refused_not_expanded(tmp_path, capsys):
    """A DTD is never honoured: no external entity reads a local file, no entity expansion blows
    up memory (whatever the expat version's own limits), the image is refused by name."""
    secret = tmp_path / "secret.txt"
    secret.write_text("dog")  # were it read, 000005 would ingest as a dog
    body = (
        "<annotation><size><width>8</width><height>8</height></size><object><name>&x;</name>"
        "<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>2</xmax><ymax>2</ymax></bndbox></object>"
        "</annotation>"
    )
    laughs = '<!ENTITY l0 "dogdogdog">' + "".join(
        f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10)
    )
    for dtd in (
        f'<!DOCTYPE a [<!ENTITY x SYSTEM "file://{secret}">]>',
        '<!DOCTYPE a [<!ENTITY x "dog">]>',  # even a harmless internal entity: VOC has none
        f'<!DOCTYPE a [{laughs}<!ENTITY x "&l9;">]>',
    ):
        root = _one_root(tmp_path)
        _xml_with(root, "000005", '<?xml version="1.0"?>' + dtd + body)
        _refuse(tmp_path, capsys, root, "000005.xml", "DTD")


def test_absurd_or_infinite_sizes(tmp_path, capsys):
    # a 2 x 2 box in a 200,000 x 200,000 annotated image: computed without a 40 GB pixel mask
    assert union_area_ratio([(1, 1, 2, 2)], 200_000, 200_000) == pytest.approx(4 / 4e10)
    box = "<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>{}</xmax><ymax>2</ymax></bndbox>"
    for w, xmax in (("inf", "2"), ("8", "1e400"), ("nan", "2")):
        root = _one_root(tmp_path)
        _xml_with(
            root,
            "000005",
            f"<annotation><size><width>{w}</width><height>8</height></size>"
            f"<object><name>dog</name>{box.format(xmax)}</object></annotation>",
        )
        _refuse(tmp_path, capsys, root, "000005.xml", "not a number")
    root = _one_root(tmp_path)
    _xml_with(
        root,
        "000005",
        "<annotation><size><width>200000</width><height>200000</height></size>"
        f"<object><name>dog</name>{box.format(2)}</object></annotation>",
    )
    ws = tmp_path / "ws"
    assert ingest_cli("voc", "--source", str(root), "--workspace", str(ws)) == 0
    got = q(ws, "SELECT value FROM image_attributes WHERE idx = 5 AND attribute='bbox_area_ratio'")
    assert got == [(pytest.approx(4 / 4e10),)]


def test_split_list_not_text(tmp_path, capsys):
    root = _one_root(tmp_path)
    (root / "ImageSets" / "Main" / "trainval.txt").write_bytes(b"\xff\xfe\x00000005\n")
    _refuse(tmp_path, capsys, root, "trainval.txt", "not a text file")


def test_id_beyond_int32_refused_not_wrapped(tmp_path, capsys):
    # 9999_999999 -> 9,999,999,999 does not fit the int32 idx: it was stored as 1,410,065,407
    with pytest.raises(ValueError):
        image_id_to_idx("9999_999999")
    assert image_id_to_idx("2147_483647") == 2**31 - 1  # the largest that fits
    root = make_voc_root(
        tmp_path / "VOC2007",
        {"9999_999999": (8, 8, [("dog", 1, 1, 4, 4, 0, 0)])},
        {"trainval": ["9999_999999"]},
    )
    _refuse(tmp_path, capsys, root, "9999_999999", "not a VOC id")


def test_two_archives_of_one_name_refused(tmp_path, capsys):
    """a/VOC.tar and b/VOC.tar would unpack into the same sources/VOC folder, the second over the
    first: refused naming both, not reported as an image listed twice."""
    import tarfile

    a = make_voc_root(
        tmp_path / "a" / "VOCdevkit" / "VOC2007",
        {"000005": (8, 8, [("dog", 1, 1, 4, 4, 0, 0)])},
        {"trainval": ["000005"]},
    )
    b = make_voc_root(
        tmp_path / "b" / "VOCdevkit" / "VOC2007",
        {"000009": (8, 8, [("cow", 1, 1, 4, 4, 0, 0)])},
        {"test": ["000009"]},
    )
    tars = []
    for d, root in (("ta", a), ("tb", b)):
        (tmp_path / d).mkdir()
        with tarfile.open(tmp_path / d / "VOC.tar", "w") as t:
            t.add(root.parent, arcname="VOCdevkit")
        tars.append(str(tmp_path / d / "VOC.tar"))
    ws = tmp_path / "ws"
    code = ingest_cli("voc", "--source", tars[0], "--source", tars[1], "--workspace", str(ws))
    assert_refused(capsys, ws, code, tars[0], tars[1], "same name", "rename")


def _bomb(jpeg):
    """Rewrite a small JPEG's frame header to claim 65000 x 65000 px (4.2 gigapixels)."""
    b = bytearray(jpeg.read_bytes())
    i = b.find(b"\xff\xc0")  # SOF0: length (2), precision (1), height (2), width (2)
    b[i + 5 : i + 9] = (65000).to_bytes(2, "big") * 2
    jpeg.write_bytes(bytes(b))


@pytest.mark.parametrize("with_size", [True, False])
def test_decompression_bomb_refused_then_skipped(tmp_path, capsys, with_size):
    root = _one_root(tmp_path)
    victim = root / "JPEGImages" / "000006.jpg"
    _bomb(victim)
    if not with_size:  # then the reader itself opens the image for its size
        xml = root / "Annotations" / "000006.xml"
        text = xml.read_text()
        xml.write_text(text[: text.index("\t<size>")] + text[text.index("</size>") + 7 :])
    _refuse(tmp_path, capsys, root, "000006.jpg", "pixels", "--skip-corrupt")
    _skip_lists(tmp_path, root, victim, "pixels", [5])


def test_split_list_with_bom_and_crlf(tmp_path):
    """A list saved by a Windows editor (UTF-8 byte-order mark, CRLF) reads as the devkit's."""
    root = _one_root(tmp_path)
    (root / "ImageSets" / "Main" / "trainval.txt").write_bytes(b"\xef\xbb\xbf000005\r\n000006\r\n")
    ws = tmp_path / "ws"
    assert ingest_cli("voc", "--source", str(root), "--workspace", str(ws)) == 0
    assert q(ws, "SELECT idx FROM instances WHERE split = 'train' ORDER BY idx") == [(5,), (6,)]


def test_root_whose_path_holds_the_separator(tmp_path):
    """Roots are joined by the OS path separator (':'), which a folder name may hold itself."""
    voc07, voc12 = small_devkit(tmp_path / "my:data")
    ws = tmp_path / "ws"
    code = ingest_cli("voc", "--source", str(voc07), "--source", str(voc12), "--workspace", str(ws))
    assert code == 0
    assert q(ws, "SELECT count(*) FROM instances WHERE split = 'train'") == [(4,)]


def test_union_area_of_many_boxes_against_a_pixel_mask():
    """Thousands of objects (an annotation under the 1 MiB cap holds about 7,000) neither build an
    n x n grid in memory nor differ from painting the boxes on a mask."""
    import tracemalloc

    import numpy as np

    rng = np.random.default_rng(0)
    w, h = 300, 200
    x0, y0 = rng.integers(-5, w, 400), rng.integers(-5, h, 400)
    boxes = [
        (int(a), int(b), int(a + rng.integers(0, 60)), int(b + rng.integers(0, 60)))
        for a, b in zip(x0, y0, strict=True)
    ]
    mask = np.zeros((h, w), bool)
    for a, b, c, d in boxes:
        mask[max(b, 1) - 1 : min(d, h), max(a, 1) - 1 : min(c, w)] = True
    assert union_area_ratio(boxes, w, h) == pytest.approx(mask.mean(), abs=1e-12)
    # 7,000 disjoint 3 x 3 boxes on a diagonal: 14,000 distinct edges a side
    many = [(4 * i + 1, 4 * i + 1, 4 * i + 3, 4 * i + 3) for i in range(7000)]
    tracemalloc.start()
    try:
        assert union_area_ratio(many, 30_000, 30_000) == pytest.approx(7000 * 9 / 9e8)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50e6  # bytes; a grid of the boxes' edges took 600 MB here
