"""Sharded selection at 1k, 10k and 100k hours: one measured shard plus the merge of all shards (prints figures).

For each pool size this writes, under ``--folder``:

* a pool manifest of ``hours * 3600 / mean_seconds`` rows (durations uniform in
  ``[mean/2, 3 mean/2]``), read back as columns (:mod:`common.manifest_columns`);
* the units of process 0's shard of ``--processes`` (every ``processes``-th utterance,
  :func:`selection.units.shard_ids`) as pieces of ``--piece-hours``, at
  ``--tokens-per-second`` (deduplicated units: 41 of MFCC's 100 frames a second on
  SynthDomains), never two equal units in a row, and the target's shard likewise.

Then, for every exact selector (random, longest, contrastive with 2**24-slot trigram
LMs, DSIR as the recipes set them), in fresh processes:

1. **shard**: what one process does with its shard (reading the manifest's columns,
   counting, scoring its pieces): wall time and peak resident memory (``VmHWM``);
   with ``--passes``, also the two passes every selector adds (the rows of its
   utterances, and the counts of the report's unit divergences);
2. **merge**: ``torchrun`` with ``--processes`` gloo processes: the sum of statistics
   of the selector's size (all-reduce), the gather of ``(row, seconds, score)`` of
   every utterance on process 0, its ranking and budget fill (10 %) and the subset
   manifest written from the columns; time, peak memory of each process, bytes sent.

The shards are alike, so a selection on ``--processes`` processes takes the shard's
time plus the merge's. Run from the repository root::

    python benchmarks/bench_selection_sharded.py --hours 1000 10000 100000 --folder /tmp/sharded_bench
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from process_memory import peak_gb  # noqa: E402  (beside this script)

N_CLUSTERS = 500
SELECTORS = {  # as the LibriSpeech recipe sets them
    "random": lambda s: s.RandomSelector(seed=0),
    "longest": lambda s: s.LongestFirstSelector(),
    "contrastive": lambda s: s.ContrastiveLMSelector(order=3, hash_bits=24),
    "dsir": lambda s: s.DSIRSelector(orders=(1, 2), hash_bits=15, seed=0),
}
SCORED = ("contrastive", "dsir")


def make_selector(name):
    from selection import selectors

    return SELECTORS[name](selectors)


def write_manifest(path, n_rows, mean_seconds, seed, block=1_000_000):
    """``ID,duration,wav`` rows ``utt-000000000`` ..., written in blocks."""
    rng = np.random.default_rng(seed)
    with open(path, "w", encoding="utf-8") as out:
        out.write("ID,duration,wav\n")
        for start in range(0, n_rows, block):
            seconds = np.round(rng.uniform(mean_seconds / 2, 1.5 * mean_seconds, min(block, n_rows - start)), 2)
            out.write("".join(f"utt-{i:09d},{s:.2f},$data_root/utt-{i:09d}.flac\n"
                              for i, s in zip(range(start, start + len(seconds)), seconds.tolist())))


def write_shard(folder, name, columns, processes, tokens_per_second, piece_hours, seed):
    """Process 0's shard of ``columns`` as unit pieces; returns their paths."""
    from selection.units import UnitSet, piece_bounds, piece_path

    rng = np.random.default_rng(seed)
    rows = np.arange(0, len(columns), processes)  # shard_ids of zero-padded IDs in order: every processes-th row
    paths = []
    for piece, (start, stop) in enumerate(piece_bounds(columns.durations[rows], piece_hours * 3600.0)):
        own = rows[start:stop]
        lengths = np.maximum(1, np.round(columns.durations[own] * tokens_per_second)).astype(np.int64)
        offsets = np.zeros(len(own) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        steps = rng.integers(1, N_CLUSTERS, offsets[-1])  # never 0: no unit repeats the previous one
        flat = (np.cumsum(steps) % N_CLUSTERS).astype(np.int16)
        path = piece_path(Path(folder) / f"units-{name}.npz", 0, processes, piece)
        UnitSet(columns.ids[own].astype(str).tolist(), offsets, flat, 100.0, N_CLUSTERS, dedup=True).save(path)
        paths.append(str(path))
    return paths


def prepare(folder, hours, args):
    """Manifests and process 0's unit pieces of a pool of ``hours`` (kept when done)."""
    from common.manifest_columns import read_manifest_columns

    folder.mkdir(parents=True, exist_ok=True)
    done = folder / "prepared.json"
    if done.exists():
        return json.loads(done.read_text())
    started = time.perf_counter()
    job = {"hours": hours, "processes": args.processes}
    for name, pool_hours in (("pool", hours), ("target", args.target_hours)):
        n_rows = int(round(pool_hours * 3600 / args.mean_seconds))
        write_manifest(folder / f"{name}.csv", n_rows, args.mean_seconds, seed=len(name))
        columns = read_manifest_columns(folder / f"{name}.csv")
        job[name] = write_shard(folder, name, columns, args.processes, args.tokens_per_second, args.piece_hours,
                                seed=len(name))
        job[f"{name}_rows"] = len(columns)
        np.save(folder / f"{name}_durations.npy", columns.durations)
    job["prepare_s"] = round(time.perf_counter() - started, 1)
    job["shard_tokens"] = int(sum(np.load(p)["offsets"][-1] for p in job["pool"]))
    done.write_text(json.dumps(job))
    return job


def measure_shard(folder, name):
    """Process 0's work on its shard (fresh process): manifest columns, counting, scoring."""
    from common.manifest_columns import read_manifest_columns
    from selection.collectives import SingleProcess
    from selection.sharded import UnitShard, sharded_scores

    job = json.loads((folder / "prepared.json").read_text())
    started = time.perf_counter()
    columns = read_manifest_columns(folder / "pool.csv")
    read = time.perf_counter()
    rows, scores = sharded_scores(make_selector(name), UnitShard(job["pool"]), UnitShard(job["target"]),
                                  columns.positions, N_CLUSTERS, SingleProcess())
    finished = time.perf_counter()
    return {"selector": name, "manifest_rows": len(columns), "manifest_read_s": round(read - started, 1),
            "shard_utterances": len(rows), "shard_tokens": job["shard_tokens"],
            "count_and_score_s": round(finished - read, 1), "shard_s": round(finished - started, 1),
            "peak_gb": round(peak_gb(), 2)}


def measure_passes(folder, budget_share):
    """Process 0's passes that every selector makes (fresh process): its candidates' rows, the report's counts."""
    from common.manifest_columns import read_manifest_columns
    from selection.report import shard_report_counts
    from selection.sharded import UnitShard

    job = json.loads((folder / "prepared.json").read_text())
    columns = read_manifest_columns(folder / "pool.csv")
    shard, target = UnitShard(job["pool"]), UnitShard(job["target"])
    started = time.perf_counter()
    rows = np.concatenate([columns.positions(ids) for ids in shard.ids()])
    listed = time.perf_counter()
    rng = np.random.default_rng(0)
    picked = rng.choice(len(columns), int(budget_share * len(columns)), replace=False)
    shard_report_counts(shard, target, columns.positions, picked, len(columns), N_CLUSTERS)
    finished = time.perf_counter()
    return {"shard_utterances": len(rows), "ids_pass_s": round(listed - started, 1),
            "report_counts_s": round(finished - listed, 1), "peak_gb": round(peak_gb(), 2)}


def merge_worker(folder, name, budget_share):
    """One process of the merge (under torchrun): sum, gather, and on process 0 rank, fill and write."""
    import torch

    from common.manifest_columns import read_manifest_columns, write_manifest_rows
    from selection.collectives import TorchProcessGroup

    torch.distributed.init_process_group("gloo")
    group = TorchProcessGroup()
    selector = make_selector(name)
    job = json.loads((folder / "prepared.json").read_text())
    durations = np.load(folder / "pool_durations.npy", mmap_mode="r")
    rows = np.arange(group.rank, job["pool_rows"], group.world_size, dtype=np.int64)
    own = np.asarray(durations[rows])
    scores = np.random.default_rng(group.rank).normal(size=len(rows))
    statistics = selector.count([], [], N_CLUSTERS) + 1.0
    started = time.perf_counter()
    group.all_reduce_sum(statistics)
    summed = time.perf_counter()
    gathered = [group.gather(part) for part in ((rows, own, scores) if name in SCORED else (rows, own))]
    gathered_at = time.perf_counter()
    figures = {}
    if group.rank == 0:
        columns = read_manifest_columns(folder / "pool.csv")
        read = time.perf_counter()
        rows, own, *scores = (np.concatenate(part) for part in gathered)
        pool_order = np.argsort(rows, kind="stable")
        rows, own = rows[pool_order], own[pool_order]
        ranked_at = time.perf_counter()
        order, ranked = selector.rank_scores(own, scores[0][pool_order] if scores else None,
                                             budget_share * own.sum())
        picked, _ = selector.fill(own, order, ranked, budget_share * own.sum() / 3600)
        filled = time.perf_counter()
        write_manifest_rows(columns, rows[picked], folder / f"subset-{name}.csv")
        written = time.perf_counter()
        figures = {"rank0_manifest_read_s": round(read - gathered_at, 1), "rank_and_fill_s": round(
            filled - ranked_at, 2), "subset_rows": len(picked), "subset_write_s": round(written - filled, 1)}
    peaks = group.all_gather_object(round(peak_gb(), 2))
    sent = group.all_gather_object(group.bytes_sent)
    if group.rank == 0:
        print(json.dumps({"selector": name, "processes": group.world_size, "statistics_values": len(statistics),
                          "all_reduce_s": round(summed - started, 2), "gather_s": round(gathered_at - summed, 2),
                          **figures, "merge_s": round(time.perf_counter() - started, 1),
                          "bytes_sent_per_process_mb": round(max(sent) / 1e6, 1), "peak_gb_per_process": peaks}))
    torch.distributed.destroy_process_group()


def in_fresh_process(*arguments, processes=None):
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"] if processes else []
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, *launcher, __file__, *map(str, arguments)], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(done.stdout[-2000:] + done.stderr[-3000:])
    return json.loads([line for line in done.stdout.splitlines() if line.startswith("{")][-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hours", type=float, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--folder", type=Path, required=True, help="where the synthetic pools go (kept)")
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--selectors", nargs="*", default=list(SELECTORS), choices=list(SELECTORS))
    parser.add_argument("--passes", action="store_true", help="also time the IDs and report passes of a shard")
    parser.add_argument("--tokens-per-second", type=float, default=41.0)
    parser.add_argument("--mean-seconds", type=float, default=30.0)
    parser.add_argument("--piece-hours", type=float, default=100.0)
    parser.add_argument("--target-hours", type=float, default=10.0)
    parser.add_argument("--budget-share", type=float, default=0.1)
    parser.add_argument("--skip-merge", action="store_true")
    args = parser.parse_args()
    print(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M %Z"), "cpus": os.cpu_count(),
                      "processes": args.processes, "tokens_per_second": args.tokens_per_second}), flush=True)
    for hours in args.hours:
        folder = args.folder / f"{int(hours)}h"
        job = prepare(folder, hours, args)
        print(json.dumps({"pool_hours": hours, "pool_rows": job["pool_rows"], "shard_pieces": len(job["pool"]),
                          "shard_tokens": job["shard_tokens"], "prepare_s": job["prepare_s"]}), flush=True)
        if args.passes:
            passes = in_fresh_process("passes", folder, args.budget_share)
            print(json.dumps({"pool_hours": hours, "passes": passes}), flush=True)
        for name in args.selectors:
            print(json.dumps({"pool_hours": hours, "shard": in_fresh_process("shard", folder, name)}), flush=True)
            if not args.skip_merge:
                merge = in_fresh_process("merge", folder, name, args.budget_share, processes=args.processes)
                print(json.dumps({"pool_hours": hours, "merge": merge}), flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "shard":
        print(json.dumps(measure_shard(Path(sys.argv[2]), sys.argv[3])))
    elif len(sys.argv) > 1 and sys.argv[1] == "passes":
        print(json.dumps(measure_passes(Path(sys.argv[2]), float(sys.argv[3]))))
    elif len(sys.argv) > 1 and sys.argv[1] == "merge":
        merge_worker(Path(sys.argv[2]), sys.argv[3], float(sys.argv[4]))
    else:
        main()
