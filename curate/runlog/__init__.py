"""The run log: the contract between whatever trains a run and whatever reads it.

Modelled on MadryLab's datamodels (one spec, one writer, a completion flag): a run is a folder
under `<workspace>/runs/` holding

- one spec, the manifest `run.json` (`manifest.Manifest`): the dataset, the splits logged, M members,
  epochs 0..E, the architecture and the recipe, and who made it (`curate train`, a
  `curate.Recorder`, `curate import-log`); fixed when the run starts, checked by every later writer;
- the shards (`shards`): one Parquet file per pass, split, member and epoch, one row per instance,
  its columns computed from logits by `columns`;
- the completion flags (`progress`): per member, the epochs whose shards are all written.

`layout` is the one place the folder's paths are spelled out, `load_manifest` the one reader of
run.json (old layouts included), and `record_run` the one writer of the catalog's `runs` and
`members` rows. `curate.train`, `curate.record` and `curate.scores` depend on this package, not on
each other.

The modules needing pyarrow, torch or the catalog (`shards`, `columns`, `register`) are imported
when first used, so reading a manifest or a path stays light.
"""

from curate.runlog.layout import (
    EVAL,
    TRAIN_FORWARD,
    has_shards,
    import_record_path,
    logged_members,
    logged_splits,
    manifest_path,
    progress_path,
    rank_shard_path,
    run_names,
    saved_state_epochs,
    shard_path,
    shards_glob,
    split_dir,
    state_dir,
    state_path,
)
from curate.runlog.manifest import (
    ORIGINS,
    Manifest,
    check_complete,
    differences,
    load_manifest,
    missing_parts,
    prepare_run,
    write_manifest,
)
from curate.runlog.progress import (
    last_done_epoch,
    mark_epoch_done,
    member_seconds,
    member_states,
    read_progress,
)

_LAZY = {
    "SHARD_SCHEMA": "shards",
    "WIDE_SCHEMA": "shards",
    "write_shard": "shards",
    "read_shard": "shards",
    "merge_rank_shards": "shards",
    "disagree": "shards",
    "COLUMNS": "shards",
    "MergedPart": "shards",
    "has_column": "shards",
    "logit_stats": "columns",
    "multilabel_stats": "columns",
    "error_norm": "columns",
    "k_hot": "columns",
    "member_columns": "columns",
    "RunFacts": "register",
    "record_run": "register",
    "world_size": "register",
}

__all__ = [
    "EVAL",
    "ORIGINS",
    "TRAIN_FORWARD",
    "Manifest",
    "check_complete",
    "differences",
    "has_shards",
    "import_record_path",
    "last_done_epoch",
    "load_manifest",
    "logged_members",
    "logged_splits",
    "manifest_path",
    "mark_epoch_done",
    "member_seconds",
    "member_states",
    "missing_parts",
    "prepare_run",
    "progress_path",
    "rank_shard_path",
    "read_progress",
    "run_names",
    "saved_state_epochs",
    "shard_path",
    "shards_glob",
    "split_dir",
    "state_dir",
    "state_path",
    "write_manifest",
    *_LAZY,
]


def __getattr__(name: str):
    """The names of `shards`, `columns` and `register`, importing their module when first used."""
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f"curate.runlog.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'curate.runlog' has no attribute {name!r}")
