"""The curate explorer: a read-only Streamlit app over a workspace's catalog.

    streamlit run app/app.py -- --workspace DIR        (or: curate app --workspace DIR, make app)

The queries live in curate.explore; this file only lays out plots, galleries and tables. `VIEWS`
maps each view's title to the function drawing it, all called as view(path, run, split). The page is
drawn only when Streamlit runs the file (as __main__); importing it draws nothing. `curate` must be
importable (installed, or on PYTHONPATH as `curate app` sets it).
"""

from __future__ import annotations

import argparse
import os
import sys

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from curate import explore
from curate.errors import CurateError
from curate.sql import QueryLimitError
from curate.workspace import Workspace


def workspace() -> Workspace:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workspace", default=None)
    args, _ = ap.parse_known_args(sys.argv[1:])
    return Workspace.resolve(args.workspace or os.environ.get("CURATE_WORKSPACE"))


@st.cache_data(ttl=30, show_spinner=False)
def cached(name: str, root: str, *args):
    """explore.<name>(reader, *args), cached; the catalog is held only while the query runs."""
    return explore.call(root, name, *args)


@st.cache_data(ttl=300, show_spinner="decoding images")
def cached_thumbnails(root: str, dataset: str, split: str, idx: tuple, sources: tuple):
    return explore.thumbnails(Workspace(root), dataset, split, list(idx), list(sources))


def _big(im: np.ndarray, side: int = 96) -> np.ndarray:
    """Grey to 2-D and small images enlarged by pixel repetition, so 8x8 digits stay crisp."""
    im = im[..., 0] if im.shape[-1] == 1 else im
    k = max(1, side // max(im.shape[:2]))
    return np.repeat(np.repeat(im, k, axis=0), k, axis=1)


def gallery(root: str, split: str, rows: pd.DataFrame, caption) -> None:
    """Thumbnails of `rows` (columns dataset, idx, source), each captioned by caption(row)."""
    try:
        imgs = cached_thumbnails(
            root,
            rows["dataset"][0],
            split,
            tuple(int(i) for i in rows["idx"]),
            tuple(rows["source"].astype(str)),
        )
    except CurateError as e:
        st.warning(f"thumbnails unavailable: {e}")
        return
    if imgs:
        caps = [caption(r) for r in rows.itertuples()]
        st.image([_big(im) for im in imgs], caption=caps, width=96)


def line_chart(df: pd.DataFrame, x: str, cols: list[str], title: str, y_title: str = ""):
    long = df.melt(id_vars=[x], value_vars=cols, var_name="series", value_name="value")
    return (
        alt.Chart(long, title=title)
        .mark_line(point=True)
        .encode(
            x=alt.X(f"{x}:Q", axis=alt.Axis(tickMinStep=1, format="d")),
            y=alt.Y("value:Q", title=y_title),
            color="series:N",
            tooltip=[x, "series", "value"],
        )
    )


def heatmap(mat: np.ndarray, epochs: np.ndarray, title: str):
    m = mat.shape[0] - 1
    df = pd.DataFrame(
        [(int(e), j / m, float(mat[j, t])) for t, e in enumerate(epochs) for j in range(m + 1)],
        columns=["epoch", "tpa", "instances"],
    )
    return (
        alt.Chart(df, title=title)
        .mark_rect()
        .encode(
            x="epoch:O",
            y=alt.Y("tpa:O", sort="descending", title="TP-agreement"),
            color=alt.Color("instances:Q", scale=alt.Scale(type="symlog")),
            tooltip=["epoch", "tpa", "instances"],
        )
    )


def view_overview(path, run, split):
    df = cached("run_overview", path, run)
    d = df[df["split"] == split]
    band = d.assign(lo=d["acc_mean"] - d["acc_std"], hi=d["acc_mean"] + d["acc_std"])
    acc = (
        alt.Chart(band).mark_area(opacity=0.25).encode(x="epoch:Q", y="lo:Q", y2="hi:Q")
    )  # mean +- std
    st.altair_chart(
        acc
        + line_chart(
            d,
            "epoch",
            ["acc_mean", "strict_agreement", "random_agreement_normalized", "lower_bound"],
            f"{run} / {split}: agreement (Pliushch Fig. 2)",
        ),
        width="stretch",
    )
    c1, c2 = st.columns(2)
    c1.altair_chart(
        line_chart(
            d, "epoch", ["bimodality", "bimodality_null"], "bimodality (lower = more bimodal)"
        ),
        width="stretch",
    )
    c2.altair_chart(
        line_chart(
            d,
            "epoch",
            ["frac_trivial", "frac_in_between", "frac_impossible"],
            "trivial / in-between / impossible",
        ),
        width="stretch",
    )
    with st.expander("table"):
        st.dataframe(d, hide_index=True)
    view_reliability(path, run, split)


def view_reliability(path, run, split):
    """How many members and epochs are enough: the two curves of `score_reliability`."""
    rel = cached("reliability", path, run, split)
    if rel.empty:
        st.info("no reliability curves for this run: score it again (`curate score RUN`)")
        return
    mem = rel[rel["curve"] == "members"].rename(columns={"x": "members"})
    ep = rel[rel["curve"] == "epochs"].rename(columns={"x": "epoch"})
    c1, c2 = st.columns(2)
    measured = mem[~mem["extrapolated"].astype(bool)]
    c1.altair_chart(
        line_chart(measured, "members", ["pearson", "spearman"], "split-half r of accessibility")
        + alt.Chart(mem)
        .mark_line(strokeDash=[4, 3], color="grey")
        .encode(x="members:Q", y="predicted:Q", tooltip=["members", "predicted"])
        + alt.Chart(pd.DataFrame({"y": [0.95]})).mark_rule(color="green").encode(y="y:Q"),
        width="stretch",
    )
    c1.caption(
        "Two disjoint halves of m members: how well their accessibilities agree (mean over draws). "
        "Dashed: Spearman-Brown prediction from the full ensemble, beyond it extrapolated. Green: "
        "r = 0.95."
    )
    c2.altair_chart(
        line_chart(ep, "epoch", ["spearman", "ddd_same"], "scores from epochs 1..e vs all")
        + alt.Chart(pd.DataFrame({"y": [0.9]})).mark_rule(color="green").encode(y="y:Q"),
        width="stretch",
    )
    c2.caption(
        "Spearman rho of accessibility from the first e epochs with the full run's, and the share "
        "of images whose trivial / in-between / impossible split at e is the final one. Green: 0.9."
    )


def view_tpa(path, run, split):
    epochs, obs, null = cached("tpa_heatmap", path, run, split)
    c1, c2 = st.columns(2)
    c1.altair_chart(
        heatmap(obs, epochs, "instances per TP-agreement (Hacohen Fig. 3b)"), width="stretch"
    )
    c2.altair_chart(heatmap(null, epochs, "independent members (null)"), width="stretch")
    e = st.select_slider("epoch", options=[int(x) for x in epochs], value=int(epochs[-1]))
    t = int(np.flatnonzero(epochs == e)[0])
    m = obs.shape[0] - 1
    hist = pd.DataFrame(
        {"members correct": np.arange(m + 1), "observed": obs[:, t], "binomial null": null[:, t]}
    )
    long = hist.melt("members correct", var_name="series", value_name="instances")
    st.altair_chart(
        alt.Chart(long, title=f"correct-count histogram at epoch {e} (Meding Fig. 3)")
        .mark_bar(opacity=0.7)
        .encode(x="members correct:O", y="instances:Q", color="series:N", xOffset="series:N"),
        width="stretch",
    )


def view_subset(path, run, split):
    root = path  # the workspace root: thumbnails decode its images
    c1, c2, c3 = st.columns(3)
    ddd = c1.multiselect("split by difficulty", explore.DDD, default=["impossible"])
    cls = c2.selectbox("class", ["(all)"] + cached("classes", path, run, split))
    lo, hi = c3.slider("accessibility", 0.0, 1.0, (0.0, 1.0))
    where = st.text_input(
        "SQL WHERE clause on the difficulty view (optional)", placeholder="learned_epoch > 5"
    )
    try:
        subset = explore.Subset(
            ddd=ddd,
            class_name=None if cls == "(all)" else cls,
            score="accessibility",
            score_range=(lo, hi),
            where=where or None,
        )
        clause, params = explore.subset_where(run, split, subset)
        count = explore.call(path, "subset_count", clause, params)
    except CurateError as e:
        st.error(str(e))
        return
    pages = max(1, -(-count // 48))
    page = (
        st.number_input(f"{count} images, least confident first; page (of {pages})", 1, pages, 1)
        - 1
    )
    try:
        rows = explore.call(path, "subset_page", clause, params, int(page))
    except CurateError as e:  # the filter ran into a limit on this page
        st.error(str(e))
        return
    if rows.empty:
        st.info("no image matches")
        return
    gallery(
        root,
        split,
        rows,
        lambda r: (
            f"{r.idx}: {r.class_name}\nconf {r.confidence:.2f}, acc {r.accessibility:.2f}, learned "
            f"{r.learned_epoch if pd.notna(r.learned_epoch) else '-'}"
        ),
    )
    st.dataframe(rows.drop(columns=["dataset", "source"]), hide_index=True)


def view_detail(path, run, split):
    root = path
    idx = st.number_input("instance idx", min_value=0, value=0, step=1)
    try:
        row = explore.call(path, "instance_detail", run, split, int(idx))
    except CurateError as e:
        st.error(str(e))
        return
    c1, c2 = st.columns([1, 2])
    try:
        img = cached_thumbnails(root, row["dataset"], split, (int(idx),), (str(row["source"]),))[0]
        c1.image(_big(img, 256), width=256, caption=f"{row['class_name']} ({row['ddd']})")
    except CurateError as e:
        c1.warning(str(e))
    c2.dataframe(row.to_frame("value").astype(str), width="stretch")
    try:
        correct, pred, members, epochs = explore.call(
            path, "prediction_timeline", run, split, int(idx)
        )
    except CurateError as e:
        st.info(str(e))
        return
    grid = pd.DataFrame(
        [
            (m, e, bool(correct[i, j]), int(pred[i, j]))
            for i, m in enumerate(members)
            for j, e in enumerate(epochs)
        ],
        columns=["member", "epoch", "correct", "predicted"],
    )
    st.altair_chart(
        alt.Chart(grid, title="prediction timeline")
        .mark_rect()
        .encode(
            x="epoch:O",
            y="member:O",
            color=alt.Color("correct:N", scale=alt.Scale(range=["#c44e52", "#55a868"])),
            tooltip=["member", "epoch", "predicted", "correct"],
        ),
        width="stretch",
    )


def view_stats(path, run, split):
    curves = cached("agreement_curves", path, run, split)
    if curves.empty:
        st.info("no image statistics for this dataset yet: run `curate stats DATASET`")
    else:
        statistic_charts(path, run, split, curves)
    category_charts(path, run, split)


def category_charts(path, run, split):
    """Pliushch Fig. 6c: per category of a categorical attribute, the all-correct fraction per epoch."""
    cats = cached("category_curves", path, run, split)
    if cats.empty:
        return
    st.subheader("strict agreement per category")
    attribute = st.selectbox("attribute", sorted(cats["attribute"].unique()))
    c = cats[cats["attribute"] == attribute]
    if c["category"].nunique() > 20:  # too many lines to read: the last epoch, ranked
        last = c[c["epoch"] == c["epoch"].max()].sort_values("frac_strict")
        st.caption(f"{last['category'].nunique()} categories: the last epoch, hardest first")
        st.dataframe(last, hide_index=True)
        return
    st.altair_chart(
        alt.Chart(c, title=f"fraction of each {attribute}'s instances every member gets right")
        .mark_line(point=True)
        .encode(
            x=alt.X("epoch:Q", title="epoch"),
            y=alt.Y("frac_strict:Q", title="all members correct (fraction)"),
            color="category:N",
            tooltip=list(c.columns),
        ),
        width="stretch",
    )


def statistic_charts(path, run, split, curves):
    st.dataframe(cached("correlation_table", path, run, split), hide_index=True)
    stat = st.selectbox("statistic", sorted(curves["statistic"].unique()))
    c = curves[curves["statistic"] == stat]
    c1, c2 = st.columns(2)
    c1.altair_chart(
        alt.Chart(c, title=f"mean {stat} of the all-correct instances")
        .mark_line(point=True)
        .encode(
            x="epoch:Q",
            y=alt.Y("mean_over_agreed:Q", scale=alt.Scale(zero=False)),
            tooltip=list(c.columns),
        ),
        width="stretch",
    )
    sample = cached("scatter_sample", path, run, split, stat)
    c2.altair_chart(
        alt.Chart(sample, title=f"accessibility against {stat}")
        .mark_circle(opacity=0.4)
        .encode(x="value:Q", y="accessibility:Q", color="ddd:N"),
        width="stretch",
    )


def view_members(path, run, split):
    for subset in ("all", "in-between"):
        mat = cached("consistency_matrix", path, run, split, subset)
        if mat.empty:
            st.info(f"no {subset} instances")
            continue
        long = mat.reset_index(names="i").melt("i", var_name="j", value_name="kappa")
        st.altair_chart(
            alt.Chart(long, title=f"error consistency (kappa), {subset} instances, last epoch")
            .mark_rect()
            .encode(
                x="j:O",
                y="i:O",
                color=alt.Color(
                    "kappa:Q", scale=alt.Scale(domain=[-1, 1], scheme="redblue", reverse=True)
                ),
                tooltip=["i", "j", "kappa"],
            ),
            width="stretch",
        )


def view_label_issues(path, run, split):
    root = path
    noise = cached("label_noise", path, run, split)
    if not noise.empty:
        r = noise.iloc[0]
        cols = st.columns(5)
        cols[0].metric("wrong labels (known)", f"{r['noise_rate']:.1%}")
        cols[1].metric("AUROC of issue_score", f"{r['auroc']:.3f}")
        cols[2].metric("precision of flagged", f"{r['precision']:.3f}")
        cols[3].metric("recall of flagged", f"{r['recall']:.3f}")
        cols[4].metric("suggested = true", f"{r['recovery']:.3f}")
    conf = cached("label_confusion", path, run, split)
    if conf.empty:
        st.info(
            "No flagged labels in this split (or the run was scored by an older curate: "
            f"`curate score {run}`)."
        )
        return
    st.caption(
        f"{int(conf['n'].sum())} flagged labels: late in training the members rank another class "
        "above the given one on average (issue_score = -late_aum > 0) and predict another class most "
        "often. Rows: given class; columns: the class they suggest."
    )
    st.altair_chart(
        alt.Chart(conf, title="flagged labels: given class vs suggested class")
        .mark_rect()
        .encode(
            x=alt.X("suggested:N", title="suggested class"),
            y=alt.Y("given:N", title="given class"),
            color=alt.Color("n:Q", title="labels"),
            tooltip=["given", "suggested", "n"],
        ),
        width="stretch",
    )
    pairs = ["(all)"] + [
        f"{g} -> {s}" for g, s in zip(conf["given"], conf["suggested"], strict=True)
    ]
    pick = st.selectbox("class pair (given -> suggested)", pairs)
    given, suggested = (None, None) if pick == "(all)" else pick.split(" -> ", 1)
    rows = cached("label_issue_page", path, run, split, given, suggested)
    if rows.empty:
        st.info("no flagged label in this pair")
        return
    gallery(
        root,
        split,
        rows,
        lambda r: (
            f"{r.idx}: given {r.class_name}, suggested {r.suggested_class} "
            f"({r.consensus:.0%}), score {r.issue_score:.2f}"
        ),
    )
    st.dataframe(rows.drop(columns=["dataset"]), hide_index=True)


def view_references(path, run, split=None):
    refs = cached("reference_rows", path, run)
    if refs.empty:
        st.info(
            "No reference comparisons yet. Compare a score with a per-image reference: "
            f"`curate evaluate {run} --reference FILE [--column NAME] [--score accessibility]`."
        )
        return
    st.dataframe(refs, hide_index=True)


def view_sql(path, run=None, split=None):
    """The SQL console: one read-only SELECT, stopped at its time limit, refused past its row limit."""
    sql = st.text_area("read-only SQL", "SELECT ddd, count(*) AS n FROM difficulty GROUP BY ddd")
    c1, c2, _ = st.columns([1, 1, 2])
    seconds = c1.number_input(
        "time limit (s)",
        min_value=1,
        max_value=600,
        value=int(explore.CONSOLE_TIMEOUT),
        help="the query is stopped after this long; while it runs, curate stages wait for the "
        "catalog",
    )
    rows = c2.number_input(
        "row limit",
        min_value=1,
        max_value=1_000_000,
        value=explore.CONSOLE_MAX_ROWS,
        step=10_000,
        help="a result with more rows is refused: add LIMIT, or export with `curate query --out`",
    )
    if st.button("run"):
        try:
            df = explore.call(path, "sql_console", sql, float(seconds), int(rows))
        except QueryLimitError as e:
            st.error(str(e))
            return
        except CurateError as e:
            st.error(f"SQL error: {e}")
            return
        st.dataframe(df, hide_index=True)
        st.download_button("download CSV", df.to_csv(index=False), "query.csv", "text/csv")


def main() -> None:
    st.set_page_config(page_title="curate explorer", layout="wide")
    ws = workspace()
    st.sidebar.title("curate")
    if not ws.catalog.exists():
        st.warning(
            f"No catalog at {ws.catalog}. Run `make scores` (or `curate run digits --workspace {ws.root}`)."
        )
        return
    path = str(ws.root)  # every query opens the catalog read-only, sandboxed, and closes it
    try:
        ds = cached("datasets", path)
        runs = cached("runs", path)
    except Exception as e:  # noqa: BLE001 - an unreadable catalog is shown, not raised
        st.error(f"cannot read {ws.catalog}: {e}")
        return
    dataset = st.sidebar.selectbox("dataset", ds) if ds else None
    mine = runs[runs["dataset"] == dataset] if dataset else runs
    if mine.empty:
        st.info(
            f"No scored run{' of ' + dataset if dataset else ''} yet. Train and score one: "
            f"`curate run digits --workspace {ws.root}`."
        )
        view_sql(path)
        return
    run = st.sidebar.selectbox("run", mine["run"].tolist())
    split = st.sidebar.selectbox("split", cached("splits", path, run))
    view = st.sidebar.radio("view", list(VIEWS))
    st.header(view)
    VIEWS[view](path, run, split)


# every view, in the sidebar's order: title -> function(path, run, split)
VIEWS = {
    "Run overview": view_overview,
    "TP-agreement": view_tpa,
    "Subset explorer": view_subset,
    "Image detail": view_detail,
    "Agreement vs statistics": view_stats,
    "Members": view_members,
    "Label issues": view_label_issues,
    "References": view_references,
    "SQL console": view_sql,
}

if __name__ == "__main__":  # Streamlit runs the file as __main__
    main()
