"""Scoring one split of a run's eval-pass prediction log: the shards are read epoch by epoch (one
epoch ahead, in a thread pool) and streamed through one compiled pass per epoch; per-epoch metrics
come from the additive statistics gathered there, per-instance scores from the correctness cube.

Memory is O(M T N / 8 + M N): the cube c[m, e, n] (bool) and a few (M, N) arrays.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from curate import runlog
from curate.data.positions import find_positions
from curate.errors import CurateError
from curate.runlog.shards import has_column, read_shard
from curate.scores import definitions as d
from curate.scores import label_issues as li
from curate.scores import noise as nz

try:  # compiled with numba (curate[train], curate[stats])
    from curate.scores.kernels import BLOCK, epoch_pass, member_timelines, vote_mode
except ImportError:  # the core install, without numba: the same loops in numpy, same numbers
    from curate.scores.kernels_numpy import BLOCK, epoch_pass, member_timelines, vote_mode


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
    member_hits: np.ndarray | None = None  # (M, N) epochs 1..E each member was right
    noise_by_class: dict[str, np.ndarray] | None = None  # label, n, est_wrong, n_flagged: (K,)


def log_layout(run_dir: Path, split: str) -> tuple[list[int], int]:
    """Members and last epoch of a split's eval log; errors when it is missing or incomplete."""
    members = runlog.logged_members(run_dir, split)
    if members is None:
        raise CurateError(
            f"no predictions for split {split!r} in {run_dir}; run `curate train` first"
        )
    last = min(runlog.last_done_epoch(run_dir, m) for m in members) if members else -1
    for m in members:
        missing = [
            e
            for e in range(last + 1)
            if not runlog.shard_path(run_dir, runlog.EVAL, split, m, e).exists()
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


def score_split(
    run_dir: Path,
    split: str,
    labels_by_idx: tuple[np.ndarray, np.ndarray],
    tol: int = 0,
    groups: dict[str, list[int]] | None = None,
    threads: int = 8,
    progress=None,
    last_epoch: int | None = None,
    el2n_epoch: int = 1,
) -> SplitScores:
    """Score one split of one run.

    Parameters
    ----------
    run_dir : the run's folder.
    split : the split whose eval log to score.
    labels_by_idx : (idx (N,), label (N,)) of the split, from the catalog, in any order.
    tol : the ddd split tolerance (docs/concepts.md#ddd).
    groups : named member subsets whose majority vote is tracked per epoch (ensemble comparison).
    threads : threads reading shards.
    progress : a tqdm-like bar, advanced once per epoch.
    last_epoch : score epochs 0..last_epoch only (a prefix of the log); None = every logged epoch.
    el2n_epoch : the early epoch EL2N is taken at (1..last).
    """
    members, last = log_layout(run_dir, split)
    last = prefix_end(last, last_epoch, split)
    d.check_tol(len(members), tol)
    groups = dict(groups or {})
    with EpochReader(run_dir, split, members, last, threads) as reader:
        y = _labels_of(reader.idx, labels_by_idx, split)
        final_correct = sum(pred == y for pred in reader.last_preds)
        in_between = d.ddd(final_correct, len(members), tol) == "in-between"
        stats = EpochStats(members, last + 1, y, in_between, groups)
        votes = LabelVotes(len(members), last, len(y))
        for t, (pred, p_true, margin) in enumerate(reader):
            stats.add(t, pred, p_true)
            votes.add(t, pred, margin, p_true if t > 0 else None)
            if progress is not None:
                progress.update(1)
    epochs = np.arange(last + 1)
    instance = _instance_scores(stats, last, tol) | votes.scores(y)
    instance["el2n"] = read_el2n(run_dir, split, members, el2n_epoch, last, reader.idx)
    em = d.epoch_metrics_from_stats(
        stats.hist, stats.correct_all, stats.flips, stats.changes, len(y), tol
    )
    em["epoch"] = epochs
    return SplitScores(
        split,
        members,
        reader.idx,
        y,
        instance,
        stats.counts,
        stats.agree,
        em,
        _kappa_rows(stats, members, epochs),
        {g: stats.group_ok[gi] for gi, g in enumerate(groups, 1)},
        {g: stats.group_hits[gi] / (stats.sizes[gi] * last) for gi, g in enumerate(groups, 1)},
        stats.cube[:, 1:].sum(axis=1, dtype=np.int32),
        votes.by_class,
    )


def read_el2n(
    run_dir: Path, split: str, members: list[int], epoch: int, last: int, idx: np.ndarray
) -> np.ndarray:
    """EL2N per instance, (N,): the mean over members of the logged `el2n` at `epoch` (Paul et
    al. 2021 average it over independently trained networks at an early epoch). NaN when the log
    predates the column."""
    if not 1 <= epoch <= last:
        raise CurateError(
            f"--el2n-epoch {epoch}: split {split!r} has epochs 1..{last} scored; choose one of them"
        )
    total = np.zeros(len(idx))
    for m in members:
        path = runlog.shard_path(run_dir, runlog.EVAL, split, m, epoch)
        if not has_column(path, "el2n"):
            return np.full(len(idx), np.nan)
        t = read_shard(path, ["idx", "el2n"])
        if not np.array_equal(t["idx"], idx):
            raise CurateError(f"shards of split {split!r} epoch {epoch} list different instances")
        total += t["el2n"].astype(np.float64)
    return total / len(members)


def prefix_end(logged: int, wanted: int | None, split: str) -> int:
    """The last epoch to score: `wanted` (a prefix) when the log has it, else every logged one."""
    if wanted is None:
        return logged
    if not 1 <= wanted <= logged:
        raise CurateError(
            f"--epochs 1..{wanted}: split {split!r} has epochs 1..{logged} logged; choose an end "
            f"from 1 to {logged}"
        )
    return wanted


def _read(path: Path, with_idx: bool):
    """idx (or None), pred, p_true, margin of one shard."""
    t = read_shard(path, (["idx"] if with_idx else []) + ["pred", "p_true", "margin"])
    return t.get("idx"), t["pred"], t["p_true"], t["margin"]


class EpochReader:
    """Each epoch's shards, read in a thread pool one epoch ahead of the computation. The last
    epoch is read first (its idx and final predictions set up the scoring) and kept for its turn.

    Iterating yields, for e = 0..last, pred (M, N) int16 (int32 in multilabel logs, whose
    predictions are class-set bitmasks), p_true and margin (M, N) (None at epoch 0).
    """

    def __init__(self, run_dir: Path, split: str, members: list[int], last: int, threads: int):
        self.run_dir, self.split, self.members, self.last = run_dir, split, members, last
        self.pool = ThreadPoolExecutor(threads)
        self.last_parts = self._collect(self._submit(last))
        self.idx = self.last_parts[0][0].astype(np.int64)  # (N,) the log's instances
        self.last_preds = [p[1] for p in self.last_parts]

    def __enter__(self) -> EpochReader:
        return self

    def __exit__(self, *exc) -> None:
        self.pool.shutdown()

    def _submit(self, e: int):
        """Futures of one epoch's shards; member 0's brings idx, the others are checked by length."""
        path = lambda m: runlog.shard_path(self.run_dir, runlog.EVAL, self.split, m, e)  # noqa: E731
        return [self.pool.submit(_read, path(m), j == 0) for j, m in enumerate(self.members)]

    @staticmethod
    def _collect(futures):
        return [f.result() for f in futures]

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray | None, np.ndarray | None]]:
        n = len(self.idx)
        ahead = self._submit(0) if self.last != 0 else None
        for e in range(self.last + 1):
            parts = self.last_parts if e == self.last else self._collect(ahead)
            nxt = e + 1
            ahead = self._submit(nxt) if nxt < self.last else None  # read while computing
            if not np.array_equal(parts[0][0], self.idx) or any(len(p[1]) != n for p in parts):
                raise CurateError(
                    f"shards of split {self.split!r} epoch {e} list different instances; the log "
                    "is damaged"
                )
            pred = np.stack([p[1] for p in parts])
            # class indices as int16; bitmasks (int32 shards) keep their width
            pred = pred.astype(np.int32 if pred.dtype.itemsize > 2 else np.int16, copy=False)
            if e == 0:
                yield pred, None, None
            else:
                yield pred, np.stack([p[2] for p in parts]), np.stack([p[3] for p in parts])


def _labels_of(idx: np.ndarray, labels_by_idx: tuple[np.ndarray, np.ndarray], split: str):
    """The catalog's label of each logged instance, (N,)."""
    cat_idx, cat_lab = labels_by_idx
    pos = find_positions(cat_idx, idx)
    if np.any(pos < 0):
        raise CurateError(
            f"the log of split {split!r} names instances the catalog does not have; was the dataset "
            "re-ingested after training? Retrain the run"
        )
    return cat_lab[pos]


class EpochStats:
    """What scoring keeps while streaming the epochs: the correctness cube, per-epoch counts and
    histograms, pair agreement counts (all and in-between instances), majority votes per group,
    running sums of p_true, and flip counts.

    Group 0 is every member; groups 1.. are the named subsets, in the order given.
    """

    def __init__(
        self,
        members: list[int],
        t_count: int,
        y: np.ndarray,
        in_between: np.ndarray,
        groups: dict[str, list[int]],
    ):
        m_count, n = len(members), len(y)
        self.y32, self.mid, self.n_mid = y.astype(np.int32), in_between, int(in_between.sum())
        self.cube = np.empty((m_count, t_count, n), bool)  # c[m, e, n]
        self.counts = np.empty((t_count, n), np.uint8 if m_count < 256 else np.uint16)
        self.agree = np.empty_like(self.counts)  # size of the largest agreeing group
        self.hist = np.zeros((t_count, m_count + 1), np.int64)
        self.flips = np.zeros(t_count, np.int64)
        self.changes = np.zeros(t_count, np.int64)
        self.psum = np.zeros((m_count, n))  # sum over epochs 1..E of p_true
        self.psq = np.zeros((m_count, n))
        self.pair_all = np.zeros((t_count, m_count, m_count), np.int64)
        self.pair_mid = np.zeros((t_count, m_count, m_count), np.int64)
        self.correct_mid = np.zeros((m_count, t_count), np.int64)
        self.correct_all = np.zeros((m_count, t_count), np.int64)
        member_pos = {m: i for i, m in enumerate(members)}
        self.cols = np.zeros((1 + len(groups), m_count), np.int64)  # each group's member columns
        self.sizes = np.zeros(1 + len(groups), np.int64)
        self.cols[0], self.sizes[0] = np.arange(m_count), m_count
        for gi, g in enumerate(groups, 1):
            pos_g = [member_pos[m] for m in groups[g]]
            self.cols[gi, : len(pos_g)], self.sizes[gi] = pos_g, len(pos_g)
        self.group_ok = np.empty((len(self.cols), t_count, n), bool)  # majority vote right
        self.group_hits = np.zeros((len(self.cols), n), np.int64)  # members right, over 1..E
        n_blocks = (n + BLOCK - 1) // BLOCK
        self._fl, self._ch = np.zeros(n_blocks, np.int64), np.zeros(n_blocks, np.int64)
        self._prev: np.ndarray | None = None  # the previous epoch's pred, of the log's dtype

    def add(self, t: int, pred: np.ndarray, p_true: np.ndarray | None) -> None:
        """Epoch t's predictions pred (M, N) (int16, or int32 bitmasks) and p_true (M, N) (None
        at epoch 0)."""
        if self._prev is None:
            self._prev = np.zeros_like(pred)
        # c, correct counts, Agreement, majority votes, flips and p_true sums in one compiled pass
        epoch_pass(
            pred,
            self.y32,
            self._prev,
            t > 0,
            pred if p_true is None else p_true,  # unused at epoch 0
            p_true is not None,
            self.cols,
            self.sizes,
            self.cube[:, t],
            self.counts[t],
            self.agree[t],
            self.group_ok[:, t],
            self.group_hits,
            self.psum,
            self.psq,
            self._fl,
            self._ch,
        )
        self.flips[t], self.changes[t] = self._fl.sum(), self._ch.sum()
        self._prev = pred
        c = self.cube[:, t]
        self.hist[t] = np.bincount(self.counts[t], minlength=len(self.hist[t]))
        self.correct_all[:, t] = np.count_nonzero(c, axis=1)
        self.pair_all[t] = d.pair_agreement_counts(c)
        if self.n_mid:
            cm = c[:, self.mid]
            self.pair_mid[t] = d.pair_agreement_counts(cm)
            self.correct_mid[:, t] = cm.sum(axis=1)


class LabelVotes:
    """What the label-issue signals need from the stream (`curate.scores.label_issues`): the sum
    of margins over members and epochs 1..E and over the late epochs (`label_issues.late_epochs`),
    and, for the noise estimate (`curate.scores.noise`), the predictions of the late epochs and the
    probability of each one's predicted class, (M |L|, N) each (predictions of the log's dtype:
    int16, or int32 bitmasks; probabilities float32), with the sum of p_true over them, (N,).
    Memory: 6 bytes per late prediction (ImageNet, 10 members x 45 late epochs: 3.5 GB)."""

    def __init__(self, m_count: int, last: int, n: int):
        self.late = li.late_epochs(last)
        self.msum, self.msum_late = np.zeros(n), np.zeros(n)
        rows = m_count * len(self.late)
        self.preds = np.empty((rows, n), np.int16)
        self.p_pred = np.zeros((rows, n), np.float32)
        self.p_true_sum = np.zeros(n)
        self.late_with_p = 0  # late (member, epoch) predictions that came with p_true and margin
        self.m_count, self.last = m_count, last
        self.by_class: dict[str, np.ndarray] | None = None  # set by `scores`

    def add(self, t: int, pred: np.ndarray, margin: np.ndarray | None, p_true=None) -> None:
        if margin is not None:
            total = margin.sum(axis=0, dtype=np.float64)
            self.msum += total
            if t in self.late:
                self.msum_late += total
        if self.preds.dtype != pred.dtype:
            self.preds = self.preds.astype(pred.dtype)  # multilabel: bitmasks need int32
        if t in self.late:
            j = (t - self.late.start) * self.m_count
            self.preds[j : j + self.m_count] = pred
            if p_true is not None and margin is not None and not np.isnan(p_true).any():
                self.p_pred[j : j + self.m_count] = nz.predicted_probability(p_true, margin)
                self.p_true_sum += p_true.sum(axis=0, dtype=np.float64)
                self.late_with_p += len(p_true)

    def scores(self, y: np.ndarray) -> dict[str, np.ndarray]:
        """aum, late_aum, suggested_label, consensus, issue_score, flagged, each (N,); and in
        `by_class` the noise estimate per class (single-label data with p_true and margins; a
        multilabel log, whose predictions are int32 bitmasks, keeps `label_issues.flag`)."""
        multilabel = self.preds.dtype == np.int32
        suggested, count = vote_mode(self.preds, y.astype(self.preds.dtype))
        late_aum = self.msum_late / (self.m_count * len(self.late))
        score = li.issue_score(late_aum)
        flagged = li.flag(late_aum, suggested, y)  # multilabel, or a log without p_true
        if not multilabel and self.late_with_p == len(self.preds):
            k = int(max(y.max(), self.preds.max())) + 1
            self_conf = self.p_true_sum / len(self.preds)
            cand = nz.candidate_confidence_streamed(self.preds, self.p_pred, suggested)
            n_wrong, flagged = nz.estimate(y, suggested, self_conf, cand, score, k)
            self.by_class = {
                "label": np.arange(k),
                "n": np.bincount(y, minlength=k),
                "est_wrong": n_wrong,
                "n_flagged": np.bincount(y[flagged], minlength=k),
            }
        return {
            "aum": self.msum / (self.m_count * self.last),
            "late_aum": late_aum,
            "suggested_label": suggested.astype(np.int32),
            "consensus": count / len(self.preds),
            "issue_score": score,
            "flagged": flagged,
        }


def _instance_scores(stats: EpochStats, last: int, tol: int) -> dict[str, np.ndarray]:
    """Per instance (N,): member timelines in one compiled pass over the cube, then medians over
    members; the rest from the counts and running sums (each equal to its `definitions` function)."""
    m_count, n = stats.cube.shape[0], stats.cube.shape[2]
    learned, first = np.empty((m_count, n)), np.empty((m_count, n))
    forget = np.empty((m_count, n), np.int32)
    member_timelines(stats.cube, learned, first, forget)
    inst = {"learned_epoch": d._median_or_nan(learned), "first_learned": d._median_or_nan(first)}
    inst["never_learned"] = ~(stats.group_hits[0] > 0)  # = d.never_learned(cube)
    inst["forgetting_events"] = np.where(
        inst["never_learned"], np.nan, forget.sum(axis=0)
    )  # = d.forgetting_events
    inst["accessibility"] = stats.counts[1:].mean(axis=0) / m_count  # = d.accessibility(cube)
    mean_p = stats.psum / last  # epochs 1..E
    inst["confidence"] = mean_p.mean(axis=0)  # = d.confidence(p_true), from running sums
    inst["variability"] = np.sqrt(np.maximum(stats.psq / last - mean_p**2, 0)).mean(
        axis=0
    )  # = d.variability
    inst["final_correct"] = stats.counts[-1].astype(np.int32)
    inst["ddd"] = d.ddd(stats.counts[-1], m_count, tol)
    inst["tpa_final"] = stats.counts[-1] / m_count
    inst["strict_final"] = stats.counts[-1] == m_count
    inst["agreement_final"] = stats.agree[-1] / m_count
    return inst


def _kappa_rows(stats: EpochStats, members: list[int], epochs: np.ndarray) -> list[tuple]:
    """Error consistency of every member pair at every epoch, on all and on in-between instances:
    rows (epoch, subset, member_i, member_j, n, c_obs, c_exp, kappa)."""
    rows = []
    iu, ju = np.triu_indices(len(members), 1)
    for subset, pairs, correct, size in (
        ("all", stats.pair_all, stats.correct_all, stats.cube.shape[2]),
        ("in-between", stats.pair_mid, stats.correct_mid, stats.n_mid),
    ):
        if size == 0:
            continue
        for t, e in enumerate(epochs):
            k = d.kappa_from_counts(pairs[t][iu, ju], correct[iu, t], correct[ju, t], size)
            rows += [
                (int(e), subset, members[i], members[j], size, float(a), float(b), float(c))
                for i, j, a, b, c in zip(iu, ju, k["c_obs"], k["c_exp"], k["kappa"], strict=True)
            ]
    return rows
