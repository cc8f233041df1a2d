"""The learner interface: how a strategy builds members, fits them one epoch (or stage) at a time
and predicts a split, and the registry that `train.strategy` names a learner in.

A new learner is one file::

    @register("nearest-mean")
    class NearestMean(Learner):
        def build(self, members):          # a Unit holding these members
            ...

and `--set train.strategy=nearest-mean` trains with it; the epoch loop (`curate.train.loop`),
checkpoints and the prediction log are the same for every learner.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import torch

from curate.config import Recipe
from curate.data.loader import DatasetInfo
from curate.errors import CurateError
from curate.train.feed import Feed
from curate.train.logits import Predictions
from curate.workspace import Workspace


@dataclass(frozen=True)
class TrainSetup:
    """What every learner is built from."""

    recipe: Recipe
    info: DatasetInfo
    feed: Feed  # batches of every split
    seeds: dict[int, dict[str, int]]  # member -> its seeds (curate.train.seeds.member_seeds)
    device: torch.device
    ws: Workspace | None = None  # the workspace, for learners that read more than the feed


class Unit(ABC):
    """One trainable thing holding one or more members: a fused model, one member's model, one
    estimator. Its state after each epoch is checkpointed; its predictions are logged."""

    def __init__(self, name: str, members: list[int]):
        self.name = name  # names the checkpoint folder: unique within a run
        self.members = list(members)

    @abstractmethod
    def fit_epoch(
        self, epoch: int, record: bool, on_step: Callable[[int], object]
    ) -> Predictions | None:
        """Train epoch (or stage) `epoch` (1-based); call on_step(1) after each step.

        Returns the training forward pass's predictions when `record`, else None.
        """

    @abstractmethod
    def predict(self, split: str) -> Predictions:
        """Every member's prediction on every instance of `split` (deterministic, no augmentation)."""

    @abstractmethod
    def state_dict(self) -> dict:
        """Everything needed to continue training from here (a torch.save-able dict)."""

    @abstractmethod
    def load_state_dict(self, state: dict) -> None: ...


class Learner(ABC):
    """A training strategy: groups members into units and builds them."""

    name = ""  # set by @register
    # trains on multilabel data (class-set bitmask labels, curate.data.formats.voc): the neural learners
    multilabel = False
    takes_features = False  # fits train.features (a network run's embeddings), not only pixels

    def __init__(self, setup: TrainSetup):
        self.setup = setup

    @classmethod
    def check(cls, recipe: Recipe, info: DatasetInfo) -> None:
        """Raise CurateError when this learner cannot train `recipe` on this dataset (before any
        data is loaded). The default accepts everything."""
        return None

    def groups(self, members: list[int]) -> list[list[int]]:
        """The members of each unit, in training order; default: one unit per member."""
        return [[m] for m in members]

    @property
    def steps_per_epoch(self) -> int:
        """Steps per epoch, for the progress bar."""
        return self.setup.feed.steps_per_epoch

    @abstractmethod
    def build(self, members: list[int]) -> Unit:
        """A freshly initialised unit holding `members` (one group of `groups`)."""


_LEARNERS: dict[str, type[Learner]] = {}


def register(name: str) -> Callable[[type[Learner]], type[Learner]]:
    """Class decorator: make a Learner subclass available as `train.strategy = name`."""

    def add(cls: type[Learner]) -> type[Learner]:
        if name == "auto":
            raise ValueError("'auto' picks a learner; it cannot name one")
        cls.name = name
        _LEARNERS[name] = cls
        return cls

    return add


def learner_names() -> list[str]:
    return list(_LEARNERS)


def learner_class(name: str) -> type[Learner]:
    if name not in _LEARNERS:
        raise CurateError(
            f"train.strategy = {name!r}; choose auto or one of: {', '.join(_LEARNERS)}"
        )
    return _LEARNERS[name]
