"""Selector properties on a synthetic pool where 10 % of utterances are target-domain."""

import logging
import math

import numpy as np
import pytest

from selection.selectors import (
    ClusterBalancedSelector, ContrastiveLMSelector, CoverageSelector, DivergenceSelector,
    DSIRSelector, KCenterSelector, LongestFirstSelector, RandomSelector, Selector, TargetError, fill_budget,
)
from selection.synthetic import SyntheticCorpus, synthetic_corpus, with_onehot_embeddings
from selection.units import UnitSet

DOMAINS = ["formant", "concat", "parametric", "neural", "reverb", "noisytel", "nonenglish"]
SHARES = [0.15, 0.15, 0.15, 0.10, 0.15, 0.15, 0.15]

TARGET_AWARE = [ContrastiveLMSelector(), ContrastiveLMSelector(order=3), DSIRSelector(),
                DSIRSelector(gumbel=False), DivergenceSelector(), KCenterSelector(n_components=16, target_fraction=0.08)]
ALL = TARGET_AWARE + [RandomSelector(seed=1), LongestFirstSelector(), CoverageSelector(),
                      ClusterBalancedSelector(n_clusters=8), KCenterSelector(n_components=16)]


def _name(selector):
    return f"{type(selector).__name__}{selector.settings()}"


@pytest.fixture(scope="module")
def corpus():
    pool = synthetic_corpus(2000, DOMAINS, SHARES, n_clusters=100, mean_length=120, seed=1)
    target = synthetic_corpus(60, DOMAINS, [0, 0, 0, 1, 0, 0, 0], n_clusters=100,
                              mean_length=120, seed=2)
    pool = SyntheticCorpus(with_onehot_embeddings(pool.units), pool.domains, pool.durations)
    target = SyntheticCorpus(with_onehot_embeddings(target.units), target.domains, target.durations)
    manifest = pool.manifest()
    budget = 0.8 * manifest.durations[pool.domains == "neural"].sum() / 3600
    return pool, target, manifest, budget


def _precision(pool, ids):
    return float(np.mean(pool.domains[pool.units.rows(ids)] == "neural"))


@pytest.mark.parametrize("selector", ALL, ids=_name)
def test_subset_budget_and_determinism(selector, corpus):
    pool, target, manifest, budget = corpus
    result = selector.select(manifest, pool.units, budget, target.units)
    again = selector.select(manifest, pool.units, budget, target.units)
    assert isinstance(selector, Selector)
    assert result.ids == again.ids
    assert len(set(result.ids)) == len(result.ids) and set(result.ids) <= set(manifest.ids)
    hours = manifest.durations_of(result.ids).sum() / 3600
    assert result.hours == pytest.approx(hours)
    left_out = np.setdiff1d(manifest.ids, result.ids)
    assert 0 <= budget - hours < manifest.durations_of(list(left_out)).min() / 3600
    assert result.selector == type(selector).__name__ and result.settings == selector.settings()
    if result.scores is not None:
        assert len(result.scores) == len(result.ids)


@pytest.mark.parametrize("selector", TARGET_AWARE, ids=_name)
def test_target_aware_selectors_prefer_target(selector, corpus):
    pool, target, manifest, budget = corpus
    result = selector.select(manifest, pool.units, budget, target.units)
    assert selector.needs_target
    assert _precision(pool, result.ids) >= 0.8


def test_untargeted_selectors_are_near_base_rate(corpus):
    pool, target, manifest, budget = corpus
    for selector in (RandomSelector(seed=0), RandomSelector(seed=1), CoverageSelector(),
                     ClusterBalancedSelector(n_clusters=8)):
        assert _precision(pool, selector.select(manifest, pool.units, budget).ids) < 0.25


def test_exact_greedy_divergence_on_small_pool(corpus):
    pool, target, _, _ = corpus
    small = pool.manifest(pool.units.ids[:300])
    budget = 0.8 * small.durations[pool.domains[:300] == "neural"].sum() / 3600
    exact = DivergenceSelector(n_rounds=10**6, shortlist_factor=math.inf)
    result = exact.select(small, pool.units, budget, target.units)
    assert _precision(pool, result.ids) >= 0.8
    assert exact.settings()["shortlist_factor"] == "inf"


@pytest.mark.parametrize("selector", TARGET_AWARE, ids=_name)
def test_empty_target_is_refused(selector, corpus):
    pool, _, manifest, budget = corpus
    with pytest.raises(TargetError, match="needs non-empty target units"):
        selector.select(manifest, pool.units, budget)
    empty = UnitSet.from_sequences([("t", [])], 50.0, 100)
    with pytest.raises(TargetError):
        selector.select(manifest, pool.units, budget, empty)


def test_budget_larger_than_pool_takes_all(corpus, caplog):
    pool, target, manifest, _ = corpus
    with caplog.at_level(logging.WARNING):
        result = DSIRSelector().select(manifest, pool.units, 10 * manifest.total_hours, target.units)
    assert sorted(result.ids) == sorted(manifest.ids)
    assert "taking the whole pool" in caplog.text


def test_bad_inputs(corpus, caplog):
    pool, target, manifest, budget = corpus
    with pytest.raises(ValueError, match="budget_hours must be > 0"):
        RandomSelector().select(manifest, None, 0)
    with pytest.raises(ValueError, match="needs pool units"):
        CoverageSelector().select(manifest, None, budget)
    other = UnitSet.from_sequences([("t", [1, 2])], 50.0, 7)
    with pytest.raises(ValueError, match="clusters"):
        DSIRSelector().select(manifest, pool.units, budget, other)
    partial = pool.units.subset(pool.units.ids[:1500])
    with caplog.at_level(logging.WARNING):
        result = DSIRSelector().select(manifest, partial, budget, target.units)
    assert "500 of 2000 pool utterances have no units" in caplog.text
    assert set(result.ids) <= set(partial.ids)


def test_fill_budget_property():
    rng = np.random.default_rng(0)
    for _ in range(200):
        durations = rng.uniform(0.5, 20, size=rng.integers(1, 60))
        budget = rng.uniform(0, durations.sum())
        keep = fill_budget(durations, budget)
        assert np.all(np.diff(keep) > 0)
        total = durations[keep].sum()
        rest = np.delete(durations, keep)
        assert total <= budget + 1e-9
        assert len(rest) == 0 or budget - total < rest.min()
    assert fill_budget(np.array([5.0, 1.0, 1.0]), 2.0).tolist() == [1, 2]
    assert fill_budget(np.array([5.0]), 1.0).tolist() == []


@pytest.mark.parametrize("selector", ALL, ids=_name)
def test_utterances_without_units_are_never_selected(selector, corpus):
    """Audio the units stage could not read (no units) is left out by every selector, units-free ones too."""
    pool, target, manifest, _ = corpus
    longest = [manifest.ids[i] for i in np.argsort(-manifest.durations)[:50]]  # what longest-first would take
    unreadable = set(longest[::2]) | set(manifest.ids[::7])
    readable = pool.units.subset([i for i in manifest.ids if i not in unreadable])
    result = selector.select(manifest, readable, 0.5 * manifest.total_hours, target_units=target.units)
    assert result.ids and not unreadable & set(result.ids)
