"""Files the user gives curate to read (a labels CSV, an experiment's answers): checked before a
parser reads them, whose memory grows with the file, so that what arrives is one short error line,
never a FIFO that blocks, a folder, or a sparse file read into gigabytes."""

from __future__ import annotations

import stat
from pathlib import Path

from curate.errors import CurateError


def check_small_file(path: Path, shown: str, what: str, most: int, text: bool = False) -> None:
    """Refuse anything but a regular file of at most `most` bytes (and, with `text`, without a
    NUL byte, which no text file holds and a sparse or binary file does).

    Parameters
    ----------
    path : the file.
    shown : how messages name it (e.g. "--labels labels.csv").
    what : what it should be, for the fix ("a CSV with header split,idx,label").
    most : the most bytes it may hold.
    text : also scan it for NUL bytes, 16 MiB at a time.
    """
    try:
        st = path.stat()
    except OSError as e:
        raise CurateError(f"{shown}: cannot be read ({e.strerror}); give {what}") from None
    if not stat.S_ISREG(st.st_mode):
        raise CurateError(f"{shown}: not a regular file; give {what}")
    if st.st_size > most:
        raise CurateError(f"{shown}: {st.st_size:,} bytes, more than {most:,}; give {what}")
    if not text:
        return
    with open(path, "rb") as f:
        at = 0
        while chunk := f.read(16 * 2**20):
            nul = chunk.find(b"\0")
            if nul >= 0:
                raise CurateError(
                    f"{shown}: a NUL byte at byte {at + nul:,}: not a text file; give {what}"
                )
            at += len(chunk)
