"""Every definition of SCIENCE.md on hand-built cases whose answers were worked out by hand.

The running example: M = 2 members, epochs 0..3, N = 4 instances a, b, c, d, labels y = 0, 1, 2, 0.

    correct c[m, e]      e=0 1 2 3        predictions           e=0 1 2 3
    member 0  a          0 1 1 1          member 0  a          1 0 0 0
              b          0 1 0 1                    b          0 1 0 1
              c          0 0 0 0                    c          0 1 1 0
              d          1 1 1 1                    d          0 0 0 0
    member 1  a          0 0 1 1          member 1  a          2 1 0 0
              b          1 1 1 0                    b          1 1 1 2
              c          0 0 0 0                    c          1 1 0 0
              d          1 1 1 1                    d          0 0 0 0
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from curate.scores import definitions as d

Y = np.array([0, 1, 2, 0])
PRED = np.array(
    [
        [
            [1, 0, 0, 0],
            [0, 1, 1, 0],
            [0, 0, 1, 0],
            [0, 1, 0, 0],
        ],  # member 0: rows are epochs, columns a b c d
        [[2, 1, 1, 0], [1, 1, 1, 0], [0, 1, 0, 0], [0, 2, 0, 0]],  # member 1
    ]
)
C = PRED == Y


def test_example_is_what_the_table_says():
    assert C[0, :, 0].tolist() == [0, 1, 1, 1] and C[0, :, 1].tolist() == [0, 1, 0, 1]
    assert C[1, :, 0].tolist() == [0, 0, 1, 1] and C[1, :, 1].tolist() == [1, 1, 1, 0]
    assert not C[:, :, 2].any() and C[:, :, 3].all()


def test_tpa_strict_agreement_per_epoch():
    assert d.tpa(C)[1].tolist() == [0.5, 1.0, 0.0, 1.0]
    assert d.strict(C)[1].tolist() == [False, True, False, True]
    # label-agnostic: c is wrong for both members at e = 1 but both say 1, so Agreement is 1
    assert d.agreement(PRED)[1].tolist() == [0.5, 1.0, 1.0, 1.0]
    assert d.agreement(PRED)[0].tolist() == [0.5, 0.5, 0.5, 1.0]


def test_accessibility():
    # a: tpa .5, 1, 1 -> 5/6; b: 1, .5, .5 -> 2/3; c: 0; d: 1 (epoch 0 is not used)
    assert d.accessibility(C) == pytest.approx([5 / 6, 2 / 3, 0, 1])


def test_learned_epoch_and_first_learned():
    # per member: a (1, 2); b (3, never); c (never, never); d (1, 1)
    per = d.member_learned_epoch(C)
    assert (
        per[:, 0].tolist() == [1, 2]
        and per[:, 1].tolist() == [3, np.inf]
        and per[:, 3].tolist() == [1, 1]
    )
    le = d.learned_epoch(C)
    # numpy's median of an even count: the mean of the two middle values (1 and 2), rounding only
    assert le[0] == pytest.approx(1.5, abs=1e-12)
    assert np.isnan(le[1]) and np.isnan(le[2])  # median (3, inf) = inf -> NULL
    assert le[3] == pytest.approx(1, abs=1e-12)  # the median of equal values
    fl = d.first_learned(C)
    # medians of small integers: rounding only, hence abs=1e-12
    assert fl[[0, 1, 3]].tolist() == pytest.approx([1.5, 1, 1], abs=1e-12) and np.isnan(fl[2])


def test_forgetting_events_and_never_learned():
    # b: member 0 forgets at e = 2, member 1 at e = 3 -> 2 events; c never learned -> NULL, not 0
    fe = d.forgetting_events(C)
    assert fe[0] == 0 and fe[1] == 2 and np.isnan(fe[2]) and fe[3] == 0
    assert d.never_learned(C).tolist() == [False, False, True, False]


def test_confidence_variability_by_hand():
    p = np.array([[[0.9], [0.2], [0.4]], [[0.1], [0.6], [0.8]]])  # (M=2, T=3, N=1)
    assert d.confidence(p) == pytest.approx([0.5])  # (.2 + .4 + .6 + .8) / 4, epoch 0 left out
    assert d.variability(p) == pytest.approx([0.1])  # std(.2, .4) = std(.6, .8) = .1


def test_final_correct_and_ddd():
    assert d.final_correct(C).tolist() == [2, 1, 0, 2]
    assert d.ddd(d.final_correct(C), 2).tolist() == [
        "trivial",
        "in-between",
        "impossible",
        "trivial",
    ]
    counts = np.array([5, 4, 3, 1, 0])
    assert d.ddd(counts, 5, tol=0).tolist() == [
        "trivial",
        "in-between",
        "in-between",
        "in-between",
        "impossible",
    ]
    assert d.ddd(counts, 5, tol=1).tolist() == [
        "trivial",
        "trivial",
        "in-between",
        "impossible",
        "impossible",
    ]
    with pytest.raises(ValueError):
        d.ddd(counts, 2, tol=1)  # M - tol <= tol: trivial and impossible would overlap


def test_per_epoch_metrics_by_hand():
    em = d.epoch_metrics(C, PRED)
    # correct counts per epoch: e0 a0 b1 c0 d2; e1 a1 b2 c0 d2; e2, e3 a2 b1 c0 d2
    assert em["correct_count_hist"].tolist() == [[2, 1, 1], [1, 1, 2], [1, 1, 2], [1, 1, 2]]
    # member accuracies: m0 .25 .75 .5 .75; m1 .5 .5 .75 .5
    assert em["acc_by_member"].tolist() == [[0.25, 0.5], [0.75, 0.5], [0.5, 0.75], [0.75, 0.5]]
    assert em["acc_mean"] == pytest.approx([0.375, 0.625, 0.625, 0.625])
    assert em["acc_std"] == pytest.approx([0.125, 0.125, 0.125, 0.125])
    # e1: all correct {b, d} over at least one correct {a, b, d}
    assert em["strict_agreement"][1] == pytest.approx(2 / 3)
    assert em["lower_bound"][1] == pytest.approx(0.25)  # 1 - min(.25 + .5, 1)
    assert em["random_agreement"][1] == pytest.approx(0.375)  # .75 * .5
    assert em["random_agreement_normalized"][1] == pytest.approx(0.375 / 0.875)  # over 1 - .25 * .5
    # tpa at e1 = (.5, 1, 0, 1): kurtosis - skew^2 - 1 = 512/1331 (exact fractions by hand)
    assert em["bimodality"][1] == pytest.approx(512 / 1331)
    # null: Poisson-binomial(.75, .5) = (1/8, 1/2, 3/8) on (0, 1/2, 1) -> 384/343
    assert em["bimodality_null"][1] == pytest.approx(384 / 343)
    # Binomial(2, .625) x 4 instances
    assert em["correct_count_null"][1] == pytest.approx([0.5625, 1.875, 1.5625])
    # e0 -> e1: member 0 flips a and b, member 1 nothing: 2 of 8; predictions change 3 + 1 of 8
    assert np.isnan(em["flip_rate"][0]) and em["flip_rate"][1] == pytest.approx(0.25)
    assert em["label_change_rate"][1] == pytest.approx(0.5)
    # fractions of 4 instances: rounding only, hence abs=1e-12
    got = [em["frac_trivial"][1], em["frac_in_between"][1], em["frac_impossible"][1]]
    assert got == pytest.approx([0.5, 0.25, 0.25], abs=1e-12)


def test_bimodality_matches_scipy_and_two_points_is_zero():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 9, (3, 500)) / 8
    b = d.bimodality(x)
    assert b == pytest.approx(
        stats.kurtosis(x, axis=1, fisher=False) - stats.skew(x, axis=1) ** 2 - 1
    )
    hist = np.stack([np.bincount(np.rint(r * 8).astype(int), minlength=9) for r in x])
    assert d.bimodality_from_pmf(np.arange(9) / 8, hist.astype(float)) == pytest.approx(b)
    assert d.bimodality(np.array([[0, 1, 0, 1.0]]))[0] == pytest.approx(0, abs=1e-12)
    assert d.bimodality(np.array([[0, 0, 0, 1.0]]))[0] == pytest.approx(
        0, abs=1e-12
    )  # any two points


def test_bimodality_null_equals_simulated_independent_members():
    acc = np.array([[0.9], [0.6], [0.3], [0.8]])
    rng = np.random.default_rng(1)
    sim = (rng.random((4, 400_000)) < acc).mean(axis=0)
    assert d.bimodality_null(acc)[0] == pytest.approx(d.bimodality(sim[None])[0], abs=0.01)
    assert d.poisson_binomial_pmf(np.array([0.75, 0.5])) == pytest.approx([0.125, 0.5, 0.375])


def test_error_consistency_by_hand():
    # e1: c0 = (1, 1, 0, 1), c1 = (0, 1, 0, 1): c_obs 3/4, c_exp .75 .5 + .25 .5 = .5 -> kappa .5
    assert d.error_consistency(C[0, 1], C[1, 1]) == pytest.approx(0.5)
    agree = d.pair_agreement_counts(C[:, 1])
    assert agree.tolist() == [[4, 3], [3, 4]]
    # degenerate: identical vectors (c_obs = 1) -> 1, even when c_exp = 1 (both always right)
    assert d.error_consistency(np.ones(5, bool), np.ones(5, bool)) == pytest.approx(1.0, abs=1e-12)
    # opposite errors with 50 % accuracy each: c_obs 0, c_exp .5 -> -1
    assert d.error_consistency(
        np.array([1, 0, 1, 0], bool), np.array([0, 1, 0, 1], bool)
    ) == pytest.approx(-1)


def test_edge_nobody_ever_right():
    c = np.zeros((3, 4, 5), bool)
    em = d.epoch_metrics(c, np.ones((3, 4, 5), int))
    # fractions whose numerators are all 0: rounding only, hence abs=1e-12
    assert em["strict_agreement"].tolist() == pytest.approx([0, 0, 0, 0], abs=1e-12)
    assert em["random_agreement_normalized"].tolist() == pytest.approx([0, 0, 0, 0], abs=1e-12)
    assert em["lower_bound"].tolist() == pytest.approx([0, 0, 0, 0], abs=1e-12)
    assert np.isnan(em["bimodality"]).all()  # one-point distribution: undefined
    assert np.isnan(d.learned_epoch(c)).all() and np.isnan(d.forgetting_events(c)).all()
    assert d.never_learned(c).all() and (d.accessibility(c) == 0).all()


def test_edge_everybody_always_right():
    c = np.ones((3, 4, 5), bool)
    em = d.epoch_metrics(c, np.zeros((3, 4, 5), int))
    # fractions of all instances: rounding only, hence abs=1e-12
    assert em["strict_agreement"].tolist() == pytest.approx([1, 1, 1, 1], abs=1e-12)
    assert em["lower_bound"].tolist() == pytest.approx([1, 1, 1, 1], abs=1e-12)
    assert (d.learned_epoch(c) == 1).all() and (d.forgetting_events(c) == 0).all()
    assert em["frac_trivial"].tolist() == pytest.approx([1, 1, 1, 1], abs=1e-12)  # all of them
    assert d.kappa_from_counts(np.array([5]), np.array([5]), np.array([5]), 5)["kappa"][
        0
    ] == pytest.approx(1.0, abs=1e-12)  # identical counts: kappa 1, rounding only


def test_edge_single_member():
    c = C[:1]
    assert d.tpa(c)[1].tolist() == [1, 1, 0, 1]
    assert d.agreement(PRED[:1]).min() == pytest.approx(
        1.0, abs=1e-12
    )  # one member agrees with itself
    assert d.learned_epoch(c)[0] == 1 and d.learned_epoch(c)[1] == 3
    assert d.ddd(d.final_correct(c), 1).tolist() == ["trivial", "trivial", "impossible", "trivial"]


def test_ties_in_agreement_and_majority_vote():
    pred = np.array([[0], [1], [1], [0]])  # two members say 0, two say 1
    assert d.agreement_counts(pred).tolist() == [2]
    assert d.majority_vote(pred).tolist() == [0]  # ties go to the smallest class
    assert d.majority_vote(np.array([[2, 5], [3, 5], [3, 4]])).tolist() == [3, 5]


def test_matched_epochs_and_accessibility_correlation():
    acc_a = np.array([0.1, 0.5, 0.7, 0.9])
    acc_b = np.array([0.1, 0.3, 0.695, 0.8])
    assert d.matched_epochs(acc_a, acc_b) == [(2, 2)]
    r = d.accessibility_correlation(np.array([0.1, 0.5, 0.9]), np.array([0.2, 0.6, 1.0]))
    assert r["pearson_r"] == pytest.approx(1) and r["spearman_rho"] == pytest.approx(1)
