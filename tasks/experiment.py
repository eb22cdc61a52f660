"""What every task's ``main`` does first (command line, hparams, data) and last (its results file)."""

import dataclasses
import json
import logging
import math
from pathlib import Path

import speechbrain as sb
import torch
from speechbrain.utils.distributed import infer_device, run_on_main

from common.atomic import atomic_write_text
from common.hashing import file_sha256
from common.hparams import load_hparams, resolved_text
from lobes.feature_cache import encoder_fingerprint
from lobes.mfcc_encoder import load_encoder
from tasks.process_group import init_process_group
from tasks.run_identity import check_run_identity

logger = logging.getLogger(__name__)


def start_experiment(argv, process_group=True):
    """Parse ``argv`` (``hparams.yaml --key=value ...``), load the hparams and make the output folder.

    The run's device is resolved here, once, as the Brain would (``--device``,
    else ``cuda:<LOCAL_RANK>`` when a GPU is present, else ``cpu``), so that
    every stage that runs a model before or after training (selection units,
    the difficulty proxy, teacher targets, held-out loss, probe features) uses
    the device the training does. Then runs the dataset's preparation
    (``prepare_data``) on the main process.

    Parameters
    ----------
    argv : list of str
        The recipe's command line, without the script.
    process_group : bool
        Join the ``torchrun`` process group (gloo without a GPU; nothing
        happens without ``torchrun``), for tasks that run on several processes.

    Returns
    -------
    tuple of (dict, speechbrain.core.RunOptions)
        The loaded hparams and the run options (give them to the Brain).
    """
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    hparams = load_hparams(hparams_file, overrides)
    if process_group:
        run_opts = init_process_group(run_opts)
    run_opts = with_device(run_opts)
    sb.create_experiment_directory(hparams["output_folder"])
    run_on_main(save_hparams, args=[hparams_file, overrides, hparams["output_folder"]])
    run_on_main(hparams["prepare_data"])
    return hparams, run_opts


def save_hparams(hparams_file, overrides, output_folder):
    """Write the run's hparams as loaded (base file merged, references and overrides resolved) to ``hyperparams.yaml``."""
    header = f"# {hparams_file} as this run loaded it (its base file merged, references and overrides resolved)\n"
    atomic_write_text(Path(output_folder) / "hyperparams.yaml", header + resolved_text(hparams_file, overrides))


def with_device(run_opts):
    """``run_opts`` with ``device`` set: the one given, or SpeechBrain's guess (``infer_device``).

    Example
    -------
    >>> import speechbrain as sb
    >>> with_device(sb.parse_arguments(["x.yaml", "--device=cpu:0"])[1]).device
    'cpu:0'
    """
    device = run_opts.device or infer_device()
    return dataclasses.replace(run_opts, device=device, overridden_args=run_opts.overridden_args | {"device"})


def load_probe_encoder(hparams, device="cpu"):
    """A probe's frozen encoder (``encoder_source``, made ready by ``prepare_encoder``) on ``device``, and its fingerprint."""
    if hparams["prepare_encoder"] is not None:
        run_on_main(hparams["prepare_encoder"])
    encoder = load_encoder(hparams["encoder_source"]).to(device)
    return encoder, encoder_fingerprint(encoder)


def write_results(output_folder, name, results):
    """Write ``results`` as ``output_folder/name`` (JSON), atomically: the file that marks a run finished."""
    atomic_write_text(Path(output_folder) / name, json.dumps(results, indent=2))
    logger.info("%s: %s", name, results)


def checkpoint_probe(hparams, fingerprint, weighted_sum, head):
    """Give a probe's trained parts to its checkpointer, once its checkpoints are known to be this encoder's."""
    check_run_identity(hparams["save_folder"], {
        "encoder": str(hparams["encoder_source"]), "encoder_weights": fingerprint,
        "train_manifest": file_sha256(Path(hparams["manifest_folder"]) / f"{hparams['train_split']}.csv")})
    hparams["checkpointer"].add_recoverable("weighted_sum", weighted_sum)
    hparams["checkpointer"].add_recoverable("head", head)


def optimizer_steps_per_epoch(n_examples, batch_size, run_opts):
    """Optimizer steps one process takes in an epoch, for learning-rate schedules.

    Under ``torchrun`` each process gets its shard of the examples
    (SpeechBrain's distributed sampler pads the shards to equal size), in
    batches of ``batch_size``, and steps once per ``grad_accumulation_factor``
    batches.

    Example
    -------
    >>> optimizer_steps_per_epoch(10, 4, {})
    3
    """
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    world_size = torch.distributed.get_world_size() if distributed else 1
    batches = math.ceil(math.ceil(n_examples / world_size) / batch_size)
    return max(1, batches // run_opts.get("grad_accumulation_factor", 1))
