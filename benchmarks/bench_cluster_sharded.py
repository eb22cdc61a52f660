"""Cluster round robin over processes against one process, on the same pool (prints figures).

The synthetic pool of ``bench_kcenter_sharded.py`` (``--n`` utterances of 7 domains, 500
units) is split as ``torchrun`` would split it over 2, 4 and 8 processes;
``ClusterBalancedSelector`` (50 clusters, k-means on a sample of 20 000 unit histograms,
10 % of the hours) selects once on one process (``Selector.select``) and once over each
number of processes (``select_shards`` under ``torchrun``, gloo:
:mod:`selection.cluster_sharded`). Printed per number of processes: the share of the
subset's hours the one-process subset also holds, whether the order is the same, the
selector's objective (utterances of the subset in its fullest and emptiest cluster, the
clusters those of the one-process model), the wall time of process 0, the bytes each
process sent and its peak memory. Run from the repository root::

    python benchmarks/bench_cluster_sharded.py --n 50000 --folder /tmp/cluster_sharded
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_kcenter_sharded import pool  # noqa: E402  (beside this script, as the two below)
from process_memory import peak_gb  # noqa: E402
from sharded_runs import launch, shard, worker_group, write_shards  # noqa: E402

SETTINGS = {"n_clusters": 50, "seed": 0, "max_fit_utterances": 20000}


def worker(folder, processes, budget_hours):
    """One process: its shard, the distributed cluster round robin, rows saved by process 0."""
    from selection.selectors import ClusterBalancedSelector
    from selection.sharded import UnitShard

    with worker_group(folder) as (group, manifest):
        started = time.perf_counter()
        chosen = ClusterBalancedSelector(**SETTINGS).select_shards(
            shard(folder, "pool", group.rank, processes), UnitShard([]), manifest.positions,
            lambda r: manifest.durations[r], 500, budget_hours, group)
        seconds = time.perf_counter() - started
        sent, peaks = group.all_gather_object(group.bytes_sent), group.all_gather_object(round(peak_gb(), 2))
        if group.rank == 0:
            np.save(folder / f"rows-{processes}.npy", chosen[0])
            (folder / f"figures-{processes}.json").write_text(json.dumps(
                {"seconds": round(seconds, 1), "mb_sent_per_process": [round(b / 1e6, 1) for b in sent],
                 "peak_gb_per_process": peaks}))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=50000)
    parser.add_argument("--processes", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--folder", type=Path, required=True)
    parser.add_argument("--budget-share", type=float, default=0.1)
    args = parser.parse_args()
    from selection.selectors import ClusterBalancedSelector

    args.folder.mkdir(parents=True, exist_ok=True)
    corpus = pool(args.n)
    manifest = corpus.manifest()
    budget = args.budget_share * manifest.total_hours
    print(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M %Z"), "cpus": os.cpu_count(), "n": args.n,
                      "pool_hours": round(manifest.total_hours, 1), "budget_hours": round(budget, 1)}), flush=True)
    selector = ClusterBalancedSelector(**SETTINGS)
    started = time.perf_counter()
    alone = selector.select(manifest, corpus.units, budget)
    seconds = time.perf_counter() - started
    labels = selector.clusters(corpus.units, np.arange(len(corpus.units)))
    alone_rows = corpus.units.rows(alone.ids)

    def objective(rows):
        counts = np.bincount(labels[rows], minlength=int(labels.max()) + 1)
        return {"fullest_cluster": int(counts.max()), "emptiest_cluster": int(counts.min())}

    print(json.dumps({"processes": 1, "seconds": round(seconds, 1), "hours": round(alone.hours, 2),
                      **objective(alone_rows)}), flush=True)
    for processes in args.processes:
        write_shards(manifest, {"pool": corpus.units}, args.folder, processes)
        launch(__file__, args.folder, processes, repr(budget))
        rows = np.load(args.folder / f"rows-{processes}.npy")
        shared = np.intersect1d(rows, alone_rows)
        durations = manifest.durations
        print(json.dumps({"processes": processes, "hours": round(float(durations[rows].sum()) / 3600, 2),
                          "hours_shared_with_one_process": round(float(durations[shared].sum() / durations[rows].sum()),
                                                                 4),
                          "same_order": rows.tolist() == alone_rows.tolist(), **objective(rows),
                          **json.loads((args.folder / f"figures-{processes}.json").read_text())}), flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        worker(Path(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))
    else:
        main()
