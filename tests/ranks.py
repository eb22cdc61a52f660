"""Several ranks for the sharded-selection tests: threads in one process, or ``torchrun`` processes.

:func:`run_in_threads` runs one function per rank on threads that share a barrier and
the exchange slots of :class:`ThreadGroup` (the collectives of
:mod:`selection.collectives` without sockets). A test module that is also a
``torchrun`` script writes its job with :func:`write_job`, starts itself with
:func:`launch_torchrun`, and its ``worker`` opens :func:`torchrun_worker`.

Example
-------
>>> from ranks import run_in_threads
>>> run_in_threads(2, lambda rank, shared: rank * 10)
{0: 0, 1: 10}
"""

import json
import os
import subprocess
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from selection.collectives import SingleProcess

ROOT = Path(__file__).resolve().parents[1]


class ThreadGroup(SingleProcess):
    """The collectives between threads (one per rank), for the selection stage in one test process."""

    def __init__(self, rank, world_size, shared):
        super().__init__()
        self.rank, self.world_size, self.shared = rank, world_size, shared

    def _exchange(self, value):
        barrier, slots = self.shared["barrier"], self.shared["slots"]
        barrier.wait()
        slots[self.rank] = value
        barrier.wait()
        values = list(slots)
        barrier.wait()
        return values

    def all_reduce_sum(self, array):
        return np.sum(self._exchange(np.asarray(array)), axis=0)

    def gather(self, array):
        values = self._exchange(np.asarray(array))
        return values if self.rank == 0 else None

    def broadcast(self, array):
        return self._exchange(np.asarray(array))[0]

    def all_gather_object(self, value):
        return self._exchange(value)


def run_in_threads(world_size, rank_body, timeout=120):
    """``rank_body(rank, shared)`` on one thread per rank; ``{rank: what it returned}``.

    ``shared`` holds the ``barrier`` every rank waits on and the ``slots`` of a
    :class:`ThreadGroup`; a rank that raises aborts the barrier (the others stop
    waiting) and the first error is raised here.
    """
    shared = {"barrier": threading.Barrier(world_size, timeout=timeout), "slots": [None] * world_size}
    results, errors = {}, []

    def rank(r):
        try:
            results[r] = rank_body(r, shared)
        except Exception as err:  # noqa: BLE001 - re-raised in the test thread
            errors.append(err)
            shared["barrier"].abort()

    threads = [threading.Thread(target=rank, args=(r,)) for r in range(world_size)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


def write_job(folder, pool, pool_paths, target_paths, budget_hours, **extra):
    """``job.json`` (each rank's pool and target pieces, the budget, ``extra``) and ``pool.npz`` for the workers."""
    np.savez(folder / "pool.npz", ids=np.array(pool.units.ids), durations=pool.manifest().durations)
    (folder / "job.json").write_text(json.dumps({
        "pool": [[str(p) for p in paths] for paths in pool_paths],
        "target": [[str(p) for p in paths] for paths in target_paths], "budget_hours": budget_hours, **extra}))


def launch_torchrun(script, folder, world_size, timeout=120):
    """``script folder`` on ``world_size`` processes (gloo, one thread each); the finished process."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={world_size}",
               str(script), str(folder)]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                           env={**os.environ, "OMP_NUM_THREADS": "1"})


@contextmanager
def torchrun_worker(folder):
    """In a ``torchrun`` process: the gloo group, the job of :func:`write_job` and the pool's manifest."""
    import torch

    from common.manifest import Manifest
    from selection.collectives import TorchProcessGroup

    torch.distributed.init_process_group("gloo")
    try:
        with np.load(folder / "pool.npz") as table:
            rows = [{"ID": i, "duration": repr(float(d)), "wav": f"{i}.flac"}
                    for i, d in zip(table["ids"].tolist(), table["durations"])]
        yield (TorchProcessGroup(), json.loads((folder / "job.json").read_text()),
               Manifest(folder / "pool.npz", ["ID", "duration", "wav"], rows))
    finally:
        torch.distributed.destroy_process_group()
