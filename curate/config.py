"""Recipes: one frozen pydantic dataclass per stage, defaults in code, a TOML recipe overrides them,
the command line overrides the recipe (`--set train.epochs=5`). Unknown keys are errors.

A recipe is `pipelines/<name>.toml` (or any path) with one table per stage::

    [dataset]  name, format, source, ...   what to ingest (curate.data.ingest)
    [loader]   batch sizes, augmentation    how batches are made (curate.data.loader)
    [train]    arch, members, epochs, ...   the ensemble (curate.train)
    [score]    tol, ...                     the difficulty tables (curate.scores)

Every field declares its allowed values beside it (pydantic: strict types, bounds, `OneOf` choices
or registries, `FolderName`, `FilePath`); pydantic checks them whenever a section is made, so the
stages need not check again. `load_recipe` turns pydantic's errors into one line naming the key,
the bad value, what is allowed and the fix (a `CurateError`, exit code 2).
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import tomllib
import typing
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic.dataclasses import dataclass
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError, core_schema

from curate.errors import CurateError
from curate.runlog.layout import MAX_EPOCHS, MAX_MEMBERS


def shared_data(*parts: str) -> Path | None:
    """An installed data file of curate's wheel, ``<data>/share/curate/<parts>``; None where no
    install holds it. ``<data>`` is the folder this package was installed under, else the
    interpreter's (pip install, a venv) or the user base (--user): ``pip install --target T``
    puts curate in T/curate and the data in T/share, ``--prefix P`` in P/lib/pythonX.Y/site-packages
    and P/share, ``--home H`` in H/lib/python and H/share."""
    import site
    import sysconfig

    package = Path(__file__).resolve().parent
    # the package's own install first: another curate installed in the interpreter's prefix has
    # its own copy there
    roots = [package.parents[i] for i in (0, 2, 3) if i < len(package.parents)]
    roots += [sysconfig.get_path("data"), site.getuserbase()]
    for root in filter(None, roots):
        path = Path(root, "share", "curate", *parts)
        if path.exists():
            return path
    return None


def _pipelines() -> Path:
    """The recipes' folder: the checkout's pipelines/ when curate runs from one, else the copy a
    wheel installs in <data>/share/curate/pipelines (`shared_data`)."""
    checkout = Path(__file__).resolve().parent.parent / "pipelines"
    if (checkout / "digits.toml").is_file():
        return checkout
    installed = shared_data("pipelines", "digits.toml")
    return installed.parent if installed is not None else checkout


PIPELINES = _pipelines()
_CONFIG = ConfigDict(extra="forbid")


def name_problem(value: str) -> str | None:
    """Why `value` cannot be one folder's name under the workspace; None when it can."""
    if (
        not value
        or len(value) > 128
        or value.startswith(".")
        or any(c in value for c in "/\\\0=%")
        or not value.isprintable()
    ):
        return (
            "a name becomes a folder (and a split's a `split=NAME` folder of the prediction log), "
            "so it must be 1-128 printable characters, not start with '.', and hold no '/', '\\', "
            "'=' or '%'"
        )
    return None


def check_name(value: str, where: str) -> str:
    """A dataset or run name becomes one folder under the workspace: refuse what would not.

    Parameters
    ----------
    value : the name.
    where : what it is, for the message ("--run-name", "dataset name").

    Returns
    -------
    str
        `value`, unchanged; a `CurateError` when it cannot be a folder's name.
    """
    problem = name_problem(value)
    if problem:
        raise CurateError(f"{where} = {value!r}: {problem}")
    return value


def _after(check):
    """A pydantic schema hook running `check(value)` after the type's own validation."""

    def _hook(self, source: Any, handler: Any) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(
            lambda v: check(self, v), handler(source)
        )

    return _hook


@dataclasses.dataclass(frozen=True)
class OneOf:
    """The values a field may take: a tuple, or "module:ATTR" naming a registry (a collection or
    a function returning one) looked up only when a value is checked, so this module imports no
    torch. `what` names the thing chosen ("architecture") in the error message."""

    spec: tuple[str, ...] | str
    what: str = ""

    def names(self) -> tuple[str, ...]:
        """The allowed values, the registry looked up now."""
        if isinstance(self.spec, str):
            module, attr = self.spec.split(":")
            found = getattr(importlib.import_module(module), attr)
            return tuple(found() if callable(found) else found)
        return tuple(self.spec)

    def _check(self, value: Any) -> Any:
        if value is not None and value not in (names := self.names()):
            raise PydanticCustomError(
                "one_of", "choose one of {allowed}", {"allowed": ", ".join(names)}
            )
        return value

    __get_pydantic_core_schema__ = _after(_check)


@dataclasses.dataclass(frozen=True)
class FolderName:
    """A name that becomes one folder under the workspace (`name_problem`); empty allowed unless
    `required`."""

    required: bool = False

    def _check(self, value: str) -> str:
        problem = name_problem(value) if value or self.required else None
        if problem:
            raise PydanticCustomError("folder_name", problem)
        return value

    __get_pydantic_core_schema__ = _after(_check)


@dataclasses.dataclass(frozen=True)
class FilePath:
    """A path to a file, made absolute against the working directory where the recipe is read, so
    that it names the same file wherever the run goes on (a label file's ``FILE.npz:KEY`` too)."""

    def _check(self, value: str) -> str:
        return str(Path(value).absolute()) if value else value

    __get_pydantic_core_schema__ = _after(_check)


def _listed(value: Any) -> Any:
    """A bare string where a list is expected is a list of one (`--set train.log_splits=test`)."""
    return [value] if isinstance(value, str) else value


def _why(text: str) -> dict[str, Any]:
    """A bound's reason, shown in its error message."""
    return {"json_schema_extra": {"why": text}}


Names = Annotated[tuple[StrictStr, ...], BeforeValidator(_listed)]
# the keys of [dataset] that make the dataset's name (curate.data.ingest.default_name): what a
# command that finds an ingested dataset by its recipe (curate train) reads of the section
NAMING_KEYS = ("name", "format", "source", "random_labels", "labels", "max_per_split")


@dataclass(frozen=True, config=_CONFIG)
class DatasetConfig:
    """[dataset]: what to ingest and how to store it (curate.data.ingest)."""

    # catalog name; empty = the format's name (the folder's for imagefolder)
    name: Annotated[StrictStr, FolderName()] = ""
    format: Annotated[StrictStr, OneOf("curate.data.formats:FORMATS", "format")] = "digits"
    # path to the raw data (folder, archive or file); empty for built-in/synthetic
    source: StrictStr = ""
    download: StrictBool = False  # cifar10/cifar100/mnist/fashion-mnist: fetch with torchvision
    # seed: permute labels (true labels kept beside them)
    random_labels: StrictInt | None = Field(None, ge=0)
    # a label file replacing the source's labels (curate.data.labels); true labels kept beside them
    labels: Annotated[StrictStr, FilePath()] = ""
    # auto = raw for equal-sized images up to raw_max_side
    storage: Annotated[StrictStr, OneOf(("auto", "raw", "jpeg"))] = "auto"
    raw_max_side: StrictInt = Field(64, ge=1)  # largest side stored raw (bit-exact), storage auto
    max_side: StrictInt = Field(512, ge=0)  # jpeg: larger side resized to at most this (0 = keep)
    # jpeg: shrink so the smaller side is this (ImageNet: 256); wins over max_side
    short_side: StrictInt = Field(0, ge=0)
    jpeg_quality: StrictInt = Field(90, ge=1, le=100)
    skip_corrupt: StrictBool = False  # continue past unreadable images, listing them in `skipped`
    workers: StrictInt = Field(0, ge=0)  # processes for decoding and writing; 0 = all cores
    # digits: held-out split (scikit-learn's digits has none)
    test_fraction: StrictFloat = Field(0.2, gt=0, lt=1)
    split_seed: StrictInt = Field(0, ge=0, le=2**63 - 1)
    # synthetic controls (docs/concepts.md#synthetic-controls)
    seed: StrictInt = Field(0, ge=0, le=2**63 - 1)
    # 0 = the control's default (gaussian-sigma 100, gabor 12, gaussian-2class 2)
    num_classes: StrictInt = Field(0, ge=0)
    train_per_class: StrictInt = Field(0, ge=0)  # 0 = the control's default
    test_per_class: StrictInt = Field(0, ge=0)
    image_size: StrictInt = Field(32, ge=1)
    # keep only the first N instances of every split (source order; 0 = all): small experiments,
    # e.g. random labels a small network can memorise in CPU minutes
    max_per_split: StrictInt = Field(0, ge=0)

    @model_validator(mode="after")
    def _one_label_source(self) -> DatasetConfig:
        if self.labels and self.random_labels is not None:
            raise PydanticCustomError(
                "recipe_rule",
                "dataset.labels (--labels) and dataset.random_labels (--random-labels) both "
                "replace the labels; give one of them",
            )
        return self


@dataclass(frozen=True, config=_CONFIG)
class LoaderConfig:
    """[loader]: how batches are made (curate.data.loader)."""

    batch_size: StrictInt = Field(128, ge=1)  # training batch
    eval_batch_size: StrictInt = Field(1024, ge=1)  # evaluation pass, no gradient
    flip: StrictBool = False  # random horizontal flip (training only)
    translate: StrictInt = Field(0, ge=0)  # random crop with this zero padding, pixels (training)
    # jpeg datasets: random-resized crop (train) / centre crop (eval) side, pixels
    crop_size: StrictInt = Field(224, ge=1)
    crop_ratio: StrictFloat = Field(0.875, gt=0, le=1)  # jpeg, eval: centre crop / resized side
    # jpeg datasets, train: smallest area fraction of a random-resized crop (ffcv's default 0.08)
    crop_min_scale: StrictFloat = Field(0.08, gt=0, le=1)
    normalize: StrictBool = True  # subtract the per-channel mean, divide by std (train split's)
    workers: StrictInt = Field(0, ge=0)  # ffcv loader threads; 0 = all cores
    os_cache: StrictBool = True  # memory-map the whole file (fast for anything that fits in RAM)


@dataclass(frozen=True, config=_CONFIG)
class TrainConfig:
    """[train]: the ensemble, its learner and its optimisation (curate.train)."""

    arch: Annotated[StrictStr, OneOf("curate.train.models:ARCHS", "architecture")] = "mlp"
    members: StrictInt = Field(
        8, ge=2, le=MAX_MEMBERS, **_why("agreement needs at least 2 members")
    )
    epochs: StrictInt = Field(10, ge=1, le=MAX_EPOCHS)
    seed: StrictInt = Field(0, ge=0, le=2**63 - 1)
    # auto | a registered learner (curate.train.learner): fused, separate, ...
    strategy: Annotated[StrictStr, OneOf("curate.train.run:strategy_choices", "learner")] = "auto"
    optimizer: Annotated[StrictStr, OneOf(("sgd", "adam"))] = "sgd"
    lr: StrictFloat = Field(0.05, gt=0)
    lr_min: StrictFloat = Field(0.0, ge=0)  # cosine: the rate reached at the end (Pliushch: 5e-4)
    momentum: StrictFloat = Field(0.9, ge=0, lt=1)
    nesterov: StrictBool = False
    weight_decay: StrictFloat = Field(5e-4, ge=0)
    # the schedules curate.train.schedule implements
    schedule: Annotated[StrictStr, OneOf(("cosine", "step", "onecycle", "stvgg", "constant"))] = (
        "cosine"
    )
    step_size: StrictInt = Field(30, ge=1)  # step: epochs between decays
    gamma: StrictFloat = Field(0.1, gt=0)  # step: factor per decay
    warmup_epochs: StrictFloat = Field(0.0, ge=0)
    label_smoothing: StrictFloat = Field(0.0, ge=0, lt=1)
    device: Annotated[StrictStr, OneOf(("auto", "cpu", "cuda"))] = "auto"
    # auto (bf16 autocast on CUDA and on CPUs with AMX / AVX512-BF16, else fp32) | fp32 | bf16
    precision: Annotated[StrictStr, OneOf(("auto", "fp32", "bf16"))] = "auto"
    channels_last: StrictBool = True
    threads: StrictInt = Field(0, ge=0)  # torch CPU threads; 0 = all cores
    log_train_pass: StrictBool = False  # also log the training forward pass as its own pass
    # fused: at most this many members per fused model (0 = every member of the rank in one);
    # on a CPU, 8 LeNet-5 fused train more member-steps per second than 20 (memory traffic)
    fuse_members: StrictInt = Field(0, ge=0)
    # architecture width multiplier where it applies (0 = the architecture's default)
    width: StrictInt = Field(0, ge=0)
    # the architecture's dropout layers (Hacohen removed them for random labels)
    dropout: StrictBool = True
    # an ordering from `curate curriculum` (.npy/.csv beside its .json): paced batches
    curriculum: Annotated[StrictStr, FilePath()] = ""
    # an idx list of the train split from `curate prune` (.npy/.csv/.parquet): train on those
    # instances only (every split is still evaluated); the run's identity records its checksum
    subset: Annotated[StrictStr, FilePath()] = ""
    # with train.subset: train round(epochs / F) epochs (nearest, halves up), F the fraction of the
    # train split the subset keeps, so the run takes as many optimiser steps as `epochs` epochs of
    # the whole split (equal training compute); the run records the epochs it trained
    equal_steps: StrictBool = False
    # splits the eval pass logs after every epoch (empty = every split); a run that logs no
    # `train` split cannot be scored, only read for its accuracy (retraining experiments)
    log_splits: Names = ()
    # what the staged learners (adaboost, gboost) fit: "pixels" (the normalised pixels), or the name
    # of a finished network run on the same dataset whose member 0's penultimate layer embeds them
    # (curate.train.embeddings); networks always train on pixels
    features: Annotated[StrictStr, FolderName()] = "pixels"

    @model_validator(mode="after")
    def _rules(self) -> TrainConfig:
        if self.lr_min > self.lr:
            raise PydanticCustomError(
                "recipe_rule",
                f"train.lr_min = {self.lr_min:g} exceeds train.lr = {self.lr:g}; lower lr_min",
            )
        if self.nesterov and (self.optimizer != "sgd" or self.momentum == 0):
            raise PydanticCustomError(
                "recipe_rule", "train.nesterov = true needs optimizer = 'sgd' and momentum > 0"
            )
        return self


@dataclass(frozen=True, config=_CONFIG)
class ScoreConfig:
    """[score]: the difficulty tables (curate.scores) and what `curate run` computes first."""

    tol: StrictInt = Field(0, ge=0)  # ddd split tolerance: 0 = Meding's strict, 1 = all except one
    compare_runs: Names = ()
    stats: StrictBool = True  # `curate run` computes image statistics before training
    # image statistics include edge_strength_pmi, the costliest by far (about 5 CPU-ms for a 32 x 32
    # image, seconds for a large one): off for ImageNet-sized datasets (`curate stats --no-pmi`)
    pmi: StrictBool = True


@dataclass(frozen=True, config=_CONFIG)
class Recipe:
    """A whole recipe: its name (the default run name) and one section per stage."""

    name: Annotated[StrictStr, FolderName(required=True)] = "digits"
    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    loader: LoaderConfig = Field(default_factory=LoaderConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    score: ScoreConfig = Field(default_factory=ScoreConfig)

    def to_dict(self) -> dict[str, Any]:
        """The recipe as nested plain values, as a TOML recipe would give them."""
        return dataclasses.asdict(self)

    @model_validator(mode="after")
    def _members_and_tol(self, info: ValidationInfo) -> Recipe:
        reads = (info.context or {}).get("reads")
        if reads is not None and "train" not in reads:
            return self  # the run being scored has its members (curate.scores checks them)
        if 2 * self.score.tol >= self.train.members:
            raise PydanticCustomError(
                "recipe_rule",
                f"score.tol = {self.score.tol} leaves no in-between with {self.train.members} "
                "members: use tol < members / 2",
            )
        return self


SECTIONS = {
    "dataset": DatasetConfig,
    "loader": LoaderConfig,
    "train": TrainConfig,
    "score": ScoreConfig,
}
_RECIPE = TypeAdapter(Recipe)
_BOUNDS = (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))  # pydantic's bound names
_KINDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def keys(section: str) -> tuple[str, ...]:
    """The keys of a recipe section, in declaration order."""
    return tuple(SECTIONS[section].__pydantic_fields__)


def field_info(key: str) -> FieldInfo:
    """The pydantic field of "section.key" (its type, default, bounds and markers)."""
    section, name = key.split(".", 1)
    return SECTIONS[section].__pydantic_fields__[name]


def _marker(info: FieldInfo, kind: type) -> Any:
    return next((m for m in info.metadata if isinstance(m, kind)), None)


def choices(key: str) -> tuple[str, ...] | None:
    """The values "section.key" may take (a registry is looked up now); None when not a choice."""
    one_of = _marker(field_info(key), OneOf)
    return None if one_of is None else one_of.names()


def _base_type(annotation: Any) -> tuple[Any, bool]:
    """The plain type under a field's annotation (Annotated, Optional unwrapped), and whether
    None is allowed."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    optional = len(args) < len(typing.get_args(annotation))
    if typing.get_origin(annotation) is Annotated or optional:
        return _base_type(args[0])[0], optional
    return typing.get_origin(annotation) or annotation, False


def _kind(info: FieldInfo) -> str:
    if _marker(info, FilePath):
        return "a file path"
    base = _base_type(info.annotation)[0]
    return "a list of strings" if base is tuple else _KINDS.get(base, "a value")


def allowed(key: str) -> str:
    """What "section.key" allows, in words: "an integer >= 2", "one of mlp, lenet5, ...".

    Parameters
    ----------
    key : "section.key".

    Returns
    -------
    str
        the words used in help texts and error messages.
    """
    info = field_info(key)
    found = choices(key)
    if found is not None:
        return "one of " + ", ".join(found)
    if _marker(info, FolderName):
        return "a name usable as a folder"
    bounds = [
        f"{word} {getattr(m, attr):g}"
        for m in info.metadata
        for attr, word in _BOUNDS
        if getattr(m, attr, None) is not None
    ]
    absent = " (or absent)" if _base_type(info.annotation)[1] else ""
    return " ".join([_kind(info), " and ".join(bounds)]).strip() + absent


def _shown(key: str, value: Any) -> str:
    """A bad value as the user wrote it, ints in a float field as the float they became."""
    is_float = _base_type(field_info(key).annotation)[0] is float
    if is_float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    return repr(value)


def _default_hint(key: str) -> str:
    default = field_info(key).default
    if isinstance(default, bool):
        return f"; the default is {str(default).lower()}"
    if isinstance(default, int | float) or (isinstance(default, str) and default):
        return f"; the default is {default}"
    return ""


def _similar(word: str, among: tuple[str, ...] | list[str], prefix: str = "") -> str:
    close = difflib.get_close_matches(word, among, n=1)
    return f" (did you mean {prefix}{close[0]}?)" if close else ""


def unknown_key(section: str, key: str) -> str:
    """The message for an unknown "section.key": the nearest valid key and every valid one."""
    return (
        f"unknown recipe key {section}.{key}{_similar(key, keys(section), section + '.')}; "
        f"valid keys in [{section}]: {', '.join(keys(section))}"
    )


def unknown_section(section: str) -> str:
    """The message for an unknown recipe section."""
    return (
        f"unknown recipe section [{section}]{_similar(section, list(SECTIONS))}; sections are: "
        f"{', '.join(SECTIONS)}"
    )


def _value_message(key: str, err: dict) -> str:
    """One line for a bad value of "section.key": the value, what is allowed, the fix."""
    value, kind, ctx = err["input"], err["type"], err.get("ctx") or {}
    if kind == "one_of":
        what = _marker(field_info(key), OneOf).what
        head = f"unknown {what} {value!r} ({key})" if what else f"{key} = {value!r}"
        if key == "dataset.format":  # `curate run NAME`: NAME was not found as a recipe either
            recipes = sorted(p.stem for p in PIPELINES.glob("*.toml"))
            where = f"{', '.join(recipes)} in {PIPELINES}" if recipes else f"none in {PIPELINES}"
            return f"{head}: choose one of {ctx['allowed']}, or a recipe ({where}) or a .toml path"
        return f"{head}: choose one of {ctx['allowed']}"
    if kind == "folder_name":
        return f"{key} = {value!r}: {err['msg']}"
    for attr, word in _BOUNDS:
        if attr in ctx and kind.startswith(("greater", "less")):
            why = (field_info(key).json_schema_extra or {}).get("why")  # the lower bound's
            why = why if kind.startswith("greater") else None
            bound = f"must be {word} {ctx[attr]:g}" + (f" ({why})" if why else "")
            return f"{key} = {_shown(key, value)}: {bound}{_default_hint(key)}"
    return f"{key} = {value!r}: expected {allowed(key)}{_default_hint(key)}"


def _message(err: dict, data: dict[str, Any]) -> str:
    """One line for one pydantic error of the recipe `data`."""
    loc = [str(p) for p in err["loc"] if not isinstance(p, int)]
    kind = err["type"]
    if len(loc) == 2 and len(err["loc"]) > 2:  # an item of a list: show the whole list
        err = {**err, "input": data[loc[0]][loc[1]]}
    if kind == "recipe_rule":
        return err["msg"]
    if kind == "unexpected_keyword_argument":
        return unknown_section(loc[0]) if len(loc) == 1 else unknown_key(loc[0], loc[1])
    if kind.startswith("dataclass") and len(loc) == 1:
        return f"recipe section [{loc[0]}] must be a table of key = value lines"
    if loc == ["name"]:
        problem = err["msg"] if kind == "folder_name" else "expected a string"
        return f"recipe name = {err['input']!r}: {problem}"
    return _value_message(".".join(loc[:2]), err)


def validate(data: dict[str, Any], reads: Any = None) -> Recipe:
    """A `Recipe` from {section: {key: value}} (and "name"), or a `CurateError` in one line.

    Parameters
    ----------
    data : the recipe's tables, as TOML gives them.
    reads : the sections the command reads (`load_recipe`); None = every section.

    Returns
    -------
    Recipe
        every value checked by pydantic, path fields absolute.
    """
    try:
        return _RECIPE.validate_python(data, context={"reads": reads})
    except ValidationError as e:
        errors = sorted(e.errors(), key=lambda er: er["type"] != "unexpected_keyword_argument")
        n = len(errors) - 1
        more = f" (and {n} more problem{'s' * (n > 1)})" if n else ""
        raise CurateError(_message(errors[0], data) + more) from None


def find_recipe(name_or_path: str) -> Path | None:
    """`pipelines/<name>.toml` for a bare name, the path itself for a path; None when neither exists."""
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.is_file():  # a folder of that name is not a recipe
        return p if p.is_file() else None
    candidate = PIPELINES / f"{name_or_path}.toml"
    return candidate if candidate.exists() else None


def parse_override(text: str) -> tuple[str, str, Any]:
    """`train.epochs=5` -> ("train", "epochs", 5); values are TOML, bare words are strings.

    Parameters
    ----------
    text : one `--set` argument.

    Returns
    -------
    tuple
        (section, key, value).
    """
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise CurateError(f"bad override {text!r}: write section.key=value, e.g. train.epochs=5")
    key, raw = text.split("=", 1)
    section, name = key.strip().lstrip("-").split(".", 1)
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return section, name, value


def read_recipe(name_or_path: str | None) -> tuple[str, dict[str, Any]]:
    """The recipe's name and tables: a file in pipelines/ or a TOML path; a bare format name
    gives that format with the defaults; None gives the defaults ("digits")."""
    if not name_or_path:
        return "digits", {}
    path = find_recipe(name_or_path)
    if path is None:
        if name_or_path.endswith(".toml"):
            raise CurateError(
                f"recipe {name_or_path} does not exist; recipes in {PIPELINES}: "
                f"{', '.join(sorted(p.stem for p in PIPELINES.glob('*.toml')))}"
            )
        return name_or_path, {"dataset": {"format": name_or_path}}
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise CurateError(f"recipe {path} is not valid TOML: {e}") from None
    except OSError as e:
        raise CurateError(f"cannot read recipe {path}: {e.strerror}") from None
    return path.stem, data


def _merge(
    data: dict[str, Any],
    items: list[tuple[str, str, Any]],
    flags: dict[str, tuple[str, Any]],
) -> None:
    """Put `--set` items, then flags, into `data`; a flag and a `--set` disagreeing is an error."""
    set_by: dict[str, Any] = {}
    for section, key, value in items:
        _table(data, section)[key] = value
        set_by[f"{section}.{key}"] = value
    for key, (flag, value) in flags.items():
        if key in set_by and set_by[key] != value:
            raise CurateError(
                f"{flag} {value} and --set {key}={set_by[key]} give {key} two values; keep one"
            )
        section, k = key.split(".", 1)
        _table(data, section)[k] = value


def _table(data: dict[str, Any], section: str) -> dict[str, Any]:
    """The table of `section` in `data`, made when absent; an error when it is not a table."""
    table = data.setdefault(section, {})
    if not isinstance(table, dict):
        raise CurateError(f"recipe section [{section}] must be a table of key = value lines")
    return table


def load_recipe(
    name_or_path: str | None = None,
    overrides: list[str] | dict | None = None,
    flags: dict[str, tuple[str, Any]] | None = None,
    *,
    base: dict[str, dict[str, Any]] | None = None,
    reads: Any = None,
) -> Recipe:
    """Read a recipe (a name in pipelines/ or a TOML path), then apply overrides, then check it.

    Parameters
    ----------
    name_or_path : a recipe in pipelines/, a TOML path, or a format name (its defaults); None =
        the defaults.
    overrides : `--set section.key=value` strings (or a {section: {key: value}} dict).
    flags : "section.key" -> (the command-line flag that set it, its value). A flag and a
        `--set` that give one key two values are an error.
    base : tables laid over the recipe's before the overrides (an ingested dataset's format).
    reads : the sections the command reads; a rule between two sections is checked only when
        the command reads the section it constrains (`curate score` reads no [train]).

    Returns
    -------
    Recipe
        checked by pydantic (`validate`); a `CurateError` in one line otherwise.
    """
    name, data = read_recipe(name_or_path)
    data = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
    for section, table in (base or {}).items():
        _table(data, section).update(table)
    if isinstance(overrides, dict):
        items = [(s, k, v) for s, kv in overrides.items() for k, v in kv.items()]
    else:
        items = [parse_override(o) for o in overrides or []]
    _merge(data, items, flags or {})
    data.setdefault("name", name)
    return validate(data, reads)
