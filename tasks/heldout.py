"""The distilled student's loss on held-out splits, per domain: ``heldout.json`` of a distillation run.

Every utterance of each split in ``heldout_splits`` is cut into the fixed
segments of the training (``segment_seconds``, else ``crop_seconds``); the
teacher's targets of those segments are cached like the training targets, and
the student's loss is taken in the split's own standardisation
(:mod:`lobes.heldout_loss`), so that students trained on any subset compare.
Per utterance the file keeps ``(loss_sum, frames, domain)``, from which the
benchmark draws its bootstrap intervals. With ``heldout_curve_splits`` the loss
on those splits is also taken after every epoch (:class:`LearningCurve`,
``heldout_curve.json``): how fast a student gets there.
"""

import json
import logging
import random
from pathlib import Path

import numpy as np
import speechbrain as sb
import torch

from common.atomic import atomic_write_text
from common.audio import SAMPLE_RATE
from common.manifest import load_dataset, read_manifest
from lobes.heldout_loss import item_loss_sums
from lobes.segments import segment_rows
from tasks.teacher_targets import build_caches, item_batches

HELDOUT_FILE = "heldout.json"
CURVE_FILE = "heldout_curve.json"
logger = logging.getLogger(__name__)


def utterance_losses(segment_sums, segments):
    """Segment ``(loss_sum, frames)`` summed per utterance: ``{utt_id: [loss_sum, frames, domain]}``."""
    totals = {}
    for seg_id, (loss_sum, frames) in segment_sums.items():
        row = segments[seg_id]
        entry = totals.setdefault(row["utterance"], [0.0, 0, row.get("domain", "")])
        entry[0] += loss_sum
        entry[1] += frames
    return totals


def domain_losses(utterances):
    """Frame-weighted loss per domain and over all: ``{domain: {"loss", "utterances", "frames"}}``."""
    groups = {}
    for loss_sum, frames, domain in utterances.values():
        for name in (domain, "all") if domain else ("all",):  # a manifest without domains: "all" only
            group = groups.setdefault(name, [0.0, 0, 0])
            group[0] += loss_sum
            group[1] += frames
            group[2] += 1
    return {name: {"loss": round(total / max(frames, 1), 5), "utterances": count, "frames": frames}
            for name, (total, frames, count) in sorted(groups.items())}


def score_splits(hparams, splits, student, teacher, student_stats):
    """The student's held-out loss on each of ``splits``: ``{split: {"domains": ..., "utterances": ...}}``.

    Parameters
    ----------
    hparams : dict
        The distillation hparams (``manifest_folder``, ``data_folder``,
        ``segment_seconds`` or ``crop_seconds``, ``cache_folder``,
        ``cache_batch_size``, ``teacher_source``).
    splits : list of str
        Manifests of ``manifest_folder``.
    student : torch.nn.Module
        The distilled student (not wrapped in DDP), left in eval mode.
    teacher : lobes.encoder.FrozenTeacher
        Its teacher (its targets of each split are cached once).
    student_stats : (torch.Tensor, torch.Tensor) or None
        The target standardisation the student was trained with.
    """
    seconds = hparams["segment_seconds"] or hparams["crop_seconds"]
    hop = round(SAMPLE_RATE / teacher.frame_rate)
    scored = {}
    for split in splits:
        manifest = Path(hparams["manifest_folder"]) / f"{split}.csv"
        if not manifest.exists():
            raise FileNotFoundError(f"held-out split {manifest} does not exist (a split of "
                                    f"{hparams['manifest_folder']} is needed)")
        rows = load_dataset(manifest, hparams["data_folder"]).data if len(read_manifest(manifest)) else {}
        if not rows:  # e.g. a target too small to hold audio out, or of one voice (its preparation says why)
            logger.warning("held-out split %s has no utterances: no held-out loss for %s", manifest, split)
            scored[split] = {"domains": {}, "utterances": {}}
            continue
        segments = segment_rows(rows, seconds, hop, SAMPLE_RATE)
        dataset = sb.dataio.dataset.DynamicItemDataset(segments)
        cache = build_caches(hparams, f"heldout_{split}", dataset, teacher, list(student.target_layers))["targets"]
        batches, _ = item_batches(dataset, hparams["cache_batch_size"])
        mean, std = cache.layer_statistics()
        sums = item_loss_sums(student, batches, cache, (mean, std.clamp(min=1e-5)), student_stats)
        utterances = utterance_losses(sums, segments)
        scored[split] = {"domains": domain_losses(utterances), "utterances": utterances}
    return scored


def split_summary(scored):
    """``{split: {domain: loss}}`` of :func:`score_splits`' result."""
    return {split: {name: group["loss"] for name, group in entry["domains"].items()} for split, entry in scored.items()}


def evaluate_heldout(hparams, student, teacher, student_stats):
    """Score ``student`` on every split of ``hparams["heldout_splits"]`` and write ``heldout.json``.

    Returns
    -------
    dict
        ``{split: {domain: loss}}``, the summary of the file.
    """
    seconds = hparams["segment_seconds"] or hparams["crop_seconds"]
    scored = score_splits(hparams, hparams["heldout_splits"], student, teacher, student_stats)
    atomic_write_text(Path(hparams["output_folder"]) / HELDOUT_FILE,
                      json.dumps({"segment_seconds": seconds, "splits": scored}))
    return split_summary(scored)


class LearningCurve:
    """The held-out loss on ``heldout_curve_splits`` after every epoch, kept in ``heldout_curve.json``.

    The generators' states are put back after each evaluation, so a run with a
    curve trains exactly as one without. A resumed run keeps the points of the
    epochs it restored and appends the next ones.

    Parameters
    ----------
    hparams : dict
        The distillation hparams (those of :func:`score_splits`, ``output_folder``
        and ``heldout_curve_splits``).
    teacher : lobes.encoder.FrozenTeacher
        The teacher.
    """

    def __init__(self, hparams, teacher):
        self.hparams, self.teacher = hparams, teacher
        self.path = Path(hparams["output_folder"]) / CURVE_FILE
        self.points = json.loads(self.path.read_text())["points"] if self.path.exists() else []

    def add(self, epoch, optimizer_steps, student, student_stats):
        """Score ``student`` after ``epoch`` (``optimizer_steps`` taken) and rewrite the file."""
        with torch.random.fork_rng(devices=range(torch.cuda.device_count())):
            numpy_state, python_state = np.random.get_state(), random.getstate()
            try:
                scored = score_splits(self.hparams, self.hparams["heldout_curve_splits"], student, self.teacher,
                                      student_stats)
            finally:
                np.random.set_state(numpy_state)
                random.setstate(python_state)
        self.points = [point for point in self.points if point["epoch"] < epoch]
        self.points.append({"epoch": epoch, "optimizer_steps": optimizer_steps, "heldout_loss": split_summary(scored)})
        atomic_write_text(self.path, json.dumps({"splits": self.hparams["heldout_curve_splits"],
                                                 "points": self.points}, indent=1))
