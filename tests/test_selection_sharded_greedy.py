"""The distributed greedy KL selectors (selection.divergence_sharded) against a brute-force composition.

The oracle runs the one-process greedy (:func:`selection.selectors.greedy_kl.greedy_kl_order`)
on each process's shard of the whole unit set, then once more on the union of the
shards' picks; the distributed form runs on ranks in threads exchanging through
``ThreadGroup`` (the collectives of :mod:`selection.collectives`, without sockets),
and once under ``torchrun`` (gloo).
"""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from ranks import ThreadGroup, launch_torchrun, run_in_threads, torchrun_worker, write_job  # noqa: E402
from selection.ngrams import NgramHasher  # noqa: E402
from selection.selectors.base import fill_budget  # noqa: E402
from selection.selectors import CoverageSelector, DivergenceSelector  # noqa: E402
from selection.selectors.greedy_kl import greedy_kl_order  # noqa: E402
from selection.sharded import UnitShard  # noqa: E402
from selection.units import shard_ids  # noqa: E402
from test_selection_sharded import corpora, run_stage_in_threads, write_pieces  # noqa: E402

SELECTORS = {"divergence": lambda: DivergenceSelector(n_rounds=8, hash_bits=10, shard_candidates=1.5),
             "coverage": lambda: CoverageSelector(n_rounds=8, hash_bits=10, shard_candidates=1.5)}


@pytest.fixture(scope="module")
def pool_and_target():
    pool, target = corpora(400)
    return pool, target, 0.15 * pool.durations.sum() / 3600


def composed_oracle(selector, pool, target, world_size, budget_hours):
    """Per-shard greedy to ``shard_candidates`` × budget / processes, the greedy over the union, the budget filled.

    Returns the pool rows of the subset and whether each was picked by the union's greedy.
    """
    units, durations = pool.units, pool.manifest().durations
    hasher = NgramHasher(selector.orders, units.n_clusters, selector.hash_bits)
    weights = selector.target_of_counts(selector.target_counts(hasher, [units], [target.units]))
    settings = (selector.n_rounds, selector.shortlist_factor, selector.eps, selector.chunk_tokens)

    def greedy(rows, seconds):  # the one-process greedy on a unit set of ``rows`` alone
        shard = units.subset([units.ids[r] for r in rows])
        order, scores = greedy_kl_order(shard, np.arange(len(rows)), durations[rows], weights, hasher, seconds,
                                        *settings)
        return rows[order[~np.isnan(scores)]], rows[order]

    union = np.concatenate([greedy(units.rows(shard_ids(units.ids, rank, world_size)),
                                   selector.shard_candidates * budget_hours * 3600 / world_size)[0]
                            for rank in range(world_size)])
    picks, order = greedy(np.sort(union), budget_hours * 3600)
    order = np.concatenate([order, np.setdiff1d(np.arange(len(units)), union)])  # the rest in pool order
    filled = order[fill_budget(durations[order], budget_hours * 3600)]
    return filled, np.isin(filled, picks)


def in_threads(selector, pool_paths, target_paths, manifest, budget_hours):
    """``select_shards`` on one thread per shard; process 0's pool rows and the selector's diagnostics."""
    world_size = len(pool_paths)
    results = run_in_threads(world_size, lambda r, shared: selector().select_shards(
        UnitShard(pool_paths[r]), UnitShard(target_paths[r]), manifest.positions,
        lambda rows: manifest.durations[rows], 40, budget_hours, ThreadGroup(r, world_size, shared)), timeout=60)
    assert all(results[r] is None for r in range(1, world_size))
    return results[0]


@pytest.mark.parametrize("world_size", [1, 2, 4])
@pytest.mark.parametrize("name", sorted(SELECTORS))
def test_the_distributed_greedy_is_the_brute_force_composition(name, world_size, pool_and_target, tmp_path):
    pool, target, budget = pool_and_target
    pool_paths = write_pieces(pool.units, tmp_path, "pool", world_size, piece_seconds=90.0)
    target_paths = write_pieces(target.units, tmp_path, "target", world_size, piece_seconds=30.0)
    manifest = pool.manifest()
    rows, seconds, scores = in_threads(SELECTORS[name], pool_paths, target_paths, manifest, budget)
    expected, picked = composed_oracle(SELECTORS[name](), pool, target, world_size, budget)
    assert picked.sum() > 10 and rows.tolist() == expected.tolist()
    assert np.array_equal(~np.isnan(scores), picked)
    assert np.array_equal(seconds, manifest.durations[rows])


def test_the_selection_stage_runs_the_distributed_greedy(tiny_corpus, tmp_path):
    """The stage over two ranks (threads) takes the composable form and records it."""
    spread = run_stage_in_threads(tiny_corpus, tmp_path, DivergenceSelector(hash_bits=10))
    record = json.loads((tmp_path / "out" / "selection.json").read_text())
    assert record["diagnostics"]["distributed_form"].startswith("composable") and record["sharded"]["processes"] == 2
    assert 0 < record["diagnostics"]["candidate_utterances"]
    assert spread[0].ids == spread[1].ids and 0 < spread[0].hours <= spread[0].budget_hours


def test_torchrun_gives_the_composition(pool_and_target, tmp_path):
    """Two processes over gloo: the brute-force composition, for both selectors."""
    pool, target, budget = pool_and_target
    pool_paths = write_pieces(pool.units, tmp_path, "pool", 2, piece_seconds=90.0)
    target_paths = write_pieces(target.units, tmp_path, "target", 2, piece_seconds=30.0)
    write_job(tmp_path, pool, pool_paths, target_paths, budget)
    done = launch_torchrun(__file__, tmp_path, 2)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for name in SELECTORS:
        with np.load(tmp_path / f"{name}.npz") as got:
            expected, picked = composed_oracle(SELECTORS[name](), pool, target, 2, budget)
            assert got["rows"].tolist() == expected.tolist(), name
            assert np.array_equal(~np.isnan(got["scores"]), picked), name


def worker(folder):
    """One torchrun process: both selectors' distributed form, process 0 saving rows and scores."""
    with torchrun_worker(folder) as (group, job, manifest):
        for name, selector in SELECTORS.items():
            chosen = selector().select_shards(UnitShard(job["pool"][group.rank]),
                                              UnitShard(job["target"][group.rank]), manifest.positions,
                                              lambda r: manifest.durations[r], 40, job["budget_hours"], group)
            if group.rank == 0:
                np.savez(folder / f"{name}.npz", rows=chosen[0], scores=chosen[2])


if __name__ == "__main__":
    worker(Path(sys.argv[1]))
