"""The formats package: every format module imports on its own (no import cycle through the
registry), none imports the package back, and the registry lists every format module's reader."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FORMATS_DIR = ROOT / "curate" / "data" / "formats"
MODULES = sorted(p.stem for p in FORMATS_DIR.glob("*.py") if p.stem != "__init__")


def test_the_package_holds_the_expected_modules():
    expected = {"base", "cifar", "digits", "idx", "imagefolder", "imagenet", "kth", "synthetic"}
    assert expected | {"voc"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_each_format_module_imports_alone_in_a_fresh_interpreter(name):
    """A module that imported the package back (`from curate.data.formats import FORMATS`) while the
    package's __init__ is importing it would fail here with a partially initialised module."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    code = f"import curate.data.formats.{name} as m; print(m.__name__)"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"curate.data.formats.{name}"


@pytest.mark.parametrize("name", MODULES)
def test_no_format_module_imports_the_package_back(name):
    """Also imports inside functions: the old readers imported the registry's module lazily."""
    tree = ast.parse((FORMATS_DIR / f"{name}.py").read_text())
    back = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.module == "curate.data.formats" or (node.level and node.module is None):
                back.append(ast.unparse(node))
        elif isinstance(node, ast.Import):
            back += [a.name for a in node.names if a.name == "curate.data.formats"]
    assert back == [], f"{name}.py imports the package: {back}"


def test_the_registry_lists_each_reader_of_the_modules():
    from curate.data import formats

    readers = {f"{fn.__module__}.{fn.__name__}" for fn in formats.FORMATS.values()}
    for name in MODULES:
        if name == "base":
            continue
        assert any(r.startswith(f"curate.data.formats.{name}.read_") for r in readers), name
    assert list(formats.FORMATS)[:3] == ["digits", "mnist", "fashion-mnist"]
