#!/usr/bin/env python3
"""Pretrain the offline SSL teacher: HuBERT iteration-1 masked prediction on SynthDomains.

Targets are k-means units of MFCC frames (from ``selection/``), computed once
and cached. The model is a transformers ``HubertModel``, so the exported
folder loads with ``AutoModel.from_pretrained`` and SpeechBrain's HF wrapper,
exactly like ``facebook/hubert-base-ls960``. Re-running the same command
resumes from the last checkpoint; the corpus and the targets are built when
missing.

Usage
-----
python recipes/SynthDomains/teacher/train.py recipes/SynthDomains/teacher/hparams/hubert_small.yaml [--key=value ...]
python -m tasks.teacher_pretraining <hparams> [--key=value ...]   # the same
"""

import logging
import sys
import time
from pathlib import Path

import numpy as np
import speechbrain as sb
import torch
import torch.nn.functional as F
from speechbrain.utils.distributed import run_on_main
from transformers.models.hubert.modeling_hubert import _compute_mask_indices

from common.audio import SAMPLE_RATE, load_audio
from common.manifest import load_dataset, read_manifest
from common.mfcc import HOP_SAMPLES, MFCCFrontEnd
from lobes.crops import frame_count, random_aligned_crop
from lobes.students import export_model_folder
from selection.pipeline import UnitPipeline
from tasks.experiment import optimizer_steps_per_epoch, start_experiment, write_results

logger = logging.getLogger(__name__)

FRAME_SAMPLES = 320  # HuBERT CNN stride: 50 frames per second


def span_mask(frame_lengths, n_frames, start_prob, span, min_spans=2):
    """HuBERT span masks ``[B, T]`` (bool) over the valid frames of each utterance.

    Every frame starts a masked span of ``span`` frames with probability
    ``start_prob`` (transformers draws ``start_prob * span`` as its mask ratio).
    """
    valid = torch.arange(n_frames)[None, :] < frame_lengths[:, None]
    mask = _compute_mask_indices((len(frame_lengths), n_frames), mask_prob=start_prob * span, mask_length=span,
                                 attention_mask=valid.long(), min_masks=min_spans)
    return torch.from_numpy(mask) & valid


class TeacherBrain(sb.Brain):
    """Masked-unit prediction: cross-entropy on masked frames only."""

    def compute_forward(self, batch, stage):
        batch = batch.to(self.device)
        wavs, wav_lens = batch.sig
        n_samples = torch.round(wav_lens * wavs.shape[1]).long()
        attention = (torch.arange(wavs.shape[1], device=self.device)[None, :] < n_samples[:, None]).long()
        frame_count = self.hparams.hubert._get_feat_extract_output_lengths  # the model itself (modules: DDP-wrapped)
        frame_lengths = frame_count(n_samples).cpu()
        n_frames = int(frame_count(torch.tensor(wavs.shape[1])))
        if stage == sb.Stage.TRAIN:
            mask = span_mask(frame_lengths, n_frames, self.hparams.mask_start_prob, self.hparams.mask_span)
        else:  # the same masks for every validation pass
            state = np.random.get_state()
            np.random.seed(self.hparams.seed + self.step)
            mask = span_mask(frame_lengths, n_frames, self.hparams.mask_start_prob, self.hparams.mask_span)
            np.random.set_state(state)
        mask = mask.to(self.device)
        hidden = self.modules.hubert(wavs, attention_mask=attention, mask_time_indices=mask).last_hidden_state
        return self.modules.head(hidden), mask

    def compute_objectives(self, predictions, batch, stage):
        logits, mask = predictions
        targets, target_lens = batch.targets
        targets = targets.to(self.device).long()
        n = min(logits.shape[1], targets.shape[1])
        target_frames = torch.round(target_lens.to(self.device) * targets.shape[1]).long()
        has_target = torch.arange(n, device=self.device)[None, :] < target_frames[:, None]
        chosen = mask[:, :n] & has_target
        logits, targets = logits[:, :n][chosen], targets[:, :n][chosen]
        loss = F.cross_entropy(logits, targets)
        if stage != sb.Stage.TRAIN:
            self.correct += int((logits.argmax(-1) == targets).sum())
            self.counted += len(targets)
            self.target_counts += torch.bincount(targets.cpu(), minlength=self.hparams.n_clusters)
        return loss

    def on_fit_batch_start(self, batch, should_step):
        lr = self.hparams.lr_schedule.calculate_lr(self.optimizer_step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def on_stage_start(self, stage, epoch=None):
        self.correct, self.counted = 0, 0
        self.target_counts = torch.zeros(self.hparams.n_clusters, dtype=torch.long)
        self.stage_start = time.time()

    def on_stage_end(self, stage, stage_loss, epoch=None):
        if stage == sb.Stage.TRAIN:
            self.train_stats = {"loss": stage_loss, "minutes": round((time.time() - self.stage_start) / 60, 2)}
            return
        stats = {
            "loss": stage_loss,
            "masked_unit_acc": self.correct / max(self.counted, 1),
            "chance_majority": float(self.target_counts.max()) / max(self.counted, 1),
            "chance_uniform": 1.0 / self.hparams.n_clusters,
        }
        if stage == sb.Stage.VALID:
            self.hparams.train_logger.log_stats(
                stats_meta={"epoch": epoch, "lr": self.optimizer.param_groups[0]["lr"]},
                train_stats=self.train_stats, valid_stats=stats)
            self.checkpointer.save_and_keep_only(meta={"loss": stage_loss, **stats}, min_keys=["loss"])
        self.last_stats = stats


def split_ids(ids, valid_fraction, seed):
    """Seeded train/valid split of utterance IDs (at least one validation utterance)."""
    order = np.random.default_rng(seed).permutation(len(ids))
    n_valid = max(1, int(round(valid_fraction * len(ids))))
    return [ids[i] for i in sorted(order[n_valid:])], [ids[i] for i in sorted(order[:n_valid])]


def build_targets(hparams, manifest):
    """MFCC k-means units of the whole training split (cached stages; see selection.pipeline)."""
    extractor = MFCCFrontEnd()
    pipeline = UnitPipeline(extractor, extractor.settings(),
                            hparams["n_clusters"], hparams["units_folder"], fit_hours=hparams["kmeans_fit_hours"],
                            max_fit_frames=hparams["kmeans_max_frames"], frames_per_utterance=100,
                            seed=hparams["seed"])
    units, codebook = pipeline.run(manifest, {hparams["train_split"]: manifest})
    return units[hparams["train_split"]], codebook.quality


def dataio_prepare(hparams, units):
    """Train (random aligned crops) and valid (whole utterances, capped) datasets."""
    csv_path = Path(hparams["manifest_folder"]) / f"{hparams['train_split']}.csv"
    data = load_dataset(csv_path, hparams["data_folder"])
    ids = [utt_id for utt_id in data.data_ids if utt_id in units]
    train_ids, valid_ids = split_ids(ids, hparams["valid_fraction"], hparams["seed"])
    crop = int(hparams["crop_seconds"] * SAMPLE_RATE) // FRAME_SAMPLES * FRAME_SAMPLES
    config = hparams["hubert_config"]

    def take(wav, utt_id, n_samples, start):
        sig = load_audio(wav, start=start, stop=start + n_samples)
        sig = (sig - sig.mean()) / (sig.std() + 1e-7)
        first_unit = start // HOP_SAMPLES + 1  # 100 MFCC frames/s: teacher frame i is MFCC frame 2i + 1
        targets = torch.from_numpy(units[utt_id][first_unit::2].astype(np.int64))
        return sig, targets[: frame_count(len(sig), config.conv_kernel, config.conv_stride)]

    @sb.utils.data_pipeline.takes("wav", "id", "duration")
    @sb.utils.data_pipeline.provides("sig", "targets")
    def train_pipeline(wav, utt_id, duration):
        start, n_samples = random_aligned_crop(int(float(duration) * SAMPLE_RATE), crop, FRAME_SAMPLES)
        yield from take(wav, utt_id, n_samples, start)

    @sb.utils.data_pipeline.takes("wav", "id", "duration")
    @sb.utils.data_pipeline.provides("sig", "targets")
    def valid_pipeline(wav, utt_id, duration):
        yield from take(wav, utt_id, min(2 * crop, int(float(duration) * SAMPLE_RATE)), 0)

    train_ids, valid_ids = set(train_ids), set(valid_ids)
    train = data.filtered_sorted(key_test={"id": lambda i: i in train_ids})
    valid = data.filtered_sorted(key_test={"id": lambda i: i in valid_ids}, sort_key="duration")
    sb.dataio.dataset.add_dynamic_item([train], train_pipeline)
    sb.dataio.dataset.add_dynamic_item([valid], valid_pipeline)
    sb.dataio.dataset.set_output_keys([train, valid], ["id", "sig", "targets"])
    return train, valid


def export_teacher(hubert, folder):
    """Save the encoder as a HF model folder with its feature-extractor config."""
    from transformers import Wav2Vec2FeatureExtractor

    hubert.config.mask_time_prob = 0.05  # pretraining masking off; HF's fine-tuning default
    extractor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SAMPLE_RATE, padding_value=0.0,
                                         do_normalize=True, return_attention_mask=True)
    return export_model_folder(folder, hubert, extractor)


def main(argv):
    started = time.time()
    hparams, run_opts = start_experiment(argv)
    manifest = read_manifest(Path(hparams["manifest_folder"]) / f"{hparams['train_split']}.csv",
                             data_root=hparams["data_folder"])
    run_on_main(build_targets, args=[hparams, manifest])
    units, quality = build_targets(hparams, manifest)  # cached: loads what the main process wrote
    train, valid = dataio_prepare(hparams, units)

    # the steps this process takes (its shard under torchrun), so that the schedule ends where training does
    total_steps = optimizer_steps_per_epoch(len(train), hparams["batch_size"], run_opts) * hparams["number_of_epochs"]
    hparams["lr_schedule"] = sb.nnet.schedulers.LinearWarmupScheduler(
        hparams["lr"], int(hparams["warmup_fraction"] * total_steps), total_steps)
    brain = TeacherBrain(modules=hparams["modules"], opt_class=hparams["opt_class"], hparams=hparams,
                         run_opts=run_opts, checkpointer=hparams["checkpointer"])
    brain.fit(hparams["epoch_counter"], train, valid, train_loader_kwargs=hparams["train_dataloader_opts"],
              valid_loader_kwargs=hparams["valid_dataloader_opts"])

    steps_taken = brain.optimizer_step  # before evaluate() loads the best checkpoint, and its step counters
    brain.evaluate(valid, min_key="loss", test_loader_kwargs=hparams["valid_dataloader_opts"])
    if sb.utils.distributed.if_main_process():
        export_teacher(hparams["hubert"], hparams["export_folder"])
        results = {"masked_unit_acc": brain.last_stats["masked_unit_acc"],
                   "chance_majority": brain.last_stats["chance_majority"],
                   "chance_uniform": brain.last_stats["chance_uniform"], "valid_loss": brain.last_stats["loss"],
                   "kmeans_quality": quality.as_dict() if quality else None,
                   "parameters": sum(p.numel() for p in hparams["hubert"].parameters()),
                   "train_hours": sum(float(train.data[i]["duration"]) for i in train.data_ids) / 3600,
                   "optimizer_steps": steps_taken, "schedule_steps": total_steps,
                   "this_run_minutes": round((time.time() - started) / 60, 2),
                   "export_folder": str(hparams["export_folder"])}
        write_results(hparams["output_folder"], "results.json", results)


if __name__ == "__main__":
    main(sys.argv[1:])
