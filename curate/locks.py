"""Who may work on what: an exclusive lock per run (and per dataset being ingested).

A lock is an advisory `flock` on a small file holding the owner's process id. The kernel releases
it when the process ends, however it ends, so a killed run never leaves a stale lock behind; a
second process that asks for a held lock is refused at once with the holder's id.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from curate.errors import CurateError


@contextmanager
def exclusive(path: Path, what: str, hint: str) -> Iterator[None]:
    """Hold the lock file `path` for the block; a CurateError naming `what` and its holder if held.

    `hint` tells the user what to do instead (e.g. "wait for it or choose another --run-name").
    The file is removed when the block ends, so nothing is left behind.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = _acquire(path, what, hint)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        path.unlink(missing_ok=True)  # before unlocking: a newcomer then finds no stale file
        os.close(fd)  # releases the lock


def _acquire(path: Path, what: str, hint: str) -> int:
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise CurateError(f"{what} is in use by process {holder}; {hint}") from None
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd  # the file we locked is still the one at `path`
        except FileNotFoundError:
            pass
        os.close(fd)  # its holder removed it as we opened it: lock the new one


def run_lock(run_dir: Path, rank: int = 0):
    """The lock of one run (one per torchrun rank, so the ranks of one job do not refuse each other)."""
    name = f".{run_dir.name}.lock" if rank == 0 else f".{run_dir.name}.rank{rank}.lock"
    return exclusive(
        run_dir.parent / name,
        f"run {run_dir.name!r}",
        "another `curate train` is training it: wait for it to finish, or choose another "
        "--run-name",
    )


def dataset_lock(dataset_dir: Path):
    """The lock of one dataset while it is ingested."""
    return exclusive(
        dataset_dir.parent / f".{dataset_dir.name}.lock",
        f"dataset {dataset_dir.name!r}",
        "another `curate ingest` is writing it: wait for it to finish",
    )
