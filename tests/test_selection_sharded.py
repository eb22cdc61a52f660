"""Sharded selection (selection.sharded): the same subset on 1, 2 and 4 processes as on one unit set.

The torchrun tests run this file as the worker (``__main__`` below): every process
reads only its shard's unit pieces, the processes sum their counts over gloo, and
process 0 ranks the pool from ``(row, seconds, score)``.
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
from selection.collectives import ShardFailure, SingleProcess  # noqa: E402
from selection.kcenter_sharded import composable_kcenter, shared_projection  # noqa: E402
from selection.selectors import (ClusterBalancedSelector, ContrastiveLMSelector, DSIRSelector,  # noqa: E402
                                 KCenterSelector, LongestFirstSelector, RandomSelector)
from selection.sharded import ShardCache, UnitShard, sharded_selection  # noqa: E402
from selection.synthetic import SyntheticCorpus, synthetic_corpus, with_onehot_embeddings  # noqa: E402
from selection.units import piece_bounds, piece_path, shard_ids  # noqa: E402

DOMAINS = ["a", "b", "c", "d"]
SELECTORS = {
    "random": lambda: RandomSelector(seed=3),
    "longest": LongestFirstSelector,
    "contrastive": lambda: ContrastiveLMSelector(order=2),
    "contrastive_hashed": lambda: ContrastiveLMSelector(order=3, hash_bits=12),  # trigrams hashed into 2**12
    "dsir": lambda: DSIRSelector(seed=5),
    "dsir_top_k": lambda: DSIRSelector(gumbel=False, orders=(1, 2, 3), hash_bits=10),
}
BUDGET_SHARE = 0.2


def cluster_selector():
    """Cluster round robin fitted on a sample of a third of the pool, labelled in chunks unlike the pieces."""
    return ClusterBalancedSelector(n_clusters=6, seed=2, max_fit_utterances=200, chunk_utterances=64)


def corpora(n_utterances=600):
    """A pool of four domains, with a duplicated duration (ties), and a target from domain ``b``."""
    pool = synthetic_corpus(n_utterances, DOMAINS, [0.4, 0.1, 0.3, 0.2], n_clusters=40, mean_length=60, seed=11)
    target = synthetic_corpus(40, DOMAINS, [0, 1, 0, 0], n_clusters=40, mean_length=60, seed=12)
    pool = SyntheticCorpus(with_onehot_embeddings(pool.units), pool.domains, pool.durations)
    return pool, target


def write_pieces(units, folder, name, world_size, piece_seconds):
    """Each process's shard (``shard_ids``) as pieces of at most ``piece_seconds``; returns the paths per rank."""
    durations = units.lengths / units.frame_rate
    seconds = dict(zip(units.ids, durations))
    paths = []
    for rank in range(world_size):
        ids = shard_ids(units.ids, rank, world_size)
        own = []
        for piece, (start, stop) in enumerate(piece_bounds([seconds[i] for i in ids], piece_seconds)):
            path = piece_path(Path(folder) / f"units-{name}.npz", rank, world_size, piece)
            units.subset(ids[start:stop]).save(path)
            own.append(path)
        paths.append(own)
    return paths


def one_process(name, pool, target, budget_hours):
    """The reference: the selector's ``select`` on the whole unit set (today's one-process path)."""
    result = SELECTORS[name]().select(pool.manifest(), pool.units, budget_hours, target.units)
    return result.ids, result.scores


def run_shards(selector, pool_paths, target_paths, manifest, budget_hours, group, cache=None):
    return sharded_selection(selector, UnitShard(pool_paths), UnitShard(target_paths), manifest.positions,
                             lambda rows: manifest.durations[rows], 40, budget_hours, group, cache)


@pytest.fixture(scope="module")
def pool_and_target():
    pool, target = corpora()
    return pool, target, BUDGET_SHARE * pool.durations.sum() / 3600


@pytest.mark.parametrize("name", sorted(SELECTORS))
def test_pieces_of_one_process_give_the_one_process_subset(name, pool_and_target, tmp_path):
    pool, target, budget = pool_and_target
    pool_paths = write_pieces(pool.units, tmp_path, "pool", 1, piece_seconds=60.0)[0]
    target_paths = write_pieces(target.units, tmp_path, "target", 1, piece_seconds=30.0)[0]
    assert len(pool_paths) > 5  # several pieces: counts summed over them
    rows, _, scores, candidates = run_shards(SELECTORS[name](), pool_paths, target_paths, pool.manifest(), budget,
                                             SingleProcess())
    ids, expected = one_process(name, pool, target, budget)
    assert [pool.units.ids[r] for r in rows] == ids and candidates == len(pool.units)
    assert (scores is None and expected is None) or np.array_equal(scores, expected)


def test_cluster_round_robin_over_pieces_is_the_one_process_subset(pool_and_target, tmp_path):
    pool, _, budget = pool_and_target
    pieces = [p for paths in write_pieces(pool.units, tmp_path, "pool", 3, piece_seconds=60.0) for p in paths]
    manifest = pool.manifest()
    rows, _, scores = cluster_selector().select_shards(UnitShard(pieces), UnitShard([]), manifest.positions,
                                                       lambda r: manifest.durations[r], 40, budget, SingleProcess())
    alone = cluster_selector().select(manifest, pool.units, budget)
    assert [pool.units.ids[r] for r in rows] == alone.ids and scores is None
    labels = cluster_selector().clusters(pool.units, np.arange(len(pool.units)))
    assert len(set(labels[rows].tolist())) == 6  # the round robin reached every cluster


def test_counts_add_over_pieces(pool_and_target):
    """Brute force: the counts of the whole unit set are the sums of the counts of its parts, exactly."""
    pool, target, _ = pool_and_target
    halves = [pool.units.subset(pool.units.ids[i::3]) for i in range(3)]
    for name in ("contrastive", "contrastive_hashed", "dsir"):
        selector = SELECTORS[name]()
        whole = selector.count([pool.units], [target.units], 40)
        parts = sum(selector.count([h], [target.units] if i == 0 else [], 40) for i, h in enumerate(halves))
        assert np.array_equal(whole, parts), name
        assert whole.sum() > 0


def test_a_killed_selection_resumes_per_shard(pool_and_target, tmp_path, monkeypatch):
    pool, target, budget = pool_and_target
    pool_paths = write_pieces(pool.units, tmp_path, "pool", 1, piece_seconds=60.0)[0]
    selector = SELECTORS["dsir"]()
    cache = ShardCache(tmp_path / "cache", "key", 0, 1)
    first = run_shards(selector, pool_paths, [], pool.manifest(), budget, SingleProcess(), cache)  # no target: 0s
    assert {p.name for p in (tmp_path / "cache").iterdir()} == {"sharded-key.shard-00-of-01.counts.npz",
                                                                 "sharded-key.shard-00-of-01.scores.npz"}

    def fail(*args):
        raise AssertionError("counted again")

    monkeypatch.setattr(DSIRSelector, "count", fail)
    again = run_shards(selector, pool_paths, [], pool.manifest(), budget, SingleProcess(), cache)
    assert np.array_equal(first[0], again[0]) and np.array_equal(first[2], again[2])
    (tmp_path / "cache" / "sharded-key.shard-00-of-01.scores.npz").unlink()  # killed after counting
    monkeypatch.setattr(DSIRSelector, "scorer", lambda self, statistics, n: lambda units: np.zeros(len(units)))
    resumed = run_shards(selector, pool_paths, [], pool.manifest(), budget, SingleProcess(), cache)
    assert not np.array_equal(first[2], resumed[2])  # scored again (by the stand-in scorer), counts kept


def test_a_piece_that_cannot_be_read_is_named(pool_and_target, tmp_path):
    pool, target, budget = pool_and_target
    pool_paths = write_pieces(pool.units, tmp_path, "pool", 1, piece_seconds=60.0)[0]
    pool_paths[2].write_bytes(b"not a unit set")
    with pytest.raises(ShardFailure, match=rf"process 0 of 1, counting, file {pool_paths[2]}: "):
        run_shards(SELECTORS["contrastive"](), pool_paths, [], pool.manifest(), budget, SingleProcess())


def brute_farthest_first(points, seconds, budget_seconds, first):
    """The one-at-a-time greedy in float64: the farthest point from every pick, until the picks hold the budget."""
    picks, nearest = [first], ((points - points[first]) ** 2).sum(axis=1)
    while seconds[picks].sum() < budget_seconds and len(picks) < len(points):
        nearest[picks] = -1.0
        picks.append(int(np.argmax(nearest)))
        nearest = np.minimum(nearest, ((points - points[picks[-1]]) ** 2).sum(axis=1))
    return np.array(picks)


def composed_oracle(pool, world_size, budget_hours, seed):
    """Composable k-center by brute force: per-shard greedy from the seeded first pick, then over the union."""
    manifest = pool.manifest()
    vectors = pool.units.embeddings.astype(np.float64)
    std = vectors.std(axis=0)
    std[std < 1e-8] = 1.0
    points = (vectors - vectors.mean(axis=0)) / std
    union = []
    for rank in range(world_size):
        rows = manifest.positions(shard_ids(manifest.ids, rank, world_size))
        first = int(np.random.default_rng([seed, rank]).integers(len(rows)))
        union.extend(rows[brute_farthest_first(points[rows], manifest.durations[rows], budget_hours * 3600, first)])
    union = np.sort(union)
    first = int(np.random.default_rng(seed).integers(len(union)))
    return union[brute_farthest_first(points[union], manifest.durations[union], budget_hours * 3600, first)], points


def covering_radius(points, rows):
    """The largest distance from a point to its nearest point of ``rows``."""
    nearest = np.full(len(points), np.inf)
    for row in rows:
        nearest = np.minimum(nearest, ((points - points[row]) ** 2).sum(axis=1))
    return float(np.sqrt(nearest.max()))


def test_shared_projection_is_the_pca_of_every_row(pool_and_target):
    """Oracle: scikit-learn's exact PCA of all standardised rows gives the same distances between points."""
    from sklearn.decomposition import PCA

    pool, _, _ = pool_and_target
    vectors = pool.units.embeddings
    project, explained = shared_projection(vectors, 8, SingleProcess(), chunk_rows=100)
    standard = vectors.astype(np.float64)
    standard = (standard - standard.mean(axis=0)) / np.where(standard.std(axis=0) < 1e-8, 1.0, standard.std(axis=0))
    oracle = PCA(n_components=8, svd_solver="full").fit(standard)
    ours, theirs = project(vectors[:50]).astype(np.float64), oracle.transform(standard[:50])
    distances = [np.linalg.norm(x[:, None] - x[None], axis=-1) for x in (ours, theirs)]
    assert np.allclose(distances[0], distances[1], atol=1e-3)
    assert explained == pytest.approx(oracle.explained_variance_ratio_.sum(), rel=1e-6)


def test_composable_kcenter_on_one_process_is_the_brute_force_composition(pool_and_target, tmp_path):
    pool, _, budget = pool_and_target
    paths = write_pieces(pool.units, tmp_path, "pool", 1, piece_seconds=60.0)[0]
    manifest = pool.manifest()
    rows, _, radii, _ = composable_kcenter(UnitShard(paths), manifest.positions, lambda r: manifest.durations[r],
                                           budget, None, 4, SingleProcess())
    expected, _ = composed_oracle(pool, 1, budget, 4)
    assert rows[: len(expected)].tolist() == expected.tolist()
    assert np.isinf(radii[0]) and np.all(np.diff(radii[1 : len(expected)]) <= 1e-4)  # radii shrink


@pytest.mark.parametrize("world_size", [1, 2, 4])
def test_torchrun_gives_the_one_process_subset(world_size, pool_and_target, tmp_path):
    """Every exact selector, gloo on CPU: subsets and scores identical to one process on the whole unit set."""
    pool, target, budget = pool_and_target
    pool_paths = write_pieces(pool.units, tmp_path, "pool", world_size, piece_seconds=120.0)
    target_paths = write_pieces(target.units, tmp_path, "target", world_size, piece_seconds=30.0)
    write_job(tmp_path, pool, pool_paths, target_paths, budget)
    done = launch_torchrun(__file__, tmp_path, world_size)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for name in SELECTORS:
        ids, expected = one_process(name, pool, target, budget)
        with np.load(tmp_path / f"{name}.npz") as got:
            assert [pool.units.ids[r] for r in got["rows"]] == ids, name
            assert np.array_equal(got["scores"], expected) if expected is not None else not len(got["scores"]), name
    with np.load(tmp_path / "kcenter.npz") as got:
        composed, points = composed_oracle(pool, world_size, budget, 4)
        assert got["rows"][: len(composed) - 1].tolist() == composed[:-1].tolist()  # fill may drop the last pick
        alone = KCenterSelector(n_components=None, seed=4).select(pool.manifest(), pool.units, budget)
        radii = covering_radius(points, got["rows"]), covering_radius(points, pool.units.rows(alone.ids))
        assert radii[0] <= 4 * radii[1]  # the composable core-set's bound, against the one-process traversal
    with np.load(tmp_path / "cluster.npz") as got:
        assert [pool.units.ids[r] for r in got["rows"]] == cluster_selector().select(pool.manifest(), pool.units,
                                                                                      budget).ids
    record = json.loads((tmp_path / "exchange.json").read_text())
    assert len(record["bytes_sent"]) == world_size
    if world_size > 1:
        assert min(record["bytes_sent"]) > 0


def test_torchrun_a_failing_shard_stops_every_process_and_is_named(pool_and_target, tmp_path):
    pool, target, budget = pool_and_target
    pool_paths = write_pieces(pool.units, tmp_path, "pool", 2, piece_seconds=120.0)
    target_paths = write_pieces(target.units, tmp_path, "target", 2, piece_seconds=30.0)
    pool_paths[1][0].write_bytes(b"broken")
    write_job(tmp_path, pool, pool_paths, target_paths, budget, selectors=["contrastive"])
    done = launch_torchrun(__file__, tmp_path, 2, timeout=60)  # returns: no process waits for the failed one
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert f"ShardFailure: process 1 of 2, counting, file {pool_paths[1][0]}" in output
    assert output.count("ShardFailure: process 1 of 2") >= 2  # raised by process 0 too


def run_stage_in_threads(tiny_corpus, folder, selector, world_size=2):
    """``run_selection`` on ``world_size`` threads sharing a :class:`ThreadGroup`; every rank's result."""
    from selection.features import MFCCExtractor
    from selection.stages import run_selection

    return run_in_threads(world_size, lambda r, shared: run_selection(
        tiny_corpus["save_folder"] / "pool.csv", tiny_corpus["save_folder"] / "target.csv",
        tiny_corpus["data_folder"], MFCCExtractor(), {"n_clusters": 16, "fit_hours": 0.02,
                                                      "kmeans_settings": {"n_epochs": 3}, "piece_hours": 0.01},
        selector, folder / "out", units_folder=folder / "units", seed=3, rank=r, world_size=world_size,
        barrier=shared["barrier"].wait, group=ThreadGroup(r, world_size, shared))[1])


def test_the_selection_stage_over_processes(tiny_corpus, tmp_path):
    """The stage, sharded (two ranks in threads): the one-process outputs for an exact selector; k-center's form."""
    from selection.features import MFCCExtractor
    from selection.stages import run_selection

    exact = run_stage_in_threads(tiny_corpus, tmp_path / "dsir", DSIRSelector(seed=2))
    assert len(list((tmp_path / "dsir" / "units").glob("units-pool-*.shard-01-of-02.part-*.npz"))) > 1  # pieces
    _, alone = run_selection(tiny_corpus["save_folder"] / "pool.csv", tiny_corpus["save_folder"] / "target.csv",
                             tiny_corpus["data_folder"], MFCCExtractor(),
                             {"n_clusters": 16, "fit_hours": 0.02, "kmeans_settings": {"n_epochs": 3}},
                             DSIRSelector(seed=2), tmp_path / "alone", units_folder=tmp_path / "alone_units", seed=3)
    assert exact[0].ids == exact[1].ids == alone.ids and np.array_equal(exact[0].scores, alone.scores)
    records = [json.loads((folder / "selection.json").read_text()) for folder in (tmp_path / "dsir" / "out",
                                                                                   tmp_path / "alone")]
    for key in ("unit_quality", "unit_kl_to_target", "pool_utterances_without_units", "hours", "budget_hours"):
        assert records[0][key] == records[1][key], key
    assert records[0]["sharded"]["processes"] == 2 and len(records[0]["inputs"]["pool_units"]["pieces"]) > 2

    spread = run_stage_in_threads(tiny_corpus, tmp_path / "kcenter", KCenterSelector(n_components=8))
    record = json.loads((tmp_path / "kcenter" / "out" / "selection.json").read_text())
    assert spread[0].ids == spread[1].ids and record["diagnostics"]["distributed_form"].startswith("composable")
    assert 0 < spread[0].hours <= spread[0].budget_hours


def test_the_cluster_stage_over_processes(tiny_corpus, tmp_path):
    """Cluster round robin through ``run_selection`` on two ranks (threads): the one-process subset."""
    from selection.features import MFCCExtractor
    from selection.stages import run_selection

    spread = run_stage_in_threads(tiny_corpus, tmp_path / "cluster", ClusterBalancedSelector(n_clusters=4, seed=1))
    _, alone = run_selection(tiny_corpus["save_folder"] / "pool.csv", tiny_corpus["save_folder"] / "target.csv",
                             tiny_corpus["data_folder"], MFCCExtractor(),
                             {"n_clusters": 16, "fit_hours": 0.02, "kmeans_settings": {"n_epochs": 3}},
                             ClusterBalancedSelector(n_clusters=4, seed=1), tmp_path / "alone",
                             units_folder=tmp_path / "alone_units", seed=3)
    assert spread[0].ids == spread[1].ids == alone.ids
    assert json.loads((tmp_path / "cluster" / "out" / "selection.json").read_text())["sharded"]["processes"] == 2


def worker(folder):
    """One process of the torchrun tests: its shard's pieces, every selector of the job, results from rank 0."""
    with torchrun_worker(folder) as (group, job, manifest):
        for name in job.get("selectors", SELECTORS):
            chosen = run_shards(SELECTORS[name](), job["pool"][group.rank], job["target"][group.rank], manifest,
                                job["budget_hours"], group)
            if group.rank == 0:
                np.savez(folder / f"{name}.npz", rows=chosen[0],
                         scores=np.zeros(0) if chosen[2] is None else chosen[2])
        if "selectors" not in job:  # the distributed form of k-center (not exact: checked against its oracle)
            chosen = KCenterSelector(n_components=None, seed=4).select_shards(
                UnitShard(job["pool"][group.rank]), UnitShard([]), manifest.positions,
                lambda rows: manifest.durations[rows], 40, job["budget_hours"], group)
            if group.rank == 0:
                np.savez(folder / "kcenter.npz", rows=chosen[0], scores=chosen[2])
            chosen = cluster_selector().select_shards(UnitShard(job["pool"][group.rank]), UnitShard([]),
                                                      manifest.positions, lambda rows: manifest.durations[rows], 40,
                                                      job["budget_hours"], group)  # exact: the one-process subset
            if group.rank == 0:
                np.savez(folder / "cluster.npz", rows=chosen[0])
        sent = group.all_gather_object(group.bytes_sent)
        if group.rank == 0:
            (folder / "exchange.json").write_text(json.dumps({"bytes_sent": sent}))


if __name__ == "__main__":
    worker(Path(sys.argv[1]))
