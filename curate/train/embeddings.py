"""Penultimate-layer embeddings of a finished network run: the features the staged learners
(AdaBoost, gradient boosting) train on under `train.features = "<run>"` (Hacohen et al. §6 fit
AdaBoost both on pixels and on the penultimate layer of a trained network).

The embedding of an image is the input of the network's last linear layer (the logits are that
layer applied to it), from member 0's final checkpoint, in an eval pass (BatchNorm running
statistics, no dropout, no augmentation) over every split, in float32. Member 0 because one
trained network is what Hacohen et al. embed with, and members do not share a feature basis:
averaging their embeddings mixes unrelated coordinates, concatenating them multiplies the width
by M. Member 0 is as good a network as any other (members differ only by seeds).

Embeddings are cached under the network's run folder,
`<run>/embeddings/member=0/epoch=<E>/data=<fingerprint>/<split>.npz` (`x` (N, F) float32, `y`,
`idx` (N,) int64, in eval order), each file written atomically, so a second boosting run reuses
them; the fingerprint is of the ingested dataset's files, so a dataset re-ingested since (`ingest
--force`) is embedded anew, not served stale.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import torch
from torch import nn

from curate import runlog
from curate.config import LoaderConfig, Recipe, TrainConfig
from curate.data.loader import dataset_info
from curate.errors import CurateError
from curate.train import checkpoints
from curate.train.fused import FusedEnsemble, GroupedLinear
from curate.train.models import build_model
from curate.train.seeds import member_seeds
from curate.workspace import Workspace, atomic_path

PIXELS = "pixels"  # train.features value meaning: no network, the normalised pixels
MEMBER = 0  # whose network embeds (see the module docstring)


@dataclasses.dataclass(frozen=True)
class SourceRun:
    """A finished network run whose member 0 embeds the images."""

    name: str
    run_dir: Path
    recipe: Recipe  # the network's own loader and training settings (from its manifest)
    epoch: int  # its last epoch: the checkpoint that embeds
    unit: str  # the checkpoint unit holding member 0 (member-0, fused-0-7, ...)

    def cache_dir(self, ws: Workspace, dataset: str) -> Path:
        base = self.run_dir / "embeddings" / f"member={MEMBER}" / f"epoch={self.epoch}"
        return base / f"data={data_fingerprint(ws, dataset)}"


def data_fingerprint(ws: Workspace, dataset: str) -> str:
    """16 hex digits that change whenever the dataset is ingested again: its dataset.json and the
    size and modification time of each of its files."""
    h = hashlib.blake2b(digest_size=8)
    for p in sorted(ws.dataset_dir(dataset).iterdir()):
        st = p.stat()
        h.update(f"{p.name}:{st.st_size}:{st.st_mtime_ns};".encode())
        if p.name == "dataset.json":
            h.update(p.read_bytes())
    return h.hexdigest()


def source_run(ws: Workspace, run: str, dataset: str) -> SourceRun:
    """The network run `run`, checked: it exists, trained on `dataset`, finished every epoch, and
    has a network checkpoint of member 0.

    Parameters
    ----------
    ws : the workspace holding the run.
    run : the run's name (`train.features`).
    dataset : the dataset the staged learner trains on; the run must have trained on it too.

    Returns
    -------
    SourceRun

    Raises
    ------
    CurateError : unknown run, another dataset, unfinished, or not a network.
    """
    run_dir = ws.run_dir(run)
    manifest = runlog.load_manifest(run_dir)
    if manifest is None:
        have = runlog.run_names(ws.run_dir(run).parent)
        raise CurateError(
            f"train.features = {run!r}: no such run in {ws.root} (runs: {', '.join(have) or 'none'}); "
            f"train a network on {dataset} first (`curate train {dataset} --run-name {run}`), "
            "or use train.features = pixels"
        )
    if manifest.dataset != dataset:
        raise CurateError(
            f"train.features = {run!r}: that run trained on dataset {manifest.dataset!r}, "
            f"not on {dataset!r}; embed with a network run on {dataset}"
        )
    if manifest.recorded:  # curate.Recorder / import-log: the network stayed in the user's loop
        raise CurateError(
            f"train.features = {run!r}: that run was recorded from your own training loop (or "
            "imported), so curate holds none of its weights to embed with; use a run that "
            f"`curate train {dataset}` trained, or train.features = pixels"
        )
    identity = manifest.identity()
    net = _recipe(identity)
    epochs = net.train.epochs
    members = net.train.members
    unfinished = [m for m in range(members) if runlog.last_done_epoch(run_dir, m) < epochs]
    if unfinished:
        m = unfinished[0]
        raise CurateError(
            f"train.features = {run!r}: that run is not finished (member {m} has "
            f"{max(runlog.last_done_epoch(run_dir, m), 0)} of {epochs} epochs); finish it with "
            "the command that started it"
        )
    unit = runlog.read_progress(run_dir, MEMBER)["epochs"][str(epochs)].get("unit", "")
    if not (unit == f"member-{MEMBER}" or unit.startswith(f"fused-{MEMBER}-")):
        raise CurateError(
            f"train.features = {run!r}: that run's strategy {net.train.strategy!r} trained no "
            f"network (its unit is {unit!r}); embed with a fused or separate network run"
        )
    src = SourceRun(run, run_dir, net, epochs, unit)
    ckpt = run_dir / "checkpoints" / unit / f"epoch={epochs}.pt"
    if not ckpt.is_file():
        # needed only when the embeddings are not cached: checked here, before the boosting run's
        # folder is made, not halfway through its first epoch
        cache = src.cache_dir(ws, dataset)
        if not all((cache / f"{s}.npz").is_file() for s in dataset_info(dataset, ws).splits):
            raise CurateError(
                f"train.features = {run!r}: its final checkpoint {ckpt} is gone and its "
                "embeddings are not cached; retrain that run (delete its folder and rerun the "
                "command that made it) or embed with another"
            )
    return src


def _recipe(identity: dict) -> Recipe:
    """The network run's recipe from its manifest's identity (keys added since it was written keep their
    defaults; the dataset section is not needed: the dataset is ingested already)."""
    known_l = {f.name for f in dataclasses.fields(LoaderConfig)}
    known_t = {f.name for f in dataclasses.fields(TrainConfig)}
    loader = LoaderConfig(**{k: v for k, v in identity["loader"].items() if k in known_l})
    # the eval pass needs no curriculum or subset (whose files may be gone by now)
    skip = ("curriculum", "subset", "log_splits")
    train = TrainConfig(
        **{k: v for k, v in identity["train"].items() if k in known_t and k not in skip}
    )
    return Recipe(loader=loader, train=train)


def split_embeddings(
    ws: Workspace, src: SourceRun, dataset: str, device: torch.device
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Every split's (x (N, F) float32, y (N,), idx (N,)), from the cache or computed and cached.

    Parameters
    ----------
    ws : the workspace.
    src : the network run (`source_run`).
    dataset : its dataset.
    device : where the eval pass runs.
    """
    info = dataset_info(dataset, ws)
    cache = src.cache_dir(ws, dataset)
    paths = {s: cache / f"{s}.npz" for s in info.splits}
    if not all(p.exists() for p in paths.values()):
        model = load_member(src, info, device)
        from curate.train.feed import make_feed

        seeds = {m: member_seeds(src.recipe.train.seed, m) for m in range(src.recipe.train.members)}
        feed = make_feed(info, ws, src.recipe, device, seeds)
        for s, path in paths.items():
            if path.exists():
                continue
            x, y, idx = embed(model, feed.eval_batches(s))
            with atomic_path(path) as tmp, open(tmp, "wb") as f:  # a handle: savez adds no suffix
                np.savez(f, x=x, y=y, idx=idx)
    out = {}
    for s, path in paths.items():
        try:
            with np.load(path) as z:
                out[s] = (z["x"], z["y"], z["idx"])
        except (OSError, ValueError, KeyError) as e:
            raise CurateError(
                f"cached embeddings {path} are unreadable ({e}); delete {cache} to recompute them"
            ) from None
    return out


def load_member(src: SourceRun, info, device: torch.device) -> nn.Module:
    """Member 0's network at its last epoch, in eval mode: a plain model, or the fused model
    holding it (member 0 is the first member of its fused unit)."""
    t = src.recipe.train
    state = checkpoints.load(src.run_dir, src.unit, src.epoch)["model"]
    in_shape = _in_shape(src, info)
    if src.unit.startswith("fused-"):
        # a GroupedLinear's weight is the only 3-d tensor of a fused model: (M_u, O, I)
        n = next(int(v.shape[0]) for v in state.values() if v.ndim == 3)
        model: nn.Module = FusedEnsemble(
            [build_model(t.arch, in_shape, info.num_classes, t.width, t.dropout) for _ in range(n)]
        )
    else:
        model = build_model(t.arch, in_shape, info.num_classes, t.width, t.dropout)
    model.load_state_dict(state)
    return model.to(device).eval()


def _in_shape(src: SourceRun, info) -> tuple[int, int, int]:
    if info.storage == "jpeg":
        return (3, src.recipe.loader.crop_size, src.recipe.loader.crop_size)
    h, w, c = info.shape
    return (c, h, w)


def last_linear(model: nn.Module) -> nn.Module:
    """The layer that maps the embedding to the logits: a fused model's final GroupedLinear, else
    the last nn.Linear registered (torchvision's fc / classifier, a Sequential's last Linear)."""
    if isinstance(model, FusedEnsemble):
        return model.body[-1]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear | GroupedLinear)]
    if not linears:
        raise CurateError(f"{type(model).__name__} has no linear layer to take embeddings from")
    return linears[-1]


@torch.inference_mode()
def embed(model: nn.Module, batches) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The input of `model`'s last linear layer for every image of `batches` (float32).

    Parameters
    ----------
    model : a network in eval mode, plain (x (B, C, H, W) -> (B, K)) or fused (member 0 taken).
    batches : (x, y, idx) eval batches.

    Returns
    -------
    x (N, F) float32, y (N,) int64, idx (N,) int64.
    """
    head = last_linear(model)
    got: list[torch.Tensor] = []
    hook = head.register_forward_pre_hook(lambda _m, inp: got.append(inp[0]))
    xs, ys, ids = [], [], []
    try:
        for x, y, i in batches:
            got.clear()
            if isinstance(model, FusedEnsemble):
                model.forward_shared(x.float())
                h = got[-1][:, MEMBER]  # (B, M_u, F) -> member 0's (B, F)
            else:
                model(x.float())
                h = got[-1]
            xs.append(h.float().reshape(len(h), -1).cpu().numpy())
            ys.append(y.cpu().numpy().astype(np.int64))
            ids.append(i.cpu().numpy().astype(np.int64))
    finally:
        hook.remove()
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(ids)
