"""The PyTorch Lightning and Hugging Face callbacks: a small real fit of each (CPU, seconds) records
a run that `curate score` scores, epoch 0 before training and one part per epoch after."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
import torch

from curate.cli import main
from curate.record.recorder import Recorder
from curate.train import predlog

K, N_TRAIN, N_TEST, M, E = 3, 60, 30, 2, 2


@pytest.fixture()
def blobs(tmp_path):
    """A labels-only dataset of 3 Gaussian blobs in 4-d, and its features (idx order)."""
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=3, size=(K, 4))
    feats, rows = {}, []
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        y = np.arange(n) % K
        feats[split] = (centres[y] + rng.normal(size=(n, 4))).astype(np.float32), y
        rows += [(split, i, int(y[i])) for i in range(n)]
    pd.DataFrame(rows, columns=["split", "idx", "label"]).to_csv(tmp_path / "l.csv", index=False)
    ws = tmp_path / "ws"
    assert main(["ingest", "labels", "--labels", str(tmp_path / "l.csv"), "--name", "blobs",
                 "--workspace", str(ws)]) == 0  # fmt: skip
    return ws, feats


def eval_loaders(feats):
    from torch.utils.data import DataLoader, TensorDataset

    return {
        s: DataLoader(
            TensorDataset(torch.from_numpy(x), torch.from_numpy(y), torch.arange(len(y))),
            batch_size=16,
            shuffle=True,  # any order: the recorder places rows by idx
        )
        for s, (x, y) in feats.items()
    }


def check_scored(ws: Path, run: str) -> None:
    assert main(["score", run, "--workspace", str(ws)]) == 0
    con = duckdb.connect(str(ws / "catalog.duckdb"), read_only=True)
    try:
        n = con.execute("SELECT count(*) FROM instance_scores WHERE run = ?", [run]).fetchone()
        done = con.execute("SELECT min(epochs_done) FROM members WHERE run = ?", [run]).fetchone()
    finally:
        con.close()
    assert n == (N_TRAIN + N_TEST,) and done == (E,)
    run_dir = ws / "runs" / run
    a = pd.read_parquet(predlog.shard_path(run_dir, "eval", "train", 0, 0))
    b = pd.read_parquet(predlog.shard_path(run_dir, "eval", "train", 0, E))
    assert b["p_true"].mean() > a["p_true"].mean()  # it learned between epoch 0 and E


@pytest.mark.slow  # importing Lightning alone takes seconds
def test_lightning_callback(blobs):
    L = pytest.importorskip("lightning.pytorch")
    from curate.record.lightning import RecorderCallback

    ws, feats = blobs
    from torch.utils.data import DataLoader, TensorDataset

    class Net(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.f = torch.nn.Sequential(
                torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, K)
            )

        def forward(self, x):
            return self.f(x)

        def training_step(self, batch, _):
            x, y, _idx = batch
            return torch.nn.functional.cross_entropy(self(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    x, y = feats["train"]
    train = DataLoader(TensorDataset(torch.from_numpy(x), torch.from_numpy(y), torch.arange(len(y))),
                       batch_size=8, shuffle=True)  # fmt: skip
    rec = Recorder(ws, run="pl", dataset="blobs", members=M, epochs=E, arch="mlp16")
    for m in range(M):
        torch.manual_seed(m)
        trainer = L.Trainer(
            max_epochs=E,
            accelerator="cpu",
            callbacks=[RecorderCallback(rec, m, eval_loaders(feats))],
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        trainer.fit(Net(), train)
    assert rec.close().complete
    check_scored(ws, "pl")


def test_hf_trainer_callback(blobs, tmp_path):
    transformers = pytest.importorskip("transformers")
    from curate.record.hf import HFRecorderCallback

    ws, feats = blobs

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.f = torch.nn.Sequential(
                torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, K)
            )

        def forward(self, x, labels=None):
            logits = self.f(x)
            out = {"logits": logits}
            if labels is not None:
                out["loss"] = torch.nn.functional.cross_entropy(logits, labels)
            return out

    class Rows(torch.utils.data.Dataset):
        def __init__(self, split):
            self.x, self.y = feats[split]

        def __len__(self):
            return len(self.y)

        def __getitem__(self, i):
            return {"x": torch.from_numpy(self.x[i]), "labels": int(self.y[i]), "idx": i}

    def collate(items):
        return {k: torch.stack([torch.as_tensor(it[k]) for it in items]) for k in items[0]}

    loaders = {s: torch.utils.data.DataLoader(Rows(s), batch_size=16, collate_fn=collate)
               for s in feats}  # fmt: skip
    rec = Recorder(ws, run="hf", dataset="blobs", members=M, epochs=E, arch="mlp16")
    for m in range(M):
        torch.manual_seed(m)
        args = transformers.TrainingArguments(
            output_dir=str(tmp_path / f"hf{m}"),
            num_train_epochs=E,
            per_device_train_batch_size=8,
            learning_rate=0.05,
            report_to=[],
            save_strategy="no",
            use_cpu=True,
            disable_tqdm=True,
            remove_unused_columns=False,
            logging_strategy="no",
        )
        trainer = transformers.Trainer(
            model=Net(),
            args=args,
            train_dataset=Rows("train"),
            data_collator=lambda items: {k: v for k, v in collate(items).items() if k != "idx"},
            callbacks=[HFRecorderCallback(rec, m, loaders)],
        )
        trainer.train()
    assert rec.close().complete
    check_scored(ws, "hf")
