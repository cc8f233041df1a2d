"""The `imagefolder` format: `<root>/<split>/<class>/<image>`, a folder or its archive."""

from __future__ import annotations

from pathlib import Path

from curate.config import DatasetConfig
from curate.data.formats.base import (
    SourceData,
    checksum_files,
    file_split,
    list_class_folder,
    resolve_source,
    visible,
)
from curate.errors import CurateError
from curate.workspace import Workspace


def read_imagefolder(cfg: DatasetConfig, ws: Workspace) -> SourceData:
    """`<root>/<split>/<class>/<image>`; integer file names become idx (the standard order)."""
    root = resolve_source(
        cfg.source, "imagefolder", "a <split>/<class>/<image> folder (or its .tar.gz)", ws
    )
    if not root.is_dir():
        raise CurateError(f"{root} is not a folder; imagefolder needs <split>/<class>/<image>")
    split_dirs = sorted(p for p in root.iterdir() if p.is_dir() and visible(p))
    if not split_dirs:
        raise CurateError(
            f"{root} has no split folders; imagefolder needs <split>/<class>/<image>, e.g. train/cat/1.png"
        )
    classes = sorted({c.name for s in split_dirs for c in s.iterdir() if c.is_dir() and visible(c)})
    if not classes:
        raise CurateError(
            f"{split_dirs[0]} has no class folders; imagefolder needs <split>/<class>/<image>"
        )
    label_of = {c: k for k, c in enumerate(classes)}
    splits = []
    for sd in split_dirs:
        skipped: list = []
        entries = []
        for c in sorted(filter(visible, sd.iterdir())):
            if not c.is_dir():
                if cfg.skip_corrupt:
                    skipped.append((str(c), "a file where class folders belong"))
                    continue
                raise CurateError(
                    f"{c} is a file where class folders belong (<split>/<class>/<image>); "
                    "move or remove it, or pass --skip-corrupt"
                )
            entries += list_class_folder(c, label_of[c.name], cfg.skip_corrupt, skipped)
        splits.append(file_split(sd.name, entries, skipped, integer_ids=True))
    files = sorted(Path(f) for s in splits for f in s.files)
    return SourceData("imagefolder", str(root), classes, splits, checksum_files(files, root))
