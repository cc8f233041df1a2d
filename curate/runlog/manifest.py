"""The manifest of a run, `run.json`: what the log holds and what made it, fixed when the run
starts. A later writer of the same run (a resumed `curate train`, a rerun of a recording script)
must bring the same manifest, or it is refused before anything is written.

One layout (2) is written::

    {"layout": 2, "origin": "train" | "recorder" | "import", "dataset": "digits",
     "splits": ["train", "test"] | null,      # the splits logged; null = every split of the dataset
     "loader": {...},                          # the trainer's loader settings; {} when recorded
     "train": {"arch": ..., "members": M, "epochs": E, "seed": ..., ...}}  # and the other settings

`train.arch` is the architecture's name, or what the recording script called it ("custom",
"imported"). `load_manifest` is the one reader; it also reads the two layouts written before
layout 2: `curate train`'s (dataset, loader, train) and `curate.Recorder`'s (the same with
`splits` and `recorder: {seed}`; an import has an `import.json` beside it).
"""

from __future__ import annotations

import json
import os
import secrets
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

from curate.errors import CurateError
from curate.runlog.layout import EVAL, import_record_path, manifest_path, shard_path
from curate.workspace import atomic_path, rename_noreplace

LAYOUT = 2
# origin -> who writes such a run, in messages
ORIGINS = {
    "train": "`curate train`",
    "recorder": "curate.Recorder",
    "import": "`curate import-log`",
}
# origin -> (why a run with a log has no `runs` row yet, how to finish it)
UNFINISHED = {
    "train": (
        "its training never completed",
        "rerun the `curate train` command that started it (it resumes where it stopped)",
    ),
    "recorder": (
        "its recording was never closed",
        "rerun the recording script (it resumes), or call close() on a curate.Recorder of that "
        "run (same dataset, members and epochs)",
    ),
    "import": (
        "its import never completed",
        "rerun the `curate import-log` command that started it",
    ),
}
_KEYS = ("arch", "members", "epochs", "seed")  # fields of the manifest kept in its `train` section


def _plain(value):
    """`value` as JSON gives it back (tuples become lists), so read and written manifests compare."""
    return json.loads(json.dumps(value))


@dataclass(frozen=True)
class Manifest:
    """What a run's log holds and what made it (`run.json`).

    Attributes
    ----------
    dataset : the ingested dataset the members predict.
    members : ensemble size M (members 0..M-1); None in a run.json that does not say.
    epochs : the last epoch E (epochs 0..E are logged); None in a run.json that does not say.
    arch : the architecture, or the name a recording script gave it.
    splits : the splits logged; None = every split of the dataset.
    origin : "train" (`curate train`), "recorder" (curate.Recorder) or "import" (import-log).
    seed : the seed every member's seeds derive from; None when unknown.
    loader : the loader settings of `curate train` ({} for recorded runs).
    train : the other training settings (those beyond arch, members, epochs and seed).
    """

    dataset: str
    members: int | None
    epochs: int | None
    arch: str = "unknown"
    splits: tuple[str, ...] | None = None
    origin: str = "train"
    seed: int | None = None
    loader: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.origin not in ORIGINS:
            raise ValueError(f"origin {self.origin!r}: one of {', '.join(ORIGINS)}")
        splits = None if self.splits is None else tuple(self.splits)
        object.__setattr__(self, "splits", splits)
        object.__setattr__(self, "loader", _plain(dict(self.loader)))
        object.__setattr__(self, "train", _plain(dict(self.train)))

    @property
    def recorded(self) -> bool:
        """Whether the log came from outside `curate train` (a Recorder or an import)."""
        return self.origin != "train"

    def missing_parts(
        self, run_dir: Path, last_epoch: int | None = None
    ) -> list[tuple[str, int, int]]:
        """The parts of this (recorded) run absent from `run_dir` (the module's `missing_parts`)."""
        return missing_parts(run_dir, self, last_epoch)

    def identity(self) -> dict:
        """{dataset, loader, train}: the settings that define the run (`runs.recipe`)."""
        train = {k: getattr(self, k) for k in _KEYS} | self.train
        return {"dataset": self.dataset, "loader": dict(self.loader), "train": train}

    def to_json(self) -> dict:
        """The manifest in layout 2, as `run.json` holds it."""
        ident = self.identity()
        splits = None if self.splits is None else list(self.splits)
        head = {"layout": LAYOUT, "origin": self.origin, "dataset": self.dataset, "splits": splits}
        return head | {"loader": ident["loader"], "train": ident["train"]}

    @classmethod
    def from_identity(
        cls, identity: dict, origin: str = "train", splits: list[str] | None = None
    ) -> Manifest:
        """The manifest of {dataset, loader, train} settings; a trained run's splits are its
        `train.log_splits` (empty: every split)."""
        train = dict(identity.get("train") or {})
        fields = {k: train.pop(k, None) for k in _KEYS}
        if origin == "train":
            splits = list(train.get("log_splits") or ()) or None
        return cls(
            dataset=identity["dataset"],
            members=fields["members"],
            epochs=fields["epochs"],
            arch=fields["arch"] if fields["arch"] is not None else "unknown",
            splits=splits,
            origin=origin,
            seed=fields["seed"],
            loader=dict(identity.get("loader") or {}),
            train=train,
        )

    @classmethod
    def from_json(cls, obj: dict, imported: bool = False) -> Manifest:
        """The manifest of a run.json's content, in any layout curate wrote.

        Parameters
        ----------
        obj : the parsed run.json.
        imported : for a layout older than 2 written by curate.Recorder: whether `curate
            import-log` made it (it left an `import.json` beside it).

        Raises
        ------
        ValueError : not a manifest (no dataset), or a layout newer than this curate reads.
        """
        if not isinstance(obj, dict) or not isinstance(obj.get("dataset"), str):
            raise ValueError("no dataset named")
        layout = obj.get("layout", 1)
        if layout == LAYOUT:
            return cls.from_identity(obj, obj.get("origin", "train"), obj.get("splits"))
        if layout != 1:
            raise ValueError(f"layout {layout!r}, written by a newer curate (this one reads 2)")
        if "recorder" not in obj:  # curate train's: {dataset, loader, train}
            return cls.from_identity(obj)
        seed = (obj.get("recorder") or {}).get("seed")
        ident = {"dataset": obj["dataset"], "loader": obj.get("loader") or {}}
        ident["train"] = {**(obj.get("train") or {}), "seed": seed}
        return cls.from_identity(ident, "import" if imported else "recorder", obj.get("splits"))


def load_manifest(run_dir: Path) -> Manifest | None:
    """The manifest of the run in `run_dir`: None when it has no run.json.

    Raises
    ------
    CurateError : the run.json is unreadable, or not a manifest.
    """
    path = manifest_path(run_dir)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise CurateError(f"{path}: cannot be read ({e.strerror})") from None
    try:
        return Manifest.from_json(json.loads(text), import_record_path(run_dir).exists())
    except (ValueError, TypeError, KeyError) as e:
        raise CurateError(
            f"{path} is not a run manifest ({e}); delete the folder {Path(run_dir)} to start the "
            "run over"
        ) from None


def write_manifest(run_dir: Path, manifest: Manifest) -> None:
    """Write `run.json` (layout 2) atomically, creating the run's folder."""
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    with atomic_path(manifest_path(run_dir)) as tmp:
        tmp.write_text(json.dumps(manifest.to_json(), indent=1))


def differences(old: Manifest, new: Manifest, defaults: dict | None = None) -> list[str]:
    """What differs between the manifest a run has and the one a writer brings, by name.

    Parameters
    ----------
    old : the run's manifest.
    new : the writer's.
    defaults : {"loader": {...}, "train": {...}}: the current defaults of the settings; a setting
        `old` lacks (written before it existed) counts as having its default.

    Returns
    -------
    "made by <who>" when another kind of writer made the run, then "dataset", "splits" and
    "<section>.<key>" for every setting that differs (of the recipe sections only when the same
    kind of writer made both); [] when the manifests agree.
    """
    diff = [f"made by {ORIGINS[old.origin]}"] if old.origin != new.origin else []
    diff += [k for k in ("dataset", "splits") if getattr(old, k) != getattr(new, k)]
    diff += [f"train.{k}" for k in _KEYS if getattr(old, k) != getattr(new, k)]
    if old.origin != new.origin:
        return diff  # another writer's settings: naming each of them says no more
    defaults = _plain(defaults or {})
    for section in ("loader", "train"):
        have, want = getattr(old, section), getattr(new, section)
        known = defaults.get(section, {})
        for k in [*want, *(k for k in have if k not in want)]:
            if k not in have and k in known and want[k] == known[k]:
                continue  # a setting added since, at its default
            if have.get(k) != want.get(k):
                diff.append(f"{section}.{k}")
    return diff


def prepare_run(run_dir: Path, manifest: Manifest, defaults: dict | None = None) -> list[str]:
    """Start a run, or check that the run already there is the same one.

    Parameters
    ----------
    run_dir : the run's folder.
    manifest : the writer's manifest.
    defaults : as for `differences`.

    Returns
    -------
    [] when the run is new (its folder and run.json are written) or the same; else what differs
    (`differences`), and nothing is written.
    """
    old = load_manifest(run_dir)
    if old is None:
        if _create_manifest(run_dir, manifest):
            return []
        old = load_manifest(run_dir)  # another process (a rank) created the run meanwhile
    return differences(old, manifest, defaults)


def _create_manifest(run_dir: Path, manifest: Manifest) -> bool:
    """Write `run.json` only if there is none (written whole, then renamed without replacing):
    True when this call created it. Two processes starting one run at once (the ranks of a DDP
    job) thus never both take their own settings for the run's."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    target = manifest_path(run_dir)
    tmp = run_dir / f".{target.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp"
    try:
        with open(tmp, "x") as f:  # the umask's mode, as run.json always had
            f.write(json.dumps(manifest.to_json(), indent=1))
        return rename_noreplace(tmp, target)
    finally:
        with suppress(FileNotFoundError):
            os.unlink(tmp)


def missing_parts(
    run_dir: Path, manifest: Manifest, last_epoch: int | None = None
) -> list[tuple[str, int, int]]:
    """The (split, member, epoch) parts of a recorded run whose shard is absent.

    Parameters
    ----------
    run_dir : the run's folder.
    manifest : its manifest.
    last_epoch : check epochs 0..last_epoch only (a prefix); None = every declared epoch.

    Returns
    -------
    The absent parts in member, epoch, split order; [] for a run `curate train` made (its progress
    records say how far it got) or a complete recorded run.
    """
    if not manifest.recorded or manifest.members is None or manifest.epochs is None:
        return []
    end = manifest.epochs if last_epoch is None else min(last_epoch, manifest.epochs)
    return [
        (s, m, e)
        for m in range(manifest.members)
        for e in range(end + 1)
        for s in manifest.splits or ()
        if not shard_path(run_dir, EVAL, s, m, e).exists()
    ]


def check_complete(run_dir: Path, last_epoch: int | None = None) -> None:
    """Refuse to score a recorded run with missing parts, naming them and the way out."""
    manifest = load_manifest(run_dir)
    missing = [] if manifest is None else missing_parts(run_dir, manifest, last_epoch)
    if not missing:
        return
    shown = ", ".join(f"split {s} member {m} epoch {e}" for s, m, e in missing[:8])
    more = f" and {len(missing) - 8} more" if len(missing) > 8 else ""
    first_gap = min(e for _, _, e in missing)
    prefix = (
        f", or score the complete epochs only with --epochs 1..{first_gap - 1}"
        if first_gap >= 2
        else ""
    )
    raise CurateError(
        f"run {Path(run_dir).name} lacks {len(missing)} parts of its log: {shown}{more}; record "
        f"them (rerun the script: parts already written are skipped){prefix}"
    )


def unfinished(run_dir: Path) -> tuple[str, str]:
    """(why, how to finish) for a run whose log exists but which has no `runs` row (`UNFINISHED`,
    by the manifest's origin; a run without a readable manifest: as `curate train`'s)."""
    try:
        manifest = load_manifest(run_dir)
    except CurateError:
        manifest = None
    return UNFINISHED[manifest.origin if manifest is not None else "train"]
