"""Pascal VOC (2007, 2012) classification: the devkit layout read into a multilabel source.

A root is one year's folder of the devkit::

    <root>/JPEGImages/<id>.jpg
    <root>/Annotations/<id>.xml
    <root>/ImageSets/Main/{train,val,trainval,test}.txt      (one image id a line)

or a folder holding such year folders (`VOCdevkit/` with `VOC2007/`, `VOC2012/`), or an archive of
either. Several roots are combined (`--source A --source B`, or paths joined by the OS path
separator in `dataset.source`): the `train` split is every root's `trainval.txt` (else its
`train.txt` and `val.txt`), the `test` split every root's `test.txt`. Pliushch et al. train on
VOC2007 + VOC2012 trainval and test on VOC2007 test.

Labels are sets of the 20 classes stored as bitmasks (bit k = class k of `VOC_CLASSES`), so a
label fits an int32 and exact-match correctness is `pred == label`. In the test split the objects
marked `difficult` are ignored (the VOC evaluation's rule), so a test image whose objects are all
difficult has the empty set (0) as its label; in the train split every object counts.

Per-image attributes (`image_attributes`), from the XML, over every object of the image:
`object_count`, `n_classes` (distinct classes of the label set, i.e. its bit count),
`bbox_area_ratio` (area of the union of the objects' boxes / image area, both in pixels of the
annotated size: overlapping boxes count once, so the ratio is at most 1), `truncated` and
`difficult` (number of objects so marked).

idx: a VOC2007 id `000005` is 5; a VOC2012 id `2008_000008` is 2008000008 (fits an int32), so ids of
both years coexist and keep their standard names. An image listed twice (by two roots) is an error.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
import xml.parsers.expat
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from curate.config import DatasetConfig
from curate.data.formats.base import SourceData, Split, checksum_files, resolve_source
from curate.errors import CurateError
from curate.workspace import Workspace

VOC_CLASSES = [
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
]
_CLASS_BIT = {c: k for k, c in enumerate(VOC_CLASSES)}
_ID = re.compile(r"^(\d{6})$|^(\d{4})_(\d{6})$")  # 000005 (VOC2007), 2008_000008 (VOC2012)
ATTRIBUTES = ("object_count", "n_classes", "bbox_area_ratio", "truncated", "difficult")
# bytes: a VOC annotation is about 1 KB; anything near this is not one, and is not read into memory
MAX_XML_BYTES = 1 << 20


class _Bad(Exception):
    """One image's annotation cannot be used: (file, reason)."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


@dataclass(frozen=True)
class VocObject:
    name: str
    truncated: bool
    difficult: bool
    box: tuple[int, int, int, int]  # xmin, ymin, xmax, ymax: 1-based, inclusive pixels


@dataclass(frozen=True)
class VocAnnotation:
    width: int
    height: int
    objects: list[VocObject]


def label_names(label: int, class_names: list[str] = VOC_CLASSES) -> str:
    """The '+'-joined class names of a bitmask label, in class order ('' for the empty set)."""
    return "+".join(c for k, c in enumerate(class_names) if (int(label) >> k) & 1)


def image_id_to_idx(image_id: str) -> int:
    """`000005` -> 5, `2008_000008` -> 2008000008; ValueError for any other form, and for a year
    past 2147 (the idx would not fit an int32)."""
    m = _ID.match(image_id)
    if m is None:
        raise ValueError(image_id)
    idx = int(m.group(1)) if m.group(1) else int(m.group(2) + m.group(3))
    if idx >= 2**31:  # idx is int32 in the catalog and the .beton: 9999_999999 would wrap
        raise ValueError(image_id)
    return idx


def _int(node: ET.Element | None, tag: str, path: Path, default: int | None = None) -> int:
    child = node.find(tag) if node is not None else None
    if child is None or child.text is None or not child.text.strip():
        if default is not None:
            return default
        raise _Bad(path, f"no <{tag}> in the annotation")
    try:
        return int(round(float(child.text)))  # some VOC2012 boxes are written as 273.5
    except (ValueError, OverflowError):  # 'abc', 'nan'; 'inf', '1e400'
        raise _Bad(path, f"<{tag}> is {child.text.strip()!r}, not a number") from None


class _DTD(Exception):
    """The document declares a DTD."""


def _no_dtd(*_args) -> None:
    raise _DTD


def _xml_root(path: Path) -> ET.Element:
    """The root element of an annotation that declares no DTD. VOC annotations have none; with
    one, entities could read local files or expand without bound, so the file is refused before
    any entity is parsed, whatever limits the expat library has."""
    try:
        if path.stat().st_size > MAX_XML_BYTES:
            raise _Bad(path, f"the annotation is over {MAX_XML_BYTES} bytes; not a VOC annotation")
        data = path.read_bytes()
    except OSError as e:
        raise _Bad(path, f"cannot read the annotation ({e.strerror})") from None
    scan = xml.parsers.expat.ParserCreate()
    scan.StartDoctypeDeclHandler = _no_dtd  # called at <!DOCTYPE, before its entities are read
    scan.EntityDeclHandler = _no_dtd
    try:
        scan.Parse(data, True)
        return ET.fromstring(data)
    except _DTD:
        raise _Bad(
            path,
            "the annotation declares a DTD (<!DOCTYPE>); VOC annotations have none, and its "
            "entities are not expanded",
        ) from None
    except (xml.parsers.expat.ExpatError, ET.ParseError) as e:
        raise _Bad(path, f"not well-formed XML ({e})") from None


def parse_annotation(path: Path) -> VocAnnotation:
    """One VOC XML file. Raises `_Bad` naming the problem (unreadable XML, no object, an unknown
    class, a box without coordinates). A missing or zero <size> gives width = height = 0."""
    root = _xml_root(path)
    size = root.find("size")
    # 0 = not annotated: `image_size` then reads the JPEG's own header
    width, height = _int(size, "width", path, default=0), _int(size, "height", path, default=0)
    objects = []
    for obj in root.findall("object"):  # direct children only: a person's <part>s are not objects
        name_node = obj.find("name")
        name = (name_node.text or "").strip() if name_node is not None else ""
        if name not in _CLASS_BIT:
            raise _Bad(
                path,
                f"unknown class {name!r} (VOC classes: {', '.join(VOC_CLASSES)})",
            )
        box = obj.find("bndbox")
        if box is None:
            raise _Bad(path, f"object {name!r} has no <bndbox>")
        coords = tuple(_int(box, t, path) for t in ("xmin", "ymin", "xmax", "ymax"))
        objects.append(
            VocObject(
                name,
                bool(_int(obj, "truncated", path, default=0)),
                bool(_int(obj, "difficult", path, default=0)),
                coords,  # type: ignore[arg-type]
            )
        )
    if not objects:
        raise _Bad(path, "the annotation has no <object>; every VOC image shows at least one")
    return VocAnnotation(width, height, objects)


def union_area_ratio(boxes: list[tuple[int, int, int, int]], width: int, height: int) -> float:
    """Area of the union of boxes (1-based inclusive pixel coordinates, clipped to the image) over
    the image's area, both in pixels; in [0, 1]. Overlaps count once."""
    # swept strip by strip between the boxes' own x edges (half-open pixel intervals), not a mask
    # of the image (200,000 x 200,000 px would need 40 GB) nor a grid of the edges (n boxes give
    # (2n)^2 cells: 3 GB for the 7,000 objects an annotation under MAX_XML_BYTES can hold)
    b = np.array(boxes, np.float64).reshape(-1, 4)
    x0, y0 = np.maximum(b[:, 0], 1) - 1, np.maximum(b[:, 1], 1) - 1
    x1, y1 = np.minimum(b[:, 2], width), np.minimum(b[:, 3], height)
    keep = (x1 > x0) & (y1 > y0)
    if not keep.any() or width <= 0 or height <= 0:
        return 0.0
    x0, y0, x1, y1 = x0[keep], y0[keep], x1[keep], y1[keep]
    xs, ys = np.unique(np.r_[x0, x1]), np.unique(np.r_[y0, y1])
    i0, i1 = np.searchsorted(ys, y0), np.searchsorted(ys, y1)
    dy = np.diff(ys)
    area = 0.0  # px^2
    for left, right in zip(xs[:-1], xs[1:], strict=True):
        on = (x0 <= left) & (x1 >= right)  # boxes spanning this strip
        if on.any():
            depth = np.zeros(len(ys), np.int64)  # boxes covering each y interval, by differences
            np.add.at(depth, i0[on], 1)
            np.add.at(depth, i1[on], -1)
            area += (right - left) * dy[np.cumsum(depth)[:-1] > 0].sum()
    return float(area / (float(width) * float(height)))


def annotation_label(ann: VocAnnotation, ignore_difficult: bool) -> int:
    """Bitmask of the classes present (bit k = VOC_CLASSES[k]), without the difficult objects
    when `ignore_difficult`."""
    label = 0
    for o in ann.objects:
        if not (ignore_difficult and o.difficult):
            label |= 1 << _CLASS_BIT[o.name]
    return label


def annotation_attributes(ann: VocAnnotation, label: int) -> dict[str, float]:
    """The per-image attributes of the module docstring."""
    return {
        "object_count": float(len(ann.objects)),
        "n_classes": float(bin(label).count("1")),
        "bbox_area_ratio": union_area_ratio([o.box for o in ann.objects], ann.width, ann.height),
        "truncated": float(sum(o.truncated for o in ann.objects)),
        "difficult": float(sum(o.difficult for o in ann.objects)),
    }


# ----------------------------------------------------------------------------- roots and lists


def source_paths(source: str) -> list[str]:
    """The roots named by `dataset.source`: paths joined by the OS path separator. A path that
    holds the separator itself (`my:data/VOC2007`) is kept whole when it exists."""
    parts = source.split(os.pathsep)
    out, i = [], 0
    while i < len(parts):
        j = next(
            (
                j
                for j in range(len(parts), i, -1)  # the longest run of pieces that is a path
                if j - i > 1 and Path(os.pathsep.join(parts[i:j])).exists()
            ),
            i + 1,
        )
        out.append(os.pathsep.join(parts[i:j]))
        i = j
    return [p for p in out if p.strip()]


def _year_roots(root: Path) -> list[Path]:
    """A devkit year folder itself, or the year folders inside (VOCdevkit/VOC2007, ...)."""
    if (root / "ImageSets").is_dir() or (root / "Annotations").is_dir():
        return [root]
    inner = sorted(
        p
        for p in root.iterdir()
        if p.is_dir() and not p.name.startswith(".") and (p / "ImageSets").is_dir()
    )
    if not inner and (root / "VOCdevkit").is_dir():
        return _year_roots(root / "VOCdevkit")
    if not inner:
        raise CurateError(
            f"{root} is not a VOC devkit folder: no ImageSets/ in it or in a year folder under it; "
            "pass --source pointing at VOC2007/ (holding JPEGImages/, Annotations/, ImageSets/Main/)"
        )
    return inner


def _read_list(path: Path) -> list[str]:
    ids = []
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark is not part of an id
    except UnicodeDecodeError:
        raise CurateError(
            f"{path} is not a text file of image ids (not UTF-8); use the devkit's split lists"
        ) from None
    except OSError as e:
        raise CurateError(f"cannot read {path} ({e.strerror}); check its permissions") from None
    for n, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 1:
            raise CurateError(
                f"{path} line {n}: {line.strip()!r} is not one image id; use the split lists "
                "(train.txt, val.txt, trainval.txt, test.txt), not the per-class ones"
            )
        ids.append(parts[0])
    return ids


def split_lists(root: Path) -> dict[str, list[Path]]:
    """The ImageSets/Main lists making each split of one year root."""
    main = root / "ImageSets" / "Main"
    if not main.is_dir():
        raise CurateError(
            f"{main} is missing; a VOC root holds ImageSets/Main/{{train,val,trainval,test}}.txt"
        )
    out: dict[str, list[Path]] = {}
    if (main / "trainval.txt").is_file():
        out["train"] = [main / "trainval.txt"]
    elif (main / "train.txt").is_file():
        out["train"] = [main / n for n in ("train.txt", "val.txt") if (main / n).is_file()]
    if (main / "test.txt").is_file():
        out["test"] = [main / "test.txt"]
    if not out:
        raise CurateError(
            f"{main} has none of trainval.txt, train.txt, test.txt; is this a VOC devkit root?"
        )
    return out


@dataclass
class _Entry:
    image: Path
    annotation: Path
    list_file: Path
    idx: int


def _entries(roots: list[Path]) -> tuple[dict[str, list[_Entry]], list[Path]]:
    """Every listed image of every split, and the list files read."""
    by_split: dict[str, list[_Entry]] = {}
    lists: list[Path] = []
    for root in roots:
        for split, files in split_lists(root).items():
            for lf in files:
                lists.append(lf)
                for image_id in _read_list(lf):
                    try:
                        idx = image_id_to_idx(image_id)
                    except ValueError:
                        raise CurateError(
                            f"{lf}: image id {image_id!r} is not a VOC id (000005 or 2008_000008)"
                        ) from None
                    by_split.setdefault(split, []).append(
                        _Entry(
                            root / "JPEGImages" / f"{image_id}.jpg",
                            root / "Annotations" / f"{image_id}.xml",
                            lf,
                            idx,
                        )
                    )
    return by_split, lists


# ----------------------------------------------------------------------------- the reader


def read_voc(cfg: DatasetConfig, ws: Workspace) -> SourceData:
    """Pascal VOC devkit root(s) -> a multilabel SourceData (see the module docstring)."""
    given = source_paths(cfg.source)
    if not given:
        given = [""]  # resolve_source explains that --source is needed
    what = "a VOC devkit year folder (VOC2007/ with JPEGImages/, Annotations/, ImageSets/Main/)"
    roots = []
    unpacked: dict[Path, str] = {}  # unpack folder -> the archive unpacked there
    for s in given:
        p = resolve_source(s, "voc", what, ws)
        if Path(s).is_file():  # an archive, unpacked into sources/<its name>
            first = unpacked.setdefault(p, s)
            if Path(first).resolve() != Path(s).resolve():
                raise CurateError(
                    f"archives {first} and {s} have the same name, so they unpack into the same "
                    f"folder {p}; rename one of them (e.g. after its year and contents)"
                )
        if not p.is_dir():
            raise CurateError(f"{p} is not a folder; voc needs {what}")
        roots += _year_roots(p)
    by_split, lists = _entries(roots)
    _refuse_leaks(by_split)
    splits, inputs = [], list(lists)
    for name in ("train", "test"):
        if name not in by_split:
            continue
        entries = by_split[name]
        seen: dict[int, Path] = {}
        for e in entries:
            if e.idx in seen:
                raise CurateError(
                    f"image {e.image.stem} is listed twice in the {name} split ({seen[e.idx]} and "
                    f"{e.list_file}); pass each VOC root once"
                )
            seen[e.idx] = e.list_file
        entries.sort(key=lambda e: e.idx)
        split = _read_split(name, entries, cfg.skip_corrupt, ignore_difficult=name == "test")
        if not split.files:
            raise CurateError(
                f"voc {name} split: every listed image was skipped; nothing to ingest"
            )
        inputs += [Path(f) for f in split.files]
        inputs += [
            Path(f).parent.parent / "Annotations" / f"{Path(f).stem}.xml" for f in split.files
        ]
        splits.append(split)
    if not splits:
        raise CurateError(f"no VOC split found under {', '.join(map(str, roots))}")
    checksum = checksum_files(inputs)  # list files, images and annotations, in a fixed order
    return SourceData(
        "voc",
        os.pathsep.join(str(r) for r in roots),
        list(VOC_CLASSES),
        splits,
        checksum,
        multilabel=True,
    )


def _refuse_leaks(by_split: dict) -> None:
    """An image in both train and test would be scored on what it was trained on: refused, named."""
    if "train" not in by_split or "test" not in by_split:
        return
    train = {e.idx: e for e in by_split["train"]}
    both = [e for e in by_split["test"] if e.idx in train]
    if both:
        e = both[0]
        more = f" (and {len(both) - 1} more)" if len(both) > 1 else ""
        raise CurateError(
            f"image {e.image.stem} is listed in the test split ({e.list_file}) and in the train "
            f"split ({train[e.idx].list_file}){more}; a test image must not be trained on: fix the "
            "lists or pass other roots (Pliushch et al.: VOC2007+2012 trainval, VOC2007 test)"
        )


def _jpeg_size(path: Path) -> tuple[int, int]:
    """(width, height) from an image file's header, for an annotation without <size>."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as e:
        raise _Bad(
            path, f"its annotation has no <size> and the image is unreadable ({e})"
        ) from None


def _read_split(
    name: str, entries: list[_Entry], skip_corrupt: bool, ignore_difficult: bool
) -> Split:
    files, labels, ids, skipped = [], [], [], []
    attrs: dict[str, list[float]] = {a: [] for a in ATTRIBUTES}
    for e in entries:
        try:
            if not e.image.is_file():
                raise _Bad(e.image, f"listed in {e.list_file} but absent")
            if not e.annotation.is_file():
                raise _Bad(
                    e.annotation, f"missing: {e.list_file} lists the image but it has no annotation"
                )
            ann = parse_annotation(e.annotation)
            if ann.width <= 0 or ann.height <= 0:
                ann = VocAnnotation(*_jpeg_size(e.image), ann.objects)
        except _Bad as bad:
            if skip_corrupt:
                skipped.append((str(bad.path), bad.reason))
                continue
            raise CurateError(
                f"{bad.path}: {bad.reason}; fix or remove the image from {e.list_file}, or pass "
                "--skip-corrupt to skip it"
            ) from None
        label = annotation_label(ann, ignore_difficult)
        files.append(str(e.image))
        labels.append(label)
        ids.append(e.idx)
        for k, v in annotation_attributes(ann, label).items():
            attrs[k].append(v)
    return Split(
        name=name,
        labels=np.array(labels, np.int64),
        files=files,
        file_ids=np.array(ids, np.int64),
        refs=list(files),
        skipped=skipped,
        attributes={k: np.array(v, np.float64) for k, v in attrs.items()},
    )
