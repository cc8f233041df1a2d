"""Staged learners that are not neural networks (Hacohen et al. §6): AdaBoost (scikit-learn's SAMME
over linear base classifiers) and gradient-boosted trees. Stage e plays the role of epoch e.

Each member is fitted on its own bootstrap sample of the train split (drawn from its order seed,
given as sample weights) with its own random state, to E stages at once in epoch 1; the log of
epoch e is the staged decision function after e stages (`staged_decision_function`,
`staged_predict_proba`), so epochs 2..E cost only the predictions. When AdaBoost stops early (a
perfect or a useless stage), later epochs repeat its last stage.

Features (`train.features`) are the normalised pixels, flattened: `(N, C H W)`, or the
penultimate-layer embeddings of a finished network run on the same dataset (`--features RUN`,
`curate.train.embeddings`: member 0's network, computed once and cached under that run).

    curate train digits --learner adaboost           (or --set train.strategy=gboost)
    curate train digits --learner adaboost --features digits --run-name ada-emb
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from curate.config import Recipe
from curate.data.augment import normalize
from curate.data.loader import DatasetInfo
from curate.errors import CurateError
from curate.train import embeddings
from curate.train.learner import Learner, Unit, register
from curate.train.logits import Predictions, error_norm, logit_stats


def split_features(feed, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x (N, D) float32 normalised pixels, y (N,), idx (N,) of a split held in memory."""
    s = feed.splits[split]
    x = normalize(s.x, s.mean, s.std).float().reshape(len(s), -1)
    return x.cpu().numpy(), s.y.cpu().numpy(), s.idx.cpu().numpy()


def bootstrap_weights(n: int, seed: int) -> np.ndarray:
    """How often each of n instances is drawn in a bootstrap sample of size n, (n,) float64."""
    draws = np.random.default_rng(seed).integers(0, n, n)
    return np.bincount(draws, minlength=n).astype(np.float64)


@dataclass(frozen=True)
class OneClass:
    """A member whose bootstrap sample holds one class (a tiny split, or chance): it predicts that
    class at every stage. scikit-learn cannot fit one class (AdaBoost divides by zero)."""

    label: int
    stages: int


class StagedUnit(Unit):
    """One member: a staged scikit-learn estimator and its staged outputs per split."""

    def __init__(self, name: str, member: int, learner: StagedLearner):
        super().__init__(name, [member])
        self.learner, self.stage, self.model = learner, 0, None
        self.cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # split -> (E_fit, N, K) scores

    def fit_epoch(
        self, epoch: int, record: bool, on_step: Callable[[int], object]
    ) -> Predictions | None:
        if self.model is None:
            self.model = self.learner.fit_member(self.members[0])
        self.stage = epoch
        on_step(1)
        return self.predict("train") if record else None

    def predict(self, split: str) -> Predictions:
        x, y, idx = self.learner.features(split)
        if self.model is None:  # epoch 0: untrained, every class equally likely
            logits = torch.zeros(len(y), 1, self.learner.num_classes)
        else:
            scores = self._staged(split, x)
            logits = torch.from_numpy(scores[min(self.stage, len(scores)) - 1]).unsqueeze(1)
        yt = torch.from_numpy(y).long()
        pred, p_true, margin = logit_stats(logits, yt)
        el2n = error_norm(logits, yt).numpy()
        return Predictions(idx, y, pred.numpy(), p_true.numpy(), margin.numpy(), el2n=el2n)

    def _staged(self, split: str, x: np.ndarray) -> np.ndarray:
        """(stages, N, K) decision scores after each stage, computed once per split."""
        if split not in self.cache:
            self.cache[split] = self.learner.staged_scores(self.model, x)
        return self.cache[split]

    def state_dict(self) -> dict:
        return {"model": self.model, "stage": self.stage}

    def load_state_dict(self, state: dict) -> None:
        self.model, self.stage, self.cache = state["model"], state["stage"], {}


class StagedLearner(Learner):
    """What AdaBoost and gradient boosting share: features, bootstrap samples, staged outputs."""

    takes_features = True

    @classmethod
    def check(cls, recipe: Recipe, info: DatasetInfo) -> None:
        if info.storage == "jpeg" and recipe.train.features == embeddings.PIXELS:
            raise CurateError(
                f"strategy {cls.name} reads pixels in memory; this dataset is stored as JPEG "
                "(train it with a network, fit embeddings with --features RUN, or ingest it raw)"
            )

    def __init__(self, setup):
        super().__init__(setup)
        self.on_pixels = setup.recipe.train.features == embeddings.PIXELS
        if self.on_pixels and not hasattr(setup.feed, "splits"):
            raise CurateError(f"strategy {self.name} needs the dataset in memory")
        self.num_classes = setup.info.num_classes
        self._features: dict[str, tuple] = {}

    @property
    def steps_per_epoch(self) -> int:
        return 1  # one stage

    def features(self, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """x (N, D) float32, y (N,), idx (N,) of a split: pixels or a network run's embeddings."""
        if split not in self._features:
            if self.on_pixels:
                self._features[split] = split_features(self.setup.feed, split)
            else:
                s = self.setup
                if s.ws is None:
                    raise CurateError(f"strategy {self.name} with train.features needs a workspace")
                dataset = s.info.name
                src = embeddings.source_run(s.ws, s.recipe.train.features, dataset)
                self._features.update(embeddings.split_embeddings(s.ws, src, dataset, s.device))
        return self._features[split]

    def build(self, members: list[int]) -> StagedUnit:
        (m,) = members
        return StagedUnit(f"{self.name}-{m}", m, self)

    def fit_member(self, m: int):
        x, y, _ = self.features("train")
        seeds = self.setup.seeds[m]
        est = self.estimator(self.setup.recipe.train.epochs, seeds["init"] % 2**31)
        w = bootstrap_weights(len(y), seeds["order"])
        drawn = w > 0  # the instances of the sample, each weighted by how often it was drawn
        classes = np.unique(y[drawn])
        if len(classes) < 2:
            return OneClass(int(classes[0]), self.setup.recipe.train.epochs)
        return est.fit(x[drawn], y[drawn], sample_weight=w[drawn])

    def staged_scores(self, model, x: np.ndarray) -> np.ndarray:
        """(stages, N, K) scores whose argmax is staged_predict, columns for every class."""
        if isinstance(model, OneClass):  # its class scores 0, every other -1, at every stage
            one = np.full((len(x), self.num_classes), -1.0, np.float32)
            one[:, model.label] = 0.0
            return np.stack([one] * model.stages)
        out = []
        for d in model.staged_decision_function(x):
            d = np.asarray(d, np.float32)
            if d.ndim == 1:  # two classes: one column, positive = classes_[1]
                d = np.stack([-d / 2, d / 2], axis=1)
            # a class absent from the bootstrap sample scores below every other
            full = np.full((len(x), self.num_classes), d.min() - 1, np.float32)
            full[:, model.classes_] = d
            out.append(full)
        return np.stack(out)

    def estimator(self, stages: int, seed: int):
        raise NotImplementedError


@register("adaboost")
class AdaBoostLearner(StagedLearner):
    """AdaBoost (SAMME) with E stages of linear classifiers (ridge regression on one-vs-all
    targets, which accepts the sample weights boosting needs)."""

    def estimator(self, stages: int, seed: int):
        from sklearn.ensemble import AdaBoostClassifier
        from sklearn.linear_model import RidgeClassifier

        return AdaBoostClassifier(
            RidgeClassifier(alpha=1.0), n_estimators=stages, random_state=seed
        )


@register("gboost")
class GradientBoostingLearner(StagedLearner):
    """Histogram gradient-boosted trees, E boosting iterations (K trees each), half the features
    considered per split (seeded), no early stopping."""

    def estimator(self, stages: int, seed: int):
        from sklearn.ensemble import HistGradientBoostingClassifier

        return HistGradientBoostingClassifier(
            max_iter=stages, max_features=0.5, early_stopping=False, random_state=seed
        )
