"""Where everything lives: the workspace folder, its catalog, dataset files and runs.

Layout::

    <workspace>/catalog.duckdb                 the DuckDB catalog (all tables and views)
    <workspace>/datasets/<name>/<split>.beton  FFCV files written by ingest
    <workspace>/sources/<name>/                archives unpacked by ingest, downloads
    <workspace>/runs/<run>/                    runs: manifest, prediction log, progress records
                                               (laid out by `curate.runlog`), checkpoints

The workspace is `--workspace`, else `$CURATE_WORKSPACE`, else `./workspace`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Workspace:
    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root).expanduser().absolute())

    @classmethod
    def resolve(cls, path: str | os.PathLike | None = None) -> Workspace:
        root = Path(path or os.environ.get("CURATE_WORKSPACE") or "workspace")
        return cls(root.expanduser().absolute())

    @property
    def catalog(self) -> Path:
        return self.root / "catalog.duckdb"

    def dataset_dir(self, dataset: str) -> Path:
        return self.root / "datasets" / dataset

    def beton(self, dataset: str, split: str) -> Path:
        return self.dataset_dir(dataset) / f"{split}.beton"

    def sources_dir(self) -> Path:
        return self.root / "sources"

    @property
    def runs(self) -> Path:
        """The folder of every run."""
        return self.root / "runs"

    def run_dir(self, run: str) -> Path:
        return self.runs / run


@contextmanager
def atomic_path(target: Path, suffix: str = ""):
    """Yield a temporary path beside `target`; rename it onto `target` only if the block succeeds.

    Works for files and folders. A crash leaves `target` untouched and the temporary removed.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix + ".tmp", dir=target.parent)
    os.close(fd)
    os.unlink(tmp)
    tmp = Path(tmp)
    try:
        yield tmp
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def no_space_message(path: Path | str) -> str:
    """The one message for a full disk: which path, how much is free, what to do."""
    path = Path(path)
    while (
        path.name.startswith(".")
        and path.name.endswith(".tmp")
        or any(p.name.startswith(".") and p.name.endswith(".tmp") for p in path.parents)
    ):
        path = path.parent  # name what the user knows, not a temporary that is gone by now
    probe = path if path.exists() else path.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        free = os.statvfs(probe)
        left = f" ({free.f_bavail * free.f_frsize / 2**20:.1f} MiB free there now)"
    except OSError:
        left = ""
    return (
        f"no space left on the disk holding {path}{left}; free some space (or point "
        "--workspace at a larger disk) and rerun the same command (a run resumes where it stopped)"
    )
