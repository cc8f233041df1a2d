"""Where a run's log lives inside its folder: the one place the folder layout is spelled out.

    <runs>/<run>/run.json                                  the manifest (`curate.runlog.manifest`)
    <runs>/<run>/import.json                               an import's record (`curate import-log`)
    <runs>/<run>/progress/member=<m>.json                  the completion flags (`progress`)
    <runs>/<run>/predictions/pass=<pass>/split=<split>/member=<m>/epoch=<e>/part.parquet
                                                           the shards (`shards`)
    <runs>/<run>/predictions/.../epoch=<e>/.rank-<r>-of-<w>.parquet
                                                           one rank's rows of a part recorded
                                                           sharded (merged into part.parquet)
    <runs>/<run>/state/member=<m>/epoch=<e>.pt             a Recorder user's training state

`<runs>` is the workspace's `runs/` folder (`Workspace.run_dir`). Pass `eval` is the evaluation pass
after each epoch (every instance once, eval mode), the one scoring reads; pass `train-forward` is the
training forward pass (augmented, train mode; instances dropped by drop_last are absent). Every
other module asks these functions for a path instead of joining the names itself.
"""

from __future__ import annotations

from pathlib import Path

EVAL = "eval"  # the evaluation pass: every instance once after every epoch, what scoring reads
TRAIN_FORWARD = "train-forward"  # the training forward pass (`train.log_train_pass`)
MANIFEST = "run.json"
IMPORT_RECORD = "import.json"
PREDICTIONS = "predictions"
SHARD = "part.parquet"
STATE = "state"
# the bounds of a run, whoever writes it (`curate train`, a Recorder, import-log): an ensemble of at
# most 1000 members and epochs 0..100000, so that a mistyped size is refused before anything grows
MAX_MEMBERS = 1000
MAX_EPOCHS = 100_000
# regular expression for the run's name in the path of one of its shards (the `predictions` view)
# (anchored at the end: a workspace whose own path holds /runs/x/predictions/ names no run x)
RUN_IN_SHARD_PATH = (
    f"/runs/([^/]+)/{PREDICTIONS}/[^/]+/[^/]+/[^/]+/[^/]+/{SHARD.replace('.', '[.]')}$"
)


def manifest_path(run_dir: Path) -> Path:
    """The run's manifest, `run.json`."""
    return Path(run_dir) / MANIFEST


def import_record_path(run_dir: Path) -> Path:
    """The record `curate import-log` keeps of the arrays it imported, beside the manifest."""
    return Path(run_dir) / IMPORT_RECORD


def split_dir(run_dir: Path, pass_: str, split: str) -> Path:
    """The folder of one pass and split: one `member=<m>` folder per member logged."""
    return Path(run_dir) / PREDICTIONS / f"pass={pass_}" / f"split={split}"


def shard_path(run_dir: Path, pass_: str, split: str, member: int, epoch: int) -> Path:
    """The shard of one member at one epoch on one split of one pass."""
    return split_dir(run_dir, pass_, split) / f"member={member}" / f"epoch={epoch}" / SHARD


def rank_shard_path(
    run_dir: Path, pass_: str, split: str, member: int, epoch: int, rank: int, world: int
) -> Path:
    """The rows rank `rank` of `world` recorded of one part (hidden: readers see `part.parquet`
    only, written once the ranks together cover the split)."""
    return shard_path(run_dir, pass_, split, member, epoch).with_name(
        f".rank-{rank}-of-{world}.parquet"
    )


def state_dir(run_dir: Path, member: int) -> Path:
    """The folder of one member's saved training states (`Recorder.save_state`)."""
    return Path(run_dir) / STATE / f"member={member}"


def state_path(run_dir: Path, member: int, epoch: int) -> Path:
    """The training state of `member` saved with `epoch`."""
    return state_dir(run_dir, member) / f"epoch={epoch}.pt"


def saved_state_epochs(run_dir: Path, member: int) -> list[int]:
    """The epochs of `member` with a saved training state, ascending."""
    d = state_dir(run_dir, member)
    if not d.is_dir():
        return []
    return sorted(int(p.stem.split("=", 1)[1]) for p in d.glob("epoch=*.pt"))


def progress_path(run_dir: Path, member: int) -> Path:
    """The progress record (completion flags) of one member."""
    return Path(run_dir) / "progress" / f"member={member}.json"


def logged_splits(run_dir: Path, pass_: str = EVAL) -> list[str]:
    """The splits with a folder in pass `pass_` of the log, sorted."""
    base = Path(run_dir) / PREDICTIONS / f"pass={pass_}"
    if not base.is_dir():
        return []
    return sorted(p.name.split("=", 1)[1] for p in base.glob("split=*") if p.is_dir())


def logged_members(run_dir: Path, split: str, pass_: str = EVAL) -> list[int] | None:
    """The members with a folder in the log of `split`, sorted; None when the split has none."""
    base = split_dir(run_dir, pass_, split)
    if not base.is_dir():
        return None
    return sorted(int(p.name.split("=", 1)[1]) for p in base.glob("member=*"))


def run_names(runs: Path) -> list[str]:
    """The runs under the folder `runs` (those with a manifest), sorted by name."""
    return sorted(p.parent.name for p in Path(runs).glob(f"*/{MANIFEST}"))


def shards_glob(runs: Path) -> str:
    """The glob of every shard of every run under `runs` (DuckDB's `read_parquet` takes it)."""
    return str(runs) + f"/*/{PREDICTIONS}/*/*/*/*/{SHARD}"


def has_shards(runs: Path) -> bool:
    """Whether any run under `runs` has written a shard."""
    return next(Path(runs).glob(f"*/{PREDICTIONS}/*/*/*/*/{SHARD}"), None) is not None
