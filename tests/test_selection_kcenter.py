"""Greedy k-center: the round-based traversal against the one-at-a-time greedy, and the selector."""

import math

import numpy as np
import pytest

from selection.kcenter import farthest_first, reduce_embeddings
from selection.selectors import KCenterSelector, RandomSelector, TargetError
from selection.synthetic import synthetic_corpus, with_onehot_embeddings
from selection.units import UnitSet, merge_unit_shards


def greedy_oracle(points, durations, budget, first, eligible=None):
    """Farthest-first one pick at a time, in float64 (the definition)."""
    points = np.asarray(points, dtype=np.float64)
    nearest = ((points - points[first]) ** 2).sum(1)
    picks, spent = [first], durations[first]
    allowed = np.ones(len(points), bool) if eligible is None else eligible.copy()
    while spent < budget:
        open_points = allowed.copy()
        open_points[picks] = False
        if not open_points.any():
            if len(picks) == len(points):
                break
            allowed[:] = True
            continue
        pick = int(np.argmax(np.where(open_points, nearest, -1.0)))
        picks.append(pick)
        spent += durations[pick]
        nearest = np.minimum(nearest, ((points - points[pick]) ** 2).sum(1))
    return picks


@pytest.mark.parametrize("block, max_round", [(8, 3), (64, 1024), (4096, 1)])
def test_rounds_give_the_one_at_a_time_picks(block, max_round):
    rng = np.random.default_rng(0)
    points = rng.normal(size=(400, 6)).astype(np.float32)
    durations = rng.uniform(1, 5, size=400)
    budget = 0.3 * durations.sum()
    picks, radii, nearest, rounds = farthest_first(points, durations, budget, first=17, block=block,
                                                   max_round=max_round)
    assert picks.tolist() == greedy_oracle(points, durations, budget, 17)
    assert radii[0] == math.inf and np.all(np.diff(radii[1:]) <= 1e-4)  # covering radius never grows
    assert durations[picks[:-1]].sum() < budget <= durations[picks].sum()
    assert nearest[picks].max() == 0 and nearest.max() <= radii[-1] ** 2 + 1e-4
    assert rounds > 1


def test_one_pick_per_well_separated_cluster():
    rng = np.random.default_rng(1)
    centres = np.array([[0, 0], [100, 0], [0, 100], [100, 100]], dtype=np.float32)
    points = np.concatenate([c + rng.normal(scale=0.5, size=(50, 2)) for c in centres]).astype(np.float32)
    picks, *_ = farthest_first(points, np.ones(200), 4.0, first=0, block=16)
    assert sorted(picks // 50) == [0, 1, 2, 3]


def test_eligible_points_first_then_the_rest():
    rng = np.random.default_rng(2)
    points = rng.normal(size=(120, 3)).astype(np.float32)
    eligible = np.zeros(120, bool)
    eligible[:30] = True
    durations = np.ones(120)
    picks, *_ = farthest_first(points, durations, 50.0, first=0, eligible=eligible, block=8)
    assert set(picks[:30]) == set(range(30)) and not set(picks[30:]) & set(range(30))
    assert picks.tolist() == greedy_oracle(points, durations, 50.0, 0, eligible)


def test_reduction_keeps_distances_of_low_rank_data():
    rng = np.random.default_rng(3)
    basis = rng.normal(size=(3, 20))
    vectors = (rng.normal(size=(500, 3)) @ basis).astype(np.float16)
    standardised, _, everything = reduce_embeddings(vectors, n_components=None)
    projected, _, kept = reduce_embeddings(vectors, n_components=3, seed=0)
    assert everything == 1.0 and kept == pytest.approx(1.0, abs=1e-3)
    pairs = rng.integers(0, 500, size=(200, 2))
    full = np.linalg.norm(standardised[pairs[:, 0]] - standardised[pairs[:, 1]], axis=1)
    reduced = np.linalg.norm(projected[pairs[:, 0]] - projected[pairs[:, 1]], axis=1)
    np.testing.assert_allclose(reduced, full, rtol=2e-2, atol=1e-2)


DOMAINS = ["a", "b", "c", "d"]


@pytest.fixture(scope="module")
def corpus():
    pool = synthetic_corpus(600, DOMAINS, [0.4, 0.4, 0.15, 0.05], n_clusters=40, mean_length=100, seed=1)
    target = synthetic_corpus(40, DOMAINS, [0, 0, 0, 1], n_clusters=40, mean_length=100, seed=2)
    return pool, with_onehot_embeddings(pool.units), with_onehot_embeddings(target.units)


def test_selector_spreads_over_domains_more_than_random(corpus):
    pool, units, _ = corpus
    manifest = pool.manifest()
    budget = 0.1 * manifest.total_hours
    picked = KCenterSelector(n_components=16, seed=0).select(manifest, units, budget)
    rare = {"c", "d"}
    share = np.mean([pool.domains[units.rows([i])[0]] in rare for i in picked.ids])
    random_share = np.mean([pool.domains[units.rows([i])[0]] in rare
                            for i in RandomSelector(seed=0).select(manifest, units, budget).ids])
    assert picked.hours <= budget and share > random_share + 0.1  # rare domains are 20 % of the pool
    assert picked.diagnostics["picks"] >= picked.n_utterances and 0 < picked.diagnostics["explained_variance"] <= 1


def test_target_fraction_stays_near_the_target(corpus):
    pool, units, target_units = corpus
    manifest = pool.manifest()
    selector = KCenterSelector(n_components=16, target_fraction=0.06, seed=0)
    with pytest.raises(TargetError):
        selector.select(manifest, units, 0.03 * manifest.total_hours)
    picked = selector.select(manifest, units, 0.03 * manifest.total_hours, target_units)
    domains = pool.domains[units.rows(picked.ids)]
    assert np.mean(domains == "d") > 0.8  # the target domain is 5 % of the pool
    assert picked.diagnostics["hours_share_from_target_neighbourhood"] == 1.0


def test_units_without_embeddings_are_refused(corpus):
    pool, _, _ = corpus
    with pytest.raises(ValueError, match="embeddings"):
        KCenterSelector().select(pool.manifest(), pool.units, 0.01)


def test_embeddings_survive_save_subset_and_merge(corpus, tmp_path):
    _, units, _ = corpus
    halves = [units.subset(units.ids[1::2]), units.subset(units.ids[::2])]
    for i, half in enumerate(halves):
        half.save(tmp_path / f"{i}.npz")
    merged = merge_unit_shards([tmp_path / "0.npz", tmp_path / "1.npz"])
    assert merged.ids == sorted(units.ids)
    np.testing.assert_array_equal(merged.embeddings, units.embeddings[units.rows(merged.ids)])
    loaded = UnitSet.load(tmp_path / "0.npz")
    np.testing.assert_array_equal(loaded.embeddings, halves[0].embeddings)
