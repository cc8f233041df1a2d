"""Train an ensemble and log every member's prediction on every instance after every epoch.

A run trains "units": one fused model holding several members (strategy fused) or one model per
member (strategy separate). Both read the same per-member data order (member m, epoch e: the
permutation `default_rng(order_seed_m + e - 1)`, as ffcv's RANDOM order) and augmentation, so a
member's training does not depend on the strategy. After each epoch, and at epoch 0 before
training, the eval pass logs pred, p_true and margin for every instance of every split.

Resuming: a unit restarts from its last complete epoch (shards written, checkpoint saved,
progress recorded), so a killed run rerun with the same command ends with the same log.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from curate import db
from curate.config import Recipe
from curate.data.augment import augment, normalize
from curate.data.loader import DatasetInfo, dataset_info, make_loader
from curate.errors import CurateError
from curate.locks import run_lock
from curate.train import predlog
from curate.train.fused import FusedEnsemble
from curate.train.models import SEQUENTIAL_ARCHS, build_model
from curate.train.schedule import make_optimizer
from curate.workspace import Workspace, atomic_path

# ----------------------------------------------------------------------------- seeds


def member_seeds(seed: int, member: int) -> dict[str, int]:
    """Independent seeds of member m, derived from the recipe seed."""
    init, order, aug, drop = np.random.SeedSequence([seed, member]).generate_state(4)
    return {"init": int(init), "order": int(order % 2**31), "aug": int(aug), "dropout": int(drop)}


# ----------------------------------------------------------------------------- data


class InMemorySplit:
    """A whole split as one tensor (uint8 or float32, (N, C, H, W)) on the training device."""

    def __init__(self, info: DatasetInfo, split: str, ws: Workspace, device: torch.device):
        from curate.config import LoaderConfig

        ld = make_loader(
            info.name, split, "eval", ws, LoaderConfig(normalize=False), batch_size=4096
        )
        xs, ys, ids = [], [], []
        for x, y, i in ld:
            xs.append(x.to(torch.uint8) if info.storage == "raw-uint8" else x)
            ys.append(y)
            ids.append(i)
        self.x = torch.cat(xs).contiguous(memory_format=torch.channels_last).to(device)
        self.y = torch.cat(ys).to(device)
        self.idx = torch.cat(ids).to(device)
        self.mean = torch.tensor(info.mean, dtype=torch.float32, device=device)
        self.std = torch.tensor(info.std, dtype=torch.float32, device=device)

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class Unit:
    """One model holding `members` (one member unless fused)."""

    name: str
    members: list[int]
    model: torch.nn.Module
    fused: bool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (M_u, B, C, H, W) -> logits (B, M_u, K)."""
        return self.model(x) if self.fused else self.model(x[0]).unsqueeze(1)

    def forward_shared(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_shared(x) if self.fused else self.model(x).unsqueeze(1)


# ----------------------------------------------------------------------------- the run


def _device(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise CurateError(
                "train.device = cuda but no CUDA device is visible; use --device cpu or auto"
            )
        return torch.device("cuda", local_rank)
    if name != "cpu":
        raise CurateError(f"train.device = {name!r}; choose cpu, cuda or auto")
    return torch.device("cpu")


def _check_recipe(recipe: Recipe) -> None:
    t = recipe.train
    if t.epochs < 1:
        raise CurateError(f"train.epochs = {t.epochs}; train at least 1 epoch")
    if t.members < 2:
        raise CurateError(f"train.members = {t.members}; agreement needs at least 2 members")
    if t.strategy not in ("auto", "separate", "fused"):
        raise CurateError(f"train.strategy = {t.strategy!r}; choose auto, separate or fused")
    if t.precision not in ("auto", "fp32", "bf16"):
        raise CurateError(f"train.precision = {t.precision!r}; choose auto, fp32 or bf16")
    from curate.train.models import ARCHS

    if t.arch not in ARCHS:
        raise CurateError(f"unknown architecture {t.arch!r}; choose one of: {', '.join(ARCHS)}")


def run_identity(recipe: Recipe, dataset: str) -> dict:
    """What makes two runs the same: the dataset, the loader and the training settings."""
    train = {
        k: v for k, v in dataclasses.asdict(recipe.train).items() if k not in ("device", "threads")
    }
    return {
        "dataset": dataset,
        "loader": {
            k: v
            for k, v in dataclasses.asdict(recipe.loader).items()
            if k not in ("workers", "os_cache")
        },
        "train": train,
    }


def prepare_run_dir(ws: Workspace, run: str, identity: dict) -> Path:
    run_dir = ws.run_dir(run)
    rec = run_dir / "run.json"
    if rec.exists():
        old = json.loads(rec.read_text())
        if old != json.loads(json.dumps(identity)):
            diff = [
                f"{s}.{k}"
                for s in identity
                if isinstance(identity[s], dict)
                for k in identity[s]
                if old.get(s, {}).get(k) != identity[s][k]
            ]
            if old.get("dataset") != identity["dataset"]:
                diff.insert(0, "dataset")
            raise CurateError(
                f"run {run!r} in {run_dir} was made with a different recipe (differs in: "
                f"{', '.join(diff) or 'settings'}); pass --run-name NEW_NAME to keep both, or delete "
                f"{run_dir} to start over"
            )
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(rec) as tmp:
            tmp.write_text(json.dumps(identity, indent=1))
    return run_dir


def _dist():
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return world, rank, local


def _build_units(
    recipe: Recipe, info: DatasetInfo, in_shape, my_members: list[int], fused: bool
) -> list[Unit]:
    t = recipe.train
    members = []
    for m in my_members:
        torch.manual_seed(member_seeds(t.seed, m)["init"])
        members.append(build_model(t.arch, in_shape, info.num_classes, t.width, t.dropout))
    if fused:
        return [
            Unit(
                f"fused-{my_members[0]}-{my_members[-1]}",
                list(my_members),
                FusedEnsemble(members),
                True,
            )
        ]
    return [
        Unit(f"member-{m}", [m], mod, False) for m, mod in zip(my_members, members, strict=True)
    ]


@torch.no_grad()
def eval_pass(unit: Unit, data, autocast, batch: int):
    """Every instance once, in order. Returns idx (N,), labels (N,), pred, p_true, margin each (M_u, N)."""
    unit.model.eval()
    preds, ptrue, margins, ids, ys = [], [], [], [], []
    for x, y, i in data:
        with autocast:
            logits = unit.forward_shared(x).float()  # (B, M_u, K)
        p, pt, mg = logit_stats(logits, y)
        preds.append(p)
        ptrue.append(pt)
        margins.append(mg)
        ids.append(i)
        ys.append(y)
    cat = lambda xs: torch.cat(xs, 1).cpu().numpy()  # noqa: E731
    return (
        torch.cat(ids).cpu().numpy(),
        torch.cat(ys).cpu().numpy(),
        cat(preds),
        cat(ptrue),
        cat(margins),
    )


def logit_stats(logits: torch.Tensor, y: torch.Tensor):
    """logits (B, M, K), y (B,) or (M, B) -> pred, p_true, margin each (M, B).

    margin = true logit minus the largest other logit (> 0 exactly when correct, ties aside).
    """
    logits = logits.transpose(0, 1)  # (M, B, K)
    y = y.expand(logits.shape[0], -1) if y.dim() == 1 else y
    true_logit = logits.gather(2, y.unsqueeze(2)).squeeze(2)
    others = logits.scatter(2, y.unsqueeze(2), float("-inf"))
    p_true = torch.softmax(logits, 2).gather(2, y.unsqueeze(2)).squeeze(2)
    return logits.argmax(2), p_true, true_logit - others.max(2).values


def _in_memory_eval_batches(split: InMemorySplit, batch: int):
    for s in range(0, len(split), batch):
        x = normalize(split.x[s : s + batch], split.mean, split.std)
        yield (
            x.contiguous(memory_format=torch.channels_last),
            split.y[s : s + batch],
            split.idx[s : s + batch],
        )


@dataclass
class Paced:
    """A curriculum: positions in the train split (easiest first) and the pacing g(step)."""

    order: np.ndarray
    pacing: object


def load_paced(path: str, split_idx: np.ndarray, steps_per_epoch: int, epochs: int) -> Paced:
    """Read an exported ordering and its sidecar; map its idx to row positions of the train split."""
    from curate.curriculum import load_ordering, load_sidecar, pacing_function

    idx = load_ordering(path)
    side = load_sidecar(path if Path(path).suffix else Path(path).with_suffix(".npy"))
    pos = np.searchsorted(split_idx, idx)
    if np.any(pos >= len(split_idx)) or not np.array_equal(
        split_idx[np.minimum(pos, len(split_idx) - 1)], idx
    ):
        raise CurateError(
            f"curriculum {path} names instances this dataset's train split does not have; "
            "export it from a run on the same dataset"
        )
    pacing = pacing_function(
        side["pacing"], len(idx), steps_per_epoch * epochs, **side.get("pacing_params", {})
    )
    return Paced(pos, pacing)


def _in_memory_train_batches(
    split: InMemorySplit,
    members: list[int],
    seeds: dict,
    epoch: int,
    recipe: Recipe,
    paced: Paced | None = None,
):
    """Member m's batches of epoch e (1-based): its own permutation (or curriculum draws) and augmentation."""
    from curate.curriculum import curriculum_batch

    b = recipe.loader.batch_size
    n = len(split)
    steps = n // b
    if paced is None:
        perms = [
            np.random.default_rng(seeds[m]["order"] + epoch - 1).permutation(n) for m in members
        ]
    gens = [torch.Generator().manual_seed(seeds[m]["aug"] * 1_000_003 + epoch - 1) for m in members]
    flip, tr = recipe.loader.flip, recipe.loader.translate
    for t in range(steps):
        xs, ys, ids = [], [], []
        for j, (m, g) in enumerate(zip(members, gens, strict=True)):
            if paced is None:
                rows = perms[j][t * b : (t + 1) * b]
            else:  # drawn from the g(step) easiest, seeded per member and step
                rows = curriculum_batch(
                    paced.order, (epoch - 1) * steps + t, b, paced.pacing, seeds[m]["order"]
                )
            rows = torch.from_numpy(rows).to(split.x.device)
            x = augment(split.x[rows], g, flip, tr)
            xs.append(normalize(x, split.mean, split.std))
            ys.append(split.y[rows])
            ids.append(split.idx[rows])
        yield torch.stack(xs), torch.stack(ys), torch.stack(ids)


def _stream_train_batches(loader, epoch: int):
    loader.set_epoch(epoch - 1)
    for x, y, i in loader:
        yield x.unsqueeze(0), y.unsqueeze(0), i.unsqueeze(0)


def _save_checkpoint(run_dir: Path, unit: Unit, opt, sched, epoch: int) -> None:
    d = run_dir / "checkpoints" / unit.name
    with atomic_path(d / f"epoch={epoch}.pt") as tmp:
        torch.save(
            {
                "epoch": epoch,
                "model": unit.model.state_dict(),
                "opt": opt.state_dict(),
                "sched": sched.state_dict(),
            },
            tmp,
        )
    for old in d.glob("epoch=*.pt"):
        if old.name != f"epoch={epoch}.pt":
            old.unlink()


def _load_checkpoint(run_dir: Path, unit: Unit, opt, sched, epoch: int) -> None:
    path = run_dir / "checkpoints" / unit.name / f"epoch={epoch}.pt"
    if not path.exists():
        raise CurateError(
            f"{path} is missing although epoch {epoch} is recorded as done; delete "
            f"{run_dir / 'progress'} entries after epoch {epoch - 1} or the run folder, then rerun"
        )
    state = torch.load(path, map_location="cpu", weights_only=False)
    unit.model.load_state_dict(state["model"])
    opt.load_state_dict(state["opt"])
    sched.load_state_dict(state["sched"])


def train(recipe: Recipe, ws: Workspace, run: str | None = None, quiet: bool = False) -> Path:
    """Train (or resume) the run of `recipe`; returns the run folder. Rank 0 records it in the catalog.

    One process (one per torchrun rank) trains a run at a time: a second is refused at once. Rank 0
    checks that the catalog can record the run before it trains, not after.
    """
    run = run or recipe.name
    _, rank, _ = _dist()
    with run_lock(ws.run_dir(run), rank):
        if rank == 0:
            db.check_writable(ws)
        return _train_locked(recipe, ws, run, quiet)


def _train_locked(recipe: Recipe, ws: Workspace, run: str, quiet: bool) -> Path:
    _check_recipe(recipe)
    t = recipe.train
    world, rank, local_rank = _dist()
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if t.device != "cpu" and torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    device = _device(t.device, local_rank)
    torch.set_num_threads(t.threads or max(1, (os.cpu_count() or 1) // world))
    from curate.data.ingest import default_name

    dataset = default_name(recipe.dataset)
    info = dataset_info(dataset, ws)
    run = run or recipe.name
    identity = run_identity(recipe, dataset)
    run_dir = prepare_run_dir(ws, run, identity) if rank == 0 else ws.run_dir(run)
    if world > 1:
        torch.distributed.barrier()
    splits = list(info.splits)
    if "train" not in splits:
        raise CurateError(f"dataset {dataset!r} has no 'train' split (splits: {', '.join(splits)})")

    in_memory = info.storage != "jpeg"
    fusable = t.arch in SEQUENTIAL_ARCHS
    # auto: fused where it pays (benchmarks/bench_train.py): always on CUDA, on a CPU only for the
    # smallest members (grouped convolutions reach 38 % of peak there, a lone small-stvgg 57 %)
    small = t.arch in ("mlp", "lenet5")
    auto = "fused" if fusable and in_memory and (device.type == "cuda" or small) else "separate"
    strategy = t.strategy if t.strategy != "auto" else auto
    if strategy == "fused" and not (fusable and in_memory):
        raise CurateError(
            f"strategy fused needs a sequential architecture ({', '.join(SEQUENTIAL_ARCHS)}) "
            "and raw or float storage; use --set train.strategy=separate"
        )
    my_members = [m for m in range(t.members) if m % world == rank]
    seeds = {m: member_seeds(t.seed, m) for m in range(t.members)}
    todo = [m for m in my_members if predlog.last_done_epoch(run_dir, m) < t.epochs]

    autocast = nullcontext()
    use_bf16 = t.precision == "bf16" or (t.precision == "auto" and device.type == "cuda")
    if use_bf16:
        autocast = torch.autocast(device.type, dtype=torch.bfloat16)

    if in_memory:
        data = {s: InMemorySplit(info, s, ws, device) for s in splits} if todo else {}
        in_shape = tuple(data["train"].x.shape[1:]) if todo else None
        steps = len(data["train"]) // recipe.loader.batch_size if todo else 0
    else:
        in_shape = (3, recipe.loader.crop_size, recipe.loader.crop_size)
        steps = info.splits["train"] // recipe.loader.batch_size
    if todo and steps == 0:
        raise CurateError(
            f"loader.batch_size = {recipe.loader.batch_size} exceeds the {info.splits['train']} "
            "training instances; lower it"
        )

    paced = None
    if t.curriculum and todo:
        split_idx = (
            data["train"].idx.cpu().numpy()
            if in_memory
            else db.split_labels(ws, dataset, "train")[0]
        )
        paced = load_paced(t.curriculum, split_idx, steps, t.epochs)
    units = _build_units(recipe, info, in_shape, todo, strategy == "fused") if todo else []
    total = sum(
        (t.epochs - max(0, predlog.last_done_epoch(run_dir, u.members[0]))) * steps for u in units
    )
    bar = tqdm(
        total=total,
        desc=f"train {run}",
        unit="step",
        disable=quiet or rank != 0,
        dynamic_ncols=True,
    )
    for unit in units:
        _train_unit(
            unit,
            recipe,
            ws,
            run_dir,
            info,
            data if in_memory else None,
            seeds,
            steps,
            device,
            autocast,
            bar,
            paced,
        )
    bar.close()
    if world > 1:
        torch.distributed.barrier()
    if rank == 0:
        from curate.train.catalog import record_run

        record_run(ws, run, run_dir, recipe, dataset, strategy, device, identity)
    return run_dir


def _train_unit(
    unit: Unit,
    recipe: Recipe,
    ws: Workspace,
    run_dir: Path,
    info: DatasetInfo,
    data,
    seeds,
    steps: int,
    device,
    autocast,
    bar,
    paced: Paced | None = None,
) -> None:
    t = recipe.train
    model = unit.model.to(device)
    if t.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt, sched = make_optimizer(model.parameters(), t, steps)
    start = predlog.last_done_epoch(run_dir, unit.members[0])
    if start >= 0:
        _load_checkpoint(run_dir, unit, opt, sched, start)
    ebatch = recipe.loader.eval_batch_size
    splits = list(info.splits)

    if data is None:  # stream from .beton (large images): one member per unit
        train_loader = make_loader(
            info.name,
            "train",
            "train",
            ws,
            recipe.loader,
            seed=seeds[unit.members[0]]["order"],
            device=device,
        )
        if paced is not None:
            from curate.curriculum import ffcv_order

            inner = train_loader.loader
            inner.traversal_order = ffcv_order(
                paced.order, recipe.loader.batch_size, paced.pacing, seeds[unit.members[0]]["order"]
            )(inner)
        eval_loaders = {
            s: make_loader(info.name, s, "eval", ws, recipe.loader, device=device) for s in splits
        }

    def eval_data(split):
        return (
            _in_memory_eval_batches(data[split], ebatch)
            if data is not None
            else eval_loaders[split]
        )

    def log_epoch(epoch: int, seconds: float, fit: dict | None) -> None:
        acc = {m: {} for m in unit.members}
        for split in splits:
            idx, labels, pred, p_true, margin = eval_pass(unit, eval_data(split), autocast, ebatch)
            for j, m in enumerate(unit.members):
                predlog.write_shard(
                    predlog.shard_path(run_dir, "eval", split, m, epoch),
                    idx,
                    pred[j],
                    p_true[j],
                    margin[j],
                )
                acc[m][split] = float((pred[j] == labels).mean())
        if fit is not None:
            for j, m in enumerate(unit.members):
                order = np.argsort(fit["idx"][j], kind="stable")
                predlog.write_shard(
                    predlog.shard_path(run_dir, "train-forward", "train", m, epoch),
                    *(fit[k][j][order] for k in ("idx", "pred", "p_true", "margin")),
                )
        _save_checkpoint(run_dir, unit, opt, sched, epoch)
        for m in unit.members:
            predlog.mark_epoch_done(
                run_dir, m, epoch, {"acc": acc[m], "seconds": seconds, "unit": unit.name}
            )
        line = "  ".join(
            f"{s} " + " ".join(f"{acc[m][s]:.3f}" for m in unit.members) for s in splits
        )
        bar.write(f"{unit.name} epoch {epoch}/{t.epochs}  acc per member: {line}")

    if start < 0:
        log_epoch(0, 0.0, None)
        start = 0
    for epoch in range(start + 1, t.epochs + 1):
        t0 = time.perf_counter()
        torch.manual_seed(seeds[unit.members[0]]["dropout"] + epoch)  # dropout draws, per epoch
        model.train()
        batches = (
            _in_memory_train_batches(data["train"], unit.members, seeds, epoch, recipe, paced)
            if data is not None
            else _stream_train_batches(train_loader, epoch)
        )
        fit = {k: [] for k in ("idx", "pred", "p_true", "margin")} if t.log_train_pass else None
        for x, y, i in batches:
            with autocast:
                logits = unit.forward(x)  # (B, M_u, K)
                loss = sum(
                    F.cross_entropy(logits[:, j].float(), y[j], label_smoothing=t.label_smoothing)
                    for j in range(logits.shape[1])
                )  # each member's mean loss: grads as if separate
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if fit is not None:
                p, pt, mg = logit_stats(logits.detach().float(), y)
                for k, v in (("idx", i), ("pred", p), ("p_true", pt), ("margin", mg)):
                    fit[k].append(v.cpu())
            bar.update(1)
        if fit is not None:
            fit = {k: torch.cat(v, 1).numpy() for k, v in fit.items()}
        if not torch.isfinite(loss):
            raise CurateError(
                f"{unit.name}: the loss became {loss.item()} in epoch {epoch}; lower train.lr"
            )
        log_epoch(epoch, time.perf_counter() - t0, fit)
