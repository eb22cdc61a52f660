#!/usr/bin/env python3
"""Select a training subset of an unlabelled pool under an hours budget.

Stages (each cached and skipped when done; see ``selection.stages``): corpus
preparation (when missing), features -> k-means -> units of the pool and the
target, selection, outputs (``subset.csv``, s3prl and fairseq lists,
``selection.json``, ``report.png``) in ``<output_folder>``. Re-running the same
command resumes. The method is a selection file (``--selection=<name>``: see
:mod:`tasks.subset`). Selectors that run a teacher use the recipe's
``teacher_source`` (built first by ``build_teacher`` when the hparams name one
and the selection runs a teacher) on the run's device (``--device``, or CUDA when present).

Usage
-----
python recipes/SynthDomains/selection/select_subset.py recipes/SynthDomains/selection/hparams/select.yaml [--selection=random ...]
torchrun --nproc_per_node=2 recipes/SynthDomains/selection/select_subset.py <hparams>   # units extracted in 2 shards

Several processes share the unit extraction (each takes a shard of the
utterances, written in pieces); rank 0 fits k-means. Random, longest, contrastive
and DSIR then select with every process reading only its own shard (the subset of
one process), target-free k-center as a composable core-set; for the other methods
rank 0 merges the shards and selects (``recipes/selection/README.md``). Without a GPU
the process group uses the gloo backend (set here unless
``--distributed_backend`` is given), so sharding works on CPU-only machines.
"""

import logging
import sys

from speechbrain.utils.distributed import if_main_process

from tasks.experiment import start_experiment
from tasks.process_group import process_share
from tasks.subset import select_subset

logger = logging.getLogger(__name__)


def main(argv):
    hparams, run_opts = start_experiment(argv)
    subset, result = select_subset(hparams, hparams["output_folder"], device=run_opts.device, **process_share())
    if result is None:
        logger.info("selection '%s' selects nothing: the subset is the whole pool, %s", hparams["selection"], subset)
    elif if_main_process():
        logger.info("%s: %d utterances, %.3f h (budget %.3f h) -> %s", result.selector, result.n_utterances,
                    result.hours, result.budget_hours, subset)


if __name__ == "__main__":
    main(sys.argv[1:])
