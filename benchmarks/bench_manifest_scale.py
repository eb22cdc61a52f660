"""The selection path's manifest work at millions of rows, dict rows against columns (prints figures).

For each row count this writes a pool manifest (``ID,duration,wav,domain``, durations
uniform in ``[mean/2, 3 mean/2]``) under ``--folder``, then, in a fresh process per
reader (``dict``: :func:`common.manifest.read_manifest`, what the selection path read
before; ``columns``: :func:`common.manifest_columns.read_columnar_manifest`, what it
reads now), does what :func:`selection.stages.run_selection` does with the manifest
around the selector, timing each step:

1. **read**: the manifest;
2. **shard**: process 0's IDs of ``--processes`` (:func:`selection.units.shard_ids`, the units stage);
3. **budget**: ``--budget-share`` of the pool's hours (:func:`selection.stages.resolve_budget`);
4. **fill**: seeded random scores ranked and the budget filled (:meth:`selection.selectors.base.Selector.fill`);
5. **write**: the subset's IDs and ``subset.csv`` (:func:`selection.outputs.write_subset_csv`);
6. with ``--domains``, the pool's hours per domain (:func:`selection.report.domain_hours`, the report).

It prints one JSON line per reader and row count: the seconds of each step and the
peak resident memory (``VmHWM``) after the imports and at the end. Run from the
repository root::

    python benchmarks/bench_manifest_scale.py --rows 1000000 10000000 --folder /tmp/manifest_bench
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

DOMAINS = ("read", "conversational", "broadcast", "far-field")


def write_manifest(path, n_rows, mean_seconds, seed, block=1_000_000):
    """``ID,duration,wav,domain`` rows ``utt-000000000`` ..., written in blocks."""
    rng = np.random.default_rng(seed)
    with open(path, "w", encoding="utf-8") as out:
        out.write("ID,duration,wav,domain\n")
        for start in range(0, n_rows, block):
            size = min(block, n_rows - start)
            seconds = np.round(rng.uniform(mean_seconds / 2, 1.5 * mean_seconds, size), 2).tolist()
            domains = rng.integers(len(DOMAINS), size=size).tolist()
            out.write("".join(f"utt-{i:09d},{s:.2f},$data_root/utt-{i:09d}.flac,{DOMAINS[d]}\n"
                              for i, s, d in zip(range(start, start + size), seconds, domains)))


def measure(path, reader, processes, budget_share, domains, folder):
    """Steps 1-6 (module notes) with one reader, in this process."""
    from common.manifest import read_manifest
    from common.manifest_columns import read_columnar_manifest
    from selection.outputs import write_subset_csv
    from selection.report import domain_hours
    from selection.selectors.base import Selector
    from selection.stages import resolve_budget
    from selection.units import shard_ids

    read = {"dict": read_manifest, "columns": read_columnar_manifest}[reader]
    figures = {"reader": reader, "peak_after_imports_gb": round(peak_gb(), 2)}
    steps = time.perf_counter()

    def step(name):
        nonlocal steps
        now = time.perf_counter()
        figures[f"{name}_s"] = round(now - steps, 2)
        steps = now

    pool = read(path, data_root="/audio")
    step("read")
    shard = shard_ids(pool.ids, 0, processes)
    step("shard")
    budget = resolve_budget(pool, budget_fraction=budget_share)
    step("budget")
    scores = np.random.default_rng(0).random(len(pool))
    order = np.argsort(-scores, kind="stable")
    picked, _ = Selector.fill(pool.durations, order, scores[order], budget)
    step("fill")
    ids = [pool.ids[i] for i in picked.tolist()]
    write_subset_csv(pool, ids, folder / f"subset-{reader}.csv")
    step("write")
    if domains:
        domain_hours(pool)
        step("domains")
    figures.update(rows=len(pool), shard_rows=len(shard), subset_rows=len(ids), budget_hours=round(budget, 1),
                   peak_gb=round(peak_gb(), 2))
    return figures


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--folder", type=Path, required=True, help="where the synthetic pools go (kept)")
    parser.add_argument("--readers", nargs="+", default=["dict", "columns"], choices=["dict", "columns"])
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--budget-share", type=float, default=0.1)
    parser.add_argument("--mean-seconds", type=float, default=36.0)
    parser.add_argument("--domains", action="store_true", help="also the pool's hours per domain (the report)")
    args = parser.parse_args()
    print(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M %Z"), "cpus": os.cpu_count()}), flush=True)
    for rows in args.rows:
        folder = args.folder / f"{rows}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "pool.csv"
        if not path.exists():
            started = time.perf_counter()
            write_manifest(path, rows, args.mean_seconds, seed=0)
            print(json.dumps({"rows": rows, "manifest_mb": round(path.stat().st_size / 1e6),
                              "write_s": round(time.perf_counter() - started, 1)}), flush=True)
        for reader in args.readers:
            command = [sys.executable, __file__, "measure", path, reader, args.processes, args.budget_share,
                       int(args.domains)]
            done = subprocess.run(list(map(str, command)), cwd=ROOT, capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(done.stdout[-2000:] + done.stderr[-3000:])
            print(done.stdout.strip().splitlines()[-1], flush=True)
        if {"dict", "columns"} <= set(args.readers):
            same = (folder / "subset-dict.csv").read_bytes() == (folder / "subset-columns.csv").read_bytes()
            print(json.dumps({"rows": rows, "subsets_identical": same}), flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "measure":
        path, reader, processes, share, domains = sys.argv[2:7]
        print(json.dumps(measure(Path(path), reader, int(processes), float(share), domains == "1", Path(path).parent)))
    else:
        main()
