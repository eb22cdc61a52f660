"""How far the distributed greedy KL selectors (composable core-set) are from one process (prints figures).

A synthetic pool (``--n`` utterances of 7 domains, 500 units, ``selection.synthetic``)
and a target from one of its domains (``neural``) are split as ``torchrun`` would split
them over 2, 4 and 8 processes; ``DivergenceSelector`` and ``CoverageSelector``
(default settings: unigrams and bigrams hashed into 2**15 buckets each, 20 rounds,
10 % of the hours) select once on one process (``Selector.select``) and once over each
number of processes (``select_shards`` under ``torchrun``, gloo). Printed per selector
and number of processes: the share of the subset's hours the one-process subset also
holds, the selector's own objective for each subset, ``KL(target || subset)`` with the
selector's smoothing (lower is better; for ``coverage`` the target is uniform over the
pool's n-grams), the candidates' union, the bytes process 0 sent and the wall time;
and, as the yardstick of both, the same for the one-process greedy in 40 rounds
instead of 20. Run from the repository root::

    python benchmarks/bench_divergence_sharded.py --n 20000 --folder /tmp/divergence_sharded
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

N_CLUSTERS = 500


def selectors():
    from selection.selectors import CoverageSelector, DivergenceSelector

    return {"divergence": DivergenceSelector, "coverage": CoverageSelector}


def corpora(n):
    from selection.synthetic import synthetic_corpus

    pool = synthetic_corpus(n, DOMAINS, n_clusters=N_CLUSTERS, mean_length=250, seed=1)
    target = synthetic_corpus(max(n // 20, 50), DOMAINS, [0, 0, 0, 1, 0, 0, 0], n_clusters=N_CLUSTERS,
                              mean_length=250, seed=2)
    return pool, target


def worker(folder, processes, budget_hours):
    """One process: its shards, each selector's distributed form, rows saved by process 0."""
    with worker_group(folder) as (group, manifest):
        shards = {name: shard(folder, name, group.rank, processes) for name in ("pool", "target")}
        for name, kind in selectors().items():
            selector = kind()
            started, sent = time.perf_counter(), group.bytes_sent
            chosen = selector.select_shards(shards["pool"], shards["target"], manifest.positions,
                                            lambda r: manifest.durations[r], N_CLUSTERS, budget_hours, group)
            if group.rank == 0:
                np.save(folder / f"{name}-rows-{processes}.npy", chosen[0])
                (folder / f"{name}-figures-{processes}.json").write_text(json.dumps(
                    {"seconds": round(time.perf_counter() - started, 1), "sent_bytes": group.bytes_sent - sent,
                     **selector.diagnostics}))


def final_kl(selector, pool, target, rows):
    """``KL(target || subset)`` of the selector: its target weights, the subset's add-``eps`` smoothed n-grams."""
    from selection.ngrams import NgramHasher

    hasher = NgramHasher(selector.orders, N_CLUSTERS, selector.hash_bits)
    q = selector.target_of_counts(selector.target_counts(hasher, [pool.units], [target.units]))[1:]
    q = q / q.sum()
    subset = hasher.counts(pool.units.subset([pool.units.ids[r] for r in rows]))[1:] + selector.eps
    p = subset / subset.sum()
    kept = q > 0
    return float(np.sum(q[kept] * np.log(q[kept] / p[kept])))


def yardstick(kind, pool, target, budget_hours, alone_rows):
    """The one-process greedy in 40 rounds instead of 20: how much the subset moves with the greedy's own settings."""
    manifest = pool.manifest()
    rows = pool.units.rows(kind(n_rounds=40).select(manifest, pool.units, budget_hours, target.units).ids)
    shared = manifest.durations[rows[np.isin(rows, alone_rows)]].sum() / manifest.durations[rows].sum()
    return {"hours_shared_with_one_process": round(float(shared), 3),
            "kl": round(final_kl(kind(), pool, target, rows), 4)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--folder", type=Path, required=True)
    parser.add_argument("--processes", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--budget-share", type=float, default=0.1)
    args = parser.parse_args()

    args.folder.mkdir(parents=True, exist_ok=True)
    pool, target = corpora(args.n)
    manifest = pool.manifest()
    budget = args.budget_share * manifest.total_hours
    alone = {}
    for name, kind in selectors().items():
        started = time.perf_counter()
        chosen = kind().select(manifest, pool.units, budget, target.units)
        alone[name] = pool.units.rows(chosen.ids)
        print(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M %Z"), "selector": name, "utterances": args.n,
                          "pool_hours": round(manifest.total_hours, 1), "budget_hours": round(budget, 2),
                          "one_process": {"seconds": round(time.perf_counter() - started, 1),
                                          "hours": round(chosen.hours, 2),
                                          "kl": round(final_kl(kind(), pool, target, alone[name]), 4)},
                          "one_process_40_rounds": yardstick(kind, pool, target, budget, alone[name])}), flush=True)
    for processes in args.processes:
        write_shards(manifest, {"pool": pool.units, "target": target.units}, args.folder, processes)
        launch(__file__, args.folder, processes, repr(budget))
        for name, kind in selectors().items():
            rows = np.load(args.folder / f"{name}-rows-{processes}.npy")
            figures = json.loads((args.folder / f"{name}-figures-{processes}.json").read_text())
            shared = np.isin(rows, alone[name])
            print(json.dumps({"selector": name, "processes": processes, "seconds": figures["seconds"],
                              "hours": round(float(manifest.durations[rows].sum() / 3600), 2),
                              "hours_shared_with_one_process": round(float(
                                  manifest.durations[rows[shared]].sum() / manifest.durations[rows].sum()), 3),
                              "kl": round(final_kl(kind(), pool, target, rows), 4),
                              "candidate_utterances": figures["candidate_utterances"],
                              "sent_mb_process_0": round(figures["sent_bytes"] / 1e6, 1)}), flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        worker(Path(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))
    else:
        main()
