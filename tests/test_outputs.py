"""Every --out through one matrix: a missing target, a user's file, a user's folder, the workspace,
`.`, a path inside runs/, a symbolic link to each, a path through a link, and a full disk. The trees
of the user's folder and of the workspace are checksummed before and after: nothing but the named
output (its companion file, and the manifest that proves curate wrote them) may change."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from curate.cli import main
from curate.outputs import MANIFEST, csv_safe, owns, sidecar_of

# command -> (arguments before --out, suffix of a file output; None: a folder output)
COMMANDS = {
    "stats": (["stats", "--reference"], ".json"),
    "curriculum": (["curriculum", "digits"], ".npy"),
    "prune": (["prune", "digits", "--keep", "0.5", "--strategy", "easy"], ".npy"),
    "query": (["query", "SELECT idx, label FROM instances LIMIT 5", "--format", "csv"], ".csv"),
    "label-issues": (["label-issues", "digits", "--all", "--top", "5"], ".csv"),
    "pairs": (["pairs", "digits", "--n", "2", "--train-trials", "0"], None),
    "report": (["report", "digits"], None),
}
COMPANION = {"curriculum", "prune"}  # they write <out>.json beside the named file


def tree(root: Path) -> dict[str, str]:
    """{relative path: what it is} for everything under `root`, links not followed."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            if p.is_symlink():
                out[rel] = "link:" + os.readlink(p)
            elif p.is_dir():
                out[rel] = "dir"
            else:
                out[rel] = hashlib.blake2b(p.read_bytes(), digest_size=12).hexdigest()
    return out


@pytest.fixture()
def home(tmp_path) -> Path:
    """A user's folder: a thesis, a folder of theirs, and links to things that matter."""
    home = tmp_path / "home"
    (home / "folder").mkdir(parents=True)
    (home / "folder" / "thesis.tex").write_text("\\chapter{years of work}\n")
    return home


def run(cmd: str, out, ws: Path, *extra: str) -> tuple[int, str, str]:
    args, _ = COMMANDS[cmd]
    return main([*args, "--out", str(out), "--workspace", str(ws), *extra])


def targets(home: Path, ws: Path, suffix: str | None) -> dict[str, Path]:
    """The matrix's targets that must be refused, each as a path the user might type."""
    ext = suffix or ""
    (home / f"mine{ext}").write_text("the user's own\n")
    run_file = next(p for p in (ws / "runs" / "digits").rglob("*") if p.is_file())
    base = {
        "a user's file": home / f"mine{ext}",
        "a user's folder": home / "folder",
        "the workspace": ws,
        ".": Path("."),
        "a file inside runs/": run_file,
        "a new path inside runs/": ws / "runs" / "digits" / f"new{ext}",
        "the catalog": ws / "catalog.duckdb",
    }
    links = {}
    for what, target in list(base.items())[:5]:
        link = home / f"link to {what.replace('/', '')}"
        link.symlink_to(target if what != "." else home)
        links[f"a link to {what}"] = link
    through = home / "ws-link"
    through.symlink_to(ws)
    links["a path through a link into runs/"] = through / "runs" / "digits" / f"x{ext}"
    return base | links


@pytest.mark.parametrize("cmd", list(COMMANDS))
def test_every_out_refuses_what_it_did_not_write(cmd, small_scored_ws, home, capsys, monkeypatch):
    """No command writes over a user's file or folder, the workspace, `.`, runs/ or the catalog,
    directly or through a link; with --force only a user's plain file may be replaced."""
    ws, suffix = small_scored_ws, COMMANDS[cmd][1]
    monkeypatch.chdir(home)
    cases = targets(home, ws, suffix)
    before = tree(home), tree(ws)
    for what, out in cases.items():
        forced = ("--force",) if suffix is not None else ()
        for extra in ((), forced) if forced else ((),):
            if extra and what == "a user's file":
                continue  # --force may replace it: below
            rc = run(cmd, out, ws, *extra)
            err = capsys.readouterr().err
            lines = [x for x in err.splitlines() if x.startswith("error: ")]
            assert rc == 2 and len(lines) == 1 and "Traceback" not in err, (what, extra, err)
            assert (tree(home), tree(ws)) == before, (what, extra)
    if suffix is not None:  # --force replaces a user's plain file, and only it
        assert run(cmd, home / f"mine{suffix}", ws, "--force") == 0
        after = tree(home)
        changed = {k for k in set(after) | set(before[0]) if after.get(k) != before[0].get(k)}
        allowed = {f"mine{suffix}", MANIFEST} | (
            {f"mine{suffix}.json"} if cmd in COMPANION else set()
        )
        assert changed <= allowed and f"mine{suffix}" in changed, changed
        assert owns(home, f"mine{suffix}")
        assert tree(ws) == before[1]


@pytest.mark.parametrize("cmd", list(COMMANDS))
def test_every_out_writes_the_named_output_and_nothing_else(
    cmd, small_scored_ws, home, capsys, monkeypatch
):
    """A missing target: the named output is made (with its companion and the manifest, named in
    the message); written again it is replaced, as curate's own; once the user edits it, it is
    theirs and refused."""
    ws, suffix = small_scored_ws, COMMANDS[cmd][1]
    monkeypatch.chdir(home)
    out = home / "sub" / f"new{suffix or ''}"
    before = tree(home), tree(ws)
    assert run(cmd, out, ws) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    after = tree(home)
    changed = {k for k in set(after) | set(before[0]) if after.get(k) != before[0].get(k)}
    name = out.name
    if suffix is None:
        assert all(k == "sub" or k.startswith(f"sub/{name}") for k in changed), changed
        assert (out / MANIFEST).is_file()
    else:
        allowed = {"sub", f"sub/{name}", f"sub/{MANIFEST}"}
        if cmd in COMPANION:
            allowed.add(f"sub/{name}.json")
            assert str(sidecar_of(out)) in printed  # the companion file is named
        assert changed == allowed, changed
        assert owns(out.parent, name)
    assert tree(ws) == before[1]
    if cmd == "pairs":  # an experiment is exported once: never over a previous one, even curate's
        snapshot = tree(home)
        assert run(cmd, out, ws) == 2 and "not empty" in capsys.readouterr().err
        assert tree(home) == snapshot
        return
    # again: curate's own output is replaced without --force
    assert run(cmd, out, ws) == 0, capsys.readouterr().err
    capsys.readouterr()
    # the user edits it: now it is theirs
    edited = out
    if suffix is None:
        edited = next(p for p in out.rglob("*") if p.is_file() and p.name != MANIFEST)
    with open(edited, "ab") as f:
        f.write(b"my edit")
    snapshot = tree(home)
    assert run(cmd, out, ws) == 2
    assert "error: " in capsys.readouterr().err
    assert tree(home) == snapshot


def test_a_companion_file_of_the_users_is_refused(small_scored_ws, home, capsys):
    """The sidecar beside the named file is checked like the file itself."""
    (home / "order.npy.json").write_text('{"mine": true}')
    before = tree(home)
    assert run("curriculum", home / "order.npy", small_scored_ws) == 2
    assert "order.npy.json" in capsys.readouterr().err
    assert tree(home) == before


# ----------------------------------------------------------------------------- full disk


def fill(disk: Path, leave: int) -> None:
    free = shutil.disk_usage(disk).free
    with open(disk / "filler", "wb") as f:
        f.write(b"\0" * max(0, free - leave))


@pytest.fixture()
def full_disk(tmp_path):
    """A tmpfs of 2 MiB at tmp_path/disk, filled to 4 KiB free (root only; else skipped)."""
    where = tmp_path / "disk"
    where.mkdir()
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(where)], capture_output=True
    )
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.decode().strip()}")
    try:
        fill(where, 4096)
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


@pytest.mark.parametrize("cmd", ["curriculum", "query", "label-issues", "report"])
def test_a_full_disk_names_that_disk_and_leaves_nothing(cmd, small_scored_ws, full_disk, capsys):
    ws = small_scored_ws
    suffix = COMMANDS[cmd][1]
    out = full_disk / f"out{suffix or ''}"
    before = tree(full_disk), tree(ws)
    assert run(cmd, out, ws) == 2
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "no space left on the disk holding" in lines[0] and str(full_disk) in lines[0], err
    assert (tree(full_disk), tree(ws)) == before


# ----------------------------------------------------------------------------- pieces


def test_csv_safe_escapes_formulas_in_text_only():
    """OWASP's CSV injection rule: text cells starting with = + - @ tab or CR get a leading quote;
    numbers (a negative score) do not."""
    df = pd.DataFrame(
        {
            "path": ["=cmd|' /C calc'!A0", "+1", "-x", "@SUM(A1)", "\tx", "cat.png", None],
            "score": [-1.5, 2.0, -0.1, 0.0, 1.0, 3.0, np.nan],
        }
    )
    safe = csv_safe(df)
    assert safe["path"].tolist()[:6] == [
        "'=cmd|' /C calc'!A0",
        "'+1",
        "'-x",
        "'@SUM(A1)",
        "'\tx",
        "cat.png",
    ]
    assert pd.isna(safe["path"].iloc[6])  # a missing cell stays missing
    assert safe["score"].tolist()[:6] == [-1.5, 2.0, -0.1, 0.0, 1.0, 3.0]
    assert df["path"].iloc[0].startswith("=")  # the input is not changed


def test_label_issues_csv_escapes_a_users_paths(small_scored_ws, tmp_path, capsys):
    """A formula in a user's paths file reaches the review list escaped."""
    from curate.review import write_list

    df = pd.DataFrame({"idx": [1], "source": ["=cmd|'/C calc'!A0"], "issue_score": [-0.5]})
    out = write_list(df, str(tmp_path / "issues.csv"))
    text = out.read_text()
    assert "'=cmd" in text and "\n1,'=cmd" in text and ",-0.5" in text


def test_a_killed_writer_leaves_the_target_and_its_temporary_goes(tmp_path):
    """A temporary of a process that is gone is removed by the next writer; a live one's stays."""
    from curate.outputs import write_file

    target = tmp_path / "a.csv"
    dead = tmp_path / ".a.csv.999999999-00000000.curate-tmp"
    live = tmp_path / f".a.csv.{os.getpid()}-00000000.curate-tmp"
    dead.write_text("half")
    live.write_text("half")
    write_file(target, lambda p: p.write_text("x\n"))
    assert target.read_text() == "x\n" and not dead.exists() and live.exists()


def test_a_manifest_entry_survives_a_kill_between_rename_and_final_manifest(tmp_path, monkeypatch):
    """The manifest names the new checksum before the rename: a kill right after the rename leaves
    the new file provably curate's."""
    from curate import outputs

    target = tmp_path / "a.csv"
    outputs.write_file(target, lambda p: p.write_text("old\n"))
    calls = []
    real = outputs._write_manifest

    def die_on_final(folder, files, final=True):
        calls.append(final)
        if final:
            raise KeyboardInterrupt  # the process dies after the rename
        real(folder, files, final)

    monkeypatch.setattr(outputs, "_write_manifest", die_on_final)
    with pytest.raises(KeyboardInterrupt):
        outputs.write_file(target, lambda p: p.write_text("new\n"))
    monkeypatch.setattr(outputs, "_write_manifest", real)
    assert calls == [False, True] and target.read_text() == "new\n"
    assert owns(tmp_path, "a.csv")
    outputs.write_file(target, lambda p: p.write_text("newer\n"))  # no --force needed
    assert target.read_text() == "newer\n"


def test_devices_and_foreign_manifests_are_refused(tmp_path):
    from curate.errors import CurateError
    from curate.outputs import write_file

    with pytest.raises(CurateError, match="symbolic link|regular file"):
        write_file("/dev/null", lambda p: p.write_text("x"), force=True)
    (tmp_path / MANIFEST).write_text("my own notes")
    with pytest.raises(CurateError, match="not a manifest curate wrote"):
        write_file(tmp_path / "a.csv", lambda p: p.write_text("x"))
    assert not (tmp_path / "a.csv").exists()
    assert (tmp_path / MANIFEST).read_text() == "my own notes"


# ----------------------------------------------------------------------------- adversarial cases


def test_a_planted_manifest_cannot_reach_outside_its_folder(small_scored_ws, tmp_path, capsys):
    """Entries with an absolute path or '..' are not curate's: a report rerun deletes neither the
    victim's file nor the workspace's catalog, whatever checksums the manifest lists."""
    import json

    from curate.outputs import sha256

    ws = tmp_path / "ws"
    shutil.copytree(small_scored_ws, ws)
    victim = tmp_path / "thesis.txt"
    victim.write_text("years of work")
    rep = tmp_path / "rep"
    assert run("report", rep, ws) == 0
    man = json.loads((rep / MANIFEST).read_text())
    man["files"][str(victim)] = {"sha256": [sha256(victim)], "by": "curate report"}
    man["files"]["../ws/catalog.duckdb"] = {
        "sha256": [sha256(ws / "catalog.duckdb")],
        "by": "curate report",
    }
    (rep / MANIFEST).write_text(json.dumps(man))
    assert run("report", rep, ws) == 0, capsys.readouterr().err
    assert victim.read_text() == "years of work" and (ws / "catalog.duckdb").is_file()


def test_a_manifest_of_another_user_proves_nothing(tmp_path):
    from curate.errors import CurateError
    from curate.outputs import write_file

    target = tmp_path / "a.csv"
    write_file(target, lambda p: p.write_text("x\n"))
    os.chown(tmp_path / MANIFEST, 12345, 12345)  # as if planted by another account
    with pytest.raises(CurateError, match="curate did not write it|not a manifest"):
        write_file(target, lambda p: p.write_text("y\n"))
    assert target.read_text() == "x\n"


def test_a_manifest_planted_in_a_shared_folder_says_what_to_do(tmp_path, monkeypatch):
    """In a sticky folder of another account (like /tmp) a manifest planted by a third one cannot
    be moved away: the error says to write elsewhere, and nothing is written."""
    from curate.errors import CurateError
    from curate.outputs import write_file

    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / MANIFEST).write_text('{"curate_outputs": 1, "files": {}}\n')
    os.chown(shared / MANIFEST, 12345, 12345)
    os.chown(shared, 0, 0)
    shared.chmod(0o1777)
    monkeypatch.setattr(os, "geteuid", lambda: 4242)  # this user: neither root nor either owner
    with pytest.raises(CurateError, match="belongs to another user .uid 12345.*folder of your own"):
        write_file(shared / "a.csv", lambda p: p.write_text("x\n"))
    assert sorted(p.name for p in shared.iterdir()) == [MANIFEST]
    monkeypatch.undo()
    shared.chmod(0o755)  # not sticky: the usual advice
    monkeypatch.setattr(os, "geteuid", lambda: 4242)
    with pytest.raises(CurateError, match="not a manifest curate wrote; move it away"):
        write_file(shared / "a.csv", lambda p: p.write_text("x\n"))


def test_runs_linked_to_another_disk_stays_the_workspaces(small_scored_ws, tmp_path, capsys):
    """runs/ as a symbolic link to a bigger disk: a path through it is still the workspace's."""
    ws = tmp_path / "ws"
    shutil.copytree(small_scored_ws, ws)
    (ws / "runs").rename(tmp_path / "big-runs")
    (ws / "runs").symlink_to(tmp_path / "big-runs")
    part = next((ws / "runs").rglob("part.parquet"))
    before = tree(tmp_path / "big-runs")
    for out, extra in ((ws / "runs" / "digits" / "x.csv", ()), (part, ("--force",))):
        assert run("query", out, ws, *extra) == 2
        assert "inside the workspace" in capsys.readouterr().err
    assert tree(tmp_path / "big-runs") == before


def test_runs_reached_through_a_bind_mount_stays_the_workspaces(small_scored_ws, tmp_path, capsys):
    """The same runs/ (or a folder inside it) mounted elsewhere: no catalog.duckdb beside it
    there, but the folder is the workspace's (its identity; the mount table's source of the
    mount); once --force replaced a run's run.json through it."""
    import subprocess

    ws = tmp_path / "ws"
    shutil.copytree(small_scored_ws, ws)
    bind = tmp_path / "bind"
    bind.mkdir()
    if subprocess.run(
        ["mount", "--bind", str(ws / "runs"), str(bind)], capture_output=True
    ).returncode:
        pytest.skip("bind mounts need privileges this process does not have")
    inner = tmp_path / "inner"  # a folder inside runs/ mounted elsewhere: no runs/ in its path
    inner.mkdir()
    subprocess.run(["mount", "--bind", str(ws / "runs" / "digits"), str(inner)], check=True)
    try:
        before = tree(ws / "runs")
        for out, extra in (
            (bind / "digits" / "run.json", ("--force",)),
            (bind / "new.csv", ()),
            (inner / "new.csv", ()),
            (inner / "progress" / "member=0.json", ("--force",)),
        ):
            assert run("query", out, ws, *extra) == 2
            err = capsys.readouterr().err
            assert "inside the workspace" in err and "reached through" in err, err
        assert tree(ws / "runs") == before
    finally:
        subprocess.run(["umount", str(inner)], check=True)
        subprocess.run(["umount", str(bind)], check=True)


def test_the_stats_folder_is_the_workspaces(small_scored_ws, capsys):
    out = small_scored_ws / "stats" / "digits" / "notes.csv"
    assert run("query", out, small_scored_ws, "--force") == 2
    assert "inside the workspace" in capsys.readouterr().err and not out.exists()


def test_a_report_rerun_keeps_other_curate_outputs_in_its_folder(small_scored_ws, tmp_path):
    """Another command's file in a report folder stays; so do the user's empty folders, which a
    rewrite once removed (only folders the previous report made and this one left empty go)."""
    rep = tmp_path / "rep"
    (rep / "mynotes").mkdir(parents=True)
    (rep / "deep" / "er").mkdir(parents=True)
    assert run("report", rep, small_scored_ws) == 0
    assert run("label-issues", rep / "issues.csv", small_scored_ws) == 0
    assert run("report", rep, small_scored_ws) == 0
    assert (rep / "issues.csv").is_file() and owns(rep, "issues.csv")
    assert (rep / "mynotes").is_dir() and (rep / "deep" / "er").is_dir()


def test_one_commands_output_is_not_replaced_by_anothers(small_scored_ws, tmp_path, capsys):
    """A report into a human-study export (its index.html), a query export over the export's
    answer key: each file is provably curate's, but another command's; refused, nothing
    changed. --force replaces a file all the same, and a command rewrites its own."""
    exp = tmp_path / "exp"
    assert run("pairs", exp, small_scored_ws) == 0
    before = tree(exp)
    assert run("report", exp, small_scored_ws) == 2
    err = capsys.readouterr().err
    assert "was written by curate pairs, not curate report" in err and err.count("\n") == 1, err
    assert run("query", exp / "manifest.csv", small_scored_ws) == 2
    assert "was written by curate pairs, not curate query" in capsys.readouterr().err
    assert tree(exp) == before
    assert run("query", exp / "manifest.csv", small_scored_ws, "--force") == 0
    assert run("query", exp / "manifest.csv", small_scored_ws) == 0  # its own now: rewritten


@pytest.mark.parametrize(
    "name",
    ["new/", "x" * 300 + "/a.csv", "loop/a.csv"],
    ids=["trailing-slash", "name-too-long", "link-loop"],
)
def test_paths_that_cannot_be_are_one_error(name, small_scored_ws, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    assert run("query", name, small_scored_ws) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.count("\n") == 1 and "Traceback" not in err, err


def test_leftover_cleanup_spares_files_that_only_look_like_curates(tmp_path):
    from curate.outputs import write_file

    mine = tmp_path / ".out.csv.999998-notes.curate-tmp"
    mine.write_text("notes")
    dead = tmp_path / ".out.csv.999999-0a1b2c3d.curate-tmp"
    dead.write_text("half")
    write_file(tmp_path / "out.csv", lambda p: p.write_text("x\n"))
    assert mine.read_text() == "notes" and not dead.exists()


def test_query_takes_its_format_from_the_suffix(small_scored_ws, tmp_path, capsys):
    out = tmp_path / "r.parquet"
    sql = "SELECT idx, label FROM instances LIMIT 3"
    assert main(["query", sql, "--out", str(out), "--workspace", str(small_scored_ws)]) == 0
    assert pd.read_parquet(out).shape == (3, 2)


def test_pairs_analyse_refuses_an_answers_file_it_would_overwrite(tmp_path, capsys):
    (tmp_path / "manifest.csv").write_text("trial,phase,impossible_side\n0,test,left\n")
    ans = tmp_path / "analysis.csv"
    ans.write_text("trial,chosen_side\n0,left\n")
    assert main(["pairs-analyse", str(tmp_path), str(ans), "--force"]) == 2
    assert "one of the files pairs-analyse writes" in capsys.readouterr().err
    assert ans.read_text() == "trial,chosen_side\n0,left\n"
    ans.unlink()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for d in ("a", "b"):
        (tmp_path / d / "alice.csv").write_text("trial,chosen_side\n0,left\n")
    args = [str(tmp_path / "a" / "alice.csv"), str(tmp_path / "b" / "alice.csv")]
    assert main(["pairs-analyse", str(tmp_path), *args]) == 2
    assert "two answers files are named 'alice'" in capsys.readouterr().err


@pytest.mark.parametrize("renameat2", [True, False])
def test_rename_noreplace_never_replaces(tmp_path, monkeypatch, renameat2):
    """With renameat2, and without (its hard-link fallback for files): a target that exists stays,
    and so does the source; a free target gets the source."""
    from curate import workspace

    if not renameat2:

        def no_libc(*a, **k):
            raise OSError("no renameat2 here")

        monkeypatch.setattr(workspace.ctypes, "CDLL", no_libc)
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.write_text("new")
    dst.write_text("theirs")
    assert not workspace.rename_noreplace(src, dst)
    assert dst.read_text() == "theirs" and src.read_text() == "new"
    dst.unlink()
    assert workspace.rename_noreplace(src, dst)
    assert dst.read_text() == "new" and not src.exists()


def test_a_companion_name_past_the_limit_is_refused_before_anything(small_scored_ws, tmp_path):
    """A 252-byte name is valid, its sidecar's (+ .json) is not: once the ordering was renamed
    into place without its sidecar and a traceback followed; now one line, nothing written."""
    out = tmp_path / ("k" * 248 + ".npy")
    assert run("curriculum", out, small_scored_ws) == 2
    assert not list(tmp_path.iterdir())


def test_a_long_valid_name_is_written(tmp_path):
    """A 250-byte name is valid, but its temporary's name (its own plus about 35 bytes) was not:
    refused as too long. The temporary takes a digest of such a name; a dead process's leftover
    of it is still found and removed."""
    from curate.outputs import TMP_SUFFIX, _tmp_stem, write_file

    target = tmp_path / ("n" * 246 + ".csv")
    leftover = tmp_path / f".{_tmp_stem(target)}.999998-0123abcd{TMP_SUFFIX}"  # a gone process's
    leftover.write_text("half")
    write_file(target, lambda p: p.write_text("x\n"))
    assert target.read_text() == "x\n" and not leftover.exists()
