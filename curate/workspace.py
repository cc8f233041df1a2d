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

import ctypes
import errno
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

# characters of DuckDB's file patterns (and of its database paths' options, "?"): a workspace path
# with one would read another folder's files, or none
PATTERN_CHARACTERS = ("*", "?", "[", "]", "\\")
# the log's partition folders (curate.runlog.layout: pass=, split=, member=, epoch=): DuckDB reads
# key=value from every folder of a shard's path, so a workspace's own path may hold none of them
PARTITION_KEYS = ("pass", "split", "member", "epoch")


# every workspace this process has named: an output may lie inside none of their own trees, however
# reached (`curate.outputs` compares the folders' identities: a bind mount, a hard link)
_OPENED: set[Path] = set()


def opened_workspaces() -> frozenset[Path]:
    """The roots of the workspaces this process has made a `Workspace` of."""
    return frozenset(_OPENED)


@dataclass(frozen=True)
class Workspace:
    root: Path

    def __post_init__(self) -> None:
        root = Path(self.root).expanduser().absolute()
        pattern = sorted(set(PATTERN_CHARACTERS) & set(str(root)))
        if pattern:
            from curate.errors import CurateError

            raise CurateError(
                f"workspace {root}: its path holds {' '.join(pattern)}, which DuckDB reads as a "
                "file pattern (the prediction log is read as <workspace>/runs/*/...); choose or "
                f"rename a folder without any of {' '.join(PATTERN_CHARACTERS)}"
            )
        keyed = [p for p in root.parts if p.split("=")[0] in PARTITION_KEYS and "=" in p]
        if keyed:
            from curate.errors import CurateError

            raise CurateError(
                f"workspace {root}: its path holds the folder {keyed[0]!r}, which DuckDB would "
                "read as a partition of the prediction log (its folders are named pass=, split=, "
                "member=, epoch=); choose or rename a folder without such names"
            )
        object.__setattr__(self, "root", root)
        _OPENED.add(root)

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


# when curate was imported: the start of this process where the kernel does not say (no /proc)
_IMPORTED = time.time()


def process_start() -> float:
    """When this process began, in seconds since the epoch (time.time()'s clock): from /proc (a
    forked child has its own, later than the modules it inherited were imported), never later than
    the true start (the boot time is whole seconds, rounded down); else when curate was imported.
    A file an earlier process was writing (a rank's share, a temporary) and left older than this is
    a dead process's; one newer, possibly a live process's own."""
    try:
        with open("/proc/stat") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith("btime "))
        with open("/proc/self/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22, starttime
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return _IMPORTED


def pid_running(pid: int) -> bool:
    """Whether process `pid` runs on this host (in this pid namespace); another user's counts."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_dead_temps(folder: Path, targets: str) -> None:
    """Remove the temporaries `atomic_path` left in `folder` for targets matching the glob
    `targets`, last written before this process began: a write killed midway (SIGKILL, power loss)
    leaves one, which nothing else would ever remove. A live writer's is newer: it is being written."""
    began = process_start()
    for tmp in Path(folder).glob(f".{targets}.*.tmp"):
        try:
            if tmp.lstat().st_mtime >= began:
                continue
            if tmp.is_dir() and not tmp.is_symlink():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink()
        except FileNotFoundError:
            pass


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


def rename_noreplace(src: Path, dst: Path) -> bool:
    """Rename `src` to `dst` only if `dst` does not exist; False when it does (`src` then stays).

    renameat2 with RENAME_NOREPLACE where the kernel and file system have it; else, for a file, a
    hard link (link(2) never replaces either, NFS included) and the unlink of `src`; else (a folder
    where renameat2 is missing) a check then a rename, a gap only an empty folder could slip into
    (rename(2) refuses to replace a non-empty one).
    """
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        renameat2 = None
    if renameat2 is not None:
        at_fdcwd, noreplace = -100, 1
        if renameat2(at_fdcwd, os.fsencode(src), at_fdcwd, os.fsencode(dst), noreplace) == 0:
            return True
        err = ctypes.get_errno()
        if err == errno.EEXIST:
            return False
        if err not in (errno.ENOSYS, errno.EINVAL):
            raise OSError(err, os.strerror(err), str(dst))
    if not os.path.isdir(src) or os.path.islink(src):
        try:
            os.link(src, dst, follow_symlinks=False)
        except FileExistsError:
            return False
        except OSError as e:
            if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                raise
        else:
            os.unlink(src)
            return True
    if os.path.lexists(dst):
        return False
    os.rename(src, dst)
    return True


def remove_atomic_leftovers(target: Path) -> None:
    """Remove what `atomic_path` left beside `target` when its process was killed (its temporary
    names `.NAME.XXXXXXXX.tmp` do not say whose: call this only holding `target`'s lock)."""
    import re

    pattern = re.compile(rf"^\.{re.escape(target.name)}\.[a-z0-9_]{{8}}\.tmp$")
    if target.parent.is_dir():
        for p in target.parent.iterdir():
            if pattern.match(p.name):
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


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
