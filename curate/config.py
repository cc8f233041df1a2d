"""Recipes: one frozen dataclass per stage, defaults in code, a TOML recipe overrides them, the
command line overrides the recipe (`--set train.epochs=5`). Unknown keys are errors.

A recipe is `pipelines/<name>.toml` (or any path) with one table per stage::

    [dataset]  name, format, source, ...   what to ingest (curate.data.ingest)
    [loader]   batch sizes, augmentation    how batches are made (curate.data.loader)
    [train]    arch, members, epochs, ...   the ensemble (curate.train)
    [score]    tol, ...                     the difficulty tables (curate.scores)
"""

from __future__ import annotations

import dataclasses
import importlib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from curate.errors import CurateError

PIPELINES = Path(__file__).resolve().parent.parent / "pipelines"


def check_name(value: str, where: str) -> str:
    """A dataset or run name becomes one folder under the workspace: refuse what would not."""
    if (
        not value
        or len(value) > 128
        or value.startswith(".")
        or any(c in value for c in "/\\\0")
        or not value.isprintable()
    ):
        raise CurateError(
            f"{where} = {value!r}: a name becomes a folder, so it must be 1-128 printable "
            "characters, not start with '.', and hold no '/' or '\\'"
        )
    return value


def opt(
    default: Any,
    *,
    choices: Any = None,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    name: bool = False,
    what: str = "",
    why: str = "",
):
    """A recipe field with its allowed values declared beside it.

    `choices` is a tuple, or "module:ATTR" naming a registry looked up when a recipe is checked
    (so this module imports no torch); `ge`/`gt`/`le`/`lt` bound numbers; `name` asks for a
    name usable as one folder (`check_name`; empty allowed). `what` names the thing chosen
    ("architecture") and `why` gives the reason for a bound, for the error message.
    """
    meta = {"choices": choices, "ge": ge, "gt": gt, "le": le, "lt": lt, "name": name}
    meta |= {"what": what, "why": why}
    return field(
        default=default,
        metadata={k: v for k, v in meta.items() if v is not None and v is not False and v != ""},
    )


@dataclass(frozen=True)
class DatasetConfig:
    # catalog name; empty = the format's name (the folder's for imagefolder)
    name: str = opt("", name=True)
    format: str = opt("digits", choices="curate.data.formats:FORMATS", what="format")
    source: str = ""  # path to the raw data (folder, archive or file); empty for built-in/synthetic
    download: bool = False  # cifar10/cifar100/mnist/fashion-mnist: fetch with torchvision
    # seed: permute labels (true labels kept beside them)
    random_labels: int | None = opt(None, ge=0)
    # a label file replacing the source's labels (curate.data.labels); true labels kept beside them
    labels: str = ""
    # auto = raw for equal-sized images up to raw_max_side
    storage: str = opt("auto", choices=("auto", "raw", "jpeg"))
    raw_max_side: int = opt(64, ge=1)  # largest side stored raw (bit-exact) under storage = auto
    max_side: int = opt(512, ge=0)  # jpeg: resize so the larger side is at most this (0 = keep)
    # jpeg: shrink so the smaller side is this (ImageNet: 256); wins over max_side
    short_side: int = opt(0, ge=0)
    jpeg_quality: int = opt(90, ge=1, le=100)
    skip_corrupt: bool = False  # continue past unreadable images, listing them in `skipped`
    workers: int = opt(0, ge=0)  # processes for decoding and writing; 0 = all cores
    # digits: held-out split (scikit-learn's digits has none)
    test_fraction: float = opt(0.2, gt=0, lt=1)
    split_seed: int = opt(0, ge=0)
    # synthetic controls (SCIENCE.md, Synthetic controls)
    seed: int = opt(0, ge=0)
    # 0 = the control's default (gaussian-sigma 100, gabor 12, gaussian-2class 2)
    num_classes: int = opt(0, ge=0)
    train_per_class: int = opt(0, ge=0)  # 0 = the control's default
    test_per_class: int = opt(0, ge=0)
    image_size: int = opt(32, ge=1)
    # keep only the first N instances of every split (source order; 0 = all): small experiments,
    # e.g. random labels a small network can memorise in CPU minutes
    max_per_split: int = opt(0, ge=0)


@dataclass(frozen=True)
class LoaderConfig:
    batch_size: int = opt(128, ge=1)  # training batch
    eval_batch_size: int = opt(1024, ge=1)  # evaluation pass, no gradient
    flip: bool = False  # random horizontal flip (training only)
    translate: int = opt(0, ge=0)  # random crop with this zero padding, in pixels (training only)
    # jpeg datasets: random-resized crop (train) / centre crop (eval) side, pixels
    crop_size: int = opt(224, ge=1)
    crop_ratio: float = opt(0.875, gt=0, le=1)  # jpeg datasets, eval: centre crop / resized side
    # jpeg datasets, train: smallest area fraction of a random-resized crop (ffcv's default 0.08)
    crop_min_scale: float = opt(0.08, gt=0, le=1)
    normalize: bool = True  # subtract the per-channel mean, divide by std (from the train split)
    workers: int = opt(0, ge=0)  # ffcv loader threads; 0 = all cores
    os_cache: bool = True  # memory-map the whole file (fast for anything that fits in RAM)


@dataclass(frozen=True)
class TrainConfig:
    arch: str = opt("mlp", choices="curate.train.models:ARCHS", what="architecture")
    members: int = opt(8, ge=2, why="agreement needs at least 2 members")
    epochs: int = opt(10, ge=1)
    seed: int = opt(0, ge=0)
    # auto | a registered learner (curate.train.learner): fused, separate, ...
    strategy: str = opt("auto", choices="curate.train.run:strategy_choices")
    optimizer: str = opt("sgd", choices=("sgd", "adam"))
    lr: float = opt(0.05, gt=0)
    lr_min: float = opt(0.0, ge=0)  # cosine: the rate reached at the end (Pliushch: 5e-4)
    momentum: float = opt(0.9, ge=0, lt=1)
    nesterov: bool = False
    weight_decay: float = opt(5e-4, ge=0)
    schedule: str = opt("cosine", choices=("cosine", "step", "onecycle", "stvgg", "constant"))
    step_size: int = opt(30, ge=1)  # step: epochs between decays
    gamma: float = opt(0.1, gt=0)  # step: factor per decay
    warmup_epochs: float = opt(0.0, ge=0)
    label_smoothing: float = opt(0.0, ge=0, lt=1)
    device: str = opt("auto", choices=("auto", "cpu", "cuda"))
    # auto (bf16 autocast on CUDA and on CPUs with AMX / AVX512-BF16, else fp32) | fp32 | bf16
    precision: str = opt("auto", choices=("auto", "fp32", "bf16"))
    channels_last: bool = True
    threads: int = opt(0, ge=0)  # torch CPU threads; 0 = all cores
    log_train_pass: bool = False  # also log the training forward pass as its own pass
    # fused: at most this many members per fused model (0 = every member of the rank in one);
    # on a CPU, 8 LeNet-5 fused train more member-steps per second than 20 (memory traffic)
    fuse_members: int = opt(0, ge=0)
    # architecture width multiplier where it applies (0 = the architecture's default)
    width: int = opt(0, ge=0)
    # the architecture's dropout layers (Hacohen removed them for random labels)
    dropout: bool = True
    # an ordering from `curate curriculum` (.npy/.csv beside its .json): paced batches
    curriculum: str = ""
    # an idx list of the train split from `curate prune` (.npy/.csv/.parquet): train on those
    # instances only (every split is still evaluated); the run's identity records its checksum
    subset: str = ""
    # with train.subset: train round(epochs / F) epochs (nearest, halves up), F the fraction of the
    # train split the subset keeps, so the run takes as many optimiser steps as `epochs` epochs of
    # the whole split (equal training compute); the run records the epochs it trained
    equal_steps: bool = False
    # splits the eval pass logs after every epoch (empty = every split); a run that logs no
    # `train` split cannot be scored, only read for its accuracy (retraining experiments)
    log_splits: tuple[str, ...] = ()
    # what the staged learners (adaboost, gboost) fit: "pixels" (the normalised pixels), or the name
    # of a finished network run on the same dataset whose member 0's penultimate layer embeds them
    # (curate.train.embeddings); networks always train on pixels
    features: str = opt("pixels", name=True)


@dataclass(frozen=True)
class ScoreConfig:
    tol: int = opt(0, ge=0)  # ddd split tolerance: 0 = Meding's strict split, 1 = "all except one"
    compare_runs: tuple[str, ...] = ()
    stats: bool = True  # `curate run` computes image statistics before training
    # image statistics include edge_strength_pmi, the costliest by far (about 5 CPU-ms for a 32 x 32
    # image, seconds for a large one): off for ImageNet-sized datasets (`curate stats --no-pmi`)
    pmi: bool = True


@dataclass(frozen=True)
class Recipe:
    name: str = "digits"
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    loader: LoaderConfig = field(default_factory=LoaderConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


SECTIONS = {
    "dataset": DatasetConfig,
    "loader": LoaderConfig,
    "train": TrainConfig,
    "score": ScoreConfig,
}


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Check `value` against a dataclass field annotation (given as a string) and coerce ints."""
    hint = annotation if not isinstance(annotation, str) else eval(annotation, vars(typing))  # noqa: S307
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except CurateError:
                continue
        raise CurateError(f"{where} = {value!r}: expected {annotation}")
    if origin is tuple:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple):
            raise CurateError(f"{where} = {value!r}: expected a list")
        return tuple(_coerce(v, args[0], where) for v in value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is bool and not isinstance(value, bool):
        raise CurateError(f"{where} = {value!r}: expected true or false")
    if hint is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise CurateError(f"{where} = {value!r}: expected an integer")
    if hint in (float, str) and not isinstance(value, hint):
        raise CurateError(f"{where} = {value!r}: expected a {hint.__name__}")
    return value


def build(cls: type, values: dict[str, Any], where: str):
    """Make a `cls` from `values`, naming any unknown key and the keys that exist."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise CurateError(
            f"unknown recipe key {where}.{unknown[0]}; valid keys in [{where}]: {', '.join(fields)}"
        )
    kwargs = {k: _coerce(v, fields[k].type, f"{where}.{k}") for k, v in values.items()}
    obj = cls(**kwargs)
    for f in dataclasses.fields(cls):
        _check_value(getattr(obj, f.name), f.metadata, f"{where}.{f.name}")
    return obj


def _choices(spec: Any) -> tuple[str, ...]:
    if isinstance(spec, str):  # "module:ATTR", a registry owned by that module
        module, attr = spec.split(":")
        found = getattr(importlib.import_module(module), attr)
        return tuple(found() if callable(found) else found)
    return tuple(spec)


def _check_value(value: Any, meta: typing.Mapping[str, Any], where: str) -> None:
    """Raise a CurateError naming `where`, the value and what is allowed, if `value` breaks `meta`."""
    if value is None:
        return
    if "choices" in meta:
        allowed = _choices(meta["choices"])
        if value not in allowed:
            head = (
                f"unknown {meta['what']} {value!r} ({where})"
                if "what" in meta
                else (f"{where} = {value!r}")
            )
            raise CurateError(f"{head}: choose one of {', '.join(allowed)}")
    if meta.get("name") and value:
        check_name(value, where)
    for key, ok, word in (
        ("ge", lambda v, b: v >= b, ">="),
        ("gt", lambda v, b: v > b, ">"),
        ("le", lambda v, b: v <= b, "<="),
        ("lt", lambda v, b: v < b, "<"),
    ):
        if key in meta and not ok(value, meta[key]):
            why = f" ({meta['why']})" if "why" in meta else ""
            raise CurateError(f"{where} = {value!r}: must be {word} {meta[key]:g}{why}")


def check_recipe(recipe: Recipe) -> None:
    """The rules that tie two recipe values together (each value alone is checked by `build`)."""
    t = recipe.train
    if t.lr_min > t.lr:
        raise CurateError(f"train.lr_min = {t.lr_min:g} exceeds train.lr = {t.lr:g}; lower lr_min")
    if t.nesterov and (t.optimizer != "sgd" or t.momentum == 0):
        raise CurateError("train.nesterov = true needs optimizer = 'sgd' and momentum > 0")
    if 2 * recipe.score.tol >= t.members:
        raise CurateError(
            f"score.tol = {recipe.score.tol} leaves no in-between with {t.members} members: "
            f"use tol < members / 2"
        )


def find_recipe(name_or_path: str) -> Path | None:
    """`pipelines/<name>.toml` for a bare name, the path itself for a path; None when neither exists."""
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.exists():
        return p if p.exists() else None
    candidate = PIPELINES / f"{name_or_path}.toml"
    return candidate if candidate.exists() else None


def parse_override(text: str) -> tuple[str, str, Any]:
    """`train.epochs=5` -> ("train", "epochs", 5); values are TOML, bare words are strings."""
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise CurateError(f"bad override {text!r}: write section.key=value, e.g. train.epochs=5")
    key, raw = text.split("=", 1)
    section, name = key.strip().lstrip("-").split(".", 1)
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return section, name, value


def load_recipe(
    name_or_path: str | None = None,
    overrides: list[str] | dict | None = None,
    flags: dict[str, tuple[str, Any]] | None = None,
) -> Recipe:
    """Read a recipe (a name in pipelines/ or a TOML path), then apply overrides, then check it.

    `overrides` are `--set section.key=value` strings (or a {section: {key: value}} dict);
    `flags` maps "section.key" to (the command-line flag that set it, its value). A flag and a
    `--set` that give one key two values are an error. A bare dataset name with no recipe file
    gives the defaults with that dataset's format.
    """
    data: dict[str, dict[str, Any]] = {}
    name = "digits"
    if name_or_path:
        path = find_recipe(name_or_path)
        if path is not None:
            try:
                data = tomllib.loads(path.read_text())
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
                raise CurateError(f"recipe {path} is not valid TOML: {e}") from None
            except OSError as e:
                raise CurateError(f"cannot read recipe {path}: {e.strerror}") from None
            name = path.stem
        elif name_or_path.endswith(".toml"):
            raise CurateError(
                f"recipe {name_or_path} does not exist; recipes in {PIPELINES}: "
                f"{', '.join(sorted(p.stem for p in PIPELINES.glob('*.toml')))}"
            )
        else:
            name = name_or_path
            data = {"dataset": {"format": name_or_path}}
    data = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
    if isinstance(overrides, dict):
        items = [(s, k, v) for s, kv in overrides.items() for k, v in kv.items()]
    else:
        items = [parse_override(o) for o in overrides or []]
    set_by: dict[str, Any] = {}
    for section, key, value in items:
        data.setdefault(section, {})[key] = value
        set_by[f"{section}.{key}"] = value
    for key, (flag, value) in (flags or {}).items():
        if key in set_by and set_by[key] != value:
            raise CurateError(
                f"{flag} {value} and --set {key}={set_by[key]} give {key} two values; keep one"
            )
        section, k = key.split(".", 1)
        data.setdefault(section, {})[k] = value
    unknown = sorted(set(data) - set(SECTIONS) - {"name"})
    if unknown:
        raise CurateError(
            f"unknown recipe section [{unknown[0]}]; sections are: {', '.join(SECTIONS)}"
        )
    for s in SECTIONS:
        if not isinstance(data.get(s, {}), dict):
            raise CurateError(f"recipe section [{s}] must be a table of key = value lines")
    parts = {s: build(cls, data.get(s, {}), s) for s, cls in SECTIONS.items()}
    recipe_name = data.get("name", name)
    if not isinstance(recipe_name, str):
        raise CurateError(f"recipe name = {recipe_name!r}: expected a string")
    recipe = Recipe(name=check_name(recipe_name, "recipe name"), **parts)
    check_recipe(recipe)
    return recipe
