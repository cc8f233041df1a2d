"""Confident learning on late-epoch probabilities (curate.scores.noise), on cases worked by hand."""

from __future__ import annotations

import numpy as np

from curate.scores import noise

LABELS = np.array([0, 0, 0, 1, 1, 1])
SELF = np.array([0.9, 0.8, 0.1, 0.9, 0.7, 0.85])
SUGGESTED = np.array([0, 0, 1, 1, 1, 1])
SCORE = np.array([-3.0, -2.0, 1.5, -3.0, -1.0, -2.0])


def test_thresholds_joint_and_count_by_hand():
    """t0 = (0.9 + 0.8 + 0.1) / 3 = 0.6, t1 = (0.9 + 0.7 + 0.85) / 3 = 0.8167. Instance 2 (label
    0) is voted 1 at 0.85 >= t1: C[0, 1] = 1; instances 0, 1 reach t0: C[0, 0] = 2; instances 3, 5
    reach t1 (0.9, 0.85), 4 does not (0.7): C[1, 1] = 2. Wrong: class 0 3 x 1/3 = 1, class 1
    3 x 0/2 = 0."""
    cand = np.where(SUGGESTED == LABELS, SELF, 0.85)
    t = noise.class_thresholds(SELF, LABELS, 2)
    np.testing.assert_allclose(t, [0.6, 2.45 / 3])
    joint = noise.confident_joint(LABELS, SUGGESTED, SELF, cand, t)
    assert joint.tolist() == [[2, 1], [0, 2]]
    np.testing.assert_allclose(noise.wrong_per_class(joint, np.array([3, 3])), [1.0, 0.0])
    n_wrong, flagged = noise.estimate(LABELS, SUGGESTED, SELF, cand, SCORE, 2)
    assert flagged.tolist() == [False, False, True, False, False, False]


def test_wrong_but_hard_flags_nothing():
    """Every wrong prediction is unsure (instance 2 voted 1 at 0.5 < t1 = 0.82, its own class at
    0.1 < t0 = 0.6): nothing is counted off the diagonal, so nothing is flagged, though the members
    get it wrong and rank another class above the given one (issue_score 1.5 > 0)."""
    cand = np.where(SUGGESTED == LABELS, SELF, 0.5)
    n_wrong, flagged = noise.estimate(LABELS, SUGGESTED, SELF, cand, SCORE, 2)
    assert n_wrong.tolist() == [0.0, 0.0] and not flagged.any()


def test_candidate_confidence_from_p_true_and_margin():
    """softmax ratios: p_top = p_true exp(-margin). Instance 0 (label 0, both predictions 1):
    exact, 0.2 e^{ln 2} = 0.4 and 0.3 e^{ln 1.5} = 0.45, mean 0.425 for both bounds. Instance 1
    (label 0, suggested 1): one prediction is 1 with 0.4 e^{ln 1.25} = 0.5; the other is the given
    class 0 (p_true 0.6, margin 0.5), so class 1 is at most the runner-up, 0.6 e^{-0.5} = 0.3639
    (below 1 - 0.6): bounds (0 + 0.5) / 2 = 0.25 and (0.3639 + 0.5) / 2 = 0.4320. Instance 2
    (label 0, suggested 1): one prediction is 1 with 0.1 e^{ln 3} = 0.3; the other a third class 2
    with p_c = 0.1 e^{ln 5} = 0.5, so p_1 <= min(0.5, 1 - 0.1 - 0.5) = 0.4: bounds 0.15 and 0.35.
    The estimate is the lower bound."""
    preds = np.array([[1, 0, 1], [1, 1, 2]])
    p_true = np.array([[0.2, 0.6, 0.1], [0.3, 0.4, 0.1]])
    margin = np.array(
        [[-np.log(2.0), 0.5, -np.log(3.0)], [-np.log(1.5), -np.log(1.25), -np.log(5.0)]]
    )
    suggested = np.array([1, 1, 1])
    lo, hi = noise.candidate_bounds(preds, p_true, margin, suggested)
    runner_up = 0.6 * np.exp(-0.5)
    np.testing.assert_allclose(lo, [0.425, 0.25, 0.15])
    np.testing.assert_allclose(hi, [0.425, (runner_up + 0.5) / 2, 0.35])
    cand = noise.candidate_confidence(preds, p_true, margin, suggested)
    np.testing.assert_allclose(cand, lo)


def test_flags_follow_the_estimate_by_issue_score_across_classes():
    """Estimates 2.2 (class 0) and 0.4 (class 1) add up to 2.6: 3 flags, the candidates with the
    highest issue_score whatever their class: instance 4 (class 1, 2.0), then 1 (0.9) and 2 (0.5)
    of class 0; instance 0 (0.2) is the weakest candidate, instance 3 (3.0) is no candidate."""
    candidates = np.array([True, True, True, False, True, False])
    score = np.array([0.2, 0.9, 0.5, 3.0, 2.0, 0.0])
    flagged = noise.calibrated_flags(score, candidates, np.array([2.2, 0.4]))
    assert flagged.tolist() == [False, True, True, False, True, False]
    # never more than the candidates; ties go to the lower position
    assert noise.calibrated_flags(score, candidates, np.array([9.0])).sum() == 4
    tie = noise.calibrated_flags(np.zeros(4), np.ones(4, bool), np.array([2.0]))
    assert tie.tolist() == [True, True, False, False]


def test_a_class_with_no_instance_cannot_be_reached():
    t = noise.class_thresholds(np.array([0.5, 0.7]), np.array([0, 0]), 3)
    assert t[0] == 0.6 and np.isinf(t[1:]).all()


def test_the_scorer_flags_what_the_estimate_says():
    """The stream of a split through `LabelVotes`: 2 members, epochs 1..2 (late: epoch 2). Instance
    2 (label 0) is predicted 1 by both members at p = 0.9 (p_true 0.09, margin -ln 10): counted
    0 -> 1 and flagged. Instance 5 (label 1) is predicted 0 at p = 0.55 (p_true 0.45, margin
    -ln(0.55/0.45)): below class 0's threshold (the mean p_true of class 0, 0.63), so a hard
    instance, not a wrong label; the earlier rule (late_aum < 0 and another plurality class)
    flagged both."""
    from curate.scores.engine import LabelVotes

    y = np.array([0, 0, 0, 1, 1, 1])
    pred = np.array([[0, 0, 1, 1, 1, 0]] * 2, np.int16)
    p_true = np.array([[0.9, 0.9, 0.09, 0.9, 0.9, 0.45]] * 2, np.float32)
    margin = np.log(p_true / np.where(pred == y, 0.1, 1 - p_true - 0.0)).astype(np.float32)
    margin[:, 2] = -np.log(10.0)
    margin[:, 5] = -np.log(0.55 / 0.45)
    votes = LabelVotes(2, 2, 6)
    for t in (1, 2):
        votes.add(t, pred, margin, p_true)
    out = votes.scores(y)
    assert out["flagged"].tolist() == [False, False, True, False, False, False]
    assert votes.by_class["est_wrong"].round(6).tolist() == [1.0, 0.0]
    assert votes.by_class["n_flagged"].tolist() == [1, 0]
    from curate.scores import label_issues as li

    old = li.flag(out["late_aum"], out["suggested_label"], y)
    assert old.tolist() == [False, False, True, False, False, True]


def test_extreme_logits_keep_the_bounds_finite():
    """A margin of -200 (the other class 200 logits above: e^200 overflows float32) and a
    p_true of 0 with margin -inf both mean the predicted class has probability 1: the exact
    probability of the suggested class is 1 (a p_true that underflowed to 0 under a negative margin
    is taken as all of the probability elsewhere), no NaN, no overflow."""
    preds = np.array([[1, 1]])
    p_true = np.array([[np.exp(-200.0), 0.0]], np.float32)  # the first underflows to 0 as well
    margin = np.array([[-200.0, -np.inf]], np.float32)
    with np.errstate(over="raise", invalid="raise"):
        lo, hi = noise.candidate_bounds(preds, p_true, margin, np.array([1, 1]))
    np.testing.assert_allclose(lo, [1.0, 1.0])
    np.testing.assert_allclose(hi, [1.0, 1.0])


def test_the_streamed_candidate_confidence_equals_the_reference():
    """What the scorer keeps per late prediction (the predicted class's probability, float32) gives
    the lower bound of `candidate_bounds` on random predictions, extreme logits included."""
    rng = np.random.default_rng(0)
    L, N, K = 13, 500, 4
    preds = rng.integers(0, K, (L, N)).astype(np.int16)
    labels = rng.integers(0, K, N)
    p_true = rng.uniform(0, 1, (L, N)).astype(np.float32)
    margin = rng.normal(0, 3, (L, N)).astype(np.float32)
    margin[0, :5] = [-200, -np.inf, 150, 0, -0.0]
    p_true[0, 1] = 0.0
    suggested = rng.integers(0, K, N)
    suggested[:50] = labels[:50]
    margin = np.where(preds == labels, np.abs(margin), -np.abs(margin)).astype(np.float32)
    want = noise.candidate_confidence(preds, p_true, margin, suggested)
    got = noise.candidate_confidence_streamed(
        preds, noise.predicted_probability(p_true, margin), suggested, rows_at_once=4
    )
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    assert np.isfinite(got).all()
