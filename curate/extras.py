"""The optional parts of curate and the extra that installs each.

`pip install curate` is the light core: recording (`curate.Recorder` fed numpy arrays, or anything
with `__array__`; torch tensors when torch is there), `ingest labels`, `import-log`, `score`,
`label-issues`, `prune`, `curriculum`, `evaluate`, `report` and `query`. The rest comes with an
extra (pyproject.toml lists what each holds):

- `curate[train]`: torch, torchvision, ffcv (and what ffcv needs: numba, opencv) and scikit-learn,
  for `ingest` of images, `train`, `run`, `pairs`;
- `curate[stats]`: `curate[train]`'s packages and scikit-image, threadpoolctl, for `stats`;
- `curate[app]`: streamlit, for `app`;
- `curate[lightning]`, `curate[hf]`: the callbacks of `curate.record.lightning` and
  `curate.record.hf`;
- `curate[all]`: every one of them.

A command that needs an extra calls `need(extra, *modules)` where it imports them: when one is
missing it stops with one `error:` line naming the extra to install (a `CurateError`, exit code 2).
`need` only looks the modules up (`importlib.util.find_spec`), it imports nothing.
"""

from __future__ import annotations

import importlib.util

from curate.errors import CurateError

# the extras and what each installs (pyproject.toml's optional-dependencies say the same)
EXTRAS: dict[str, str] = {
    "train": "torch, torchvision, ffcv, numba, opencv-python, scikit-learn",
    "stats": "the train extra, scikit-image, threadpoolctl",
    "app": "streamlit",
    "lightning": "lightning",
    "hf": "transformers, accelerate",
    "all": "every extra",
}

# a module curate imports -> (the pip package holding it, the extra that installs it)
MODULES: dict[str, tuple[str, str]] = {
    "torch": ("torch", "train"),
    "torchvision": ("torchvision", "train"),
    "ffcv": ("ffcv", "train"),
    "numba": ("numba", "train"),
    "cv2": ("opencv-python", "train"),
    "sklearn": ("scikit-learn", "train"),
    "skimage": ("scikit-image", "stats"),
    "threadpoolctl": ("threadpoolctl", "stats"),
    "streamlit": ("streamlit", "app"),
    "lightning": ("lightning", "lightning"),
    "transformers": ("transformers", "hf"),
    "accelerate": ("accelerate", "hf"),
}


def installed(module: str) -> bool:
    """True when `module` (a top-level name, e.g. "torch") can be imported; imports nothing."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken package, or a module without a spec
        return False


def install_hint(extra: str) -> str:
    """The command that installs an extra: pip install 'curate[train]'."""
    return f"pip install 'curate[{extra}]'"


def need(extra: str, *modules: str, what: str | None = None) -> None:
    """Stop (CurateError, exit code 2) unless every module of `modules` can be imported.

    Parameters
    ----------
    extra : the extra that installs them: "train", "stats", "app", "lightning", "hf".
    modules : top-level module names, e.g. "torch", "ffcv".
    what : who needs them, for the message (e.g. "curate train"); default "this".
    """
    if extra not in EXTRAS:
        raise ValueError(f"unknown extra {extra!r}; extras: {', '.join(EXTRAS)}")
    missing = [m for m in modules if not installed(m)]
    if missing:
        raise CurateError(missing_message(extra, missing, what))


def missing_message(extra: str, missing: list[str], what: str | None = None) -> str:
    """`curate train needs torch, ffcv, not installed here: pip install 'curate[train]'`."""
    names = ", ".join(MODULES.get(m, (m, extra))[0] for m in missing)
    return (
        f"{what or 'this'} needs {names}, not installed here (the core of curate leaves them "
        f"out): {install_hint(extra)}"
    )


def extra_of(error: ModuleNotFoundError) -> str | None:
    """The extra that installs the module an import could not find; None for any other module."""
    top = (error.name or "").split(".")[0]
    return MODULES[top][1] if top in MODULES else None
