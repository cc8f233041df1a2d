"""The DuckDB catalog: every table's schema and every column's meaning, the views, and the two ways
in (one writing stage at a time, inside a transaction; sandboxed read-only readers).

- `schema`: `SCHEMA`, `PRIMARY_KEYS`, the versioned migration (`SCHEMA_VERSION`, `MIGRATIONS`) and
  `insert_frame`, the one way rows are written (by column name).
- `views`: `difficulty` and its bands, `label_issues`, `predictions` over the Parquet log.
- `connect`: `write`, `read` (a `Reader`), `check_writable`, the bounded wait for a busy file.
"""

from curate.catalog.connect import (
    BUSY_TIMEOUT,
    Reader,
    check_select,
    check_writable,
    ensure_schema,
    git_revision,
    read,
    split_labels,
    version_info,
    write,
)
from curate.catalog.schema import (
    META_TABLE,
    MIGRATIONS,
    PRIMARY_KEYS,
    SCHEMA,
    SCHEMA_VERSION,
    column_doc,
    create_statements,
    has_columns,
    insert_frame,
    migrate,
    schema_digest,
    stored_version,
)
from curate.catalog.views import VIEWS, refresh_views

__all__ = [
    "BUSY_TIMEOUT",
    "META_TABLE",
    "MIGRATIONS",
    "PRIMARY_KEYS",
    "SCHEMA",
    "SCHEMA_VERSION",
    "VIEWS",
    "Reader",
    "check_select",
    "check_writable",
    "column_doc",
    "create_statements",
    "ensure_schema",
    "git_revision",
    "has_columns",
    "insert_frame",
    "migrate",
    "read",
    "refresh_views",
    "schema_digest",
    "split_labels",
    "stored_version",
    "version_info",
    "write",
]
