"""The DuckDB catalog: every table's schema and every column's meaning, in one place.

One process writes (each stage, inside a transaction); `curate query` and the app open it
read-only. Column comments say units and direction ("higher = easier").
"""

from __future__ import annotations

import subprocess
from contextlib import contextmanager
from pathlib import Path

import duckdb

from curate import __version__
from curate.errors import CurateError
from curate.workspace import Workspace

# table -> [(column, SQL type, meaning)]. The primary key is listed in PRIMARY_KEYS.
SCHEMA: dict[str, list[tuple[str, str, str]]] = {
    "datasets": [
        ("dataset", "VARCHAR", "catalog name of the dataset"),
        ("format", "VARCHAR", "ingest format: digits, mnist, cifar10, imagefolder, imagenet, ..."),
        ("source", "VARCHAR", "where the raw data came from (path, or 'sklearn' / 'synthetic')"),
        ("num_classes", "INTEGER", "number of classes K"),
        ("class_names", "VARCHAR[]", "class names, position = label"),
        ("splits", "VARCHAR[]", "split names, e.g. [train, test]"),
        ("counts", "BIGINT[]", "instances per split, in the order of `splits`"),
        ("storage", "VARCHAR", "how images are stored in the .beton: raw-uint8, float32 or jpeg"),
        ("image_shape", "INTEGER[]", "H, W, C of raw/float storage; NULL for jpeg (sizes vary)"),
        (
            "checksum",
            "VARCHAR",
            "BLAKE2b over the input bytes (and file names); detects changed input",
        ),
        ("random_labels_seed", "INTEGER", "seed of the label permutation, NULL for true labels"),
        ("recipe", "JSON", "the [dataset] section of the recipe that built it"),
        ("version", "VARCHAR", "curate version that built it"),
        ("git_rev", "VARCHAR", "git revision of curate that built it (NULL outside a checkout)"),
        ("created_at", "TIMESTAMP", "when ingest finished (UTC)"),
    ],
    "instances": [
        ("dataset", "VARCHAR", "catalog name of the dataset"),
        ("split", "VARCHAR", "train, test, val, ..."),
        (
            "idx",
            "INTEGER",
            "the instance's id in its split (standard order where the source has one); key of every table",
        ),
        ("label", "INTEGER", "class used for training (permuted under random labels)"),
        ("true_label", "INTEGER", "the source's own class (equal to label unless random labels)"),
        ("class_name", "VARCHAR", "name of `label`"),
        ("source", "VARCHAR", "file path of the image, or '<file>#<row>' for array sources"),
        ("source_index", "BIGINT", "row in the source array or file, NULL for image files"),
        ("height", "INTEGER", "height of the original image, pixels"),
        ("width", "INTEGER", "width of the original image, pixels"),
        ("channels", "INTEGER", "colour channels of the original image (1 grey, 3 RGB)"),
    ],
    "skipped": [
        ("dataset", "VARCHAR", "catalog name of the dataset"),
        ("split", "VARCHAR", "split the file belonged to"),
        ("source", "VARCHAR", "the file that could not be read"),
        ("reason", "VARCHAR", "why it was skipped"),
    ],
    "runs": [
        ("run", "VARCHAR", "run name (folder under <workspace>/runs/)"),
        ("dataset", "VARCHAR", "the dataset it trained on"),
        ("arch", "VARCHAR", "architecture of every member"),
        ("members", "INTEGER", "ensemble size M"),
        ("epochs", "INTEGER", "epochs E (the log also holds epoch 0, before training)"),
        ("seed", "BIGINT", "recipe seed every member's seeds derive from"),
        ("strategy", "VARCHAR", "fused (members in one model) or separate (one model each)"),
        ("device", "VARCHAR", "cpu or cuda"),
        ("world_size", "INTEGER", "processes that trained it (torchrun ranks)"),
        ("recipe", "JSON", "dataset, loader and train settings of the run"),
        ("path", "VARCHAR", "the run folder: prediction log, checkpoints, progress"),
        ("train_seconds", "DOUBLE", "wall time summed over members' epochs, seconds"),
        ("mean_final_acc", "JSON", "mean over members of the accuracy at epoch E, per split"),
        ("version", "VARCHAR", "curate version"),
        ("git_rev", "VARCHAR", "git revision of curate"),
        ("torch_version", "VARCHAR", "PyTorch version"),
        ("finished_at", "TIMESTAMP", "when the last member finished (UTC)"),
    ],
    "members": [
        ("run", "VARCHAR", "run name"),
        ("member", "INTEGER", "member m = 0..M-1"),
        ("init_seed", "BIGINT", "seed of the member's initial weights"),
        (
            "order_seed",
            "BIGINT",
            "seed of its data order (epoch e: default_rng(order_seed + e - 1))",
        ),
        ("aug_seed", "BIGINT", "seed of its augmentation draws"),
        ("epochs_done", "INTEGER", "last complete epoch"),
        ("final_acc", "JSON", "accuracy at the last epoch, per split (higher = better)"),
        (
            "train_seconds",
            "DOUBLE",
            "wall time of its training epochs (shared when fused), seconds",
        ),
    ],
}

PRIMARY_KEYS: dict[str, tuple[str, ...]] = {
    "datasets": ("dataset",),
    "instances": ("dataset", "split", "idx"),
    "runs": ("run",),
    "members": ("run", "member"),
}

# views: name -> (SQL, meaning); created after the tables they read exist
VIEWS: dict[str, tuple[str, str]] = {}


def git_revision() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def version_info() -> dict[str, str | None]:
    return {"version": __version__, "git_rev": git_revision()}


def create_statements() -> list[str]:
    stmts = []
    for table, cols in SCHEMA.items():
        body = [f"{c} {t}" for c, t, _ in cols]
        if table in PRIMARY_KEYS:
            body.append(f"PRIMARY KEY ({', '.join(PRIMARY_KEYS[table])})")
        stmts.append(f"CREATE TABLE IF NOT EXISTS {table} ({', '.join(body)})")
        for c, _, meaning in cols:
            stmts.append(
                f"COMMENT ON COLUMN {table}.{c} IS '{meaning.replace(chr(39), chr(39) * 2)}'"
            )
    return stmts


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    for stmt in create_statements():
        con.execute(stmt)
    for name, (sql, _) in VIEWS.items():
        con.execute(f"CREATE OR REPLACE VIEW {name} AS {sql}")


@contextmanager
def write(ws: Workspace):
    """Open the catalog for writing, inside one transaction: all of the block's changes or none."""
    ws.root.mkdir(parents=True, exist_ok=True)
    try:
        con = duckdb.connect(str(ws.catalog))
    except duckdb.IOException as e:
        raise CurateError(
            f"cannot open the catalog {ws.catalog} for writing ({e}); "
            "close the app or other curate commands using it and retry"
        ) from None
    try:
        ensure_schema(con)
        con.execute("BEGIN TRANSACTION")
        try:
            yield con
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    finally:
        con.close()


def read(ws: Workspace) -> duckdb.DuckDBPyConnection:
    """Open the catalog read-only; a clear error when there is none yet."""
    if not ws.catalog.exists():
        raise CurateError(
            f"no catalog at {ws.catalog}; run `curate ingest digits --workspace {ws.root}` "
            "(or `make scores`) first, or pass the right --workspace"
        )
    try:
        return duckdb.connect(str(ws.catalog), read_only=True)
    except duckdb.IOException as e:
        raise CurateError(
            f"cannot open the catalog {ws.catalog} ({e}); is a curate command writing to it?"
        ) from None


def column_doc(table: str, column: str) -> str | None:
    for c, _, meaning in SCHEMA.get(table, []):
        if c == column:
            return meaning
    return None
