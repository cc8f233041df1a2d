"""Random access to the raw-array field of a curate .beton with numpy alone (no ffcv import, which
costs ~12 s of numba compilation): for galleries and single images.

Layout (ffcv 1.0.2, format version 2): a header, one descriptor per field, then one metadata record
per sample; the `image` field of raw and float storage is an NDArrayField whose metadata is the byte
offset of the sample's array.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

HEADER = np.dtype(
    [
        ("version", "<u2"),
        ("num_fields", "<u2"),
        ("page_size", "<u4"),
        ("num_samples", "<u8"),
        ("alloc_table_ptr", "<u8"),
    ],
    align=True,
)
FIELD_DESC = np.dtype(
    [("type_id", "<u1"), ("name", ("<u1", 16)), ("arguments", ("<u1", (1024,)))], align=True
)
# curate writes image (NDArrayField: pointer), label (IntField), idx (IntField)
METADATA = np.dtype([("image", "<u8"), ("label", "<i8"), ("idx", "<i8")], align=True)


def read_metadata(path: str | Path) -> np.ndarray:
    """Every sample's metadata record (image pointer, label, idx), in row order: (N,) of METADATA."""
    header = np.fromfile(path, dtype=HEADER, count=1)[0]
    if header["version"] != 2 or header["num_fields"] != 3:
        raise ValueError(f"{path} is not a curate .beton of format version 2")
    return np.fromfile(
        path,
        dtype=METADATA,
        count=int(header["num_samples"]),
        offset=HEADER.itemsize + 3 * FIELD_DESC.itemsize,
    )


def read_arrays(
    path: str | Path,
    rows,
    shape: tuple[int, ...],
    dtype: str = "uint8",
    meta: np.ndarray | None = None,
) -> np.ndarray:
    """The arrays of the given rows (positions in the file) of a raw or float .beton, (len(rows), *shape).

    meta : the file's metadata when already read (read_metadata), to skip reading it again.
    """
    meta = read_metadata(path) if meta is None else meta
    dt = np.dtype(dtype)
    size = int(np.prod(shape)) * dt.itemsize
    data = np.memmap(path, dtype=np.uint8, mode="r")
    rows = np.asarray(rows, dtype=np.int64)
    ptrs = meta["image"][rows].astype(np.int64)
    if len(rows) > 1 and np.all(np.diff(ptrs) == size):  # back to back: one slice
        start = int(ptrs[0])
        return data[start : start + size * len(rows)].view(dt).reshape(len(rows), *shape).copy()
    out = np.empty((len(rows), *shape), dt)
    for k, ptr in enumerate(ptrs):
        out[k] = data[int(ptr) : int(ptr) + size].view(dt).reshape(shape)
    return out
