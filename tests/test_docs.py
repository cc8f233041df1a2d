"""The documentation site: it builds with `mkdocs build --strict` (every link, anchor and docstring
resolved), its generated references cover every subcommand and table, it points nowhere outside the
repository, and the Bring-your-own-model scripts run as written."""

from __future__ import annotations

import ast
import importlib.util
import io
import os
import re
import subprocess
import sys
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
FORBIDDEN = ("SCIENCE.md", "../shared")


def _docs_tools_missing() -> str | None:
    for module in ("mkdocs", "material", "mkdocstrings_handlers.python", "latex2mathml"):
        try:
            if importlib.util.find_spec(module) is None:
                return module
        except ModuleNotFoundError:
            return module
    return None


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    missing = _docs_tools_missing()
    if missing:
        pytest.skip(f"{missing} is not installed: pip install -r requirements-docs.txt (make docs)")
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": str(ROOT)}
    res = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, f"mkdocs build --strict failed:\n{res.stdout}\n{res.stderr}"
    return out


@pytest.mark.slow
def test_site_builds_strict_and_references_cover_the_code(site):
    from curate.catalog.schema import SCHEMA
    from curate.catalog.views import VIEWS
    from curate.cli import build_parser

    cli = (site / "reference" / "cli" / "index.html").read_text()
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    assert sub.choices, "no subcommands found"
    for name, p in sub.choices.items():
        assert f'id="{name}"' in cli, f"curate {name} is missing from the command-line reference"
        for action in p._actions:
            for flag in action.option_strings:
                assert flag in cli, f"curate {name} {flag} is missing from the reference"
    tables = (site / "reference" / "tables" / "index.html").read_text()
    for table, cols in SCHEMA.items():
        assert f'id="{table}"' in tables, f"table {table} is missing from the tables reference"
        for col, _, _ in cols:
            assert f"<code>{col}</code>" in tables, f"{table}.{col} is missing"
    for view in VIEWS:
        assert f'id="{view}"' in tables, f"view {view} is missing from the tables reference"
    bench = (site / "benchmarks" / "index.html").read_text()
    for result in sorted((ROOT / "benchmarks" / "results").glob("*.json")):
        assert result.name in bench, f"{result.name} is not on the benchmarks page"
    for img in re.findall(r'<img [^>]*src="([^"]+\.svg)"', bench):
        assert (site / "benchmarks" / img).resolve().exists(), f"figure {img} was not generated"
    concepts = (site / "concepts" / "index.html").read_text()
    assert "<math" in concepts and "arithmatex" not in concepts, "formulas were not rendered"
    api = (site / "reference" / "api" / "index.html").read_text()
    assert 'id="curate.record.recorder.Recorder"' in api
    # generated pages exist only in the build
    for page in ("reference/cli.md", "reference/tables.md"):
        assert not (DOCS / page).exists(), (
            f"docs/{page} is generated at build time: do not commit it"
        )


def _comments_and_docstrings(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every docstring and comment of a Python file."""
    source = path.read_text()
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=False)
            if doc:
                found.append((getattr(node, "lineno", 1), doc))
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            found.append((tok.start[0], tok.string))
    return found


def test_nothing_points_outside_the_repository():
    bad = []
    for page in sorted(DOCS.rglob("*")):
        if page.suffix in (".md", ".py", ".yml") and page.is_file():
            text = page.read_text()
            bad += [f"{page.relative_to(ROOT)}: {w}" for w in FORBIDDEN if w in text]
    for path in sorted((ROOT / "curate").rglob("*.py")):
        for line, text in _comments_and_docstrings(path):
            bad += [f"{path.relative_to(ROOT)}:{line}: {w}" for w in FORBIDDEN if w in text]
    assert not bad, (
        "the docs define everything themselves; point at docs/concepts.md instead:\n"
        + ("\n".join(bad))
    )


# ----------------------------------------------------------------------------- runnable snippets


def _snippets(page: Path) -> dict[str, str]:
    """The code blocks of a page that carry a title="file.py", by title."""
    text = page.read_text()
    return dict(re.findall(r'```python title="([^"]+)"\n(.*?)```', text, re.S))


def _run(args: list[str], cwd: Path, timeout: int = 600) -> str:
    env = {k: v for k, v in os.environ.items() if k != "CURATE_WORKSPACE"}
    env.update(PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    res = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, (
        f"{' '.join(args)} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    )
    return res.stdout


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A folder where docs/byom.md's toy dataset is made and registered, as the page says."""
    snippets = _snippets(DOCS / "byom.md")
    work = tmp_path_factory.mktemp("byom")
    for name, code in snippets.items():
        (work / name).write_text(code)
    _run([sys.executable, "make_toy.py"], work)
    _run(
        [
            sys.executable,
            "-m",
            "curate",
            "ingest",
            "labels",
            "--labels",
            "labels.csv",
            "--name",
            "toy",
        ],
        work,
    )
    return work, snippets


@pytest.mark.slow
@pytest.mark.parametrize(
    "script, run, needs",
    [
        ("record_toy.py", "toy-mlp", None),
        ("record_toy_numpy.py", "toy-numpy", None),
        ("record_toy_lightning.py", "toy-lightning", "lightning"),
        ("record_toy_hf.py", "toy-hf", "transformers"),
    ],
)
def test_byom_scripts_run_on_a_cpu_and_score(toy, script, run, needs):
    work, snippets = toy
    assert script in snippets, f"docs/byom.md has no block titled {script}"
    assert ".cuda()" not in snippets[script], "use .to(device), so the example runs on a CPU"
    if needs and importlib.util.find_spec(needs) is None:
        pytest.skip(f"{needs} is not installed (an optional extra)")
    _run([sys.executable, script], work)
    out = _run([sys.executable, "-m", "curate", "score", run], work)
    assert run in out
    if script == "record_toy.py":  # a rerun finds every part written, and resumes nothing
        again = subprocess.run(
            [sys.executable, script],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert again.returncode == 0 and "not recorded" not in again.stderr, again.stderr


@pytest.mark.slow
def test_readme_snippets_run_as_printed(tmp_path):
    """README.md's blocks, in order, in an empty folder: each Python block is saved under the file
    name its first comment gives, each shell block is run (but `make`, which installs)."""
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```(bash|python)\n(.*?)```", text, re.S)
    env = {k: v for k, v in os.environ.items() if k != "CURATE_WORKSPACE"}
    bin_dir = str(Path(sys.executable).parent)  # `curate` and `python` of this environment
    env.update(PATH=bin_dir + os.pathsep + env["PATH"], OMP_NUM_THREADS="1")
    ran = 0
    for kind, code in blocks:
        if kind == "python":
            name = re.match(r"# (\S+\.py)", code)
            assert name, f"a README Python block starts with '# file.py': {code[:60]!r}"
            (tmp_path / name.group(1)).write_text(code)
            continue
        if re.search(r"^make ", code, re.M):
            continue
        res = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", code],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert res.returncode == 0, f"{code}\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}"
        ran += 1
    assert ran >= 3 and (tmp_path / "workspace" / "reports" / "digits" / "index.html").is_file()
