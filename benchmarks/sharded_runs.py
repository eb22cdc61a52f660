"""What the sharded-selection benchmarks share: their synthetic pool's shards, the torchrun launch, a worker's set-up.

A benchmark script writes each process's shard with :func:`write_shards`, starts itself
as ``script worker folder processes ...`` with :func:`launch`, and its worker opens
:func:`worker_group` for the gloo group and the pool's manifest.
"""

import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DOMAINS = ["formant", "concat", "parametric", "neural", "reverb", "noisytel", "nonenglish"]


def shard_path(folder, name, rank, processes):
    """The one piece file of ``rank``'s shard of ``name``: ``<name>-<processes>.npz`` with the piece suffix."""
    from selection.units import piece_path

    return piece_path(folder / f"{name}-{processes}.npz", rank, processes, 0)


def write_shards(manifest, named_units, folder, processes):
    """``pool.npz`` (the manifest's IDs and durations) and each process's shard of every ``{name: units}``."""
    from selection.units import shard_ids

    np.savez(folder / "pool.npz", ids=np.array(manifest.ids), durations=manifest.durations)
    for name, units in named_units.items():
        for rank in range(processes):
            units.subset(shard_ids(units.ids, rank, processes)).save(shard_path(folder, name, rank, processes))


def shard(folder, name, rank, processes):
    """The :class:`selection.sharded.UnitShard` of ``rank`` written by :func:`write_shards`."""
    from selection.sharded import UnitShard

    return UnitShard([shard_path(folder, name, rank, processes)])


def launch(script, folder, processes, *arguments):
    """``script worker folder processes *arguments`` under torchrun (gloo, one thread each); raises on failure."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
               str(script), "worker", str(folder), str(processes), *map(str, arguments)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    if done.returncode != 0:
        raise RuntimeError(done.stdout[-2000:] + done.stderr[-3000:])


@contextmanager
def worker_group(folder):
    """In a torchrun process: the gloo :class:`selection.collectives.TorchProcessGroup` and the pool's manifest."""
    import torch

    from common.manifest import Manifest
    from selection.collectives import TorchProcessGroup

    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo")
    try:
        with np.load(folder / "pool.npz") as table:
            rows = [{"ID": i, "duration": repr(float(d)), "wav": ""}
                    for i, d in zip(table["ids"].tolist(), table["durations"])]
        yield TorchProcessGroup(), Manifest(folder / "pool.npz", ["ID", "duration", "wav"], rows)
    finally:
        torch.distributed.destroy_process_group()
