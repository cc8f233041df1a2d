"""The KTH-TIPS2-b reader: material folders, four physical samples each, and the imaging conditions
(scale, pose, illumination) that the database encodes in its file names, as image attributes.

Layout (the database's own, e.g. its `kth-tips2-b_col_200x200.tar`)::

    KTH-TIPS2-b/<material>/sample_<a|b|c|d>/<curet><sample>-scale_<s>_im_<i>_<col|grey>.png

e.g. `aluminium_foil/sample_d/15d-scale_2_im_1_col.png`: CUReT material 15, sample d, scale 2,
image 1. Each sample is imaged at 9 scales, numbered 2..10 (KTH-TIPS2's closest scale is scale 2
of KTH-TIPS), and at each scale 12 times: 3 poses (frontal, rotated 22.5 degrees right, 22.5
degrees left) x 4 illuminations (frontal, 45 degrees from the top, 45 degrees from the side,
ambient), as the database's documentation describes it (Mallikarjuna et al. 2006, "The KTH-TIPS2
database"). The image number im_1..im_12 maps to them as Pliushch et al.'s own code reads it
(ccc-frankfurt/intrinsic_ordering_nn_training, lib/datasets.py), and an independent reader of the
database agrees:

    ============  =========  ===============  ==============
    image number  frontal    right_22.5deg    left_22.5deg     <- pose
    ============  =========  ===============  ==============
    frontal       im_1       im_4             im_7
    45deg_top     im_2       im_5             im_8
    45deg_side    im_3       im_6             im_9
    ambient       im_10      im_11            im_12
    ============  =========  ===============  ==============
    (rows: illumination)

Split (Pliushch et al., appendix A): sample a of every material is the test set, samples b, c, d
the training set. (Their published code uses sample c for testing; the paper's text is followed.)
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from curate.config import DatasetConfig
from curate.data.formats.base import (
    IMAGE_EXTENSIONS,
    SourceData,
    Split,
    checksum_files,
    resolve_source,
    visible,
)
from curate.errors import CurateError
from curate.workspace import Workspace

SAMPLES = ("a", "b", "c", "d")
TEST_SAMPLE = "a"  # Pliushch et al.: "we used the sample a of each class for testing"
SCALES = range(2, 11)  # scale_2 .. scale_10
# image number 1..12 -> (pose, illumination), from the table in the module docstring
POSES = ("frontal", "right_22.5deg", "left_22.5deg")
ILLUMINATIONS = ("frontal", "45deg_top", "45deg_side", "ambient")
IMAGE_CONDITIONS: dict[int, tuple[str, str]] = {
    **{1 + 3 * p + i: (POSES[p], ILLUMINATIONS[i]) for p in range(3) for i in range(3)},
    **{10 + p: (POSES[p], "ambient") for p in range(3)},
}
NAME = re.compile(
    r"(?P<curet>\d+)(?P<sample>[a-d])-scale_(?P<scale>\d+)_im_(?P<image>\d+)_(?:col|grey)",
    re.IGNORECASE,
)
NAME_HELP = (
    "KTH-TIPS2-b names read <curet><sample>-scale_<2..10>_im_<1..12>_<col|grey>.png, "
    "e.g. 15d-scale_2_im_1_col.png in sample_d/"
)


def parse_name(path: Path, folder_sample: str) -> tuple[int, str, str]:
    """(scale, pose, illumination) of one KTH-TIPS2-b file; ValueError with the reason otherwise.

    Parameters
    ----------
    path : the image file
    folder_sample : the letter of the `sample_<x>` folder holding it (the name must repeat it)
    """
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        raise ValueError("not an image file (extension)")
    m = NAME.fullmatch(path.stem)
    if m is None:
        raise ValueError(f"file name does not parse; {NAME_HELP}")
    scale, image = int(m["scale"]), int(m["image"])
    if m["sample"].lower() != folder_sample:
        raise ValueError(
            f"the name says sample {m['sample']} but the file is in sample_{folder_sample}/"
        )
    if scale not in SCALES:
        raise ValueError(f"scale {scale} is outside 2..10; {NAME_HELP}")
    if image not in IMAGE_CONDITIONS:
        raise ValueError(f"image number {image} is outside 1..12; {NAME_HELP}")
    pose, illumination = IMAGE_CONDITIONS[image]
    return scale, pose, illumination


def _root(cfg: DatasetConfig, ws: Workspace) -> Path:
    root = resolve_source(
        cfg.source,
        "kth-tips2b",
        "the KTH-TIPS2-b folder (<material>/sample_<a..d>/) or its .tar",
        ws,
    )
    if (root / "KTH-TIPS2-b").is_dir():  # the folder holding the unpacked database
        root = root / "KTH-TIPS2-b"
    if not root.is_dir():
        raise CurateError(f"{root} is not a folder; kth-tips2b needs <material>/sample_<a..d>/")
    return root


def _refuse_or_skip(path: Path, why: str, fix: str, cfg: DatasetConfig, skipped: list) -> None:
    if not cfg.skip_corrupt:
        raise CurateError(f"{path}: {why}; {fix}, or pass --skip-corrupt to skip it")
    skipped.append((str(path), why))


def _materials(root: Path) -> list[Path]:
    """The material folders under `root`, sorted (their order gives the labels)."""
    materials = sorted(p for p in root.iterdir() if p.is_dir() and visible(p))
    if not materials:
        raise CurateError(
            f"{root} has no material folders; kth-tips2b needs <material>/sample_<a..d>/<image>.png"
        )
    return materials


def _read_material(
    label: int,
    material: Path,
    cfg: DatasetConfig,
    rows: dict[str, list[tuple]],
    skipped: dict[str, list],
) -> None:
    """Append one material's images to `rows` (and refused files to `skipped`) by split."""
    folders = [e.name.lower() for e in material.iterdir() if e.is_dir()]  # case-blind
    if f"sample_{TEST_SAMPLE}" not in folders:
        raise CurateError(
            f"{material} has no sample_{TEST_SAMPLE}/ folder: the test split is sample "
            f"{TEST_SAMPLE} of every material; restore it or remove the material folder"
        )
    for entry in sorted(filter(visible, material.iterdir())):
        low = entry.name.lower()  # Sample_A as sample_a, as file names are read
        sample = low[len("sample_") :] if low.startswith("sample_") else ""
        if not entry.is_dir() or sample not in SAMPLES:
            _refuse_or_skip(
                entry,
                "not a sample_<a..d> folder inside a material folder",
                "move or remove it",
                cfg,
                skipped["train"],
            )
            continue
        split = "test" if sample == TEST_SAMPLE else "train"
        for f in sorted(filter(visible, entry.iterdir())):
            try:
                if not f.is_file():
                    raise ValueError("a folder inside a sample folder")
                scale, pose, illumination = parse_name(f, sample)
            except ValueError as e:
                _refuse_or_skip(f, str(e), "rename or remove it", cfg, skipped[split])
                continue
            image = int(NAME.fullmatch(f.stem)["image"])
            rows[split].append((label, sample, scale, image, str(f), pose, illumination))


def _split(name: str, rows: list[tuple], skipped: list, root: Path) -> Split:
    """One split from its (label, sample, scale, image, file, pose, illumination) rows."""
    entries = sorted(rows)  # material, sample, scale, image number
    for a, b in zip(entries, entries[1:], strict=False):
        if a[:4] == b[:4]:  # names differing only in case or extension: one shot twice
            raise CurateError(
                f"{a[4]} and {b[4]} are the same image (sample {a[1]}, scale {a[2]}, im_{a[3]}) "
                "of one material; remove one of them"
            )
    if not entries:
        raise CurateError(f"{root}: no readable KTH-TIPS2-b image in the {name} split")
    return Split(
        name=name,
        labels=np.array([e[0] for e in entries], np.int64),
        files=[e[4] for e in entries],
        refs=[e[4] for e in entries],
        skipped=skipped,
        attributes={
            "scale": np.array([e[2] for e in entries], np.float64),
            "pose": np.array([e[5] for e in entries], dtype=object),
            "illumination": np.array([e[6] for e in entries], dtype=object),
            "sample": np.array([e[1] for e in entries], dtype=object),
        },
    )


def read_kth_tips2b(cfg: DatasetConfig, ws: Workspace) -> SourceData:
    """KTH-TIPS2-b as a `SourceData`: classes = material folders (sorted), test = sample a of
    every material, train = samples b..d, each split's images ordered by material, sample, scale
    and image number.

    Attributes per image (table `image_attributes`): `scale` (numeric, 2..10), `pose`
    (frontal, right_22.5deg, left_22.5deg), `illumination` (frontal, 45deg_top, 45deg_side,
    ambient) and `sample` (a..d), parsed from the file name as the module docstring states.
    A file name that does not parse, a file or folder out of place, or a material without a
    sample_a stops ingest naming it; under `--skip-corrupt` the file is listed in `skipped`.

    Parameters
    ----------
    cfg : the recipe's [dataset]; `source` is the KTH-TIPS2-b folder, the folder holding it, or
        the database's .tar; `skip_corrupt` skips misnamed or misplaced files
    ws : the workspace (an archive is unpacked under its sources/)

    Returns
    -------
    SourceData
        splits `train` and `test` of image files, with labels and attributes
    """
    root = _root(cfg, ws)
    materials = _materials(root)
    rows: dict[str, list[tuple]] = {"train": [], "test": []}
    skipped: dict[str, list] = {"train": [], "test": []}
    for label, material in enumerate(materials):
        _read_material(label, material, cfg, rows, skipped)
    splits = [_split(name, rows[name], skipped[name], root) for name in ("train", "test")]
    files = sorted(Path(f) for s in splits for f in s.files)
    return SourceData(
        "kth-tips2b", str(root), [m.name for m in materials], splits, checksum_files(files, root)
    )
