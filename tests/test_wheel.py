"""`pip install curate`: the wheel built from this checkout, installed with its core dependencies
alone in a fresh virtual environment (no torch, no ffcv, no compiler), records numpy logits with
`curate.Recorder` and runs the core commands; a command of an extra says which to install.

Also, quickly: the numpy stand-ins of the core (`curate.scores.kernels_numpy` for the numba
kernels, `curate.runlog.columns.numpy_columns` for the torch columns) give the numbers the compiled
and torch versions give, and `curate.extras` names the extra to install.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
# what the core must not bring (the extras do)
HEAVY = ("torch", "torchvision", "ffcv", "numba", "cv2", "sklearn", "skimage", "streamlit")
PIP_CACHE = Path(tempfile.gettempdir()) / "curate-test-wheel-pip-cache"  # kept between runs
N_TRAIN, N_TEST, CLASSES, M, E = 60, 30, 3, 2, 2


def run(cmd: list, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run `cmd` (no shell) away from this environment and checkout: in `cwd` (outside the
    checkout, whose curate `python -c` would import), no PYTHONPATH, no user site-packages."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(PYTHONNOUSERSITE="1", PIP_DISABLE_PIP_VERSION_CHECK="1", MPLBACKEND="Agg")
    env.pop("VIRTUAL_ENV", None)
    env.pop("CURATE_WORKSPACE", None)
    return subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd
    )


def ok(res: subprocess.CompletedProcess) -> str:
    assert res.returncode == 0, f"{res.args}\nstdout:\n{res.stdout}\nstderr:\n{res.stderr}"
    assert "Traceback" not in res.stderr, res.stderr
    return res.stdout


def build_wheel(out: Path) -> Path:
    """The wheel of this checkout, built from a copy of its sources (the checkout gets no build/
    or egg-info)."""
    src = out / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "curate", src / "curate", ignore=ignore)
    shutil.copytree(ROOT / "app", src / "app", ignore=ignore)
    shutil.copytree(ROOT / "pipelines", src / "pipelines", ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", out / "dist"]
    if _has("setuptools"):  # the build backend is here (make install); else pip fetches it
        cmd.append("--no-build-isolation")
    ok(run([*cmd, src.resolve()], cwd=out))  # a path: never a name pip would look up
    (wheel,) = (out / "dist").glob("curate-*.whl")
    return wheel


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


@pytest.fixture(scope="module")
def core(tmp_path_factory):
    """A fresh virtual environment (no system site-packages) holding the wheel and its core
    dependencies only: its bin/ folder (the environment, ~700 MB, is removed afterwards)."""
    base = tmp_path_factory.mktemp("wheel")
    wheel = build_wheel(base)
    ok(run([sys.executable, "-m", "venv", base / "venv"], cwd=base))
    bin_ = base / "venv" / "bin"
    pip = [bin_ / "python", "-m", "pip", "--cache-dir", PIP_CACHE]
    # the index as this machine's pip is configured (PyPI, or a local mirror): reachable at all?
    probe = [*pip, "download", "--no-deps", "-q", "--timeout", "30", "--retries", "1"]
    probe = run([*probe, "-d", base / "probe", "tqdm"], base, 300)
    if probe.returncode != 0:
        pytest.skip(f"the package index is unreachable (pip download tqdm): {probe.stderr[-300:]}")
    ok(run([*pip, "install", "-q", wheel], base, timeout=1800))
    yield bin_
    shutil.rmtree(base / "venv", ignore_errors=True)


@pytest.mark.slow
def test_target_and_prefix_installs_find_the_recipes_and_the_app(core, tmp_path):
    """`pip install --target T` and `--prefix P` put the data files in T/share and P/share, away
    from the interpreter's data path: `curate run NAME` and `curate app` find them there too."""
    py = core / "python"
    (wheel,) = (core.parent.parent / "dist").glob("curate-*.whl")
    for flag in ("--target", "--prefix"):
        dest = tmp_path / flag.strip("-")
        pip = [py, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--ignore-installed"]
        pip += [flag, dest, wheel]  # ignore the venv's own curate, else --prefix installs nothing
        ok(run(pip, cwd=tmp_path))
        site = dest if flag == "--target" else next(dest.glob("**/site-packages"))
        probe = (
            f"import sys; sys.path.insert(0, {str(site)!r}); import curate; "
            "from curate.config import find_recipe; from curate.commands.explorer import app_file; "
            "print(curate.__file__); print(find_recipe('digits')); print(app_file()[0])"
        )
        where, recipe, app = ok(run([py, "-c", probe], cwd=tmp_path)).split()
        assert where.startswith(str(site)), where
        assert recipe == str(dest / "share/curate/pipelines/digits.toml"), (flag, recipe)
        assert app == str(dest / "share/curate/app/app.py"), (flag, app)


@pytest.mark.slow
def test_the_core_wheel_records_and_scores_without_torch(core, tmp_path):
    py, curate = core / "python", core / "curate"

    def sh(cmd: list) -> subprocess.CompletedProcess:
        return run(cmd, cwd=tmp_path)

    # nothing heavy came with it
    found = ok(
        sh(
            [
                py,
                "-c",
                "import importlib.util as u, sys; "
                f"print(' '.join(m for m in {HEAVY!r} if u.find_spec(m)))",
            ]
        )
    )
    assert found.strip() == "", f"the core install holds {found.strip()}"
    where = ok(sh([py, "-c", "import curate; print(curate.__file__)"]))
    assert str(core.parent) in where, where  # the installed wheel, not this checkout
    # the explorer came along as a data file, where `curate app` looks for it
    app = ok(sh([py, "-c", "from curate.commands.explorer import app_file; print(app_file())"]))
    assert app.strip() == f"({(core.parent / 'share/curate/app/app.py')!r}, None)", app
    # and the recipes, where `curate run NAME` finds them; all of them
    found = ok(
        sh([py, "-c", "from curate.config import find_recipe; print(find_recipe('cifar10-cpu'))"])
    )
    assert found.strip() == str(core.parent / "share/curate/pipelines/cifar10-cpu.toml"), found
    shipped = {p.name for p in (core.parent / "share/curate/pipelines").glob("*.*")}
    assert shipped == {p.name for p in (ROOT / "pipelines").glob("*.*")}, shipped  # no __pycache__

    ws = tmp_path / "ws"
    rng = np.random.default_rng(0)
    labels = {"train": rng.integers(0, CLASSES, N_TRAIN), "test": rng.integers(0, CLASSES, N_TEST)}
    rows = ["split,idx,label"] + [
        f"{s},{i},{y}" for s, ys in labels.items() for i, y in enumerate(ys.tolist())
    ]
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    out = ok(
        sh(
            [curate, "ingest", "labels", "--labels", tmp_path / "labels.csv", "--name", "toy"]
            + ["--workspace", ws]
        )
    )
    assert "toy" in out

    # a numpy loop: 2 members, epochs 0..2, batches of 16 in a shuffled order; one batch given as
    # an object with __array__ (what a JAX or TensorFlow array is to numpy)
    script = tmp_path / "loop.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys
            import numpy as np
            import curate

            class Wrapped:
                def __init__(self, a):
                    self.a = a
                def __array__(self, dtype=None, copy=None):
                    return self.a

            labels = {{s: np.array(v) for s, v in { ({s: y.tolist() for s, y in labels.items()})!r}.items()}}
            rec = curate.Recorder(sys.argv[1], run="np", dataset="toy", members={M}, epochs={E})
            rng = np.random.default_rng(1)
            for m in range({M}):
                for e in range(rec.next_epoch(m), {E} + 1):
                    for split, y in labels.items():
                        order = rng.permutation(len(y))
                        for b in range(0, len(y), 16):
                            idx = order[b : b + 16]
                            z = rng.normal(size=(len(idx), {CLASSES})).astype(np.float32)
                            z[np.arange(len(idx)), y[idx]] += 1.5 * e  # learns as epochs go by
                            rec.log(split, m, e, idx, Wrapped(z) if b == 16 else z)
                    rec.save_state(m, e, {{"w": np.full(3, e)}})  # pickled: no torch here
            assert rec.load_state(0)[0] == {E} and rec.load_state(0)[1]["w"][0] == {E}
            done = rec.close()
            assert done.missing == [], done.missing
            assert "torch" not in sys.modules
            print("recorded", done.epochs_done)
            """
        )
    )
    assert "recorded" in ok(sh([py, script, ws]))

    # import-log: the same kind of run from saved arrays (M, E + 1, N, C) per split
    arrays = tmp_path / "arrays"
    arrays.mkdir()
    for split, y in labels.items():
        z = rng.normal(size=(M, E + 1, len(y), CLASSES)).astype(np.float32)
        np.save(arrays / f"{split}.npy", z)
    ok(sh([curate, "import-log", "imp", "--dataset", "toy", "--dir", arrays, "--workspace", ws]))

    for name in ("np", "imp"):
        ok(sh([curate, "score", name, "--workspace", ws]))
    sql = (
        "SELECT run, count(*) AS n, (avg(accessibility) > 0.4)::INT AS learned FROM instance_scores "
        "WHERE split = 'train' GROUP BY run ORDER BY run"
    )
    table = ok(sh([curate, "query", sql, "--format", "csv", "--workspace", ws]))
    assert table.split() == ["run,n,learned", f"imp,{N_TRAIN},0", f"np,{N_TRAIN},1"]

    # the other core commands
    w = ["--workspace", ws]
    ok(sh([curate, "label-issues", "np", "--top", "5", *w]))
    ok(
        sh(
            [
                curate,
                "prune",
                "np",
                "--keep",
                "0.5",
                "--strategy",
                "hard",
                "--out",
                tmp_path / "k.npy",
                *w,
            ]
        )
    )
    ok(sh([curate, "curriculum", "np", "--out", tmp_path / "order.npy", *w]))
    np.save(tmp_path / "ref.npy", rng.normal(size=N_TRAIN))
    ok(sh([curate, "evaluate", "np", "--reference", tmp_path / "ref.npy", *w]))
    ok(sh([curate, "report", "np", "--out", tmp_path / "report", *w]))
    assert (tmp_path / "report" / "index.html").stat().st_size > 0

    # every command's --help, those of the extras too (their registries are not importable here)
    helps = """
        import contextlib, io
        from curate.cli import COMMANDS, build_parser, main
        names = list(build_parser()._subparsers._group_actions[0].choices)
        assert len(names) == len(COMMANDS), names
        for name in names:
            out = io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
                main([name, "--help"])
            assert "usage: curate " + name in out.getvalue(), name
        print(len(names))
        """
    assert int(ok(sh([py, "-c", textwrap.dedent(helps)]))) >= 15

    # a command of an extra: one error line naming the extra, exit code 2
    for cmd, extra in (
        (["train", "digits"], "train"),
        (["ingest", "digits"], "train"),
        (["stats", "toy"], "stats"),
        (["app"], "app"),
    ):
        res = sh([curate, *cmd, *w])
        assert res.returncode == 2, (cmd, res.stdout, res.stderr)
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
        assert f"pip install 'curate[{extra}]'" in lines[0], lines[0]


# ------------------------------------------------------------------ quick: the numpy stand-ins


def test_numpy_kernels_equal_the_compiled_ones():
    pytest.importorskip("numba")
    from curate.scores import kernels, kernels_numpy

    rng = np.random.default_rng(0)
    for trial in range(12):
        m, n, k = int(rng.integers(1, 9)), int(rng.integers(0, 9000)), int(rng.integers(1, 5))
        dt = np.int16 if trial % 2 else np.int32
        pred, prev = (rng.integers(0, k, (m, n)).astype(dt) for _ in range(2))
        y, p = rng.integers(0, k, n).astype(np.int32), rng.random((m, n)).astype(np.float32)
        sizes = np.array([m, max(1, m // 2), 1])
        cols = np.zeros((3, m), np.int64)
        cols[0], cols[1, : sizes[1]], cols[2, 0] = np.arange(m), rng.permutation(m)[: sizes[1]], 0
        for has_prev in (False, True):
            outs = []
            for mod in (kernels, kernels_numpy):
                nb = (n + mod.BLOCK - 1) // mod.BLOCK
                o = [np.empty((m, n), bool), np.empty(n, np.uint8), np.empty(n, np.uint8)]
                o += [np.empty((3, n), bool), np.ones((3, n), np.int64)]
                o += [
                    np.ones((m, n)),
                    np.ones((m, n)),
                    np.zeros(nb, np.int64),
                    np.zeros(nb, np.int64),
                ]
                mod.epoch_pass(
                    pred, y, prev, has_prev, p if has_prev else pred, has_prev, cols, sizes, *o
                )
                outs.append(o[:7] + [o[7].sum(), o[8].sum()])
            for a, b in zip(*outs, strict=True):
                np.testing.assert_array_equal(a, b)
        cube = rng.random((m, int(rng.integers(1, 6)), n)) < 0.6
        outs = []
        for mod in (kernels, kernels_numpy):
            o = [np.empty((m, n)), np.empty((m, n)), np.empty((m, n), np.int32)]
            mod.member_timelines(cube, *o)
            outs.append(o)
        for a, b in zip(*outs, strict=True):
            np.testing.assert_array_equal(a, b)
        votes = rng.integers(0, k, (int(rng.integers(1, 12)), n)).astype(dt)
        for a, b in zip(
            kernels.vote_mode(votes, y.astype(dt)),
            kernels_numpy.vote_mode(votes, y.astype(dt)),
            strict=True,
        ):
            np.testing.assert_array_equal(a, b)
            assert a.dtype == b.dtype


@pytest.mark.parametrize("multilabel", [False, True])
def test_numpy_columns_equal_the_torch_ones(multilabel):
    torch = pytest.importorskip("torch")
    from curate.runlog.columns import member_columns

    rng = np.random.default_rng(0)
    k = 7
    for scale in (1, 10, 60):
        z = (rng.normal(size=(400, k)) * scale).astype(np.float32)
        y = rng.integers(0, 2**k if multilabel else k, 400)
        by_torch = member_columns(torch.from_numpy(z), y, multilabel)
        by_numpy = member_columns(z, y, multilabel)
        for name, a, b in zip(
            ("pred", "p_true", "margin", "el2n"), by_torch, by_numpy, strict=True
        ):
            assert a.dtype == b.dtype, name
            if name in ("pred", "margin"):  # a choice, and one float32 subtraction: equal
                np.testing.assert_array_equal(a, b, err_msg=name)
            else:  # float32 softmax and norms: to float32 rounding
                np.testing.assert_allclose(a, b, rtol=0, atol=3e-7, err_msg=name)


def test_a_missing_extra_is_one_error_naming_it(monkeypatch, capsys):
    from curate import extras
    from curate.cli import main
    from curate.errors import CurateError

    with pytest.raises(CurateError, match=r"pip install 'curate\[train\]'"):
        extras.need("train", "a_module_nobody_installed", what="curate train")
    extras.need("train", "numpy")  # there: nothing happens

    # an import of an extra's package that no `need` named: the same one line, exit code 2
    def cmd(args):
        raise ModuleNotFoundError("No module named 'skimage'", name="skimage")

    monkeypatch.setattr("curate.commands.results.cmd_label_issues", cmd)  # before main builds
    assert main(["label-issues", "some-run", "--workspace", "ws"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: curate label-issues needs scikit-image, not installed here (the core of curate "
        "leaves them out): pip install 'curate[stats]'"
    ]
