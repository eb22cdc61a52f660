"""The mixing knob: a selector fills ``target_share`` of the budget, random utterances the rest.

Oracles walk the rankings in plain Python; the selection files are checked to keep
their subset at the default ``target_share: 1.0``.
"""

import json
import math

import numpy as np
import pytest
from hyperpyyaml import load_hyperpyyaml

from conftest import ROOT
from selection.collectives import SingleProcess
from selection.outputs import write_selection_json
from selection.selectors import (ContrastiveLMSelector, DivergenceSelector, DSIRSelector, KCenterSelector,
                                 MixedSelector, RandomSelector, ShardableMixedSelector, mix_with_random)
from selection.sharded import UnitShard, sharded_selection
from selection.synthetic import SyntheticCorpus, synthetic_corpus, with_onehot_embeddings
from tasks.subset import load_selection

SELECTION_FOLDER = ROOT / "recipes" / "selection"
DOMAINS = ["a", "b", "c", "d"]
N_CLUSTERS = 24
SEED = 7
INNERS = {
    "contrastive": lambda: ContrastiveLMSelector(),
    "dsir": lambda: DSIRSelector(seed=SEED),
    "divergence": lambda: DivergenceSelector(n_rounds=4),
    "kcenter": lambda: KCenterSelector(n_components=8, target_fraction=0.2, seed=SEED),
}
# each target-aware selection file, and the selector it built before the knob, from the file's own keys
TODAY = {
    "contrastive": lambda c: ContrastiveLMSelector(order=c["order"], beta=c["beta"], hash_bits=c["hash_bits"]),
    "contrastive_ssl": lambda c: ContrastiveLMSelector(order=c["order"], beta=c["beta"], hash_bits=c["hash_bits"]),
    "dsir": lambda c: DSIRSelector(orders=(1, 2), hash_bits=c["hash_bits"], gumbel=c["gumbel"],
                                   length_normalization=c["length_normalization"],
                                   temperature=c["temperature"], seed=c["seed"]),
    "divergence": lambda c: DivergenceSelector(orders=(1, 2), hash_bits=c["hash_bits"], n_rounds=c["rounds"],
                                               shortlist_factor=c["shortlist_factor"]),
    "kcenter": lambda c: KCenterSelector(n_components=c["n_components"], target_fraction=c["target_fraction"],
                                         seed=c["seed"]),
}


@pytest.fixture(scope="module")
def corpus():
    """A pool of four domains with utterance embeddings, a target from domain ``b``, a 20 % budget."""
    pool = synthetic_corpus(300, DOMAINS, [0.4, 0.1, 0.3, 0.2], n_clusters=N_CLUSTERS, mean_length=40, seed=3)
    target = synthetic_corpus(30, DOMAINS, [0, 1, 0, 0], n_clusters=N_CLUSTERS, mean_length=40, seed=4)
    pool = SyntheticCorpus(with_onehot_embeddings(pool.units), pool.domains, pool.durations)
    target = SyntheticCorpus(with_onehot_embeddings(target.units), target.domains, target.durations)
    manifest = pool.manifest()
    return pool, target, manifest, 0.2 * manifest.durations.sum() / 3600


def walk(order, seconds, gap):
    """Brute-force budget fill: take, in order, every utterance that still fits the gap."""
    taken = []
    for i in order:
        if seconds[i] <= gap:
            taken.append(i)
            gap -= seconds[i]
    return taken


def oracle_mix(inner, share, seed, corpus):
    """The inner selector alone on ``share`` of the budget, then RandomSelector's order over the rest."""
    pool, target, manifest, budget = corpus
    seconds = manifest.durations
    inner_ids = inner.select(manifest, pool.units, share * budget, target.units).ids
    inner_rows = manifest.positions(inner_ids).tolist()
    permutation = np.random.default_rng(seed).permutation(len(manifest))  # RandomSelector's draw
    rest = [i for i in permutation if i not in set(inner_rows)]
    random_rows = walk(rest, seconds, budget * 3600 - seconds[inner_rows].sum())
    return inner_rows, random_rows


@pytest.mark.parametrize("share", [0.3, 0.7])
@pytest.mark.parametrize("name", sorted(INNERS))
def test_split_matches_brute_force(name, share, corpus):
    pool, target, manifest, budget = corpus
    seconds = manifest.durations
    result = MixedSelector(INNERS[name](), share, SEED).select(manifest, pool.units, budget, target.units)
    inner_rows, random_rows = oracle_mix(INNERS[name](), share, SEED, corpus)
    rows = manifest.positions(result.ids).tolist()
    assert rows == inner_rows + random_rows and inner_rows and random_rows
    assert not set(inner_rows) & set(random_rows) and len(set(rows)) == len(rows)
    figures = result.diagnostics
    assert figures["hours_by_selector"] == pytest.approx(seconds[inner_rows].sum() / 3600)
    assert figures["hours_at_random"] == pytest.approx(seconds[random_rows].sum() / 3600)
    assert (figures["utterances_by_selector"], figures["utterances_at_random"]) == (len(inner_rows),
                                                                                  len(random_rows))
    assert figures["hours_by_selector"] <= share * budget + 1e-12
    gap = budget * 3600 - seconds[rows].sum()
    left_out = np.setdiff1d(np.arange(len(manifest)), rows)
    assert gap >= 0 and seconds[left_out].min() > gap  # within budget, met within one utterance
    assert result.hours == pytest.approx(figures["hours_by_selector"] + figures["hours_at_random"])
    if name in ("contrastive", "dsir"):  # scores of the whole pool: the random part keeps the selector's too
        assert np.array_equal(result.scores, INNERS[name]().scores(pool.units, target.units)[rows])


@pytest.mark.parametrize("name", sorted(INNERS))
def test_share_one_is_the_inner_selector(name, corpus):
    pool, target, manifest, budget = corpus
    alone = INNERS[name]().select(manifest, pool.units, budget, target.units)
    mixed = MixedSelector(INNERS[name](), 1.0, SEED).select(manifest, pool.units, budget, target.units)
    assert mixed.ids == alone.ids and np.array_equal(mixed.scores, alone.scores)
    assert mixed.diagnostics["hours_at_random"] == 0 and mixed.diagnostics["hours_by_selector"] == pytest.approx(
        alone.hours)
    assert {k: mixed.diagnostics[k] for k in alone.diagnostics} == alone.diagnostics  # the inner's own figures


@pytest.mark.parametrize("name", sorted(INNERS))
def test_share_zero_is_the_random_selector(name, corpus):
    pool, target, manifest, budget = corpus
    for seed in (SEED, SEED + 1):
        random = RandomSelector(seed=seed).select(manifest, pool.units, budget)
        mixed = MixedSelector(INNERS[name](), 0.0, seed).select(manifest, pool.units, budget, target.units)
        assert mixed.ids == random.ids and mixed.scores is None
        assert mixed.diagnostics["hours_by_selector"] == 0 and mixed.diagnostics["hours_at_random"] == pytest.approx(
            random.hours)


def test_settings_hold_the_share_and_the_inner_selector():
    inner = DSIRSelector(temperature=0.5, seed=2)
    settings = MixedSelector(inner, 0.25, seed=9).settings()
    assert settings == {"target_share": 0.25, "seed": 9,
                        "inner": {"selector": "DSIRSelector", "settings": inner.settings()}}


@pytest.mark.parametrize("name", ["contrastive", "dsir"])
@pytest.mark.parametrize("share", [0.0, 0.4, 1.0])
def test_sharded_mix_is_the_one_process_mix(name, share, corpus, tmp_path):
    pool, target, manifest, budget = corpus
    ids = pool.units.ids
    pool_paths = []
    for piece, (start, stop) in enumerate([(0, 70), (70, 190), (190, len(ids))]):
        pool_paths.append(tmp_path / f"pool-{piece}.npz")
        pool.units.subset(ids[start:stop]).save(pool_paths[-1])
    target.units.save(tmp_path / "target.npz")
    selector = ShardableMixedSelector(INNERS[name](), share, SEED)
    rows, _, scores, _ = sharded_selection(selector, UnitShard(pool_paths), UnitShard([tmp_path / "target.npz"]),
                                           manifest.positions, lambda r: manifest.durations[r], N_CLUSTERS,
                                           budget, SingleProcess())
    sharded_figures = dict(selector.diagnostics)
    one = MixedSelector(INNERS[name](), share, SEED).select(manifest, pool.units, budget, target.units)
    assert [ids[r] for r in rows] == one.ids
    assert (scores is None and one.scores is None) or np.array_equal(scores, one.scores)
    assert sharded_figures == one.diagnostics and selector.distributed == "exact"


def test_mix_with_random_picks_the_form():
    contrastive, divergence = ContrastiveLMSelector(), DivergenceSelector()
    assert mix_with_random(contrastive, 1.0) is contrastive
    assert type(mix_with_random(contrastive, 0.5)) is ShardableMixedSelector
    assert type(mix_with_random(divergence, 0.5)) is MixedSelector
    assert MixedSelector(divergence, 0.5).distributed is None  # one process: the merged units
    with pytest.raises(TypeError, match="DivergenceSelector has no exact distributed form"):
        ShardableMixedSelector(divergence, 0.5)


def load_file(name, overrides=None):
    with open(SELECTION_FOLDER / f"{name}.yaml", encoding="utf-8") as handle:
        return load_hyperpyyaml(handle, {"seed": SEED, **(overrides or {})})


@pytest.mark.parametrize("name", sorted(TODAY))
def test_default_selection_file_keeps_its_subset(name, corpus):
    pool, target, manifest, budget = corpus
    config = load_file(name)
    today = TODAY[name](config)
    selector = config["selector"]
    assert config["target_share"] == 1.0 and type(selector) is type(today)
    assert selector.settings() == today.settings()  # selection.json and the stage's cache key unchanged
    if name == "kcenter":  # target-free by default: with a target fraction, as the target-aware form
        config = load_file(name, {"target_fraction": 0.2, "n_components": 8})
        today, selector = TODAY[name](config), config["selector"]
    expected = today.select(manifest, pool.units, budget, target.units)
    result = selector.select(manifest, pool.units, budget, target.units)
    assert result.ids == expected.ids and np.array_equal(result.scores, expected.scores)


@pytest.mark.parametrize("name", sorted(TODAY))
def test_selection_file_share_builds_the_mix(name):
    config = load_file(name, {"target_share": 0.5})
    selector, today = config["selector"], TODAY[name](config)
    assert isinstance(selector, MixedSelector) and selector.target_share == 0.5 and selector.seed == SEED
    assert selector.settings()["inner"] == {"selector": type(today).__name__, "settings": today.settings()}


def test_recipe_override_reaches_the_mix(corpus):
    pool, target, manifest, budget = corpus
    config = load_selection(SELECTION_FOLDER, "contrastive", {}, {"target_share": 0.5}, seed=SEED)
    result = config["selector"].select(manifest, pool.units, budget, target.units)
    expected = MixedSelector(ContrastiveLMSelector(), 0.5, SEED).select(manifest, pool.units, budget, target.units)
    assert result.ids == expected.ids and result.selector == "ShardableMixedSelector"


@pytest.mark.parametrize("share", [-0.1, 1.5, math.nan, "half", None])
def test_a_share_outside_zero_one_is_refused(share):
    with pytest.raises(ValueError, match=r"target_share must be a number in \[0, 1\]"):
        MixedSelector(ContrastiveLMSelector(), share)
    with pytest.raises(ValueError, match=r"target_share must be a number in \[0, 1\]"):
        mix_with_random(ContrastiveLMSelector(), share)


def test_a_bad_share_in_a_selection_file_is_refused():
    with pytest.raises(ValueError, match=r"target_share .* got 1\.5"):
        load_selection(SELECTION_FOLDER, "dsir", {}, {"target_share": 1.5}, seed=SEED)


def test_selection_json_records_the_split_and_the_inner_settings(corpus, tmp_path):
    pool, target, manifest, budget = corpus
    selector = MixedSelector(DSIRSelector(seed=SEED), 0.5, SEED)
    result = selector.select(manifest, pool.units, budget, target.units)
    write_selection_json(tmp_path / "selection.json", result, {}, seed=SEED)
    record = json.loads((tmp_path / "selection.json").read_text())
    assert record["selector"] == "MixedSelector" and record["settings"] == selector.settings()
    split = {key: record["diagnostics"][key] for key in ("hours_by_selector", "hours_at_random")}
    assert split["hours_by_selector"] > 0 and split["hours_at_random"] > 0
    assert sum(split.values()) == pytest.approx(record["hours"])
    assert 0 <= record["diagnostics"]["hours_shared_with_top_k"] <= 1  # DSIR's own figure kept
