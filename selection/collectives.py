"""What the processes of a sharded selection exchange: sums of statistics, gathered scores, failures.

:class:`SingleProcess` is the group of one process (every collective returns its
input); :class:`TorchProcessGroup` runs the same collectives over
``torch.distributed`` (gloo on CPU, NCCL on GPU: tensors then travel on the
process's GPU). Both count the bytes a process sends and the longest time it
spent inside one collective (waiting for the slowest process included), for
``selection.json`` and the scale benchmark.

Example
-------
>>> group = SingleProcess()
>>> group.all_reduce_sum(np.array([1.0, 2.0])).tolist(), group.gather(np.array([3, 4]))[0].tolist()
([1.0, 2.0], [3, 4])
"""

import time

import numpy as np
import torch


class ShardFailure(RuntimeError):
    """Work of one or more shards failed; the message names each process and the files it was reading."""


class SingleProcess:
    """The collectives of one process alone (also the base of :class:`TorchProcessGroup`).

    Attributes
    ----------
    bytes_sent : int
        Bytes this process handed to collectives.
    longest_wait : float
        Longest seconds spent in one collective.
    """

    rank = 0
    world_size = 1

    def __init__(self):
        self.bytes_sent = 0
        self.longest_wait = 0.0

    def all_reduce_sum(self, array):
        """Element-wise sum of ``array`` over the processes (``float64`` or ``int64``), on every process."""
        return np.asarray(array)

    def gather(self, array):
        """The 1-D arrays of every process, in rank order, on process 0 (``None`` elsewhere)."""
        return [np.asarray(array)]

    def broadcast(self, array):
        """Process 0's 1-D array on every process (the others pass an array of the same dtype, content ignored)."""
        return np.asarray(array)

    def all_gather_object(self, value):
        """Every process's picklable ``value``, in rank order, on every process."""
        return [value]

    def check(self, error):
        """Raise :class:`ShardFailure` on every process when any process reports an error.

        Parameters
        ----------
        error : str or None
            This process's failure (what it did and the files it read), ``None`` when it succeeded.
        """
        errors = [e for e in self.all_gather_object(error) if e is not None]
        if errors:
            raise ShardFailure("; ".join(errors))


class TorchProcessGroup(SingleProcess):
    """The collectives over the default ``torch.distributed`` process group (initialised by the caller)."""

    def __init__(self):
        super().__init__()
        self.rank = torch.distributed.get_rank()
        self.world_size = torch.distributed.get_world_size()
        nccl = torch.distributed.get_backend() == "nccl"
        self.device = torch.device("cuda", torch.cuda.current_device()) if nccl else torch.device("cpu")

    def _timed(self, collective, *args, **kwargs):
        started = time.perf_counter()
        collective(*args, **kwargs)
        self.longest_wait = max(self.longest_wait, time.perf_counter() - started)

    def _tensor(self, array):
        tensor = torch.from_numpy(np.ascontiguousarray(array)).to(self.device)
        self.bytes_sent += tensor.numel() * tensor.element_size()
        return tensor

    def all_reduce_sum(self, array):
        tensor = self._tensor(array)
        self._timed(torch.distributed.all_reduce, tensor)
        return tensor.cpu().numpy()

    def gather(self, array):
        array = np.ascontiguousarray(array)
        sizes = self._tensor(np.array([len(array)], dtype=np.int64))
        all_sizes = [torch.zeros_like(sizes) for _ in range(self.world_size)]
        self._timed(torch.distributed.all_gather, all_sizes, sizes)
        lengths = [int(s.item()) for s in all_sizes]
        padded = np.zeros(max(lengths), dtype=array.dtype)
        padded[: len(array)] = array
        tensor = self._tensor(padded)
        parts = [torch.empty_like(tensor) for _ in range(self.world_size)] if self.rank == 0 else None
        if self.device.type == "cuda":  # NCCL has no gather: all_gather, the other processes drop the result
            parts = [torch.empty_like(tensor) for _ in range(self.world_size)]
            self._timed(torch.distributed.all_gather, parts, tensor)
        else:
            self._timed(torch.distributed.gather, tensor, parts, dst=0)
        if self.rank != 0:
            return None
        return [part.cpu().numpy()[:n] for part, n in zip(parts, lengths)]

    def broadcast(self, array):
        array = np.ascontiguousarray(array)
        header = self._tensor(np.array([len(array) if self.rank == 0 else 0], dtype=np.int64))
        self._timed(torch.distributed.broadcast, header, src=0)
        tensor = self._tensor(array if self.rank == 0 else np.zeros(int(header.item()), dtype=array.dtype))
        self._timed(torch.distributed.broadcast, tensor, src=0)
        return tensor.cpu().numpy()

    def all_gather_object(self, value):
        values = [None] * self.world_size
        self._timed(torch.distributed.all_gather_object, values, value)
        return values
