"""Select a subset of an unlabelled pool without labels, then distil the teacher into a student on it.

Stages, each skipped when done (re-running the same command resumes):
1. the dataset's preparation (``prepare_data`` in the hparams: the SynthDomains
   corpus is generated when missing, LibriSpeech manifests are written);
2. the teacher: ``teacher_source`` (hub id or folder), built first by
   ``build_teacher`` when the hparams name one (the offline SynthDomains teachers);
3. the subset: the selection stages of ``selection/`` with the configured selector;
4. optionally the teacher targets of the training and validation items,
   computed once in fp16 (``cache_teacher_targets``), and with a frozen CNN
   copied from the teacher its output too (``cache_cnn_features``). Items are
   random crops of the utterances (``crop_seconds``, targets sliced from the
   whole utterance's), or fixed segments that the teacher sees alone
   (``segment_seconds``), drawn ``steps_per_epoch`` batches per epoch from a
   seeded schedule when set: equal compute whatever the subset;
5. distillation (``DistillBrain``), checkpointed every epoch; the student is
   exported to ``<output_folder>/save/student`` as an HF model folder;
6. the student's distillation loss on ``heldout_splits``, per domain
   (``heldout.json``, :mod:`tasks.heldout`): an intrinsic measure, no labels.

Each dataset's ``recipes/<Dataset>/distillation/train.py`` calls :func:`main`:

python recipes/SynthDomains/distillation/train.py recipes/SynthDomains/distillation/hparams/distill_kmeans.yaml [--key=value ...]
torchrun --nproc_per_node=2 recipes/SynthDomains/distillation/train.py <hparams>   # several processes (gloo without a GPU)
"""

import dataclasses
import json
import logging
import math
import random
import sys
import time
from pathlib import Path

import numpy as np
import speechbrain as sb
import torch
from speechbrain.utils.distributed import if_main_process, run_on_main

from common.audio import SAMPLE_RATE, load_audio
from common.hashing import file_sha256
from common.manifest import check_durations, load_dataset, read_manifest
from lobes.crops import random_aligned_crop
from lobes.encoder import frame_mask, resolved_config
from lobes.feature_cache import encoder_fingerprint
from lobes.segments import SegmentSchedule, segment_rows
from lobes.unit_prediction import frame_units
from tasks.checkpoints import discard_incomplete_checkpoints, mark_checkpoints
from tasks.experiment import optimizer_steps_per_epoch, start_experiment, write_results
from tasks.heldout import LearningCurve, evaluate_heldout
from tasks.objectives import chosen_objective, draw_masked_frames, unit_targets, uses_units
from tasks.process_group import process_share
from tasks.run_identity import check_run_identity, ids_hash
from tasks.subset import select_subset
from tasks.target_statistics import SOURCES, pool_statistics
from tasks.teacher_targets import build_caches, load_item

logger = logging.getLogger(__name__)


class DistillBrain(sb.Brain):
    """Trains ``modules.student`` to predict the frozen teacher's layers.

    The teacher is an attribute (``self.teacher``), not a module: Brain would
    otherwise switch it to train mode every epoch and checkpoint its weights.
    ``self.target_layers`` are the teacher layers the student predicts.
    Targets come from the batch (``targets``, the fp16 cache) when present,
    else from a teacher forward pass on the same crops; so does the frozen
    CNN's output (``cnn_features``).
    """

    cnn_cached = False  # True: batches carry the teacher's CNN output (``cnn_features``)
    targets_cached = False  # True: batches carry the teacher's targets (``targets``)
    target_stats = None  # (mean, std) ``[N, D]``: targets are standardised per layer and dimension
    objective = None  # the loss of the chosen objective (tasks.objectives.chosen_objective)
    objective_needs = {"masks_input": False, "targets": "hidden_states"}  # lobes.losses.needs of the objective
    units = None  # unit targets: {"layer", "codebook", "index"} (tasks.objectives.unit_targets)
    curve = None  # tasks.heldout.LearningCurve: the held-out loss after every epoch

    def on_fit_start(self):
        super().on_fit_start()  # restores the last checkpoint, if any
        mark_checkpoints(self.checkpointer)  # each checkpoint saved from now on ends with its completion mark
        student = getattr(self.modules.student, "module", self.modules.student)  # unwrap DDP
        if self.cnn_cached and not student.cnn_matches(self.teacher):
            raise ValueError(f"cache_cnn_features: the student restored from {self.checkpointer.checkpoints_dir} "
                             "has a CNN that is not the teacher's (a run that trained its CNN?): use another "
                             "output_folder, or cache_cnn_features: False")

    def compute_forward(self, batch, stage):
        """The student's predictions, frame lengths and the input frames it saw masked (``None``: none)."""
        batch = batch.to(self.device)
        wavs, wav_lens = batch.sig
        student = getattr(self.modules.student, "module", self.modules.student)  # unwrap DDP
        masked = None
        if self.objective_needs["masks_input"]:
            real, n_frames = student.front_end_frames(wavs, wav_lens)
            masked = draw_masked_frames(real, n_frames, self.hparams.input_mask_prob,
                                        self.hparams.input_mask_length).to(self.device)
        cnn_features = batch.cnn_features.data if self.cnn_cached else None
        predictions, frame_lengths = self.modules.student(wavs, wav_lens, cnn_features=cnn_features,
                                                          masked_frames=masked)
        return predictions, frame_lengths, masked

    def teacher_targets(self, batch):
        """The batch's targets: hidden states ``[N, B, T, D]`` (standardised when set), or units ``[B, T]``."""
        if self.targets_cached:
            targets, _ = batch.targets  # [B, T, N, D]
            targets = targets.permute(2, 0, 1, 3)
            if self.units is not None:
                return targets[0, :, :, 0].round().long()
        else:
            wavs, wav_lens = batch.sig
            hidden, frame_lengths = self.teacher(wavs, wav_lens)
            if self.units is not None:
                return frame_units(hidden[self.units["layer"]], frame_lengths, self.units["codebook"]).to(self.device)
            targets = hidden[self.target_layers]
        if self.target_stats is None:
            return targets
        mean, std = (stat.to(targets.device)[:, None, None] for stat in self.target_stats)
        return (targets - mean) / std

    def compute_objectives(self, predictions, batch, stage):
        predictions, frame_lengths, masked = predictions
        targets = self.teacher_targets(batch)
        n_frames = min(predictions.shape[2], targets.shape[-1 if self.units is not None else 2])
        mask = frame_mask(frame_lengths, n_frames)
        extra = {} if masked is None else {"masked_frames": masked[:, :n_frames]}
        if self.units is not None:
            logits = self.modules.unit_head(predictions[self.units["index"], :, :n_frames])
            loss, per_layer = self.objective(logits, targets[:, :n_frames], mask, **extra)
        else:
            loss, per_layer = self.objective(predictions[:, :, :n_frames], targets[:, :, :n_frames], mask, **extra)
        self.layer_loss_sum = self.layer_loss_sum + per_layer.detach().float().cpu()
        self.layer_loss_batches += 1
        return loss

    def loss_names(self):
        """The names of the per-layer losses logged (``loss_layer<l>``, or ``loss_units<l>`` for unit targets)."""
        if self.units is not None:
            return [f"loss_units{self.units['layer']}"]
        return [f"loss_layer{layer}" for layer in self.target_layers]

    def on_fit_batch_start(self, batch, should_step):
        lr = self.hparams.lr_schedule.calculate_lr(self.optimizer_step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def on_stage_start(self, stage, epoch=None):
        self.layer_loss_sum = torch.zeros(len(self.loss_names()))
        self.layer_loss_batches = 0
        self.stage_started = time.time()

    def on_stage_end(self, stage, stage_loss, epoch=None):
        per_layer = self.layer_loss_sum / max(self.layer_loss_batches, 1)
        stats = {"loss": stage_loss, "minutes": round((time.time() - self.stage_started) / 60, 2),
                 **{name: float(v) for name, v in zip(self.loss_names(), per_layer)}}
        if stage == sb.Stage.TRAIN:
            self.train_stats = stats
        elif stage == sb.Stage.VALID:
            self.hparams.train_logger.log_stats(
                stats_meta={"epoch": epoch, "lr": self.optimizer.param_groups[0]["lr"]},
                train_stats=self.train_stats, valid_stats=stats)
            if self.curve is not None and if_main_process():
                student = getattr(self.modules.student, "module", self.modules.student)  # unwrap DDP
                self.curve.add(epoch, self.optimizer_step, student, self.target_stats)
            self.checkpointer.save_and_keep_only(meta={"loss": stage_loss})
        self.last_stats = stats


@sb.utils.checkpoints.register_checkpoint_hooks
class RandomStates:
    """The generators of torch (CPU and GPUs), NumPy and ``random``, checkpointed with the student, per process.

    A run resumed from a checkpoint draws what the uninterrupted run drew
    after it: the DataLoader workers' seeds (hence the crops), dropout, the
    shuffling. (Brain restores the optimizer, the step counters and the
    epoch; SpeechBrain's sampler reshuffles from the epoch number.) Under
    ``torchrun`` each process keeps its own (``random_states-rank<r>.ckpt``
    beside the main process's file).
    """

    @staticmethod
    def own_file(path):
        """This process's file: ``path`` on the main process, ``<stem>-rank<r>.ckpt`` beside it on the others."""
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        return Path(path) if rank == 0 else Path(path).with_name(f"{Path(path).stem}-rank{rank}.ckpt")

    @sb.utils.checkpoints.mark_as_saver
    def _save(self, path):
        """Save this process's generator states."""
        states = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "random": random.getstate(),
                  "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}
        torch.save(states, self.own_file(path))

    @sb.utils.checkpoints.mark_as_loader
    def _recover(self, path, end_of_epoch=True):
        """Restore this process's generator states."""
        states = torch.load(self.own_file(path), weights_only=False)
        torch.set_rng_state(states["torch"])
        np.random.set_state(states["numpy"])
        random.setstate(states["random"])
        if states["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(states["cuda"])


def load_datasets(hparams, subset_csv, teacher=None):
    """The training items of the subset and of ``valid_utterances`` of the validation split.

    The validation draw (``valid_seed``) is seeded on its own, so every run and
    seed validates on the same utterances, spread over the split (its first
    rows may all be one domain). Items are whole utterances, or with
    ``segment_seconds`` their fixed segments (:func:`lobes.segments.segment_rows`,
    aligned to ``teacher``'s frames).
    """
    train = load_dataset(subset_csv, hparams["data_folder"])
    valid = load_dataset(Path(hparams["manifest_folder"]) / f"{hparams['valid_split']}.csv", hparams["data_folder"])
    check_durations(train.data, subset_csv)  # crops and segments are placed from them
    drawn = validation_ids(valid.data_ids, hparams["valid_utterances"], hparams["valid_seed"])
    valid = {utt_id: valid.data[utt_id] for utt_id in drawn}
    if not hparams.get("segment_seconds"):
        return train, sb.dataio.dataset.DynamicItemDataset(valid).filtered_sorted(sort_key="duration")
    hop = round(SAMPLE_RATE / teacher.frame_rate)
    train_segments = segment_rows(train.data, hparams["segment_seconds"], hop, SAMPLE_RATE)
    valid_segments = segment_rows(valid, hparams["segment_seconds"], hop, SAMPLE_RATE)
    return (sb.dataio.dataset.DynamicItemDataset(train_segments),
            sb.dataio.dataset.DynamicItemDataset(valid_segments).filtered_sorted(sort_key="duration"))


def validation_ids(ids, count, seed):
    """``count`` of ``ids`` drawn without replacement with ``seed`` (all of them when fewer), in file order.

    Example
    -------
    >>> validation_ids(["a", "b", "c", "d"], 2, 0) == validation_ids(["a", "b", "c", "d"], 2, 0)
    True
    """
    chosen = set(random.Random(seed).sample(list(ids), min(count, len(ids))))
    return [utt_id for utt_id in ids if utt_id in chosen]


def cached_outputs(cache, cnn_cache, item_id, start=0, n_frames=None):
    """The cached targets and CNN output of an item's frames (``None`` for a cache not given)."""
    targets = None if cache is None else cache.get(item_id, start, n_frames)
    cnn = None if cnn_cache is None else cnn_cache.get(item_id, start, n_frames)[:, 0]
    return targets, cnn


def add_pipelines(hparams, train, valid, teacher, train_cache=None, valid_cache=None, train_cnn_cache=None,
                  valid_cnn_cache=None):
    """Items as the student sees them, with their cached teacher targets and CNN features when given.

    With ``segment_seconds`` every item, training and validation, is a fixed
    segment whose targets the teacher computed from that segment alone. Else
    training takes a random crop of each utterance (``crop_seconds``, aligned
    to the teacher's frames, its targets sliced from the whole utterance's)
    and validation whole utterances. Outputs: ``sig``, and ``targets [T, N, D]``
    and ``cnn_features [T, C]`` from the caches given.
    """
    hop = round(SAMPLE_RATE / teacher.frame_rate)
    crop = int(hparams["crop_seconds"] * SAMPLE_RATE) // hop * hop
    segmented = bool(hparams.get("segment_seconds"))

    @sb.utils.data_pipeline.takes("wav", "id", "duration")
    @sb.utils.data_pipeline.provides("sig", "targets", "cnn_features")
    def train_crop(wav, utt_id, duration):
        start, length = random_aligned_crop(round(float(duration) * SAMPLE_RATE), crop, hop)
        sig = load_audio(wav, start=start, stop=start + length)
        yield sig
        n_frames = int(teacher.frame_lengths(torch.tensor(len(sig))))
        yield from cached_outputs(train_cache, train_cnn_cache, utt_id, start // hop, n_frames)

    def whole_item(cache, cnn_cache):
        @sb.utils.data_pipeline.takes(*(("wav", "id", "start", "stop") if segmented else ("wav", "id")))
        @sb.utils.data_pipeline.provides("sig", "targets", "cnn_features")
        def item(wav, item_id, start=None, stop=None):
            yield load_item(wav, start, stop)
            yield from cached_outputs(cache, cnn_cache, item_id)

        return item

    train_pipeline = whole_item(train_cache, train_cnn_cache) if segmented else train_crop
    valid_pipeline = whole_item(valid_cache, valid_cnn_cache)
    for dataset, pipeline, cache, cnn_cache in ((train, train_pipeline, train_cache, train_cnn_cache),
                                                (valid, valid_pipeline, valid_cache, valid_cnn_cache)):
        sb.dataio.dataset.add_dynamic_item([dataset], pipeline)
        keys = ["id", "sig"] + (["targets"] if cache is not None else []) + \
            (["cnn_features"] if cnn_cache is not None else [])
        sb.dataio.dataset.set_output_keys([dataset], keys)


def training_schedule(hparams, train, run_opts):
    """The seeded segment schedule of ``steps_per_epoch`` (``None``: every item once per epoch, shuffled).

    Each process takes ``steps_per_epoch`` optimizer steps per epoch, so the
    schedule holds ``steps_per_epoch x batch_size x grad_accumulation_factor
    x world_size`` items, each drawn in proportion to its seconds (a short
    segment as often as its share of the audio).
    """
    if hparams["steps_per_epoch"] is None:
        return None
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    world_size = torch.distributed.get_world_size() if distributed else 1
    examples = hparams["steps_per_epoch"] * hparams["batch_size"] * run_opts.get("grad_accumulation_factor", 1)
    durations = [float(train.data[i]["duration"]) for i in train.data_ids]
    return SegmentSchedule(len(train), examples * world_size, hparams["seed"], durations=durations)


def audio_hours_seen(hparams, train, schedule, epochs):
    """Hours of audio the student trains on over ``epochs`` (crops: each utterance's crop once per epoch)."""
    durations = np.array([float(train.data[i]["duration"]) for i in train.data_ids])
    if schedule is not None:
        return float(sum(durations[schedule.indices(epoch)].sum() for epoch in range(1, epochs + 1))) / 3600
    if not hparams["segment_seconds"]:
        durations = np.minimum(durations, hparams["crop_seconds"])
    return float(durations.sum()) * epochs / 3600


def check_cnn_cache(hparams, student, teacher):
    """Whether to cache the CNN's output: ``cache_cnn_features``, valid only for a frozen copy of the teacher's CNN."""
    if not hparams["cache_cnn_features"]:
        return False
    if not hparams["cache_teacher_targets"]:
        logger.warning("cache_cnn_features ignored: the CNN's output is stored with the teacher targets, and "
                       "cache_teacher_targets is False (the teacher runs live, the student runs its CNN)")
        return False
    if not student.cnn_frozen or not student.cnn_matches(teacher):
        raise ValueError(f"cache_cnn_features: True needs a student whose CNN is the teacher's, frozen "
                         f"(DistilHuBERT or DistilWhisper with init_from_teacher and freeze_cnn: True); {type(student).__name__} "
                         f"{'has a CNN of its own' if student.cnn_frozen else 'trains its CNN'}")
    return True


def target_statistics(hparams, train_cache, teacher, layers, learns_units=False):
    """Per-layer target mean and std when ``normalize_targets``, else ``None``, and where they came from.

    ``target_statistics: pool`` (:func:`tasks.target_statistics.pool_statistics`): a seeded
    sample of the pool, the same for every student of the teacher; ``subset``: the run's
    cached targets (no extra teacher pass; the statistics then follow the subset).
    Teachers whose hidden states have large norms (Whisper's last layer reaches about 24)
    are easier to regress standardised.

    Returns
    -------
    tuple
        ``((mean, std) or None, record)``; ``record`` goes into ``distillation.json``.
    """
    if not hparams["normalize_targets"]:
        return None, None
    source = hparams["target_statistics"]
    if source not in SOURCES:
        raise ValueError(f"target_statistics: '{source}', expected one of {SOURCES}")
    if source == "pool":
        mean, std, record = pool_statistics(hparams, teacher, layers)
    else:
        if train_cache is None or learns_units:
            raise ValueError("target_statistics: subset takes the statistics from the cached hidden states of the "
                             "subset: set cache_teacher_targets: True (and an objective that learns hidden "
                             "states), or --target_statistics=pool")
        mean, std = train_cache.layer_statistics()
        record = {"source": "subset"}
    logger.info("targets standardised per layer: mean |mean| %s, mean std %s",
                [round(float(m), 3) for m in mean.abs().mean(1)], [round(float(v), 3) for v in std.mean(1)])
    return (mean, std.clamp(min=1e-5)), record


def schedule_steps(hparams, steps_per_epoch):
    """Optimizer steps of the whole run; with ``total_steps`` the epoch count is derived from it.

    ``total_steps`` (e.g. DistilHuBERT's 200k) makes a run's length the same
    whatever its subset's size: the epoch counter's limit becomes
    ``ceil(total_steps / steps_per_epoch)``, so the run takes ``total_steps``
    rounded up to whole epochs. Without it, ``number_of_epochs`` epochs.

    Parameters
    ----------
    hparams : dict
        With ``total_steps`` (or ``None``), ``number_of_epochs`` and ``epoch_counter``
        (whose limit is set when ``total_steps`` is).
    steps_per_epoch : int
        Optimizer steps one process takes in an epoch.

    Returns
    -------
    int
        Optimizer steps of the run (the learning-rate schedule's length).

    Example
    -------
    >>> from speechbrain.utils.epoch_loop import EpochCounter
    >>> hparams = {"total_steps": 1000, "number_of_epochs": 170, "epoch_counter": EpochCounter(170)}
    >>> schedule_steps(hparams, 300), hparams["epoch_counter"].limit
    (1200, 4)
    """
    if hparams.get("total_steps") is None:
        return steps_per_epoch * hparams["number_of_epochs"]
    hparams["epoch_counter"].limit = math.ceil(hparams["total_steps"] / steps_per_epoch)
    return steps_per_epoch * hparams["epoch_counter"].limit


def manifest_hashes(hparams):
    """SHA-256 of the pool and target manifests, for the run's identity.

    Parameters
    ----------
    hparams : dict
        With ``pool_manifest`` and ``target_manifest``.

    Returns
    -------
    dict
        ``{"pool_manifest_sha256": ..., "target_manifest_sha256": ...}`` (``None`` for
        a manifest that is not given or not there).
    """
    hashes = {}
    for key in ("pool_manifest", "target_manifest"):
        path = hparams.get(key)
        hashes[f"{key}_sha256"] = file_sha256(path) if path and Path(path).is_file() else None
    return hashes


def check_manifests(hparams):
    """Stop before anything is selected or trained when a split the run reads later is missing.

    Parameters
    ----------
    hparams : dict
        With ``manifest_folder``, ``valid_split``, ``heldout_splits`` and ``heldout_curve_splits``.

    Raises
    ------
    FileNotFoundError
        Listing the missing manifests.
    """
    folder = Path(hparams["manifest_folder"])
    needed = [hparams["valid_split"], *(hparams["heldout_splits"] or []), *(hparams.get("heldout_curve_splits") or [])]
    missing = [str(folder / f"{split}.csv") for split in needed if not (folder / f"{split}.csv").is_file()]
    if missing:
        raise FileNotFoundError(f"{', '.join(missing)} missing: valid_split, heldout_splits and heldout_curve_splits "
                                f"name manifests of "
                                f"manifest_folder ({folder}); set them to splits that exist (e.g. "
                                "--heldout_splits=[] to skip the held-out loss)")


def evaluation_sets(hparams, valid):
    """Where the validation and held-out audio came from, and whether any of it could have been selected.

    ``{"valid": {...}, "heldout": {split: {...}}}``, each with its manifest, its
    utterance count and ``in_pool``: how many of its utterances are also rows
    of the pool manifest (0: kept out of what selection could pick).

    Parameters
    ----------
    hparams : dict
        With ``manifest_folder``, ``pool_manifest``, ``valid_split``, ``valid_seed``
        and ``heldout_splits``.
    valid : speechbrain.dataio.dataset.DynamicItemDataset
        The validation items (utterances, or segments naming their ``utterance``).

    Returns
    -------
    dict
    """
    folder = Path(hparams["manifest_folder"])
    pool_ids = set(read_manifest(hparams["pool_manifest"]).ids)

    def described(split, ids):
        ids = set(ids)
        return {"manifest": str(folder / f"{split}.csv"), "utterances": len(ids), "in_pool": len(ids & pool_ids)}

    utterances = [valid.data[i].get("utterance", i) for i in valid.data_ids]  # segments name their utterance
    record = {"valid": {**described(hparams["valid_split"], utterances), "draw_seed": hparams["valid_seed"]}}
    record["heldout"] = {split: described(split, read_manifest(folder / f"{split}.csv").ids)
                         for split in hparams["heldout_splits"] or []}
    return record


def selector_minutes(selection_folder):
    """Minutes the selector took when the subset was selected (``selection.json``); ``None`` for the whole pool."""
    record = Path(selection_folder) / "selection.json"
    if not record.exists():
        return None
    seconds = json.loads(record.read_text(encoding="utf-8")).get("selector_seconds")
    return None if seconds is None else round(seconds / 60, 2)


def main(argv):
    started = time.time()
    hparams, run_opts = start_experiment(argv)
    if hparams["steps_per_epoch"] is not None and not hparams["segment_seconds"]:
        raise ValueError("steps_per_epoch draws fixed segments: set segment_seconds too (e.g. --segment_seconds=2.0)")
    if hparams["build_teacher"] is not None:
        run_on_main(hparams["build_teacher"])
    resolved_config(hparams["teacher_source"])  # a mistyped folder or hub id stops here, before any selection
    check_manifests(hparams)
    loss, objective_needs = chosen_objective(hparams)  # an unknown objective stops here too
    request = {**{key: hparams[key] for key in ("selection", "units_overrides", "selector_overrides", "budget_hours",
                                                "budget_fraction", "seed", "teacher_source", "data_folder",
                                                "objective", "target_statistics")},
               **manifest_hashes(hparams)}
    discard_incomplete_checkpoints(hparams["save_folder"])  # a save that a kill interrupted is not resumed from
    check_run_identity(hparams["save_folder"], request, record=False)  # before the selection rewrites its outputs
    # under torchrun every process extracts its shard of the units; one fits k-means and selects
    selection_folder = Path(hparams["output_folder"]) / "selection"
    subset_csv, _ = select_subset(hparams, selection_folder, device=run_opts.device, **process_share())
    if hparams.get("export_subset") is not None:
        run_on_main(hparams["export_subset"], args=[subset_csv, selection_folder])

    # the teacher's targets and held-out loss are computed on the run's device, in its precision (on a GPU)
    teacher = hparams["teacher_class"](hparams["teacher_source"], precision=run_opts.precision).to(run_opts.device)
    student = hparams["student_class"](teacher)
    if objective_needs["masks_input"]:
        student.enable_input_masking()
    units = unit_targets(hparams, teacher, student, run_opts.device) if uses_units(objective_needs) else None
    if units is not None:  # the heads of the other target layers get no gradient
        run_opts = dataclasses.replace(run_opts, find_unused_parameters=True)
    train, valid = load_datasets(hparams, subset_csv, teacher)
    subset = read_manifest(subset_csv)
    check_run_identity(hparams["save_folder"], {
        **request, "subset_ids": ids_hash(subset.ids), "subset_utterances": len(subset),
        "teacher_weights": encoder_fingerprint(teacher), "student": type(student).__name__,
        "target_layers": list(student.target_layers), "segment_seconds": hparams["segment_seconds"],
        "steps_per_epoch": hparams["steps_per_epoch"], "objective_settings": loss.keywords,
        "unit_codebook": None if units is None else units["codebook_path"].name})
    caches = {}
    with_cnn = check_cnn_cache(hparams, student, teacher)
    if hparams["cache_teacher_targets"]:
        unit_spec = None if units is None else {key: units[key] for key in ("layer", "codebook", "codebook_path")}
        for name, dataset in (("train", train), ("valid", valid)):
            arguments = [hparams, name, dataset, teacher, student.target_layers, with_cnn, unit_spec]
            run_on_main(build_caches, args=arguments)
            built = build_caches(*arguments)  # complete now: only opened
            caches[f"{name}_cache"] = built["targets"]
            if with_cnn:
                caches[f"{name}_cnn_cache"] = built["cnn"]
    add_pipelines(hparams, train, valid, teacher, **caches)

    hparams["checkpointer"].add_recoverable("student", student)
    modules = {"student": student}
    if units is not None:
        modules["unit_head"] = units["head"]
        hparams["checkpointer"].add_recoverable("unit_head", units["head"])
    latest = hparams["checkpointer"].find_checkpoint()
    if latest is None or "random_states" in latest.paramfiles:  # (checkpoints of older runs lack them)
        hparams["checkpointer"].add_recoverable("random_states", RandomStates())
    schedule = training_schedule(hparams, train, run_opts)
    train_loader_kwargs = dict(hparams["train_dataloader_opts"])
    if schedule is not None:  # the schedule draws the items (and replaces shuffling)
        train_loader_kwargs.update(sampler=schedule, shuffle=False)
    examples = len(train) if schedule is None else len(schedule)
    steps = schedule_steps(hparams, optimizer_steps_per_epoch(examples, hparams["batch_size"], run_opts))
    hparams["lr_schedule"] = sb.nnet.schedulers.LinearWarmupScheduler(
        hparams["lr"], int(hparams["warmup_fraction"] * steps), steps)
    brain = DistillBrain(modules=modules, opt_class=hparams["opt_class"], hparams=hparams,
                         run_opts=run_opts, checkpointer=hparams["checkpointer"])
    brain.teacher = teacher.to(brain.device)
    brain.cnn_cached = "train_cnn_cache" in caches
    brain.targets_cached = "train_cache" in caches
    brain.objective, brain.objective_needs = loss, objective_needs
    brain.units = units
    brain.target_stats, statistics_record = target_statistics(hparams, caches.get("train_cache"), teacher,
                                                              student.target_layers, learns_units=units is not None)
    brain.target_layers = student.target_layers
    if hparams["heldout_curve_splits"]:
        brain.curve = LearningCurve(hparams, teacher)
    brain.train_sampler = schedule  # Brain calls set_epoch only on samplers it made itself (or DDP's wrapper)
    brain.fit(hparams["epoch_counter"], train, valid, train_loader_kwargs=train_loader_kwargs,
              valid_loader_kwargs=hparams["valid_dataloader_opts"])

    if if_main_process():
        export = brain.modules.student
        export = getattr(export, "module", export)  # unwrap DDP
        export.export(Path(hparams["save_folder"]) / "student")
        epochs = hparams["epoch_counter"].current
        heldout = evaluate_heldout(hparams, export, teacher, brain.target_stats) if hparams["heldout_splits"] else None
        summary = {"experiment": hparams["experiment_name"], "teacher": hparams["teacher_source"],
                   "student": type(export).__name__,
                   "student_parameters": sum(p.numel() for p in export.encoder.parameters()),
                   "subset": str(subset_csv), "subset_hours": round(subset.total_hours, 4),
                   "training_items": "segments" if hparams["segment_seconds"] else "crops",
                   "item_seconds": hparams["segment_seconds"] or hparams["crop_seconds"],
                   "train_audio_hours_seen": round(audio_hours_seen(hparams, train, schedule, epochs), 4),
                   "objective": {"name": hparams["objective"], "settings": loss.keywords,
                                 **({} if units is None else {"unit_layer": units["layer"],
                                                              "codebook": str(units["codebook_path"])})},
                   "target_statistics": statistics_record,
                   "heldout_loss": heldout,
                   "heldout_curve": None if brain.curve is None else str(brain.curve.path),
                   "evaluation_sets": evaluation_sets(hparams, valid),
                   "selector_minutes": selector_minutes(selection_folder),
                   "epochs": epochs, "debug": bool(run_opts.get("debug", False)),
                   "device": run_opts.device, "precision": run_opts.precision,
                   "optimizer_steps": brain.optimizer_step, "schedule_steps": steps,
                   "last_stats": getattr(brain, "last_stats", None),
                   "this_run_minutes": round((time.time() - started) / 60, 2)}
        write_results(hparams["output_folder"], "distillation.json", summary)


if __name__ == "__main__":
    main(sys.argv[1:])
