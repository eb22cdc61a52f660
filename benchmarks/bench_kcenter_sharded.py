"""How far the distributed k-center (composable core-set) is from the one-process traversal (prints figures).

A synthetic pool (``--n`` utterances of 7 domains, 500 units, embeddings the mean and
standard deviation of one-hot unit frames, as ``selection.synthetic`` makes them) is
split as ``torchrun`` would split it over 2, 4 and 8 processes; ``KCenterSelector``
(64 principal components, 10 % of the hours) selects once on one process
(``Selector.select``) and once over each number of processes (``select_shards`` under
``torchrun``, gloo). Printed per number of processes: the share of the subset's hours
the one-process subset also holds, the covering radius of each subset over the whole
pool (largest distance from an utterance to its nearest pick, in the standardised
embedding space: neither method's own projection), their ratio (the composable
core-set's guarantee is 4 times the optimum, the one-process traversal's 2 times), and
the wall time; and, as the yardstick of both, the same for the one-process traversal
from another seed's first pick. Run from the repository root::

    python benchmarks/bench_kcenter_sharded.py --n 50000 --folder /tmp/kcenter_sharded
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sharded_runs import DOMAINS, launch, shard, worker_group, write_shards  # noqa: E402  (beside this script)


def pool(n):
    from selection.synthetic import SyntheticCorpus, synthetic_corpus, with_onehot_embeddings

    corpus = synthetic_corpus(n, DOMAINS, n_clusters=500, mean_length=250, seed=1)
    return SyntheticCorpus(with_onehot_embeddings(corpus.units), corpus.domains, corpus.durations)


def worker(folder, processes, budget_hours, n_components):
    """One process: its shard, the composable k-center, rows saved by process 0."""
    from selection.selectors import KCenterSelector
    from selection.sharded import UnitShard

    with worker_group(folder) as (group, manifest):
        selector = KCenterSelector(n_components=n_components, seed=0)
        started = time.perf_counter()
        chosen = selector.select_shards(shard(folder, "pool", group.rank, processes), UnitShard([]),
                                        manifest.positions, lambda r: manifest.durations[r], 500, budget_hours, group)
        if group.rank == 0:
            np.save(folder / f"rows-{processes}.npy", chosen[0])
            (folder / f"figures-{processes}.json").write_text(json.dumps(
                {"seconds": round(time.perf_counter() - started, 1), **selector.diagnostics}))


def covering_radius(points, rows, chunk=4096):
    """Largest distance from a point to its nearest point of ``rows``."""
    from selection.kcenter import nearest_squared_distance

    return float(np.sqrt(nearest_squared_distance(points, points[rows], chunk_rows=chunk).max()))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--folder", type=Path, required=True)
    parser.add_argument("--processes", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--budget-share", type=float, default=0.1)
    parser.add_argument("--n-components", type=int, default=64)
    args = parser.parse_args()
    from selection.selectors import KCenterSelector

    args.folder.mkdir(parents=True, exist_ok=True)
    corpus = pool(args.n)
    manifest = corpus.manifest()
    budget = args.budget_share * manifest.total_hours
    started = time.perf_counter()
    selector = KCenterSelector(n_components=args.n_components, seed=0)
    alone = selector.select(manifest, corpus.units, budget)
    alone_seconds = time.perf_counter() - started
    vectors = corpus.units.embeddings.astype(np.float64)
    std = vectors.std(axis=0)
    points = ((vectors - vectors.mean(axis=0)) / np.where(std < 1e-8, 1.0, std)).astype(np.float32)
    alone_rows = corpus.units.rows(alone.ids)
    alone_radius = covering_radius(points, alone_rows)
    other = KCenterSelector(n_components=args.n_components, seed=1).select(manifest, corpus.units, budget)
    other_rows = corpus.units.rows(other.ids)
    print(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M %Z"), "utterances": args.n,
                      "pool_hours": round(manifest.total_hours, 1), "budget_hours": round(budget, 1),
                      "one_process": {"seconds": round(alone_seconds, 1), "hours": round(alone.hours, 2),
                                      "covering_radius": round(alone_radius, 3)},
                      "one_process_another_seed": {
                          "hours_shared_with_one_process": round(float(manifest.durations[other_rows[np.isin(
                              other_rows, alone_rows)]].sum() / manifest.durations[other_rows].sum()), 3),
                          "covering_radius": round(covering_radius(points, other_rows), 3)}}), flush=True)
    for processes in args.processes:
        write_shards(manifest, {"pool": corpus.units}, args.folder, processes)
        launch(__file__, args.folder, processes, repr(budget), args.n_components)
        rows = np.load(args.folder / f"rows-{processes}.npy")
        figures = json.loads((args.folder / f"figures-{processes}.json").read_text())
        shared = np.isin(rows, alone_rows)
        radius = covering_radius(points, rows)
        print(json.dumps({"processes": processes, "seconds": figures["seconds"],
                          "hours": round(float(manifest.durations[rows].sum() / 3600), 2),
                          "hours_shared_with_one_process": round(float(
                              manifest.durations[rows[shared]].sum() / manifest.durations[rows].sum()), 3),
                          "covering_radius": round(radius, 3), "radius_ratio": round(radius / alone_radius, 3),
                          "core_set_utterances": figures["core_set_utterances"]}), flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        worker(Path(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]))
    else:
        main()
