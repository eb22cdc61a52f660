"""The offline SynthDomains teacher as a dependency of the other recipes.

The distillation recipe builds it when it is missing (:func:`ensure_teacher`);
the probes stop early with the command to build it (:func:`require_encoder`).
"""

import logging
import subprocess
import sys
import time
from pathlib import Path

logger = logging.getLogger(__name__)
TEACHER_RECIPE = Path(__file__).resolve().parent / "teacher"
BUILD_COMMAND = ("python recipes/SynthDomains/teacher/train.py "
                 "recipes/SynthDomains/teacher/hparams/hubert_small.yaml")


def ensure_teacher(hparams):
    """Pretrain the offline teacher with its recipe when ``teacher_source`` is it and is missing.

    Uses the recipe keys ``teacher_source``, ``offline_teacher``, ``offline_teacher_folder``,
    ``teacher_hparams``, ``teacher_overrides`` and the corpus keys; a recipe without
    ``offline_teacher`` (another dataset) is left alone.
    """
    source = hparams["teacher_source"]
    if Path(source).exists() or source != hparams.get("offline_teacher"):  # other datasets have no offline teacher
        return
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


def require_encoder(hparams):
    """Stop early, with the command to run, when ``encoder_source`` is the missing offline teacher."""
    source = hparams["encoder_source"]
    if source == hparams.get("offline_teacher") and not Path(source).exists():
        raise FileNotFoundError(f"{source} not found: build the offline teacher first with `{BUILD_COMMAND}`, "
                                "or pass --encoder_source=<hub id or folder> / --encoder_source=mfcc")
