"""The fused learner: a unit's members as one model with grouped convolutions and per-member
BatchNorm (`curate.train.fused.FusedEnsemble`), each member on its own batch. Trains exactly like
the members one by one; needs a sequential architecture and the data in memory."""

from __future__ import annotations

import torch

from curate.config import Recipe
from curate.data.loader import DatasetInfo
from curate.errors import CurateError
from curate.train.fused import FusedEnsemble
from curate.train.learner import Learner, register
from curate.train.learners.neural import NeuralUnit, init_member
from curate.train.models import SEQUENTIAL_ARCHS


class FusedUnit(NeuralUnit):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def forward_shared(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_shared(x)


@register("fused")
class FusedLearner(Learner):
    multilabel = True  # BCE on K-hot targets (NeuralUnit.loss)

    @classmethod
    def check(cls, recipe: Recipe, info: DatasetInfo) -> None:
        if recipe.train.arch not in SEQUENTIAL_ARCHS or info.storage == "jpeg":
            raise CurateError(
                f"strategy fused needs a sequential architecture ({', '.join(SEQUENTIAL_ARCHS)}) "
                "and raw or float storage; use --set train.strategy=separate"
            )

    def groups(self, members: list[int]) -> list[list[int]]:
        """Every member of this rank in one model, or in models of `train.fuse_members`."""
        k = self.setup.recipe.train.fuse_members or len(members)
        return [list(members[i : i + k]) for i in range(0, len(members), k)]

    def build(self, members: list[int]) -> FusedUnit:
        model = FusedEnsemble([init_member(self.setup, m) for m in members])
        return FusedUnit(f"fused-{members[0]}-{members[-1]}", members, model, self.setup)
