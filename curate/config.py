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
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from curate.errors import CurateError

PIPELINES = Path(__file__).resolve().parent.parent / "pipelines"


@dataclass(frozen=True)
class DatasetConfig:
    name: str = ""  # catalog name; empty = the format's name (the folder's for imagefolder)
    format: str = "digits"  # one of curate.data.sources.FORMATS
    source: str = ""  # path to the raw data (folder, archive or file); empty for built-in/synthetic
    download: bool = False  # cifar10/cifar100/mnist/fashion-mnist: fetch with torchvision
    random_labels: int | None = None  # seed: permute labels (true labels kept beside them)
    storage: str = "auto"  # auto | raw | jpeg; auto = raw for equal-sized images up to raw_max_side
    raw_max_side: int = 64  # largest side stored raw (bit-exact) under storage = auto
    max_side: int = 512  # jpeg: resize so the larger side is at most this (0 = keep)
    short_side: int = (
        0  # jpeg: shrink so the smaller side is this (ImageNet: 256); wins over max_side
    )
    jpeg_quality: int = 90
    skip_corrupt: bool = False  # continue past unreadable images, listing them in `skipped`
    workers: int = 0  # processes for decoding and writing; 0 = all cores
    # digits: held-out split (scikit-learn's digits has none)
    test_fraction: float = 0.2
    split_seed: int = 0
    # synthetic controls (SCIENCE.md, Synthetic controls)
    seed: int = 0
    num_classes: int = (
        0  # 0 = the control's default (gaussian-sigma 100, gabor 12, gaussian-2class 2)
    )
    train_per_class: int = 0  # 0 = the control's default
    test_per_class: int = 0
    image_size: int = 32


@dataclass(frozen=True)
class LoaderConfig:
    batch_size: int = 128  # training batch
    eval_batch_size: int = 1024  # evaluation pass, no gradient
    flip: bool = False  # random horizontal flip (training only)
    translate: int = 0  # random crop with this zero padding, in pixels (training only)
    crop_size: int = 224  # jpeg datasets: random-resized crop (train) / centre crop (eval) side
    crop_ratio: float = 0.875  # jpeg datasets, eval: centre crop side / resized side (224/256)
    normalize: bool = True  # subtract the per-channel mean, divide by std (from the train split)
    workers: int = 0  # ffcv loader threads; 0 = all cores
    os_cache: bool = True  # memory-map the whole file (fast for anything that fits in RAM)


@dataclass(frozen=True)
class TrainConfig:
    arch: str = "mlp"
    members: int = 8
    epochs: int = 10
    seed: int = 0
    strategy: str = "auto"  # auto | separate | fused
    optimizer: str = "sgd"  # sgd | adam
    lr: float = 0.05
    lr_min: float = 0.0  # cosine: the rate reached at the end (Pliushch: 5e-4)
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    schedule: str = "cosine"  # cosine | step | onecycle | stvgg | constant
    step_size: int = 30  # step: epochs between decays
    gamma: float = 0.1  # step: factor per decay
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    device: str = "auto"  # cpu | cuda | auto
    precision: str = "auto"  # auto (bf16 autocast on CUDA, fp32 on CPU) | fp32 | bf16
    channels_last: bool = True
    threads: int = 0  # torch CPU threads; 0 = all cores
    log_train_pass: bool = False  # also log the training forward pass as its own pass
    width: int = (
        0  # architecture width multiplier where it applies (0 = the architecture's default)
    )
    dropout: bool = (
        True  # the architecture's dropout layers (Hacohen removed them for random labels)
    )
    curriculum: str = (
        ""  # an ordering from `curate curriculum` (.npy/.csv beside its .json): paced batches
    )


@dataclass(frozen=True)
class ScoreConfig:
    tol: int = 0  # ddd split tolerance: 0 = Meding's strict split, 1 = "all except one"
    compare_runs: tuple[str, ...] = ()
    stats: bool = True  # `curate run` computes image statistics before training


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
    return cls(**kwargs)


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
    name_or_path: str | None = None, overrides: list[str] | dict | None = None
) -> Recipe:
    """Read a recipe (a name in pipelines/ or a TOML path), then apply `section.key=value` overrides.

    A bare dataset name with no recipe file gives the defaults with that dataset's format.
    """
    data: dict[str, dict[str, Any]] = {}
    name = "digits"
    if name_or_path:
        path = find_recipe(name_or_path)
        if path is not None:
            try:
                data = tomllib.loads(path.read_text())
            except tomllib.TOMLDecodeError as e:
                raise CurateError(f"recipe {path} is not valid TOML: {e}") from None
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
    for section, key, value in items:
        data.setdefault(section, {})[key] = value
    unknown = sorted(set(data) - set(SECTIONS) - {"name"})
    if unknown:
        raise CurateError(
            f"unknown recipe section [{unknown[0]}]; sections are: {', '.join(SECTIONS)}"
        )
    parts = {s: build(cls, data.get(s, {}), s) for s, cls in SECTIONS.items()}
    return Recipe(name=data.get("name", name), **parts)
