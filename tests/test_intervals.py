"""Bootstrap intervals of error rates (common.intervals) against brute-force oracles."""

import itertools

import numpy as np
import pytest

from common.intervals import (
    bootstrap_rates,
    paired_difference,
    rate_interval,
    seed_mean_rates,
    utterance_errors,
)


def test_seed_mean_rates_match_a_loop():
    rng = np.random.default_rng(1)
    errors = np.stack([rng.integers(0, 5, (3, 7)), rng.integers(1, 9, (3, 7))], axis=-1)
    utterances = rng.integers(0, 7, (4, 7))
    seeds = rng.integers(0, 3, (4, 3))
    expected = [100 * np.mean([errors[s, u, 0].sum() / errors[s, u, 1].sum() for s in seed_row])
                for u, seed_row in zip(utterances, seeds)]
    np.testing.assert_allclose(seed_mean_rates(errors, utterances, seeds), expected)


def test_bootstrap_distribution_matches_exact_enumeration():
    """One seed, 4 utterances: all 4**4 equally likely resamples give the exact bootstrap distribution."""
    errors = np.array([[[0, 5], [4, 6], [1, 3], [6, 8]]])
    exact = np.array([100 * errors[0, list(u), 0].sum() / errors[0, list(u), 1].sum()
                      for u in itertools.product(range(4), repeat=4)])
    draws = bootstrap_rates(errors, n_draws=40000, seed=3)
    for value in np.unique(exact):
        assert abs((draws <= value + 1e-9).mean() - (exact <= value + 1e-9).mean()) < 0.015, value


def test_rate_interval_point_estimate_and_width():
    errors = np.array([[[2, 10]] * 50 + [[0, 10]] * 50, [[1, 10]] * 100])  # seeds at 10 % and 10 %
    rate, low, high = rate_interval(errors)
    assert rate == pytest.approx(10.0) and low < 10.0 < high
    many = np.concatenate([errors] * 4, axis=1)  # 4 times the test set: a narrower interval
    _, low_many, high_many = rate_interval(many)
    assert high_many - low_many < high - low


def test_paired_difference_uses_the_pairing():
    """A makes one edit fewer than B on every utterance, whose difficulty varies a lot: only pairing sees it."""
    rng = np.random.default_rng(0)
    hard = rng.integers(0, 20, 60)
    b = np.stack([hard + 1, np.full(60, 20)], axis=-1)[None]
    a = np.stack([hard, np.full(60, 20)], axis=-1)[None]
    result = paired_difference(a, b)
    assert result["difference"] == pytest.approx(-5.0) and result["verdict"] == "A better"
    _, a_low, a_high = rate_interval(a)
    _, b_low, b_high = rate_interval(b)
    assert a_high > b_low  # unpaired, the two intervals overlap
    same = paired_difference(b, b)
    assert same["difference"] == 0 and same["verdict"] == "indistinguishable"
    assert paired_difference(b, a)["verdict"] == "A worse"
    with pytest.raises(ValueError, match="same test set"):
        paired_difference(a, b[:, :10])


def test_utterance_errors_count_edits_and_reference_tokens():
    refs = [list("THECAT"), list("SAT")]
    hyps = [list("THEBAT"), list("")]
    np.testing.assert_array_equal(utterance_errors(refs, hyps), [[1, 6], [3, 3]])
    with pytest.raises(ValueError, match="2 references but 1"):
        utterance_errors(refs, hyps[:1])
