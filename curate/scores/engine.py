"""Scoring one split of a run's eval-pass prediction log: reads the Parquet shards epoch by epoch and feeds the
pure functions of `definitions`.

Memory is O(M T N / 8 + M N): the correctness cube (bool) and a few (M, N) arrays; per-epoch
metrics come from additive statistics gathered while streaming, per-instance scores are computed
in chunks of instances from the cube.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from curate.errors import CurateError
from curate.scores import definitions as d
from curate.scores.kernels import BLOCK, epoch_pass, member_timelines
from curate.train import predlog


@dataclass
class SplitScores:
    split: str
    members: list[int]
    idx: np.ndarray  # (N,)
    labels: np.ndarray  # (N,)
    instance: dict[str, np.ndarray]  # name -> (N,)
    correct_by_epoch: np.ndarray  # (T, N) members correct
    agree_by_epoch: np.ndarray  # (T, N) size of the largest agreeing group
    epoch: dict[str, np.ndarray]  # name -> (T,) or (T, ...)
    kappa_rows: list[tuple] = field(
        default_factory=list
    )  # (epoch, subset, i, j, n, c_obs, c_exp, kappa)
    groups_correct: dict[str, np.ndarray] = field(
        default_factory=dict
    )  # group -> majority-vote correct (T, N)
    groups_accessibility: dict[str, np.ndarray] = field(default_factory=dict)


def log_layout(run_dir: Path, split: str) -> tuple[list[int], int]:
    """Members and last epoch of a split's eval log; errors when it is missing or incomplete."""
    base = run_dir / "predictions" / "pass=eval" / f"split={split}"
    if not base.is_dir():
        raise CurateError(
            f"no predictions for split {split!r} in {run_dir}; run `curate train` first"
        )
    members = sorted(int(p.name.split("=")[1]) for p in base.glob("member=*"))
    last = min(predlog.last_done_epoch(run_dir, m) for m in members) if members else -1
    for m in members:
        missing = [
            e
            for e in range(last + 1)
            if not predlog.shard_path(run_dir, "eval", split, m, e).exists()
        ]
        if missing:
            raise CurateError(
                f"the log of member {m} ({split}) lacks epochs {missing[:5]}; rerun `curate train` "
                "with the same recipe to finish it"
            )
    if len(members) < 2 or last < 1:
        raise CurateError(
            f"run {run_dir.name}: need at least 2 members and 1 trained epoch to score "
            f"(have {len(members)} members, last complete epoch {last}); finish `curate train` first"
        )
    return members, last


def _read(path: Path, with_idx: bool) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    t = pq.read_table(path, columns=(["idx"] if with_idx else []) + ["pred", "p_true"])
    idx = t.column("idx").to_numpy() if with_idx else None
    return idx, t.column("pred").to_numpy(), t.column("p_true").to_numpy()


def score_split(
    run_dir: Path,
    split: str,
    labels_by_idx: tuple[np.ndarray, np.ndarray],
    tol: int = 0,
    groups: dict[str, list[int]] | None = None,
    chunk: int = 1 << 17,
    threads: int = 8,
    progress=None,
) -> SplitScores:
    """Score one split of one run.

    labels_by_idx : (idx (N,), label (N,)) of the split, from the catalog.
    groups : named member subsets whose majority vote is tracked per epoch (ensemble comparison).
    """
    members, last = log_layout(run_dir, split)
    m_count = len(members)
    d.check_tol(m_count, tol)
    epochs = list(range(last + 1))
    t_count = len(epochs)
    path = lambda m, e: predlog.shard_path(run_dir, "eval", split, m, e)  # noqa: E731
    pool = ThreadPoolExecutor(threads)

    def read_epoch(e):
        """Futures of one epoch's shards; member 0's brings idx, the others are checked by length."""
        return [pool.submit(_read, path(m, e), j == 0) for j, m in enumerate(members)]

    def collect(futures):
        return [f.result() for f in futures]

    cat_idx, cat_lab = labels_by_idx
    order = np.argsort(cat_idx)
    last_parts = collect(read_epoch(last))
    idx = last_parts[0][0].astype(np.int64)
    pos = np.searchsorted(cat_idx, idx, sorter=order)
    if np.any(pos >= len(cat_idx)) or not np.array_equal(
        cat_idx[order[np.minimum(pos, len(cat_idx) - 1)]], idx
    ):
        raise CurateError(
            f"the log of split {split!r} names instances the catalog does not have; was the dataset "
            "re-ingested after training? Retrain the run"
        )
    y = cat_lab[order[pos]]
    n = len(idx)
    c_last = np.stack([p[1] == y for p in last_parts])
    mid = d.ddd(c_last.sum(axis=0), m_count, tol) == "in-between"
    n_mid = int(mid.sum())

    cube = np.empty((m_count, t_count, n), bool)  # c[m, e, n]
    counts = np.empty((t_count, n), np.uint8 if m_count < 256 else np.uint16)
    agree = np.empty_like(counts)
    hist = np.zeros((t_count, m_count + 1), np.int64)
    flips = np.zeros(t_count, np.int64)
    changes = np.zeros(t_count, np.int64)
    psum = np.zeros((m_count, n))
    psq = np.zeros((m_count, n))
    pair_all = np.zeros((t_count, m_count, m_count), np.int64)
    pair_mid = np.zeros((t_count, m_count, m_count), np.int64)
    correct_mid = np.zeros((m_count, t_count), np.int64)
    correct_all = np.zeros((m_count, t_count), np.int64)
    groups = dict(groups or {})
    member_pos = {m: i for i, m in enumerate(members)}
    group_names = list(groups)
    cols = np.zeros((1 + len(group_names), m_count), np.int64)  # kernel groups: 0 = every member
    sizes = np.zeros(1 + len(group_names), np.int64)
    cols[0], sizes[0] = np.arange(m_count), m_count
    for gi, g in enumerate(group_names, 1):
        pos_g = [member_pos[m] for m in groups[g]]
        cols[gi, : len(pos_g)], sizes[gi] = pos_g, len(pos_g)
    group_ok = np.empty((len(cols), t_count, n), bool)  # majority vote right, per group and epoch
    group_hits = np.zeros((len(cols), n), np.int64)  # members of the group right, summed over 1..E
    y32 = y.astype(np.int32)
    n_blocks = (n + BLOCK - 1) // BLOCK
    fl, ch = np.zeros(n_blocks, np.int64), np.zeros(n_blocks, np.int64)
    prev_pred = np.zeros((m_count, n), np.int16)
    ahead = read_epoch(epochs[0]) if epochs[0] != last else None
    for t, e in enumerate(epochs):
        parts = last_parts if e == last else collect(ahead)
        nxt = epochs[t + 1] if t + 1 < t_count else None
        ahead = read_epoch(nxt) if nxt is not None and nxt != last else None  # read while computing
        if not np.array_equal(parts[0][0], idx) or any(len(p[1]) != n for p in parts):
            raise CurateError(
                f"shards of split {split!r} epoch {e} list different instances; the log is damaged"
            )
        pred = np.stack([p[1] for p in parts]).astype(np.int16, copy=False)
        p_true = np.stack([p[2] for p in parts]) if e >= 1 else pred  # unused at epoch 0
        # c, correct counts, Agreement, majority votes, flips and p_true sums in one compiled pass
        epoch_pass(
            pred,
            y32,
            prev_pred,
            t > 0,
            p_true,
            e >= 1,
            cols,
            sizes,
            cube[:, t],
            counts[t],
            agree[t],
            group_ok[:, t],
            group_hits,
            psum,
            psq,
            fl,
            ch,
        )
        flips[t], changes[t] = fl.sum(), ch.sum()
        prev_pred = pred
        c = cube[:, t]
        hist[t] = np.bincount(counts[t], minlength=m_count + 1)
        correct_all[:, t] = np.count_nonzero(c, axis=1)
        pair_all[t] = d.pair_agreement_counts(c)
        if n_mid:
            cm = c[:, mid]
            pair_mid[t] = d.pair_agreement_counts(cm)
            correct_mid[:, t] = cm.sum(axis=1)
        if progress is not None:
            progress.update(1)
    pool.shutdown()

    # per instance: member timelines in one compiled pass over the cube, then medians over members
    learned, first = np.empty((m_count, n)), np.empty((m_count, n))
    forget = np.empty((m_count, n), np.int32)
    member_timelines(cube, learned, first, forget)
    inst = {"learned_epoch": d._median_or_nan(learned), "first_learned": d._median_or_nan(first)}
    inst["never_learned"] = ~(group_hits[0] > 0)  # = d.never_learned(cube)
    inst["forgetting_events"] = np.where(
        inst["never_learned"], np.nan, forget.sum(axis=0)
    )  # = d.forgetting_events
    inst["accessibility"] = counts[1:].mean(axis=0) / m_count  # = d.accessibility(cube)
    e_count = last  # epochs 1..E
    mean_p = psum / e_count
    inst["confidence"] = mean_p.mean(axis=0)  # = d.confidence(p_true), from running sums
    inst["variability"] = np.sqrt(np.maximum(psq / e_count - mean_p**2, 0)).mean(
        axis=0
    )  # = d.variability
    inst["final_correct"] = counts[-1].astype(np.int32)
    inst["ddd"] = d.ddd(counts[-1], m_count, tol)
    inst["tpa_final"] = counts[-1] / m_count
    inst["strict_final"] = counts[-1] == m_count
    inst["agreement_final"] = agree[-1] / m_count

    em = d.epoch_metrics_from_stats(hist, correct_all, flips, changes, n, tol)
    em["epoch"] = np.array(epochs)

    rows = []
    iu, ju = np.triu_indices(m_count, 1)
    for subset, pairs, correct, size in (
        ("all", pair_all, correct_all, n),
        ("in-between", pair_mid, correct_mid, n_mid),
    ):
        if size == 0:
            continue
        for t, e in enumerate(epochs):
            k = d.kappa_from_counts(pairs[t][iu, ju], correct[iu, t], correct[ju, t], size)
            rows += [
                (e, subset, members[i], members[j], size, float(a), float(b), float(c))
                for i, j, a, b, c in zip(iu, ju, k["c_obs"], k["c_exp"], k["kappa"], strict=True)
            ]
    group_access = {
        g: group_hits[gi] / (sizes[gi] * e_count) for gi, g in enumerate(group_names, 1)
    }
    group_correct = {g: group_ok[gi] for gi, g in enumerate(group_names, 1)}
    return SplitScores(
        split, members, idx, y, inst, counts, agree, em, rows, group_correct, group_access
    )


def compare_groups(
    correct_a: np.ndarray, correct_b: np.ndarray, epochs: np.ndarray, within: float = 0.01
) -> list[dict]:
    """Hacohen Fig. 8a: at epochs of matched majority-vote accuracy, counts correct by both / only a / only b."""
    acc_a, acc_b = correct_a.mean(axis=1), correct_b.mean(axis=1)
    out = []
    for ta, tb in d.matched_epochs(acc_a, acc_b, within):
        a, b = correct_a[ta], correct_b[tb]
        out.append(
            {
                "epoch_a": int(epochs[ta]),
                "epoch_b": int(epochs[tb]),
                "acc_a": float(acc_a[ta]),
                "acc_b": float(acc_b[tb]),
                "both_correct": int((a & b).sum()),
                "only_a": int((a & ~b).sum()),
                "only_b": int((~a & b).sum()),
            }
        )
    return out
