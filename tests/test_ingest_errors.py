"""Bad input: one clear message naming the file and the fix, exit code 2, nothing half-written."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
from conftest import ingest_cli, make_cifar10_dir, make_image_folder, make_mnist_dir, write_idx

from curate import catalog
from curate.workspace import Workspace


def assert_refused(capsys, ws, code, *needles):
    assert code == 2
    err = (
        capsys.readouterr().err.replace("\r", "\n").strip().splitlines()[-1]
    )  # after progress bars
    assert err.startswith("error: "), err
    for n in needles:
        assert n in err, err
    assert not (ws / "datasets").exists() or not any((ws / "datasets").iterdir())  # no .beton left
    leftovers = [p for p in ws.rglob("*.tmp")] if ws.exists() else []
    assert not leftovers
    return err


def test_missing_path(tmp_path, capsys):
    ws = tmp_path / "ws"
    assert_refused(
        capsys,
        ws,
        ingest_cli("mnist", "--source", str(tmp_path / "nope"), "--workspace", str(ws)),
        "does not exist",
        "--source",
    )


def test_unknown_dataset(tmp_path, capsys):
    ws = tmp_path / "ws"
    assert_refused(
        capsys,
        ws,
        ingest_cli("mnistt", "--workspace", str(ws)),
        "unknown dataset 'mnistt'",
        "mnist",
    )


def test_bad_recipe_key(tmp_path, capsys):
    ws = tmp_path / "ws"
    assert_refused(
        capsys,
        ws,
        ingest_cli("digits", "--set", "dataset.storag=raw", "--workspace", str(ws)),
        "unknown recipe key dataset.storag",
        "storage",
    )


def test_empty_class_folder(tmp_path, capsys):
    make_image_folder(tmp_path / "f")
    (tmp_path / "f" / "train" / "bird").mkdir()
    ws = tmp_path / "ws"
    assert_refused(
        capsys,
        ws,
        ingest_cli("imagefolder", "--source", str(tmp_path / "f"), "--workspace", str(ws)),
        "bird",
        "holds no images",
    )


def test_truncated_image_then_skip_corrupt(tmp_path, capsys):
    make_image_folder(tmp_path / "f", ext=".jpg")
    victim = tmp_path / "f" / "train" / "dog" / "00004.jpg"
    victim.write_bytes(victim.read_bytes()[:60])
    ws = tmp_path / "ws"
    err = assert_refused(
        capsys,
        ws,
        ingest_cli("imagefolder", "--source", str(tmp_path / "f"), "--workspace", str(ws)),
        "00004.jpg",
        "--skip-corrupt",
    )
    assert "truncated" in err or "corrupt" in err
    assert (
        ingest_cli(
            "imagefolder", "--source", str(tmp_path / "f"), "--workspace", str(ws), "--skip-corrupt"
        )
        == 0
    )

    con = catalog.read(Workspace(ws))
    assert con.execute("SELECT split, source FROM skipped").fetchall() == [("train", str(victim))]
    ids = [
        r[0]
        for r in con.execute(
            "SELECT idx FROM instances WHERE split='train' ORDER BY idx"
        ).fetchall()
    ]
    assert ids == [0, 1, 2, 3, 5]  # integer names keep their ids; the gap is the skipped file


def test_non_image_file(tmp_path, capsys):
    make_image_folder(tmp_path / "f")
    (tmp_path / "f" / "test" / "cat" / "notes.txt").write_text("hello")
    ws = tmp_path / "ws"
    assert_refused(
        capsys,
        ws,
        ingest_cli("imagefolder", "--source", str(tmp_path / "f"), "--workspace", str(ws)),
        "notes.txt",
        "not an image",
    )


def test_text_file_named_jpg(tmp_path, capsys):
    make_image_folder(tmp_path / "f")
    (tmp_path / "f" / "test" / "cat" / "00099.png").write_text("not really a png")
    ws = tmp_path / "ws"
    assert_refused(
        capsys,
        ws,
        ingest_cli("imagefolder", "--source", str(tmp_path / "f"), "--workspace", str(ws)),
        "00099.png",
        "not a readable image",
    )


def test_pickle_that_is_not_cifar(tmp_path, capsys):
    base, _, _ = make_cifar10_dir(tmp_path)
    with open(base / "data_batch_3", "wb") as f:
        pickle.dump({"weights": [1, 2, 3]}, f)
    ws = tmp_path / "ws"
    assert_refused(
        capsys,
        ws,
        ingest_cli("cifar10", "--source", str(base), "--workspace", str(ws)),
        "data_batch_3",
        "not a CIFAR python batch",
    )


def test_pickle_with_code_is_refused(tmp_path, capsys):
    base, _, _ = make_cifar10_dir(tmp_path)
    with open(base / "test_batch", "wb") as f:
        pickle.dump(pytest.approx, f)  # a class reference: would import code
    ws = tmp_path / "ws"
    assert_refused(
        capsys,
        ws,
        ingest_cli("cifar10", "--source", str(base), "--workspace", str(ws)),
        "test_batch",
        "not a CIFAR python batch",
    )


def test_label_image_count_mismatch(tmp_path, capsys):
    make_mnist_dir(tmp_path, n_train=20)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(19, np.uint8))
    ws = tmp_path / "ws"
    assert_refused(
        capsys,
        ws,
        ingest_cli("mnist", "--source", str(tmp_path), "--workspace", str(ws)),
        "20 images",
        "19 labels",
    )


def test_truncated_idx(tmp_path, capsys):
    make_mnist_dir(tmp_path)
    p = tmp_path / "t10k-images-idx3-ubyte"
    p.write_bytes(p.read_bytes()[:-100])
    ws = tmp_path / "ws"
    assert_refused(
        capsys,
        ws,
        ingest_cli("mnist", "--source", str(tmp_path), "--workspace", str(ws)),
        "t10k-images-idx3-ubyte",
        "truncated",
    )


def test_failed_rebuild_keeps_previous_dataset(tmp_path, capsys):
    make_image_folder(tmp_path / "f")
    ws = tmp_path / "ws"
    assert ingest_cli("imagefolder", "--source", str(tmp_path / "f"), "--workspace", str(ws)) == 0
    before = (ws / "datasets" / "f" / "train.beton").read_bytes()
    (tmp_path / "f" / "train" / "cat" / "00001.png").write_bytes(b"garbage")
    assert (
        ingest_cli(
            "imagefolder", "--source", str(tmp_path / "f"), "--workspace", str(ws), "--force"
        )
        == 2
    )
    assert "00001.png" in capsys.readouterr().err
    assert (ws / "datasets" / "f" / "train.beton").read_bytes() == before

    con = catalog.read(Workspace(ws))
    assert con.execute("SELECT count(*) FROM instances").fetchone() == (12,)


def test_an_image_declaring_too_many_pixels_is_refused_undecoded(tmp_path, capsys):
    """A 0.6 KB JPEG whose header declares 13000 x 13000 pixels, below Pillow's own limit, was
    decoded into 2.75 GB and stored as a 13000 x 13000 image; now refused before decoding."""
    import io
    import resource
    import struct

    from PIL import Image

    make_image_folder(tmp_path / "f")
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 10, 10)).save(buf, "JPEG")
    jpeg = bytearray(buf.getvalue())
    sof = jpeg.find(b"\xff\xc0")
    jpeg[sof + 5 : sof + 9] = struct.pack(">HH", 13000, 13000)  # height, width
    (tmp_path / "f" / "train" / "cat" / "bomb.jpg").write_bytes(bytes(jpeg))
    ws = tmp_path / "ws"
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    code = ingest_cli("imagefolder", "--source", str(tmp_path / "f"), "--workspace", str(ws))
    assert_refused(capsys, ws, code, "bomb.jpg", "declares 13000 x 13000 pixels")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - peak < 512 * 2**20


def test_a_batch_larger_than_the_train_split_is_refused_before_the_run_exists(tmp_path, capsys):
    """Refused once only after run.json was written: the fixed command was then "another
    recipe" under the same run name. Now nothing of the run exists after the refusal."""
    from curate.cli import main

    make_image_folder(tmp_path / "f")  # 6 train images
    ws = tmp_path / "ws"
    assert ingest_cli("imagefolder", "--source", str(tmp_path / "f"), "--workspace", str(ws)) == 0
    capsys.readouterr()
    args = ["train", "f", "--members", "2", "--epochs", "1", "--run-name", "r"]
    assert main([*args, "--workspace", str(ws)]) == 2
    err = capsys.readouterr().err
    assert "loader.batch_size = " in err and "exceeds the 6 training instances" in err, err
    assert not (ws / "runs" / "r").exists()


@pytest.mark.parametrize("split", ["a=b", "te\nst"])
def test_image_folder_split_names_are_checked_like_labels(tmp_path, capsys, split):
    """A split folder `a=b` ingested, then broke train and score with a traceback (the log's
    folder split=a=b); a newline made a file te\\nst.beton. Refused as ingest labels refuses them."""
    make_image_folder(tmp_path / "f")
    (tmp_path / "f" / "test").rename(tmp_path / "f" / split)
    ws = tmp_path / "ws"
    code = ingest_cli("imagefolder", "--source", str(tmp_path / "f"), "--workspace", str(ws))
    assert_refused(capsys, ws, code, "imagefolder split", "a name becomes a folder")


def test_an_unpack_killed_midway_is_cleaned_by_the_next(tmp_path, capsys):
    """A kill while an archive unpacked into sources/ left its temporary folder there for good
    (only datasets/ was swept); the next ingest of the archive removes it, under the archive's
    lock."""
    import tarfile

    make_image_folder(tmp_path / "k")
    with tarfile.open(tmp_path / "k.tar.gz", "w:gz") as t:
        t.add(tmp_path / "k", arcname="k")
    ws = tmp_path / "ws"
    stale = ws / "sources" / ".k.ab12cd34.tmp"  # as atomic_path names it
    (stale / "k").mkdir(parents=True)
    code = ingest_cli("imagefolder", "--source", str(tmp_path / "k.tar.gz"), "--workspace", str(ws))
    assert code == 0, capsys.readouterr().err
    assert not stale.exists() and (ws / "sources" / "k" / ".curate-archive").is_file()
    assert sorted(p.name for p in (ws / "sources").iterdir()) == ["k"]


def test_an_ingest_killed_after_its_catalog_commit_is_done_again(tmp_path, capsys, monkeypatch):
    """Killed between the catalog's commit and the rename of its files: a first ingest left a
    catalog row without files ("rerun with --force"), a --force rebuild left the earlier files
    under the new row ("up to date", for good). The next run now sees the files are not the
    catalog's and rebuilds them; the run after is up to date."""
    from PIL import Image

    from curate.data import ingest as ing

    src, ws = tmp_path / "f", tmp_path / "ws"
    make_image_folder(src)
    real = ing._record

    def killed(*args, **kwargs):
        real(*args, **kwargs)
        raise KeyboardInterrupt  # after the commit, before the rename

    cmd = ("imagefolder", "--source", str(src), "--workspace", str(ws))
    monkeypatch.setattr(ing, "_record", killed)
    assert ingest_cli(*cmd) == 130
    monkeypatch.undo()
    assert not (ws / "datasets" / "f").exists()
    assert ingest_cli(*cmd) == 0 and "rebuilding" in capsys.readouterr().out
    Image.new("RGB", (12, 10)).save(src / "train" / "cat" / "extra.png")  # the input changes
    monkeypatch.setattr(ing, "_record", killed)
    assert ingest_cli(*cmd, "--force") == 130
    monkeypatch.undo()
    assert ingest_cli(*cmd) == 0 and "rebuilding" in capsys.readouterr().out
    meta = json.loads((ws / "datasets" / "f" / "dataset.json").read_text())
    assert meta["splits"]["train"] == 7  # the new file is in
    assert ingest_cli(*cmd) == 0 and "up to date" in capsys.readouterr().out


def test_entries_of_a_class_folder_that_are_no_images_are_named_for_what_they_are(tmp_path, capsys):
    """A FIFO or a dangling link named x.jpg was "a folder inside a class folder"."""
    import os

    make_image_folder(tmp_path / "f")
    ws = tmp_path / "ws"
    cat = tmp_path / "f" / "train" / "cat"
    os.mkfifo(cat / "fifo.jpg")
    code = ingest_cli("imagefolder", "--source", str(tmp_path / "f"), "--workspace", str(ws))
    assert_refused(capsys, ws, code, "fifo.jpg: not a regular file")
    (cat / "fifo.jpg").unlink()
    (cat / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    code = ingest_cli("imagefolder", "--source", str(tmp_path / "f"), "--workspace", str(ws))
    assert_refused(capsys, ws, code, "gone.jpg: a dangling or looping symbolic link")
