"""Human 2AFC pairs (Meding et al. B.4): export trials pairing one trivial with one impossible image,
a self-contained browser experiment, and the analysis of observers' answers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from curate.errors import CurateError
from curate.inputs import check_small_file
from curate.workspace import Workspace

SIDE = 224  # pixels of the exported images
POOL = 1000  # trivial images drawn from the 1,000 most accessible, impossible from the 1,000 least


def _pool(ws: Workspace, run: str, split: str | None) -> tuple[pd.DataFrame, str]:
    from curate.sql import fetch

    splits = fetch(ws, "SELECT DISTINCT split FROM difficulty WHERE run = ?", [run])[
        "split"
    ].tolist()
    if not splits:
        raise CurateError(f"run {run!r} has no scores; run `curate score {run}` first")
    if split is None:
        split = next((s for s in ("test", "val") if s in splits), splits[0])
    if split not in splits:
        raise CurateError(f"run {run!r} has no split {split!r}; it has {', '.join(splits)}")
    df = fetch(
        ws,
        "SELECT dataset, split, idx, label, class_name, source, ddd, accessibility FROM difficulty "
        "WHERE run = ? AND split = ? AND ddd <> 'in-between'",
        [run, split],
    )
    return df, split


def choose_pairs(df: pd.DataFrame, n: int, same_class: bool, seed: int) -> list[tuple[int, int]]:
    """(trivial idx, impossible idx) pairs: trivial from the POOL most accessible trivial images, impossible
    from the POOL least accessible impossible ones, without repeats, seeded."""
    rng = np.random.default_rng(seed)
    triv = (
        df[df["ddd"] == "trivial"]
        .sort_values(["accessibility", "idx"], ascending=[False, True])
        .head(POOL)
    )
    imp = (
        df[df["ddd"] == "impossible"]
        .sort_values(["accessibility", "idx"], ascending=[True, True])
        .head(POOL)
    )
    if not same_class:
        if len(triv) < n or len(imp) < n:
            raise CurateError(
                f"{n} pairs need {n} trivial and {n} impossible images; there are {len(triv)} trivial "
                f"and {len(imp)} impossible (pools of at most {POOL}). Lower --n or --train-trials, "
                "or widen the split with `curate score RUN --tol 1`"
            )
        t = rng.choice(triv["idx"].to_numpy(), n, replace=False)
        i = rng.choice(imp["idx"].to_numpy(), n, replace=False)
        return list(zip(t.tolist(), i.tolist(), strict=True))
    pairs, used_t, used_i = [], set(), set()
    for _, row in imp.sample(frac=1, random_state=seed).iterrows():
        cands = triv[(triv["label"] == row["label"]) & ~triv["idx"].isin(used_t)]
        if len(cands):
            t = int(cands["idx"].iloc[rng.integers(len(cands))])
            pairs.append((t, int(row["idx"])))
            used_t.add(t)
            used_i.add(int(row["idx"]))
        if len(pairs) == n:
            return pairs
    raise CurateError(
        f"{n} same-class pairs asked for, only {len(pairs)} can be made (trivial {len(triv)}, "
        f"impossible {len(imp)}); lower --n or drop --same-class"
    )


def _to_png(a: np.ndarray, path: Path) -> None:
    from PIL import Image

    img = Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a)
    scale = SIDE / max(a.shape[:2])
    resample = Image.NEAREST if scale >= 4 else Image.BICUBIC  # tiny images stay crisp
    img.resize((SIDE, SIDE), resample).save(path)


@dataclass(frozen=True)
class PairsSpec:
    """Which trials `export_pairs` draws (the flags of `curate pairs`).

    Attributes
    ----------
    n : test trials
    train_trials : practice trials, shown first
    same_class : pair a trivial and an impossible image of the same class
    seed : seed of the draw and of the left/right placement
    split : the split to draw from; None = test, else val
    """

    n: int = 80
    train_trials: int = 5
    same_class: bool = False
    seed: int = 0
    split: str | None = None


def export_pairs(ws: Workspace, run: str, out: str | Path, spec: PairsSpec = PairsSpec()) -> Path:
    """Write DIR/images/*.png, DIR/manifest.csv and DIR/index.html.

    Parameters
    ----------
    ws : the workspace holding the scored run
    run : a scored run
    out : DIR, a new or empty folder (nothing is overwritten)
    spec : how many trials of which kind (`PairsSpec`)

    Returns
    -------
    Path
        DIR
    """
    n, train_trials, same_class, seed, split = (
        spec.n,
        spec.train_trials,
        spec.same_class,
        spec.seed,
        spec.split,
    )
    from curate.outputs import check_folder, csv_safe, write_folder

    check_folder(out, [ws.root], renew=False)  # before any work: a new or empty folder
    df, split = _pool(ws, run, split)
    pairs = choose_pairs(df, n + train_trials, same_class, seed)
    rows = df.set_index("idx")
    from curate.explore import thumbnails

    wanted = sorted({i for pair in pairs for i in pair})
    images = dict(
        zip(
            wanted,
            thumbnails(
                ws, df["dataset"].iloc[0], split, wanted, [rows.loc[i, "source"] for i in wanted]
            ),
            strict=True,
        )
    )
    rng = np.random.default_rng([seed, 1])

    def build(tmp: Path) -> None:
        (tmp / "images").mkdir(parents=True)
        trials = []
        for k, (t_idx, i_idx) in enumerate(pairs):
            imp_left = bool(rng.random() < 0.5)
            left, right = (i_idx, t_idx) if imp_left else (t_idx, i_idx)
            files = []
            for idx in (left, right):
                name = f"images/{split}_{idx}.png"
                if not (tmp / name).exists():
                    _to_png(images[idx], tmp / name)
                files.append(name)
            trials.append(
                {
                    "trial": k,
                    "phase": "training" if k < train_trials else "test",
                    "left_idx": left,
                    "right_idx": right,
                    "left_file": files[0],
                    "right_file": files[1],
                    "impossible_side": "left" if imp_left else "right",
                    "split": split,
                    "left_class": rows.loc[left, "class_name"],
                    "right_class": rows.loc[right, "class_name"],
                    "seed": seed,
                }
            )
        csv_safe(pd.DataFrame(trials)).to_csv(tmp / "manifest.csv", index=False)  # class names
        (tmp / "index.html").write_text(render_html(trials, run))

    return write_folder(out, build, keep=[ws.root], by="curate pairs", renew=False)


def render_html(trials: list[dict], run: str) -> str:
    """The experiment page (template curate/report/templates/pairs.html.j2).

    One page, no external resources: trials one at a time, keys (F / left arrow, J / right arrow)
    or clicks, progress shown, answers downloaded as CSV at the end.

    Parameters
    ----------
    trials : list of dict
        The trials of `export_pairs`, in order; the page gets trial, phase, the two files and the
        two idx of each.
    run : str
        The scored run, named in the answers' file name.

    Returns
    -------
    str
        The page; the trials and `run` reach its script as JSON escaped for HTML (a name holding
        ``</script>`` cannot end the script).
    """
    from curate.report.page import render_template

    keys = ("trial", "phase", "left_file", "right_file", "left_idx", "right_idx")
    shown = [{k: t[k] for k in keys} for t in trials]
    return render_template("pairs.html.j2", trials=shown, run=run)


# ----------------------------------------------------------------------------- analysis


def observer_accuracy(correct: np.ndarray) -> dict:
    """Fraction of test trials where the observer chose the impossible image, with a two-sided binomial
    test against 50 %. Higher = the observer sees what the network finds hard."""
    from scipy import stats

    k, n = int(correct.sum()), len(correct)
    res = stats.binomtest(k, n, 0.5) if n else None
    return {
        "n": n,
        "correct": k,
        "accuracy": k / n if n else np.nan,
        "p": res.pvalue if res else np.nan,
    }


MAX_CSV_BYTES = 256 * 2**20  # an experiment's manifest or answers: kilobytes; never read more


def _read_csv(path: Path, needs: tuple[str, ...], what: str) -> pd.DataFrame:
    """A small CSV holding the columns `needs`: a regular file (a FIFO would block, a folder
    fail), at most `MAX_CSV_BYTES`, readable; else one CurateError naming it as `what`."""
    check_small_file(path, str(path), what, MAX_CSV_BYTES)
    try:
        table = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise CurateError(f"{path} is empty; give {what}") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CurateError(f"{path} is not a CSV ({first}); give {what}") from None
    missing = [c for c in needs if c not in table.columns]
    if missing:
        raise CurateError(f"{path} lacks columns {missing}; it is not {what}")
    return table


def analyse(out: str | Path, answer_files: list[str], force: bool = False) -> pd.DataFrame:
    """Per observer accuracy and binomial p; kappa between observers; writes DIR/analysis.csv,
    DIR/consistency.csv and DIR/analysis.png. Returns the per-observer table."""
    from curate.outputs import check_file, csv_writer, write_files
    from curate.scores.definitions import error_consistency

    out = Path(out)
    written = [out / "analysis.csv", out / "consistency.csv", out / "analysis.png"]
    for f in written:
        check_file(f, force, flag="output")  # before any work
    inputs = [Path(f).expanduser().absolute().resolve() for f in answer_files]
    clash = [
        f for f, r in zip(answer_files, inputs, strict=True) if r in {w.resolve() for w in written}
    ]
    if clash:
        raise CurateError(
            f"answers file {clash[0]} is one of the files pairs-analyse writes; move it out of {out}"
        )
    names = [Path(f).stem for f in answer_files]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise CurateError(
            f"two answers files are named {twice[0]!r} (an observer is named by the file); rename "
            "one, e.g. alice-1.csv"
        )
    man_path = out / "manifest.csv"
    if not man_path.exists():
        raise CurateError(f"{man_path} is missing; give the folder `curate pairs` wrote")
    man = _read_csv(
        man_path, ("trial", "phase", "impossible_side"), "the manifest `curate pairs` wrote"
    ).set_index("trial")
    if not answer_files:
        raise CurateError("give at least one answers CSV downloaded from the experiment page")
    observers, vectors = [], {}
    for f in answer_files:
        p = Path(f)
        if not p.exists():
            raise CurateError(f"answers file {p} does not exist")
        a = _read_csv(p, ("trial", "chosen_side"), "an answers file of this experiment")
        if not set(a["trial"]) <= set(man.index):
            raise CurateError(
                f"{p} answers trials the manifest does not have; it belongs to another export"
            )
        a = a[a["trial"].map(man["phase"]) == "test"]
        correct = a["chosen_side"].to_numpy() == a["trial"].map(man["impossible_side"]).to_numpy()
        vectors[p.stem] = pd.Series(correct, index=a["trial"].to_numpy())
        observers.append({"observer": p.stem, **observer_accuracy(correct)})
    table = pd.DataFrame(observers)
    pairs = []
    names = list(vectors)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            common = vectors[a].index.intersection(vectors[b].index)
            pairs.append(
                {
                    "observer_a": a,
                    "observer_b": b,
                    "trials": len(common),
                    "kappa": error_consistency(
                        vectors[a][common].to_numpy(), vectors[b][common].to_numpy()
                    )
                    if len(common)
                    else np.nan,
                }
            )
    cons = pd.DataFrame(pairs, columns=["observer_a", "observer_b", "trials", "kappa"])
    writers = [csv_writer(table), csv_writer(cons), lambda p: _plot(table, cons, names, p)]
    write_files(dict(zip(written, writers, strict=True)), force=force, by="curate pairs-analyse")
    return table


def _plot(table: pd.DataFrame, cons: pd.DataFrame, names: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["text.parse_math"] = False  # observer names are file names: '$' is not TeX
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    ax = axes[0]
    acc = table["accuracy"].to_numpy()
    err = 1.96 * np.sqrt(acc * (1 - acc) / np.maximum(table["n"].to_numpy(), 1))
    ax.bar(range(len(table)), acc, yerr=err, color="#4c72b0")
    ax.axhline(0.5, color="k", ls="--", lw=1, label="chance")
    ax.set_xticks(range(len(table)), table["observer"], rotation=45, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy (chose the impossible image)")
    ax.legend()
    mat = np.eye(len(names))
    for r in cons.itertuples():
        i, j = names.index(r.observer_a), names.index(r.observer_b)
        mat[i, j] = mat[j, i] = r.kappa
    im = axes[1].imshow(mat, vmin=-1, vmax=1, cmap="RdBu_r")
    axes[1].set_xticks(range(len(names)), names, rotation=45, ha="right")
    axes[1].set_yticks(range(len(names)), names)
    axes[1].set_title("error consistency (kappa)")
    fig.colorbar(im, ax=axes[1])
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")  # a temporary name has no .png to go by
    plt.close(fig)
