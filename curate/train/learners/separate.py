"""The separate learner: one model per member, trained one member after another. Any
architecture, data in memory or streamed from ffcv."""

from __future__ import annotations

import torch

from curate.train.learner import Learner, register
from curate.train.learners.neural import NeuralUnit, init_member


class MemberUnit(NeuralUnit):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x[0]).unsqueeze(1)

    def forward_shared(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).unsqueeze(1)


@register("separate")
class SeparateLearner(Learner):
    multilabel = True  # BCE on K-hot targets (NeuralUnit.loss)

    def build(self, members: list[int]) -> MemberUnit:
        (m,) = members
        return MemberUnit(f"member-{m}", [m], init_member(self.setup, m), self.setup)
