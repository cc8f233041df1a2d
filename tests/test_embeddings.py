"""Staged learners on a network's penultimate layer (`--features RUN`, Hacohen §6): the embeddings
are the saved model's forward pass up to its last linear layer, cached under the network's run;
AdaBoost fits them and its run scores; every way of asking for it wrongly is one clear error."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from curate import catalog
from curate.cli import main
from curate.config import load_recipe
from curate.train.embeddings import data_fingerprint
from curate.train.predlog import progress_path, shard_path
from curate.workspace import Workspace

SMALL = ["--set", "score.stats=false"]


def cached(run_dir, epoch: int):
    """The one cache folder of a network run's member-0 embeddings at `epoch`."""
    (folder,) = (run_dir / "embeddings" / "member=0" / f"epoch={epoch}").glob("data=*")
    return folder


def _query(ws, sql: str):
    con = catalog.read(Workspace(ws))
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    """A finished fused MLP run on digits (2 members, 2 epochs) and an AdaBoost run on its
    embeddings (2 members, 3 stages)."""
    ws = tmp_path_factory.mktemp("emb")
    w = ["--workspace", str(ws)]
    args = ["run", "digits", "--run-name", "net", *w, *SMALL]
    args += ["--set", "train.members=2", "--set", "train.epochs=2", "--set", "train.arch=mlp"]
    args += ["--set", "train.precision=fp32"]  # the logged predictions, exactly reproducible
    assert main(args) == 0
    train = ["train", "digits", "--learner", "adaboost", "--features", "net", *w]
    assert main([*train, "--run-name", "ada-emb", "--members", "2", "--epochs", "3"]) == 0
    assert main(["score", "ada-emb", *w]) == 0
    return ws


def test_embeddings_are_the_forward_pass_to_the_last_linear_layer(net):
    """By hand from the checkpoint: member 0's x -> relu(W1 x + b1) -> relu(W2 . + b2), the
    input of its last linear layer W3; W3 applied to it gives the predictions the run logged."""
    from curate.data.loader import dataset_info
    from curate.train.feed import InMemoryFeed
    from curate.train.learners.boosting import split_features
    from curate.workspace import Workspace

    run = net / "runs" / "net"
    prog = json.loads(progress_path(run, 0).read_text())
    unit = prog["epochs"]["2"]["unit"]
    assert unit == "fused-0-1"
    state = torch.load(run / "checkpoints" / unit / "epoch=2.pt", weights_only=False)["model"]
    w1, b1 = state["body.1.weight"][0].double(), state["body.1.bias"][0].double()
    w2, b2 = state["body.3.weight"][0].double(), state["body.3.bias"][0].double()
    w3, b3 = state["body.5.weight"][0].double(), state["body.5.bias"][0].double()
    feed = InMemoryFeed(
        dataset_info("digits", Workspace(net)), load_recipe("digits"), torch.device("cpu"), {}
    )
    for split, n in (("train", 1438), ("test", 359)):
        x, y, idx = split_features(feed, split)  # normalised pixels, flattened: the MLP's input
        h = torch.relu(torch.from_numpy(x).double() @ w1.T + b1)
        h = torch.relu(h @ w2.T + b2)
        with np.load(cached(run, 2) / f"{split}.npz") as z:
            got_x, got_y, got_idx = z["x"], z["y"], z["idx"]
        assert got_x.shape == (n, 256) and got_x.dtype == np.float32
        assert np.array_equal(got_idx, idx) and np.array_equal(got_y, y)
        np.testing.assert_allclose(got_x, h.numpy(), rtol=1e-4, atol=1e-4)
        logged = pq.read_table(shard_path(run, "eval", split, 0, 2)).to_pandas()
        pred = (h @ w3.T + b3).argmax(1).numpy()
        assert np.array_equal(logged["idx"], idx) and (logged["pred"].to_numpy() == pred).all()


def test_separate_network_embeds_like_its_plain_model(tmp_path):
    """A member trained alone (strategy separate): the embedding is its Sequential without the
    last layer, applied to the eval batches."""
    from curate.data.loader import dataset_info
    from curate.train.embeddings import embed, load_member, source_run
    from curate.train.feed import InMemoryFeed
    from curate.workspace import Workspace

    w = ["--workspace", str(tmp_path)]
    args = ["run", "digits", "--run-name", "sep", *w, *SMALL, "--set", "train.strategy=separate"]
    args += ["--set", "train.members=2", "--set", "train.epochs=1", "--set", "train.arch=mlp"]
    assert main(args) == 0
    ws = Workspace(tmp_path)
    src = source_run(ws, "sep", "digits")
    assert src.unit == "member-0" and src.epoch == 1
    info = dataset_info("digits", ws)
    model = load_member(src, info, torch.device("cpu"))
    feed = InMemoryFeed(info, src.recipe, torch.device("cpu"), {})
    x, y, idx = embed(model, feed.eval_batches("test"))
    xs = torch.cat([b[0] for b in feed.eval_batches("test")])
    with torch.no_grad():
        want = model[:-1](xs).numpy()  # every layer but the last Linear
    assert x.shape == (359, 256)
    np.testing.assert_allclose(x, want, rtol=1e-6, atol=1e-6)


def test_adaboost_on_embeddings_is_logged_and_scored(net):
    rows = _query(
        net,
        "SELECT split, acc_mean FROM epoch_metrics WHERE run = 'ada-emb' AND epoch = 3",
    )
    acc = dict(rows)
    assert acc["test"] > 0.8  # linear boosting on a trained MLP's features learns digits
    n = _query(net, "SELECT count(*) FROM instance_scores WHERE run = 'ada-emb'")[0][0]
    assert n == 1797
    ident = json.loads((net / "runs" / "ada-emb" / "run.json").read_text())
    assert ident["train"]["features"] == "net" and ident["train"]["strategy"] == "adaboost"
    # the log is AdaBoost's staged_predict on the cached embeddings, member 0's bootstrap
    from sklearn.ensemble import AdaBoostClassifier
    from sklearn.linear_model import RidgeClassifier

    from curate.train.learners.boosting import bootstrap_weights
    from curate.train.seeds import member_seeds

    cache = cached(net / "runs" / "net", 2)
    with np.load(cache / "train.npz") as z:
        x, y = z["x"], z["y"]
    with np.load(cache / "test.npz") as z:
        xt = z["x"]
    s = member_seeds(0, 0)
    wts = bootstrap_weights(len(y), s["order"])
    ref = AdaBoostClassifier(RidgeClassifier(alpha=1.0), n_estimators=3, random_state=s["init"])
    ref.fit(x[wts > 0], y[wts > 0], sample_weight=wts[wts > 0])
    staged = list(ref.staged_predict(xt))
    for e in (1, 3):
        t = pq.read_table(shard_path(net / "runs" / "ada-emb", "eval", "test", 0, e)).to_pandas()
        assert np.array_equal(t["pred"], staged[min(e, len(staged)) - 1])


def test_a_second_boosting_run_reuses_the_cached_embeddings(net):
    (cache,) = (net / "runs" / "net" / "embeddings" / "member=0" / "epoch=2").glob(
        "data=*/train.npz"
    )
    assert cache.parent.name == f"data={data_fingerprint(Workspace.resolve(net), 'digits')}"
    before = cache.stat().st_mtime_ns
    args = ["train", "digits", "--learner", "adaboost", "--features", "net", "--run-name", "ada-2"]
    assert main([*args, "--members", "2", "--epochs", "2", "--workspace", str(net)]) == 0
    assert cache.stat().st_mtime_ns == before
    assert len(list(cache.parent.iterdir())) == 2  # train.npz, test.npz: no temporaries left


def test_a_reingested_dataset_is_embedded_anew(tmp_path):
    ws = Workspace.resolve(tmp_path)
    d = ws.dataset_dir("digits")
    d.mkdir(parents=True)
    (d / "dataset.json").write_text("{}")
    (d / "train.beton").write_bytes(b"x" * 10)
    first = data_fingerprint(ws, "digits")
    assert data_fingerprint(ws, "digits") == first  # nothing changed: the cache is reused
    (d / "dataset.json").write_text('{"splits": 1}')  # what ingest --force rewrites
    assert data_fingerprint(ws, "digits") != first


def _refused(ws, capsys, extra: list[str], run: str = "bad") -> str:
    args = ["train", "digits", "--run-name", run, "--members", "2", "--epochs", "1", *extra]
    assert main([*args, "--workspace", str(ws)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and len(err.strip().splitlines()) == 1
    assert not (ws / "runs" / run / "run.json").exists()  # nothing written for the refused run
    return err


def test_unknown_run_is_refused(net, capsys):
    err = _refused(net, capsys, ["--learner", "adaboost", "--features", "nope"])
    assert "no such run" in err and "'nope'" in err and "net" in err


def test_a_network_learner_given_features_is_refused(net, capsys):
    err = _refused(net, capsys, ["--features", "net"])
    assert "staged learners" in err and "adaboost" in err


def test_a_boosting_run_is_not_a_network(net, capsys):
    err = _refused(net, capsys, ["--learner", "adaboost", "--features", "ada-emb"])
    assert "trained no network" in err


def test_a_run_on_another_dataset_is_refused(net, capsys):
    w = ["--workspace", str(net)]
    assert main(["ingest", "digits", "--random-labels", "3", *w]) == 0
    capsys.readouterr()
    err = _refused(
        net,
        capsys,
        ["--set", "dataset.random_labels=3", "--learner", "adaboost", "--features", "net"],
    )
    assert "trained on dataset 'digits'" in err and "digits-random-labels-3" in err


def test_an_unfinished_run_is_refused(net, capsys, tmp_path):
    import shutil

    # a copy of the network run as a killed run leaves it: member 1's last epoch not recorded
    shutil.copytree(net / "runs" / "net", net / "runs" / "half")
    prog = progress_path(net / "runs" / "half", 1)
    rec = json.loads(prog.read_text())
    del rec["epochs"]["2"]
    prog.write_text(json.dumps(rec))
    err = _refused(net, capsys, ["--learner", "adaboost", "--features", "half"])
    assert "not finished" in err and "member 1 has 1 of 2 epochs" in err


def test_a_recorded_run_is_refused_as_features(net, capsys):
    """A run recorded from the user's own loop holds predictions, not weights: nothing to embed."""
    from curate.record import Recorder

    rec = Recorder(net, run="mine", dataset="digits", members=2, epochs=1)
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        idx, _ = catalog.split_labels(Workspace(net), "digits", split)
        for m in range(2):
            for e in range(2):
                rec.log(split, m, e, idx, rng.normal(size=(len(idx), 10)))
    assert rec.close().complete
    err = _refused(net, capsys, ["--learner", "adaboost", "--features", "mine"])
    assert "recorded from your own training loop" in err and "pixels" in err


def test_learner_is_the_strategy_flag():
    from curate.cli import build_parser
    from curate.commands.common import flags
    from curate.commands.training import TRAIN_FLAGS

    args = build_parser().parse_args(["train", "digits", "--learner", "gboost"])
    assert load_recipe("digits", [], flags(args, TRAIN_FLAGS)).train.strategy == "gboost"


@pytest.mark.slow
def test_boosting_on_embeddings_of_a_jpeg_dataset(tmp_path):
    """Pixels of a JPEG dataset are not in memory, but a network's embeddings are: AdaBoost fits
    them (the eval pass streams the images through ffcv)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("test", 3)):
        for c in ("a", "b"):
            d = tmp_path / "imgs" / split / c
            d.mkdir(parents=True)
            for i in range(n):
                px = rng.integers(0, 255, (70, 80, 3), dtype=np.uint8)  # > 64 px: stored as JPEG
                Image.fromarray(px).save(d / f"{i}.png")
    sets = [f"dataset.source={tmp_path / 'imgs'}", "loader.crop_size=16", "loader.batch_size=4"]
    sets += ["score.stats=false", "train.members=2"]
    base = ["run", "imagefolder", "--workspace", str(tmp_path / "ws")]
    base += [x for s in sets for x in ("--set", s)]
    net = ["--set", "train.arch=mlp", "--set", "train.strategy=separate", "--set", "train.epochs=1"]
    assert main([*base, "--run-name", "net", *net]) == 0
    ada = ["--set", "train.strategy=adaboost", "--set", "train.features=net"]
    assert main([*base, "--run-name", "ada", *ada, "--set", "train.epochs=2"]) == 0
    cache = cached(tmp_path / "ws" / "runs" / "net", 1)
    with np.load(cache / "train.npz") as z:
        assert z["x"].shape == (12, 256) and sorted(z["idx"]) == list(range(12))
    shard = shard_path(tmp_path / "ws" / "runs" / "ada", "eval", "test", 1, 2)
    assert len(pq.read_table(shard)) == 6


def test_a_run_without_its_checkpoint_is_refused_before_a_run_folder_is_made(net, capsys):
    import shutil

    # a copy of the network run whose checkpoints were removed (to save space, say)
    shutil.copytree(net / "runs" / "net", net / "runs" / "nockpt")
    shutil.rmtree(net / "runs" / "nockpt" / "checkpoints")
    shutil.rmtree(net / "runs" / "nockpt" / "embeddings")  # with them cached it still works
    err = _refused(net, capsys, ["--learner", "adaboost", "--features", "nockpt"])
    assert "checkpoint" in err and "nockpt" in err
