"""Pascal VOC devkit trees written the way the devkit is: JPEGs named by image id, one XML per
image in VOC's own annotation format, ImageSets/Main split lists."""

from __future__ import annotations

from pathlib import Path

import numpy as np

# (name, xmin, ymin, xmax, ymax, truncated, difficult)
Obj = tuple[str, int, int, int, int, int, int]


def annotation_xml(image_id: str, folder: str, width: int, height: int, objects: list[Obj]) -> str:
    """An annotation as VOC2007's 000005.xml is laid out."""
    parts = [
        "<annotation>",
        f"\t<folder>{folder}</folder>",
        f"\t<filename>{image_id}.jpg</filename>",
        "\t<source>",
        "\t\t<database>The VOC2007 Database</database>",
        "\t\t<annotation>PASCAL VOC2007</annotation>",
        "\t\t<image>flickr</image>",
        "\t</source>",
        "\t<owner><flickrid>nobody</flickrid><name>?</name></owner>",
        f"\t<size>\n\t\t<width>{width}</width>\n\t\t<height>{height}</height>\n\t\t<depth>3</depth>\n\t</size>",
        "\t<segmented>0</segmented>",
    ]
    for name, x0, y0, x1, y1, trunc, diff in objects:
        parts += [
            "\t<object>",
            f"\t\t<name>{name}</name>",
            "\t\t<pose>Unspecified</pose>",
            f"\t\t<truncated>{trunc}</truncated>",
            f"\t\t<difficult>{diff}</difficult>",
            "\t\t<bndbox>",
            f"\t\t\t<xmin>{x0}</xmin>\n\t\t\t<ymin>{y0}</ymin>",
            f"\t\t\t<xmax>{x1}</xmax>\n\t\t\t<ymax>{y1}</ymax>",
            "\t\t</bndbox>",
            "\t</object>",
        ]
    parts.append("</annotation>")
    return "\n".join(parts) + "\n"


def make_voc_root(
    root: Path,
    images: dict[str, tuple[int, int, list[Obj]]],
    sets: dict[str, list[str]],
    seed: int = 0,
    pixels=None,
) -> Path:
    """<root>/{JPEGImages,Annotations,ImageSets/Main}; images: id -> (width, height, objects);
    sets: list name (trainval, test, ...) -> ids. pixels(id, w, h) -> (h, w, 3) uint8, else noise."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for d in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (root / d).mkdir(parents=True, exist_ok=True)
    for image_id, (w, h, objects) in images.items():
        a = pixels(image_id, w, h) if pixels else rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(a).save(root / "JPEGImages" / f"{image_id}.jpg", quality=95)
        (root / "Annotations" / f"{image_id}.xml").write_text(
            annotation_xml(image_id, root.name, w, h, objects)
        )
    for name, ids in sets.items():
        (root / "ImageSets" / "Main" / f"{name}.txt").write_text("".join(i + "\n" for i in ids))
    return root


def small_devkit(base: Path) -> tuple[Path, Path]:
    """VOCdevkit/VOC2007 (trainval 000005, 000007; test 000001, 000004) and VOCdevkit/VOC2012
    (trainval 2008_000008, 2008_000015); returns the two year roots."""
    voc07 = make_voc_root(
        base / "VOCdevkit" / "VOC2007",
        {
            # 10 x 8 image: a chair of 5 x 4 px and a difficult chair of 5 x 6 px overlapping it
            # on 2 x 2 px, and a person of 2 x 2 px: union 20 + 30 - 4 + 4 = 50 of 80 px
            "000005": (
                10,
                8,
                [
                    ("chair", 1, 1, 5, 4, 0, 0),
                    ("chair", 4, 3, 8, 8, 1, 1),
                    ("person", 9, 7, 10, 8, 1, 0),
                ],
            ),
            # one car covering the whole 12 x 6 image
            "000007": (12, 6, [("car", 1, 1, 12, 6, 0, 0)]),
            # test: a dog and a difficult cat (ignored in test): label {dog}
            "000001": (8, 8, [("dog", 1, 1, 4, 4, 0, 0), ("cat", 5, 5, 8, 8, 0, 1)]),
            # test: only a difficult bottle: the empty set; its box sticks out of the image
            "000004": (8, 8, [("bottle", 5, 5, 12, 12, 1, 1)]),
        },
        {
            "train": ["000005"],
            "val": ["000007"],
            "trainval": ["000005", "000007"],
            "test": ["000001", "000004"],
        },
    )
    voc12 = make_voc_root(
        base / "VOCdevkit" / "VOC2012",
        {
            "2008_000008": (
                10,
                10,
                [("horse", 1, 1, 10, 10, 0, 0), ("person", 3, 1, 6, 10, 0, 1)],
            ),
            "2008_000015": (10, 10, [("aeroplane", 2, 2, 6, 6, 0, 0)]),
        },
        {"trainval": ["2008_000008", "2008_000015"]},
        seed=1,
    )
    return voc07, voc12
