"""Every file and folder a command writes for the user (`--out`): written whole, and never over
anything the user made.

The rules, for a file output at ``D/name``:

- it is written under a temporary name beside the target (``D/.name.<pid>-<rand>.curate-tmp``),
  flushed to disk, then renamed onto the target, so a kill or a full disk leaves the target as it
  was;
- an existing target is replaced only when curate can prove it wrote it: the manifest of its folder
  (``D/.curate-outputs.json``) names that very file with the checksum it has now, and the same
  command as its writer. A file the user made, or changed since, or another command's output, is
  replaced only with ``--force``;
- never, not even with ``--force``: a folder, a symbolic link, a device or other non-regular file,
  or anything inside a workspace's own tree (``datasets/``, ``runs/``, ``sources/``, the catalog and
  its lock files), by whatever path it is reached (a link, a bind mount).

A folder output (a report, a human-study export) is built under a temporary name beside the target
and renamed onto it when the target does not exist; an existing folder is written into only when it
is empty or holds nothing but what curate wrote there (its manifest lists every file with its
checksum), file by file, so no folder is ever deleted or replaced.

The manifest is updated under a lock on its folder in two steps, the new checksum first added beside
the old one and the old one dropped once the file is in place, so a process killed between the two
leaves every file provable.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import stat
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path

from curate.errors import CurateError
from curate.workspace import opened_workspaces, pid_running, rename_noreplace

MANIFEST = ".curate-outputs.json"
TMP_SUFFIX = ".curate-tmp"
# the parts of a workspace that its stages own: no --out may write there, whatever the flags
WORKSPACE_OWNED = ("datasets", "runs", "sources", "stats")
FULL_DISK = (errno.ENOSPC, errno.EDQUOT)

Writer = Callable[[Path], None]


# ----------------------------------------------------------------------------- checks


def check_file(out: str | os.PathLike, force: bool = False, flag: str = "--out") -> Path:
    """Validate a file output and return its absolute path with the folder's links resolved.

    Parameters
    ----------
    out : the path the user gave.
    force : allow replacing a regular file curate cannot prove it wrote.
    flag : the option's name, for messages.

    Raises
    ------
    CurateError
        When the target is a folder, a link, not a regular file, inside a workspace's own tree, or a
        file curate did not write (without `force`); or its folder cannot be made.
    """
    if str(out).endswith(("/", os.sep)):
        raise CurateError(f"{flag} {out}: ends with '/', a folder; name the file to write")
    with _os_errors(out, flag):
        return _check_file(out, force, flag)


def _check_file(out, force: bool, flag: str) -> Path:
    target = _real(out, flag)
    if target.name == MANIFEST or target.name.endswith(TMP_SUFFIX):
        raise CurateError(f"{flag} {out}: that name is curate's own bookkeeping; choose another")
    if len(os.fsencode(target.name)) > NAME_MAX:
        raise CurateError(
            f"{flag} {out}: a name of {len(os.fsencode(target.name))} bytes, past the file "
            f"system's {NAME_MAX}; choose a shorter one"
        )
    _refuse_workspace(_lexical(out), out, flag)
    _refuse_workspace(target, out, flag)
    if os.path.lexists(target):
        mode = os.lstat(target).st_mode
        if stat.S_ISLNK(mode):
            raise CurateError(
                f"{flag} {out} is a symbolic link; curate writes neither through nor over links: "
                "give the path of a new file"
            )
        if stat.S_ISDIR(mode):
            raise CurateError(
                f"{flag} {out} is a folder; give a file path inside it, e.g. {Path(out) / 'out'}"
                f"{_suffix_hint(out)}"
            )
        if not stat.S_ISREG(mode):
            raise CurateError(f"{flag} {out} is not a regular file; give the path of a new file")
        if not force and not owns(target.parent, target.name):
            raise CurateError(
                f"{flag} {out} exists and curate did not write it (or it changed since); choose "
                "another path, or pass --force to replace that file"
            )
    return target


def check_folder(
    out: str | os.PathLike, keep: Iterable[Path] = (), flag: str = "--out", renew: bool = True
) -> Path:
    """Validate a folder output: a new folder, an empty one, or (when `renew`) one holding only
    what curate wrote.

    `keep` are paths the command reads (the workspace, an input folder): the output may be neither
    one of them nor hold one. Returns the absolute path, links of its parents resolved.
    """
    with _os_errors(out, flag):
        return _check_folder(out, keep, flag, renew)


def _check_folder(out, keep: Iterable[Path], flag: str, renew: bool) -> Path:
    target = _real(out, flag)
    _refuse_workspace(_lexical(out), out, flag)
    _refuse_workspace(target, out, flag)
    for k in keep:
        k = Path(k).expanduser().absolute().resolve()
        if k == target or target in k.parents:
            raise CurateError(
                f"{flag} {out} is or holds {k}, which this command reads; choose another folder"
            )
    if not os.path.lexists(target):
        return target
    mode = os.lstat(target).st_mode
    if stat.S_ISLNK(mode):
        raise CurateError(
            f"{flag} {out} is a symbolic link; name a new folder (curate writes through no links)"
        )
    if not stat.S_ISDIR(mode):
        raise CurateError(f"{flag} {out} is a file, not a folder; choose a new folder")
    if not renew and any(target.iterdir()):
        raise CurateError(
            f"{flag} {out} exists and is not empty; choose a new folder (nothing is overwritten)"
        )
    foreign = _foreign_files(target)
    if foreign:
        raise CurateError(
            f"{flag} {out} is a folder holding files curate did not write (or that changed since: "
            f"{', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}); choose a new or "
            "empty folder (curate never writes into or replaces a folder of yours)"
        )
    return target


@contextmanager
def _os_errors(out, flag: str) -> Iterator[None]:
    """An OSError (a name too long, a folder that cannot be searched, a deleted current folder) or
    a loop of links while looking at `out` becomes one CurateError."""
    try:
        yield
    except OSError as e:
        raise CurateError(
            f"{flag} {out}: cannot use that path ({e.strerror or e}); choose another place"
        ) from None
    except RuntimeError as e:  # pathlib's word for a loop of symbolic links
        raise CurateError(
            f"{flag} {out}: cannot use that path ({e}); choose another place"
        ) from None


def _real(out: str | os.PathLike, flag: str) -> Path:
    """The absolute path of `out` with the links of its folder resolved (not of its last part)."""
    if str(out).strip() == "":
        raise CurateError(f"{flag} {out!r}: give a file or folder path")
    p = Path(out).expanduser().absolute()
    if p.name in ("", ".", ".."):
        p = p.resolve()
    parent = p.parent.resolve()
    probe = parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise CurateError(f"{flag} {out}: {probe} is not a folder; choose another place")
    return parent / p.name


def _lexical(out) -> Path:
    """`out` made absolute with `..` folded away by name, links not followed: a workspace whose
    runs/ is a link to another disk is seen through the name the user typed."""
    return Path(os.path.normpath(Path(out).expanduser().absolute()))


def _refuse_workspace(target: Path, shown, flag: str) -> None:
    """A CurateError when `target` lies in a workspace's own tree: any workspace, a folder holding
    catalog.duckdb, not only the command's (the workspace folder itself is refused by the checks
    of files and folders: it is a folder, and not empty)."""
    # a bind mount of a folder inside a workspace: also the path its file system shows it at whole
    for path in dict.fromkeys((target, _unbound(target))):
        for root in path.parents:
            if not (root / "catalog.duckdb").exists():
                continue
            first = path.relative_to(root).parts[0]
            if first in WORKSPACE_OWNED or first.startswith(("catalog.duckdb", ".")):
                through = f", reached through {target}" if path != target else ""
                raise CurateError(
                    f"{flag} {shown} lies inside the workspace {root}'s own files ({first}"
                    f"{through}); write outputs elsewhere, e.g. {root / 'reports'} or a folder of "
                    "your own"
                )
    # the same folders (and catalog files) reached by another path: a bind mount, a hard link
    owned = _owned_identities()
    for place in (target, *target.parents):
        try:
            st = os.stat(place)
        except OSError:
            continue
        hit = owned.get((st.st_dev, st.st_ino))
        if hit is not None:
            root, first = hit
            raise CurateError(
                f"{flag} {shown} lies inside the workspace {root}'s own files ({first}, reached "
                f"through {place}); write outputs elsewhere, e.g. {root / 'reports'} or a folder "
                "of your own"
            )


def _unbound(path: Path) -> Path:
    """`path` where its file system is mounted whole, when it lies under a bind mount of one of
    its folders (`mount --bind ws/runs/x elsewhere`: elsewhere/f -> .../ws/runs/x/f); else (no
    such mount, not Linux) `path` itself. From /proc/self/mountinfo: a mount's root (field 4) is
    the folder of its file system it shows at its mount point (field 5)."""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            rows = [line.split() for line in f]
    except OSError:
        return path

    def unescape(text: str) -> str:  # mountinfo writes space, tab, newline, backslash as \ooo
        return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)

    mounts = [(r[2], unescape(r[3]), unescape(r[4])) for r in rows if len(r) > 4]
    text = str(path)
    under = [m for m in mounts if text == m[2] or text.startswith(m[2].rstrip("/") + "/")]
    if not under:
        return path
    dev, root, point = max(under, key=lambda m: len(m[2]))
    if root == "/":
        return path
    inner = root.rstrip("/") + "/" + text[len(point) :].lstrip("/")
    # the same file system mounted at a root that holds `inner`: the widest such root
    shown = [m for m in mounts if m[0] == dev and (inner + "/").startswith(m[1].rstrip("/") + "/")]
    shown = [m for m in shown if m[1] != root or m[2] != point]
    if not shown:
        return path
    _, wroot, wpoint = min(shown, key=lambda m: len(m[1]))
    rest = inner[len(wroot.rstrip("/")) :].lstrip("/")
    return Path(wpoint.rstrip("/") + "/" + rest) if rest else Path(wpoint)


def _owned_identities() -> dict[tuple[int, int], tuple[Path, str]]:
    """(device, inode) -> (workspace root, name) of the owned folders and catalog files of every
    workspace this process named."""
    out = {}
    for root in opened_workspaces():
        names = [*WORKSPACE_OWNED, "catalog.duckdb", "catalog.duckdb.wal"]
        for name in names:
            try:
                st = os.stat(root / name)
            except OSError:
                continue
            out[(st.st_dev, st.st_ino)] = (root, name)
    return out


def _suffix_hint(out) -> str:
    return "" if Path(out).suffix else ".csv"


# ----------------------------------------------------------------------------- manifest


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def read_manifest(folder: Path) -> dict[str, dict] | None:
    """The files curate wrote in `folder`, {relative path: {"sha256": [...], ...}}; {} when there is
    no manifest, None when a file of that name is not curate's manifest."""
    path = folder / MANIFEST
    if not os.path.lexists(path):
        return {}
    if path.is_symlink() or not path.is_file() or os.lstat(path).st_uid != os.geteuid():
        return None  # a manifest of another user's proves nothing of ours
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or data.get("curate_outputs") != 1:
        return None
    files = data.get("files")
    if not isinstance(files, dict):
        return None
    return {k: v for k, v in files.items() if _plain(k) and _entry_ok(v)}


def _plain(rel) -> bool:
    """A manifest may name only files inside its own folder: a relative path of plain parts."""
    if not isinstance(rel, str) or not rel or rel.startswith("/") or "\\" in rel:
        return False
    return all(part not in ("", ".", "..") for part in rel.split("/"))


def _entry_ok(entry) -> bool:
    digests = entry.get("sha256") if isinstance(entry, dict) else None
    return isinstance(digests, list) and all(isinstance(d, str) for d in digests)


def owns(folder: Path, rel: str) -> bool:
    """True when the manifest of `folder` names the regular file `folder/rel` with the checksum it
    has now."""
    path = folder / rel
    if path.is_symlink() or not path.is_file():
        return False
    entry = (read_manifest(folder) or {}).get(rel)
    return isinstance(entry, dict) and sha256(path) in entry.get("sha256", [])


def _foreign_files(folder: Path) -> list[str]:
    """The files under `folder` that its manifest does not prove curate wrote (temporaries of
    curate's own aside)."""
    manifest = read_manifest(folder)
    foreign = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if rel == MANIFEST and manifest is not None:
            continue
        if path.name.endswith(TMP_SUFFIX):
            continue
        if path.is_dir() and not path.is_symlink():
            continue
        entry = (manifest or {}).get(rel)
        if path.is_symlink() or not isinstance(entry, dict):
            foreign.append(rel)
        elif sha256(path) not in entry.get("sha256", []):
            foreign.append(rel)
    return foreign


def _write_manifest(folder: Path, files: dict[str, dict], final: bool = True) -> None:
    """Write the manifest of `folder`; a final one drops the files that are gone (a pending one
    keeps the entries of files about to be renamed into place)."""
    if final:
        files = {k: v for k, v in files.items() if os.path.lexists(folder / k)}
    body = json.dumps({"curate_outputs": 1, "files": files}, indent=1, sort_keys=True)
    tmp = _tmp_name(folder / MANIFEST)
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(body + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, folder / MANIFEST)
    except OSError as e:
        _unlink(tmp)
        raise _os_error(e, folder / MANIFEST, "--out") from None


# ----------------------------------------------------------------------------- writing


def write_files(
    files: Mapping[Path, Writer], *, force: bool = False, flag: str = "--out", by: str = ""
) -> list[Path]:
    """Write several files as one output: each under a temporary name, then all renamed into place.

    Parameters
    ----------
    files : {target path: writer}; a writer fills the temporary path it is given.
    force : replace regular files curate cannot prove it wrote.
    flag : the option's name, for messages.
    by : the command, recorded in the manifest.

    Returns
    -------
    list of Path
        The targets written, absolute.
    """
    targets = {check_file(t, force, flag): w for t, w in files.items()}
    temps: dict[Path, Path] = {}
    made: list[Path] = []  # folders made for the output: removed again if it fails
    done = False
    try:
        for target, write in targets.items():
            try:
                made += _make_folders(target.parent)
                temps[target] = tmp = _tmp_name(target)
                write(tmp)
                _fsync(tmp)
            except OSError as e:
                raise _os_error(e, target, flag) from None
        digests = {t: sha256(tmp) for t, tmp in temps.items()}
        with _locked({t.parent for t in targets}):
            for t in targets:
                check_file(t, force, flag)  # again, under the lock: another process may have won
                if not force:
                    _refuse_other_writer(t.parent, [t.name], by, flag, "pass --force to replace it")
            _commit(temps, digests, by)
        done = True
    finally:
        for tmp in temps.values():
            _unlink(tmp)
        for folder in reversed(made if not done else []):
            with suppress(OSError):
                folder.rmdir()  # only if empty: a folder we made, holding nothing
    return list(targets)


def _make_folders(folder: Path) -> list[Path]:
    """Make `folder` and its missing parents; the ones made, outermost first."""
    missing = [f for f in (folder, *folder.parents) if not os.path.lexists(f)][::-1]
    folder.mkdir(parents=True, exist_ok=True)
    return missing


def write_file(
    out: str | os.PathLike, write: Writer, *, force: bool = False, flag: str = "--out", by: str = ""
) -> Path:
    """Write one file output (see `write_files`); returns its absolute path."""
    return write_files({Path(out): write}, force=force, flag=flag, by=by)[0]


def _commit(temps: dict[Path, Path], digests: dict[Path, str], by: str) -> None:
    """Rename the temporaries onto their targets, the manifests updated before and after."""
    now = datetime.now(UTC).isoformat(timespec="seconds")
    folders: dict[Path, dict] = {}
    for target in temps:
        folder = target.parent
        manifest = folders.setdefault(folder, dict(_manifest_or_refuse(folder)))
        old = manifest.get(target.name, {}).get("sha256", [])
        manifest[target.name] = {"sha256": [*old, digests[target]], "by": by, "written": now}
    for folder, manifest in folders.items():
        _write_manifest(folder, manifest, final=False)  # old and new checksum: both provable
    for target, tmp in temps.items():
        os.replace(tmp, target)
    for target in temps:
        folders[target.parent][target.name]["sha256"] = [digests[target]]
    for folder, manifest in folders.items():
        with suppress(CurateError):  # a full disk now: the pending manifest proves the files
            _write_manifest(folder, manifest)


def _manifest_or_refuse(folder: Path) -> dict:
    manifest = read_manifest(folder)
    if manifest is None:
        path = folder / MANIFEST
        with suppress(OSError):
            uid = os.lstat(path).st_uid
            if uid != os.geteuid() and _sticky_elsewhere(folder):
                raise CurateError(
                    f"{path} belongs to another user (uid {uid}) in a shared folder you cannot "
                    "remove it from, and curate keeps the list of the files it wrote in that "
                    "folder under that name; write the output to a folder of your own"
                )
        raise CurateError(
            f"{path} is not a manifest curate wrote; move it away, curate keeps the "
            "list of the files it wrote in that folder under that name"
        )
    return manifest


def _sticky_elsewhere(folder: Path) -> bool:
    """`folder` is sticky (like /tmp) and not this user's: others' files there cannot be removed."""
    st, me = os.stat(folder), os.geteuid()
    return me != 0 and bool(st.st_mode & stat.S_ISVTX) and st.st_uid != me


def write_folder(
    out: str | os.PathLike,
    build: Writer,
    *,
    keep: Iterable[Path] = (),
    flag: str = "--out",
    by: str = "",
    renew: bool = True,
) -> Path:
    """Write a folder output: `build` fills a new temporary folder, which becomes `out`.

    A missing `out` is created by one rename. An existing `out` (empty, or holding only what curate
    wrote) is written into file by file: files of the previous output that this one does not hold
    are removed, provably curate's; nothing else is touched. `renew=False` takes a new or empty
    folder only. Returns the absolute path.
    """
    keep = list(keep)
    target = check_folder(out, keep, flag, renew)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _os_error(e, target, flag) from None
    tmp = _tmp_name(target)
    try:
        try:
            os.mkdir(tmp)
            build(tmp)
            new = {
                p.relative_to(tmp).as_posix(): sha256(p)
                for p in sorted(tmp.rglob("*"))
                if p.is_file() and not p.is_symlink()
            }
            now = datetime.now(UTC).isoformat(timespec="seconds")
            entries = {rel: {"sha256": [d], "by": by, "written": now} for rel, d in new.items()}
            _write_manifest(tmp, entries)
            for p in tmp.rglob("*"):
                if p.is_file():
                    _fsync(p)
        except OSError as e:
            raise _os_error(e, target, flag) from None
        with _locked({target.parent}):
            target = check_folder(out, keep, flag, renew)
            if not os.path.lexists(target) and rename_noreplace(tmp, target):
                return target
        target = check_folder(out, keep, flag, renew)  # it exists now: empty, or curate's
        with _locked({target}):
            check_folder(out, keep, flag, renew)
            _refuse_other_writer(target, entries, by, flag, "choose a new folder")
            _merge_into(tmp, target, entries, by)
        return target
    finally:
        if os.path.lexists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)


def _merge_into(tmp: Path, target: Path, entries: dict[str, dict], by: str) -> None:
    """Move the files of `tmp` into the existing folder `target` (checked to be curate's)."""
    old = read_manifest(target) or {}
    pending = dict(old)
    for rel, entry in entries.items():
        pending[rel] = {**entry, "sha256": [*old.get(rel, {}).get("sha256", []), *entry["sha256"]]}
    _write_manifest(target, pending, final=False)
    for rel in entries:
        dest = target / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp / rel, dest)
    for rel in old:  # the previous output of this command: what it does not write again goes
        if rel not in entries and old[rel].get("by") == by and owns_entry(target / rel, old[rel]):
            (target / rel).unlink()
    kept = {k: v for k, v in old.items() if k not in entries and os.path.lexists(target / k)}
    _write_manifest(target, kept | entries)
    # a folder that held a file of the previous output and that this one left empty goes; an
    # empty folder of the user's (no file curate wrote was ever in it) stays
    made = {
        target.joinpath(*Path(rel).parts[:i]) for rel in old for i in range(1, len(Path(rel).parts))
    }
    for d in sorted(made, key=lambda p: len(p.parts), reverse=True):
        with suppress(OSError):
            if d.is_dir() and not d.is_symlink() and not any(d.iterdir()):
                d.rmdir()


def _refuse_other_writer(folder: Path, names: Iterable[str], by: str, flag: str, fix: str) -> None:
    """A CurateError when one of `names` in `folder` is a file another curate command wrote (the
    manifest's `by`): a report over a human-study export's index.html, a query export over its
    manifest.csv. Entries of unknown writers (written before `by` was kept) do not count."""
    manifest = read_manifest(folder) or {}
    for name in names:
        entry = manifest.get(name)
        other = entry.get("by") if isinstance(entry, dict) else None
        if other and by and other != by and os.path.lexists(folder / name):
            raise CurateError(
                f"{flag} {folder / name} was written by {other}, not {by}: it is another "
                f"command's output; {fix}"
            )


def owns_entry(path: Path, entry: dict) -> bool:
    return (
        not path.is_symlink()
        and path.is_file()
        and isinstance(entry, dict)
        and sha256(path) in entry.get("sha256", [])
    )


# ----------------------------------------------------------------------------- helpers


def _tmp_name(target: Path) -> Path:
    """A temporary path beside `target`, naming this process, so a later writer can tell a
    killed process's leftover from a live one's."""
    _remove_leftovers(target)
    return target.with_name(
        f".{_tmp_stem(target)}.{os.getpid()}-{secrets.token_hex(4)}{TMP_SUFFIX}"
    )


# the most bytes a temporary's name adds to its target's: "." + "." + a pid (at most 10 digits) +
# "-" + 8 hex digits + TMP_SUFFIX
_TMP_EXTRA = 21 + len(TMP_SUFFIX)
NAME_MAX = 255  # bytes in one path component, on Linux's file systems


def _tmp_stem(target: Path) -> str:
    """The target's name in its temporaries' names; a name too long to take the temporary's
    additions (a valid name of 220 bytes and more): a digest of it instead."""
    if len(os.fsencode(target.name)) + _TMP_EXTRA <= NAME_MAX:
        return target.name
    return "long-" + hashlib.blake2b(os.fsencode(target.name), digest_size=12).hexdigest()


def _remove_leftovers(target: Path) -> None:
    """Remove temporaries of `target` left by processes that are gone (a SIGKILL runs no cleanup)."""
    pattern = re.compile(
        rf"^\.{re.escape(_tmp_stem(target))}\.([0-9]+)-[0-9a-f]{{8}}{re.escape(TMP_SUFFIX)}$"
    )
    try:
        names = os.listdir(target.parent)
    except OSError:
        return
    for name in names:
        m = pattern.match(name)
        if m and not pid_running(int(m.group(1))):
            path = target.parent / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                _unlink(path)


def _unlink(path: Path) -> None:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    except OSError:
        pass


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def _locked(folders: Iterable[Path]) -> Iterator[None]:
    """An exclusive flock on each folder (in a fixed order), so two curate processes writing in one
    folder take turns; where the file system has no flock (some network mounts), no lock."""
    with ExitStack() as stack:
        for folder in sorted(set(folders)):
            try:
                fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
            except OSError:
                continue
            stack.callback(os.close, fd)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError:
                pass
        yield


def _os_error(e: OSError, target: Path, flag: str) -> CurateError:
    """The one message for an OSError while writing `target`: a full disk names that disk."""
    if _disk_full(e, target):
        from curate.workspace import no_space_message

        return CurateError(
            no_space_message(target)
            .replace("point --workspace at a larger disk", f"give {flag} a path on another disk")
            .replace(" (a run resumes where it stopped)", "")
        )
    return CurateError(
        f"{flag} {target}: cannot write there ({e.strerror or e}); choose another place"
    )


def _disk_full(e: OSError, target: Path) -> bool:
    """ENOSPC or EDQUOT, or a library's OSError without an errno (numpy, pyarrow) on a disk with
    less than 64 KiB left."""
    if e.errno in FULL_DISK or "No space left" in str(e):
        return True
    try:
        return e.errno is None and shutil.disk_usage(target.parent).free < 2**16
    except OSError:
        return False


# ----------------------------------------------------------------------------- formats


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(df):
    """A copy of `df` whose text cells a spreadsheet would run as a formula (leading =, +, -, @,
    tab or carriage return) start with a single quote, as OWASP recommends for CSV files; numbers
    are left as they are."""
    import pandas as pd

    out = df.copy()
    for col in out.columns:
        s = out[col]
        if pd.api.types.is_object_dtype(s) or pd.api.types.is_string_dtype(s):
            risky = s.map(lambda v: isinstance(v, str) and v.startswith(FORMULA_START)).astype(bool)
            if risky.any():
                out[col] = s.astype(object)
                out.loc[risky, col] = "'" + s[risky].astype(str)
    return out


def csv_writer(df) -> Writer:
    """A writer of `df` as CSV (no index), formula-looking text escaped (`csv_safe`)."""
    safe = csv_safe(df)
    return lambda p: safe.to_csv(p, index=False)


def sidecar_of(path: str | os.PathLike) -> Path:
    """The companion file of an output that describes it: `<name>.json` beside it (order.npy.json),
    one per file, so outputs of one stem in two formats never share one."""
    p = Path(path)
    return p.with_name(p.name + ".json")


def describe(paths: Iterable[Path], named: Path) -> str:
    """ "X" or "X (and its companion Y)" for a command's message."""
    others = [str(p) for p in paths if p != named]
    return str(named) + (f" (and beside it {', '.join(others)})" if others else "")
