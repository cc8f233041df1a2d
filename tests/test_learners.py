"""A new learner is a class registered outside the epoch loop: here a nearest-class-mean classifier
on the pixels, trained through the normal `train()` entry point and scored like any run."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import torch

from curate import catalog
from curate.cli import main
from curate.config import load_recipe
from curate.train.learner import Learner, TrainSetup, Unit, register
from curate.train.logits import Collector, Predictions
from curate.train.run import train
from curate.workspace import Workspace


class NearestMeanUnit(Unit):
    """One member: running per-class sums of the flattened training images it has seen; logits are
    minus the squared distance to each class mean. An epoch adds the member's batches."""

    def __init__(self, members: list[int], setup: TrainSetup):
        super().__init__(f"nearest-mean-{members[0]}", members)
        self.setup = setup
        k, d = setup.info.num_classes, int(np.prod(setup.feed.in_shape))
        self.sums = torch.zeros(k, d, dtype=torch.float64)
        self.counts = torch.zeros(k, dtype=torch.float64)

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        means = (self.sums / self.counts.clamp(min=1)[:, None]).float()
        return -torch.cdist(x.flatten(1).float(), means).square().unsqueeze(1)  # (B, 1, K)

    def fit_epoch(self, epoch, record, on_step) -> Predictions | None:
        forward = Collector() if record else None
        for x, y, i in self.setup.feed.train_batches(self.members, epoch):
            flat = x[0].flatten(1).double()
            self.sums.index_add_(0, y[0], flat)
            self.counts += torch.bincount(y[0], minlength=len(self.counts)).double()
            if forward is not None:
                forward.add(self._logits(x[0]), y, i)
            on_step(1)
        return forward.result() if forward is not None else None

    def predict(self, split: str) -> Predictions:
        out = Collector()
        for x, y, i in self.setup.feed.eval_batches(split):
            out.add(self._logits(x), y, i)
        return out.result()

    def state_dict(self) -> dict:
        return {"sums": self.sums, "counts": self.counts}

    def load_state_dict(self, state: dict) -> None:
        self.sums, self.counts = state["sums"], state["counts"]


@register("nearest-mean")
class NearestMean(Learner):
    def build(self, members: list[int]) -> NearestMeanUnit:
        return NearestMeanUnit(members, self.setup)


def test_a_registered_learner_trains_and_scores_without_touching_the_loop(digits_ws):
    ws = Workspace.resolve(digits_ws)
    recipe = load_recipe(
        "digits",
        {"train": {"members": 3, "epochs": 2, "strategy": "nearest-mean", "log_train_pass": True}},
    )
    run_dir = train(recipe, ws, run="ncm", quiet=True)

    n = {"train": 1438, "test": 359}
    for split in n:
        for m in range(3):
            for e in range(3):
                shard = pq.read_table(
                    run_dir
                    / f"predictions/pass=eval/split={split}/member={m}/epoch={e}/part.parquet"
                ).to_pandas()
                assert len(shard) == n[split] and shard["idx"].is_unique
    fwd = pq.read_table(
        run_dir / "predictions/pass=train-forward/split=train/member=1/epoch=2/part.parquet"
    ).to_pandas()
    assert len(fwd) == (1438 // 64) * 64 and fwd["idx"].is_monotonic_increasing
    assert (run_dir / "checkpoints/nearest-mean-2/epoch=2.pt").exists()

    assert main(["score", "ncm", "--workspace", str(digits_ws)]) == 0
    con = catalog.read(Workspace(digits_ws))
    try:
        assert con.execute("SELECT strategy FROM runs WHERE run = 'ncm'").fetchall() == [
            ("nearest-mean",)
        ]
        rows = con.execute(
            "SELECT split, count(*), avg(accessibility) FROM instance_scores WHERE run = 'ncm' "
            "GROUP BY split ORDER BY split"
        ).fetchall()
        acc = con.execute(
            "SELECT acc_mean FROM epoch_metrics WHERE run = 'ncm' AND split = 'test' AND epoch = 2"
        ).fetchone()[0]
    finally:
        con.close()
    assert [(s, c) for s, c, _ in rows] == [("test", n["test"]), ("train", n["train"])]
    assert acc > 0.8  # class means separate digits well
    assert all(0 < a <= 1 for _, _, a in rows)
