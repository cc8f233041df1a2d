"""The `imagenet` format: the ILSVRC-2012 layout (also Kaggle's), with LOC_synset_mapping.txt's class
order and a flat val/ labelled by LOC_val_solution.csv.
"""

from __future__ import annotations

import csv
from pathlib import Path

from curate.config import DatasetConfig
from curate.data.formats.base import (
    IMAGE_EXTENSIONS,
    SourceData,
    checksum_files,
    file_split,
    list_class_folder,
    resolve_source,
    visible,
)
from curate.errors import CurateError
from curate.workspace import Workspace


def _data_root(root: Path) -> Path:
    """The folder holding train/ and val/: `root`, or its ILSVRC/Data/CLS-LOC (Kaggle's layout)."""
    if (root / "ILSVRC" / "Data" / "CLS-LOC").is_dir():  # the Kaggle layout
        data_root = root / "ILSVRC" / "Data" / "CLS-LOC"
    else:
        data_root = root
    if not (data_root / "train").is_dir():
        raise CurateError(f"{data_root} has no train/ folder; imagenet needs train/<wnid>/*.JPEG")
    return data_root


def _classes(root: Path, data_root: Path) -> tuple[Path | None, list[str], list[str]]:
    """(LOC_synset_mapping.txt or None, wnids, names); without the file, train/'s sorted wnids."""
    mapping = next(
        (
            p
            for p in (root / "LOC_synset_mapping.txt", data_root / "LOC_synset_mapping.txt")
            if p.is_file()
        ),
        None,
    )
    if mapping is not None:
        lines = [ln.strip() for ln in mapping.read_text().splitlines() if ln.strip()]
        wnids = [ln.split(maxsplit=1)[0] for ln in lines]
        names = [ln.split(maxsplit=1)[1].split(",")[0].strip() if " " in ln else ln for ln in lines]
    else:
        wnids = sorted(p.name for p in (data_root / "train").iterdir() if p.is_dir() and visible(p))
        names = list(wnids)
    return mapping, wnids, names


def _class_folders(
    sub: list[Path],
    label_of: dict[str, int],
    mapping: Path | None,
    cfg: DatasetConfig,
    skipped: list,
) -> list[tuple[str, int]]:
    """(file, label) of every image in a split's <wnid>/ folders; loose files beside them ignored."""
    entries = []
    for c in sub:
        if not c.is_dir():
            continue
        if c.name not in label_of:
            raise CurateError(f"{c}: wnid {c.name} is not in {mapping or 'train/'}; wrong folder?")
        entries += list_class_folder(c, label_of[c.name], cfg.skip_corrupt, skipped)
    return entries


def _flat_val(
    root: Path,
    data_root: Path,
    sd: Path,
    sub: list[Path],
    label_of: dict[str, int],
    wnids: list[str],
) -> list[tuple[str, int]]:
    """(file, label) of a flat split's images by LOC_val_solution.csv, in ImageFolder order."""
    sol = next(
        (
            p
            for p in (
                root / "LOC_val_solution.csv",
                data_root / "LOC_val_solution.csv",
                sd / "LOC_val_solution.csv",
            )
            if p.is_file()
        ),
        None,
    )
    if sol is None:
        raise CurateError(
            f"{sd} is flat but LOC_val_solution.csv is missing; put it beside train/ "
            "or sort val/ into <wnid>/ folders"
        )
    with open(sol) as f:
        truth = {row["ImageId"]: row["PredictionString"].split()[0] for row in csv.DictReader(f)}
    entries = []
    for p in sub:
        if p.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        if p.stem not in truth:
            raise CurateError(f"{p} has no row in {sol}; the solution file does not match val/")
        entries.append((str(p), label_of[truth[p.stem]]))
    entries.sort(key=lambda e: (wnids[e[1]], Path(e[0]).name))
    return entries


def read_imagenet(cfg: DatasetConfig, ws: Workspace) -> SourceData:
    """ILSVRC-2012 layout: train/<wnid>/*.JPEG; val/<wnid>/*.JPEG or flat val/ + LOC_val_solution.csv.

    Labels follow LOC_synset_mapping.txt's order (the standard class indices); idx is the position
    in torchvision's ImageFolder order (by wnid, then file name).
    """
    root = resolve_source(
        cfg.source, "imagenet", "the ILSVRC-2012 folder holding train/ and val/", ws
    )
    data_root = _data_root(root)
    mapping, wnids, names = _classes(root, data_root)
    label_of = {w: k for k, w in enumerate(wnids)}
    splits = []
    for split in ("train", "val"):
        sd = data_root / split
        if not sd.is_dir():
            continue
        skipped: list = []
        sub = sorted(p for p in sd.iterdir() if visible(p))
        if any(p.is_dir() for p in sub):
            entries = _class_folders(sub, label_of, mapping, cfg, skipped)
        else:
            entries = _flat_val(root, data_root, sd, sub, label_of, wnids)
        if not entries:
            raise CurateError(f"{sd} holds no images")
        splits.append(file_split(split, entries, skipped, integer_ids=False))
    files = sorted(Path(f) for s in splits for f in s.files)
    inputs = files + ([mapping] if mapping else [])
    return SourceData("imagenet", str(root), names, splits, checksum_files(inputs, root))
