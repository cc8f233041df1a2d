"""curate: which images are trivial, which impossible, and why.

Train an ensemble, log every member's prediction on every image after every epoch, turn the log
into per-image difficulty scores in a DuckDB catalog, and export curricula and human-study pairs.
"""

from curate.errors import CurateError as CurateError  # imports nothing: `import curate` stays light

__version__ = "0.1.0"


def __getattr__(name: str):
    """`curate.Recorder` (the prediction log of any training loop), imported when first used."""
    if name in ("Recorder", "RecordedRun"):
        from curate.record import recorder

        return getattr(recorder, name)
    raise AttributeError(f"module 'curate' has no attribute {name!r}")
