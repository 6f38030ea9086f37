"""Off-policy estimators against hand computations of their papers' equations.

Two logged episodes, γ = 0.5 (episode B is one step shorter and padded: absorbing, ratio 1):

    step               0      1      2
    A  r             1      0      2
       π(a|s)        0.5    1.0    0.2
       μ(a|s)        0.25   0.5    0.4     ρ = 2, 2, 0.5   w = 2, 4, 2
       Q̂(s,a)        1.5    0.5    1.0
       V̂(s)          1.2    0.8    0.6
    B  r             3      1      —
       π(a|s)        0.25   0.5    —
       μ(a|s)        0.5    0.5    —       ρ = 0.5, 1     w = 0.5, 0.5, (0.5)
       Q̂(s,a)        2.0    1.0    —
       V̂(s)          2.5    0.9    —

Per-decision IS: A = 1·2·1 + ½·4·0 + ¼·2·2 = 3; B = 1·½·3 + ½·½·1 = 1.75; mean 2.375.
Weighted PDIS: step 0 (2·1 + ½·3)/2.5 = 1.4; step 1 ½·(4·0 + ½·1)/4.5 = 1/18;
step 2 ¼·(2·2 + ½·0)/2.5 = 0.4; sum 1.4 + 1/18 + 0.4 = 1.855…
DR (w₋₁ = 1): A: [2·1 − (2·1.5 − 1.2)] + ½[4·0 − (4·0.5 − 2·0.8)] + ¼[2·2 − (2·1 − 4·0.6)]
= 0.2 − 0.2 + 1.1 = 1.1; B: [½·3 − (½·2 − 2.5)] + ½[½·1 − (½·1 − ½·0.9)] = 3 + 0.225 = 3.225;
mean 2.1625.
WDR (ŵ per step: 0.8/0.2, 8/9 and 1/9, 0.8/0.2; ŵ₋₁ = ½): A: 0.8 − (1.2 − 0.6) = 0.2,
½·(0 − (4/9 − 0.64)) = 0.09777…, ¼·(1.6 − (0.8 − 8/15)) = 1/3; B: 0.6 − (0.4 − 1.25) = 1.45,
½·(1/9 − (1/9 − 0.18)) = 0.09; sum 2.17111….
FQE (direct): (1.2 + 2.5)/2 = 1.85.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from tianshou_offline.evaluation.estimators import (
    DirectMethod,
    DoublyRobust,
    EpisodeBatch,
    PerDecisionIS,
    WeightedDoublyRobust,
    WeightedIS,
    bootstrap_interval,
    make_estimator,
)

NAN = float("nan")


def hand_batch() -> EpisodeBatch:
    pi = np.array([[0.5, 1.0, 0.2], [0.25, 0.5, 1.0]])
    mu = np.array([[0.25, 0.5, 0.4], [0.5, 0.5, 1.0]])
    mask = np.array([[True, True, True], [True, True, False]])
    return EpisodeBatch(
        rew=np.array([[1.0, 0.0, 2.0], [3.0, 1.0, 7.0]]),  # 7.0: padding, must be ignored
        mask=mask,
        gamma=0.5,
        log_ratio=np.where(mask, np.log(pi) - np.log(mu), 5.0),  # padding ignored too
        q=np.array([[1.5, 0.5, 1.0], [2.0, 1.0, 9.0]]),
        v=np.array([[1.2, 0.8, 0.6], [2.5, 0.9, 9.0]]),
    )


def test_per_decision_is() -> None:
    assert PerDecisionIS()(hand_batch()) == pytest.approx(2.375)


def test_weighted_is() -> None:
    assert WeightedIS()(hand_batch()) == pytest.approx(1.4 + 1 / 18 + 0.4)


def test_doubly_robust() -> None:
    assert DoublyRobust()(hand_batch()) == pytest.approx(2.1625)


def test_weighted_doubly_robust() -> None:
    expected = 0.2 + 0.5 * (0.64 - 4 / 9) + 0.25 * (1.6 - 0.8 + 8 / 15) + 1.45 + 0.09
    assert expected == pytest.approx(2.171111, abs=1e-6)
    assert WeightedDoublyRobust()(hand_batch()) == pytest.approx(expected)


def test_direct_method() -> None:
    assert DirectMethod()(hand_batch()) == pytest.approx(1.85)


def test_weight_clipping_binds() -> None:
    """max_weight=3 clips A's w₁ = 4 to 3: DR's A becomes
    0.2 + ½·(0 − (3·0.5 − 2·0.8)) + ¼·(4 − (2 − 3·0.6)) = 0.2 + 0.05 + 0.95 = 1.2."""
    assert DoublyRobust(max_weight=3.0)(hand_batch()) == pytest.approx((1.2 + 3.225) / 2)
    assert PerDecisionIS(max_weight=1.0)(hand_batch()) == pytest.approx(
        ((1 + 0.25 * 2) + (0.5 * 3 + 0.5 * 0.5 * 1)) / 2
    )
    with pytest.raises(ValueError, match="max_weight"):
        WeightedIS(max_weight=0.0)


def test_zero_target_probability_zeroes_the_rest_of_the_episode() -> None:
    """π(a₁|s₁) = 0 in episode A: its weight is 0 from step 1 on (log ratio −inf)."""
    b = hand_batch()
    assert b.log_ratio is not None
    log_ratio = b.log_ratio.copy()
    log_ratio[0, 1] = -math.inf
    batch = EpisodeBatch(rew=b.rew, mask=b.mask, gamma=b.gamma, log_ratio=log_ratio)
    assert PerDecisionIS()(batch) == pytest.approx((2.0 + 1.75) / 2)


def test_estimators_say_what_they_need() -> None:
    b = hand_batch()
    no_q = EpisodeBatch(rew=b.rew, mask=b.mask, gamma=b.gamma, log_ratio=b.log_ratio)
    with pytest.raises(ValueError, match="fitted Q"):
        DoublyRobust()(no_q)
    no_ratio = EpisodeBatch(rew=b.rew, mask=b.mask, gamma=b.gamma, q=b.q, v=b.v)
    with pytest.raises(ValueError, match="behaviour policy"):
        WeightedIS()(no_ratio)
    with pytest.raises(ValueError, match="expected one of"):
        make_estimator("magic")


def test_bootstrap_interval() -> None:
    b = hand_batch()
    lo, hi = bootstrap_interval(PerDecisionIS(), b, resamples=400, seed=1)
    # the resamples of two episodes: both A (3), both B (1.75) or one of each (2.375)
    assert lo == pytest.approx(1.75) and hi == pytest.approx(3.0)
    assert (lo, hi) == bootstrap_interval(PerDecisionIS(), b, resamples=400, seed=1)
    same = b.take(np.zeros(5, dtype=np.int64))  # five copies of A: no spread
    assert bootstrap_interval(DoublyRobust(), same, resamples=50) == pytest.approx((1.1, 1.1))


def test_bootstrap_covers_the_truth_of_a_bandit() -> None:
    """A one-step bandit with known value: π picks arm 1 w.p. 0.8, μ w.p. 0.5; arm 1 pays
    N(1, 1), arm 0 pays N(0, 1); V(π) = 0.8. The 90% interval of IS over 2000 logged
    episodes holds it, and shrinks with more data."""
    rng = np.random.default_rng(0)

    def logged(n: int) -> EpisodeBatch:
        act = rng.integers(0, 2, size=n)
        rew = rng.normal(act.astype(float), 1.0)
        pi = np.where(act == 1, 0.8, 0.2)
        return EpisodeBatch(rew=rew[:, None], mask=np.ones((n, 1), dtype=bool), gamma=0.9,
                            log_ratio=np.log(pi / 0.5)[:, None])  # fmt: skip

    lo, hi = bootstrap_interval(PerDecisionIS(), logged(2000), resamples=300, level=0.9)
    assert lo < 0.8 < hi
    lo2, hi2 = bootstrap_interval(PerDecisionIS(), logged(200), resamples=300, level=0.9)
    assert hi2 - lo2 > 2 * (hi - lo)


def test_implausible_estimates_are_named() -> None:
    """Values outside [min(0, r_min), max(0, r_max)] / (1 − γ) cannot come from the data's
    rewards (Pendulum's FQE once valued a policy at +3 with every reward ≤ 0)."""
    from tianshou_offline.data.columns import buffer_from_columns
    from tianshou_offline.evaluation.ope import Estimate, OPEResult, value_bounds

    buffer = buffer_from_columns({
        "obs": np.zeros((4, 1), dtype=np.float32), "act": np.zeros(4, dtype=np.int64),
        "rew": np.array([-2.0, -0.5, -1.0, -3.0]), "terminated": np.array([0, 1, 0, 1], bool),
        "truncated": np.zeros(4, dtype=bool),
    })  # fmt: skip
    assert value_bounds(buffer, 0.5) == (-6.0, 0.0)
    assert value_bounds(buffer, 1.0) is None
    result = OPEResult("c.pt", {"fqe": Estimate(3.4, 3.0, 3.8), "wis": Estimate(-1.0, -2, 0),
                                "dr": Estimate(-6.5, -7, -6)}, value_bounds=(-6.0, 0.0))  # fmt: skip
    assert result.implausible() == ["fqe", "dr"]
    assert result.to_json()["implausible"] == ["fqe", "dr"]
