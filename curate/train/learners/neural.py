"""What the fused and separate learners share: a torch model trained with the recipe's optimiser
and schedule, one cross-entropy per member (so each member's gradients are as if trained alone),
bf16 autocast where asked, dropout draws seeded per epoch; and `auto`'s choice between the two."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext

import torch
import torch.nn.functional as F

from curate.errors import CurateError
from curate.train.learner import TrainSetup, Unit
from curate.train.logits import Collector, Predictions, k_hot
from curate.train.models import SEQUENTIAL_ARCHS, build_model
from curate.train.precision import choose_precision
from curate.train.schedule import make_optimizer
from curate.train.seeds import dropout_seed


def auto_strategy(arch: str, storage: str, device: torch.device) -> str:
    """fused where it pays (benchmarks/bench_train.py): always on CUDA, on a CPU only for the
    smallest members (grouped convolutions reach 37 % of peak there, a lone small-stvgg 47 %)."""
    fusable = arch in SEQUENTIAL_ARCHS and storage != "jpeg"
    small = arch in ("mlp", "lenet5")
    return "fused" if fusable and (device.type == "cuda" or small) else "separate"


def init_member(setup: TrainSetup, member: int) -> torch.nn.Module:
    """Member m's freshly initialised model, seeded by its own init seed."""
    t = setup.recipe.train
    torch.manual_seed(setup.seeds[member]["init"])
    return build_model(t.arch, setup.feed.in_shape, setup.info.num_classes, t.width, t.dropout)


class NeuralUnit(Unit):
    """A torch model holding the unit's members; subclasses say how a batch goes through it."""

    def __init__(self, name: str, members: list[int], model: torch.nn.Module, setup: TrainSetup):
        super().__init__(name, members)
        t = setup.recipe.train
        model = model.to(setup.device)
        if t.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model, self.setup = model, setup
        self.opt, self.sched = make_optimizer(model.parameters(), t, setup.feed.steps_per_epoch)
        self.bf16 = choose_precision(t.precision, setup.device) == "bf16"
        self.multilabel = setup.info.multilabel

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Sum over the unit's members of each member's mean loss (grads as if trained alone):
        cross-entropy, or for multilabel data binary cross-entropy with logits on the K-hot
        targets (mean over batch and classes)."""
        t = self.setup.recipe.train
        if self.multilabel:
            k = logits.shape[2]
            return sum(
                F.binary_cross_entropy_with_logits(logits[:, j].float(), k_hot(y[j], k))
                for j in range(logits.shape[1])
            )
        return sum(
            F.cross_entropy(logits[:, j].float(), y[j], label_smoothing=t.label_smoothing)
            for j in range(logits.shape[1])
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Each member on its own batch: x (M_u, B, C, H, W) -> logits (B, M_u, K)."""
        raise NotImplementedError

    def forward_shared(self, x: torch.Tensor) -> torch.Tensor:
        """Every member on the same batch: x (B, C, H, W) -> logits (B, M_u, K)."""
        raise NotImplementedError

    def _autocast(self):
        return (
            torch.autocast(self.setup.device.type, dtype=torch.bfloat16)
            if self.bf16
            else nullcontext()
        )

    def fit_epoch(
        self, epoch: int, record: bool, on_step: Callable[[int], object]
    ) -> Predictions | None:
        torch.manual_seed(dropout_seed(self.setup.seeds[self.members[0]], epoch))
        self.model.train()
        forward = Collector(to_cpu=True, multilabel=self.multilabel) if record else None
        for x, y, i in self.setup.feed.train_batches(self.members, epoch):
            with self._autocast():
                logits = self.forward(x)  # (B, M_u, K)
                loss = self.loss(logits, y)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            self.sched.step()
            if forward is not None:
                forward.add(logits.detach().float(), y, i)
            on_step(1)
        if not torch.isfinite(loss):
            raise CurateError(
                f"{self.name}: the loss became {loss.item()} in epoch {epoch}; lower train.lr"
            )
        return forward.result() if forward is not None else None

    @torch.inference_mode()  # no autograd bookkeeping at all: the eval pass only reads
    def predict(self, split: str) -> Predictions:
        self.model.eval()
        out = Collector(multilabel=self.multilabel)
        for x, y, i in self.setup.feed.eval_batches(split):
            with self._autocast():
                logits = self.forward_shared(x).float()  # (B, M_u, K)
            out.add(logits, y, i)
        return out.result()

    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "opt": self.opt.state_dict(),
            "sched": self.sched.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        self.sched.load_state_dict(state["sched"])
