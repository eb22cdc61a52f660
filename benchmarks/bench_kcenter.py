"""Scale of the k-center selector: ``--n`` utterance embeddings of ``--dim`` dimensions, 10 % of the hours.

Synthetic embeddings stored as the units stage stores them (``float16``): a mixture of
``--modes`` Gaussian modes of random widths, durations uniform in 2-20 s. The selector runs
as the selection stage runs it (:class:`selection.selectors.KCenterSelector` through
``Selector.select``); the script prints its wall and CPU time (all threads), the selector's
diagnostics (seconds of the projection and of the traversal, rounds, picks) and the peak resident
memory of the process (prints figures; not a test).

Example::

    python benchmarks/bench_kcenter.py --n 1000000 --dim 512 --threads 2
"""

import argparse
import json
import resource
import time

import numpy as np
import torch


def synthetic_embeddings(n, dim, modes, seed, chunk=100_000):
    """``float16 [n, dim]`` mixture of Gaussian modes, generated in chunks."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(modes, dim)).astype(np.float32) * 3.0
    widths = rng.uniform(0.3, 1.5, size=modes).astype(np.float32)
    vectors = np.empty((n, dim), dtype=np.float16)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        mode = rng.integers(0, modes, size=stop - start)
        noise = rng.standard_normal(size=(stop - start, dim), dtype=np.float32)
        vectors[start:stop] = centres[mode] + widths[mode, None] * noise
    return vectors


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--modes", type=int, default=2000)
    parser.add_argument("--fraction", type=float, default=0.1, help="share of the hours selected")
    parser.add_argument("--n_components", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from common.manifest import Manifest
    from selection.selectors import KCenterSelector
    from selection.units import UnitSet

    started = time.perf_counter()
    vectors = synthetic_embeddings(args.n, args.dim, args.modes, seed=0)
    durations = np.random.default_rng(1).uniform(2.0, 20.0, size=args.n)
    ids = [f"u{i:07d}" for i in range(args.n)]
    units = UnitSet(ids, np.zeros(args.n + 1, dtype=np.int64), np.zeros(0, dtype=np.int16), 50.0, 2,
                    embeddings=vectors)
    pool = Manifest("<synthetic>", ["ID", "duration", "wav"],
                    [{"ID": i, "duration": f"{d:.2f}", "wav": f"{i}.flac"} for i, d in zip(ids, durations)])
    generated = time.perf_counter() - started
    budget_hours = args.fraction * durations.sum() / 3600

    wall, cpu = time.perf_counter(), time.process_time()
    result = KCenterSelector(n_components=args.n_components, seed=0).select(pool, units, budget_hours)
    figures = {
        "utterances": args.n, "dim": args.dim, "threads": args.threads, "budget_hours": round(budget_hours, 1),
        "generation_s": round(generated, 1), "select_wall_s": round(time.perf_counter() - wall, 1),
        "select_cpu_s": round(time.process_time() - cpu, 1), **result.diagnostics,
        "selected": result.n_utterances, "selected_hours": round(result.hours, 1),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
    }
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
