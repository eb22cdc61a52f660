"""The process group of a task script started by ``torchrun``, on machines with or without GPUs."""

import dataclasses

import torch
from speechbrain.utils.distributed import ddp_barrier, ddp_init_group

from selection.collectives import TorchProcessGroup


def init_process_group(run_opts):
    """SpeechBrain's ``ddp_init_group`` (nothing happens without ``torchrun``), with gloo when there is no GPU.

    The backend is gloo unless ``--distributed_backend`` was given or a GPU
    is present (SpeechBrain's default is nccl, which needs one GPU per
    process), so several CPU processes work too.

    Parameters
    ----------
    run_opts : speechbrain.core.RunOptions
        As returned by ``speechbrain.parse_arguments``.

    Returns
    -------
    speechbrain.core.RunOptions
        The options used (give them to the Brain).
    """
    if "distributed_backend" not in run_opts.overridden_args and not torch.cuda.is_available():
        # marked as overridden, else a Brain given these options keeps its own default (nccl)
        run_opts = dataclasses.replace(run_opts, distributed_backend="gloo",
                                       overridden_args=run_opts.overridden_args | {"distributed_backend"})
    ddp_init_group(run_opts)
    return run_opts


def process_share():
    """This process's share of work split over the process group: ``rank``, ``world_size``, ``barrier``, ``group``.

    ``{"rank": 0, "world_size": 1, ..., "group": None}`` without ``torchrun``. Given to
    :func:`tasks.subset.select_subset`, every process extracts its shard of the
    features and units, and, for the selectors that allow it, selects over its
    shard with the others (``group``: :class:`selection.collectives.TorchProcessGroup`;
    see :func:`selection.stages.run_selection`).
    """
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    return {"rank": torch.distributed.get_rank() if distributed else 0,
            "world_size": torch.distributed.get_world_size() if distributed else 1, "barrier": ddp_barrier,
            "group": TorchProcessGroup() if distributed else None}
