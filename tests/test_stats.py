"""polyinstruct.stats: golden cases computed by hand (see the comments), fixed seeds."""

from __future__ import annotations

import pytest

from polyinstruct.stats import (Interval, StatsError, align, bootstrap_mean, bootstrap_rate, cohen_kappa,
                                exact_agreement, paired_bootstrap, pairwise_agreement, pearson, spearman)

PI = [3, 1, 4, 1, 5, 9, 2, 6]


def test_bootstrap_mean_hand_computed_with_fixed_seed():
    # default_rng(0).integers(0, 8, (5, 8)) draws these index rows (numpy's PCG64 stream):
    #   [6 5 4 2 2 0 0 0] -> 2 9 5 4 4 3 3 3 = 33/8 = 4.125
    #   [1 6 5 7 4 4 7 5] -> 1 2 9 6 5 5 6 9 = 43/8 = 5.375
    #   [5 4 4 7 2 6 5 0] -> 9 5 5 6 4 2 9 3 = 43/8 = 5.375
    #   [3 6 4 0 6 5 6 1] -> 1 2 5 3 2 9 2 1 = 25/8 = 3.125
    #   [0 6 0 4 0 2 3 3] -> 3 2 3 5 3 4 1 1 = 22/8 = 2.75
    # sorted means 2.75 3.125 4.125 5.375 5.375; linear quantile at 0.025 sits at position 0.1
    # -> 2.75 + 0.1 * 0.375 = 2.7875, at 0.975 position 3.9 -> 5.375.
    iv = bootstrap_mean(PI, resamples=5, seed=0)
    assert iv.estimate == pytest.approx(3.875) and iv.n == 8
    assert (iv.low, iv.high) == pytest.approx((2.7875, 5.375))
    # level 0.5: quantiles 0.25 and 0.75 sit exactly on positions 1 and 3.
    half = bootstrap_mean(PI, resamples=5, seed=0, level=0.5)
    assert (half.low, half.high) == pytest.approx((3.125, 5.375))
    assert (iv.seed, iv.resamples, iv.level) == (0, 5, 0.95)


def test_bootstrap_rate_matches_the_exact_resampling_distribution():
    # Rate 3/4: a replicate's success count is Binomial(4, 0.75): P(0)=.0039, P(1)=.0469,
    # cumulative .0039, .0508, .2617, .6836, 1 -> the 2.5% quantile is 1/4, the 97.5% one 4/4.
    iv = bootstrap_rate([True, True, True, False])
    assert iv.estimate == 0.75 and (iv.low, iv.high) == (0.25, 1.0) and iv.excludes_zero
    # [0, 1]: replicate means 0, .5, 1 with probability 1/4, 1/2, 1/4 -> interval [0, 1].
    iv = bootstrap_rate([0, 1])
    assert (iv.low, iv.high) == (0.0, 1.0) and not iv.excludes_zero
    assert bootstrap_rate([1] * 7).to_dict()["low"] == 1.0  # no spread, interval collapses
    assert bootstrap_rate([]).estimate is None and bootstrap_rate([]).format() == "n/a (n=0)"


def test_paired_bootstrap_hand_computed_and_excludes_zero_mark():
    # Differences a - b = [1, 1, 1, 0]: the rate case above, so [0.25, 1.0], excludes 0.
    d = paired_bootstrap([1, 1, 1, 1], [0, 0, 0, 1])
    assert d.estimate == 0.75 and (d.low, d.high) == (0.25, 1.0) and d.excludes_zero
    # Differences [1, -1]: replicate means -1, 0, 1 -> [-1, 1], includes 0.
    d = paired_bootstrap([1, 0], [0, 1])
    assert (d.estimate, d.low, d.high) == (0.0, -1.0, 1.0) and not d.excludes_zero
    # Pairing matters: a constant shift of 0.5 on noisy prompts is certain when paired.
    a = [0.1, 0.9, 0.3, 0.7, 0.5, 0.2, 0.8, 0.4]
    d = paired_bootstrap([x + 0.5 for x in a], a)
    assert (d.low, d.high) == pytest.approx((0.5, 0.5)) and d.excludes_zero
    assert d.to_dict()["excludes_zero"] is True


def test_seed_is_reproducible_and_matters():
    assert bootstrap_mean(PI, seed=3) == bootstrap_mean(PI, seed=3)
    assert bootstrap_mean(PI, seed=3) != bootstrap_mean(PI, seed=4)
    # Frozen with the default seed/resamples: a report rendered again prints the same digits.
    iv = bootstrap_mean(PI)
    assert (iv.low, iv.high) == pytest.approx((2.25, 5.625))
    assert iv.format(digits=2) == "3.88 [2.25, 5.62] n=8"
    assert bootstrap_rate([1, 0, 1, 1]).format(digits=0, scale=100, suffix="%") == "75% [25%, 100%] n=4"


def test_bad_input_is_refused_with_a_clear_message():
    with pytest.raises(StatsError, match="same items"):
        paired_bootstrap([1, 2], [1])
    with pytest.raises(StatsError, match="0/1"):
        bootstrap_rate([0, 2])
    with pytest.raises(StatsError, match="number"):
        bootstrap_mean([1, None])
    with pytest.raises(StatsError, match="finite"):
        bootstrap_mean([1, float("nan")])
    with pytest.raises(StatsError, match="level"):
        bootstrap_mean([1], level=95)


def test_align_reports_unpaired_keys():
    keys, a, b, unpaired = align({"p1": 1, "p2": 0, "p3": 1}, {"p2": 1, "p1": 1, "p4": 0})
    assert keys == ["p1", "p2"] and a == [1, 0] and b == [1, 1]
    assert unpaired == {"only_a": ["p3"], "only_b": ["p4"]}


def test_interval_excludes():
    assert Interval(0.3, 0.1, 0.5, 10).excludes(0.0) and not Interval(0.3, 0.1, 0.5, 10).excludes(0.2)
    assert Interval(-0.3, -0.5, -0.1, 10).excludes_zero and not Interval(None, None, None, 0).excludes_zero


def test_correlation_and_agreement():
    assert pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0) and pearson([1, 1], [2, 3]) is None
    # Hand: x=[1,2,3,4], y=[1,3,2,4]: sxy = 4, sxx = syy = 5 -> r = 0.8
    assert pearson([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    # Spearman on ranks: monotone but non-linear is 1; ties share ranks (2.5, 2.5).
    assert spearman([1, 2, 3, 4], [1, 8, 27, 64]) == pytest.approx(1.0)
    assert spearman([1, 2, 2, 3], [1, 2, 2, 3]) == pytest.approx(1.0)
    # Cohen's kappa by hand: 10 items, 8 agree (po = 0.8), both 5 Y / 5 N (pe = 0.5) -> 0.3 / 0.5 = 0.6
    a, b = list("YYYYYNNNNN"), list("YYYYNYNNNN")
    assert exact_agreement(a, b) == pytest.approx(0.8) and cohen_kappa(a, b) == pytest.approx(0.6)
    assert pairwise_agreement(["win", "tie", "loss", "win"], ["win", "win", "win", "tie"]) == pytest.approx(2 / 4)
    assert cohen_kappa([], []) is None and exact_agreement([1], [1, 2]) is None


def test_judge_modules_keep_their_public_functions():
    from polyinstruct.judge import agreement, analyses
    assert analyses.pearson is pearson and agreement.cohen_kappa is cohen_kappa
    assert agreement.pairwise_agreement is pairwise_agreement


def test_bootstrap_statistic_uses_the_same_draws_as_bootstrap_mean():
    import numpy as np

    from polyinstruct.stats import bootstrap_statistic
    vals = np.array(PI, dtype=float)
    iv = bootstrap_statistic(len(PI), lambda idx: float(vals[idx].mean()), resamples=5, seed=0)
    assert (iv.estimate, iv.low, iv.high) == pytest.approx((3.875, 2.7875, 5.375))  # the hand case above
    assert bootstrap_statistic(0, lambda idx: 0.0).estimate is None
