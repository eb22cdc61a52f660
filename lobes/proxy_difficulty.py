"""How much a small student still has to learn from the teacher, per utterance: a proxy distilled briefly.

:class:`ProxyDifficultyScorer` distils the teacher for a few hundred steps into a one-layer
student initialised from it (DistilWhisper for a Whisper teacher, DistilHuBERT otherwise) on
random crops of a seeded random sample of the pool, then scores every pool utterance by the
proxy's distillation loss against the teacher (the DistilHuBERT L1 + cosine loss, per frame
and layer, averaged over the utterance's frames: length-normalised). The same teacher pass
gives each utterance's embedding (mean and standard deviation over its frames of one teacher
layer), which the selector's diversity guard clusters, so the teacher runs over the pool once.
It is the scorer of :class:`selection.selectors.DifficultySelector`; its cost (teacher and
proxy passes over the pool, training steps, seconds) is returned with the scores.
"""

import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from common.atomic import atomic_path
from common.audio import SAMPLE_RATE, load_audio
from common.hashing import files_state, settings_hash
from lobes.crops import random_aligned_crop
from lobes.encoder import FrozenTeacher, frame_mask
from lobes.feature_cache import encoder_fingerprint
from lobes.losses import l1_cosine_loss, l1_cosine_per_utterance
from lobes.student_for_teacher import distil_student, thirds

logger = logging.getLogger(__name__)


def padded_batch(waveforms):
    """``(wavs [B, S], wav_lens [B])`` from 1-D waveforms, zero-padded (SpeechBrain relative lengths)."""
    width = max(len(w) for w in waveforms)
    wavs = torch.zeros(len(waveforms), width)
    for i, wav in enumerate(waveforms):
        wavs[i, : len(wav)] = wav
    return wavs, torch.tensor([len(w) / width for w in waveforms])


class ProxyDifficultyScorer:
    """Scores pool utterances by a briefly distilled proxy student's loss (module notes).

    Parameters
    ----------
    teacher_source : str or os.PathLike
        The teacher (:class:`lobes.encoder.FrozenTeacher`).
    n_layers : int
        Transformer layers of the proxy (copied from the teacher's first layers).
    target_layers : sequence of int, optional
        Teacher layers the proxy predicts (default: :func:`thirds`).
    embedding_layer : int, optional
        Teacher layer of the utterance embeddings (default: the middle one of :func:`thirds`,
        e.g. 4 of Whisper base's 6, the layer of the teacher-layer units).
    sample_hours : float
        Audio of the seeded random sample the proxy trains on.
    train_steps : int
        Optimizer steps of the proxy.
    batch_size : int
        Crops per step.
    crop_seconds : float
        Length of a training crop.
    lr : float
        AdamW learning rate (constant).
    stat_batches : int
        Batches of teacher outputs the per-layer target statistics come from
        (targets are standardised per layer and dimension, as in the distillation recipe).
    score_batch_size : int
        Whole utterances per scoring pass.
    seed : int
        Seed of the sample, the crops and the proxy's heads (global RNG states are left as they were).
    device : str
        Where the teacher and proxy run.
    """

    def __init__(self, teacher_source, n_layers=1, target_layers=None, embedding_layer=None, sample_hours=0.25,
                 train_steps=150, batch_size=8, crop_seconds=2.0, lr=5e-4, stat_batches=4, score_batch_size=8, seed=0,
                 device="cpu"):
        self.teacher_source = str(teacher_source)
        self.n_layers = int(n_layers)
        self.target_layers = None if target_layers is None else [int(x) for x in target_layers]
        self.embedding_layer = None if embedding_layer is None else int(embedding_layer)
        self.sample_hours = float(sample_hours)
        self.train_steps = int(train_steps)
        self.batch_size = int(batch_size)
        self.crop_seconds = float(crop_seconds)
        self.lr = float(lr)
        self.stat_batches = int(stat_batches)
        self.score_batch_size = int(score_batch_size)
        self.seed = int(seed)
        self.device = torch.device(device)

    def settings(self):
        """Constructor arguments (for provenance and the cache key)."""
        return {"teacher_source": self.teacher_source, "n_layers": self.n_layers,
                "target_layers": self.target_layers, "embedding_layer": self.embedding_layer,
                "sample_hours": self.sample_hours,
                "train_steps": self.train_steps, "batch_size": self.batch_size, "crop_seconds": self.crop_seconds,
                "lr": self.lr, "stat_batches": self.stat_batches, "score_batch_size": self.score_batch_size,
                "seed": self.seed}

    def __call__(self, pool, ids, work_folder=None):
        """Loss of the proxy on each of ``ids`` (aligned with them), the cost, and the utterances' embeddings.

        Parameters
        ----------
        pool : common.manifest.Manifest
            Where the audio and durations are.
        ids : list of str
            Utterances to score.
        work_folder : str or os.PathLike, optional
            The scores are cached there (keyed by the settings, teacher weights, IDs and audio files).

        Returns
        -------
        tuple of (numpy.ndarray, dict, numpy.ndarray)
            ``float64`` losses; ``cost``: hours scored (teacher and proxy passes), hours of training
            crops (teacher passes), training steps, seconds of training and of scoring; ``float16``
            embeddings ``[len(ids), 2 D]`` (mean and std over frames of ``embedding_layer``).
        """
        teacher = FrozenTeacher(self.teacher_source).to(self.device)
        paths = [pool.wav_path(i) for i in ids]
        key = settings_hash({**self.settings(), "teacher": encoder_fingerprint(teacher), "ids": list(ids),
                             "audio": files_state(paths)}, 12)
        cached = None if work_folder is None else Path(work_folder) / f"difficulty-{key}.npz"
        if cached is not None and cached.exists():
            with np.load(cached, allow_pickle=False) as data:
                logger.info("difficulty scores done, loading %s", cached)
                return data["losses"], json.loads(str(data["cost"])), data["embeddings"]
        durations = pool.durations_of(ids)
        cuda = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):  # the caller's generators, the GPU's included, are left as they were
            torch.manual_seed(self.seed)
            rng = np.random.default_rng(self.seed)
            proxy = distil_student(teacher, self.n_layers, self.target_layers).to(self.device)  # front end frozen
            layers = proxy.target_layers
            sample = self._sample(rng, durations)
            started = time.perf_counter()
            stats = self._target_statistics(teacher, layers, rng, sample, paths, durations)
            self._train(teacher, proxy, layers, stats, rng, sample, paths, durations)
            trained = time.perf_counter()
            embedding_layer = thirds(teacher.num_layers)[1] if self.embedding_layer is None else self.embedding_layer
            if not 0 <= embedding_layer <= teacher.num_layers:
                raise ValueError(f"embedding_layer {embedding_layer}: the teacher {self.teacher_source} has hidden "
                                 f"states 0 to {teacher.num_layers}")
            losses, embeddings = self._score(teacher, proxy, layers, stats, paths, durations, embedding_layer)
        crops = self.batch_size * (self.train_steps + self.stat_batches)
        cost = {"scored_hours": round(float(durations.sum() / 3600), 4),  # through the teacher and the proxy
                "training_crop_hours": round(crops * self.crop_seconds / 3600, 4),  # the teacher's, at most
                "proxy_train_steps": self.train_steps,
                "training_seconds": round(trained - started, 1),
                "scoring_seconds": round(time.perf_counter() - trained, 1)}
        logger.info("difficulty scores of %d utterances: %s", len(ids), cost)
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(cached) as tmp, open(tmp, "wb") as handle:
                np.savez(handle, losses=losses, cost=json.dumps(cost), embeddings=embeddings)
        return losses, cost, embeddings

    def _sample(self, rng, durations):
        """Positions of a seeded random sample of about ``sample_hours`` (at least one)."""
        order = rng.permutation(len(durations))
        count = int(np.searchsorted(np.cumsum(durations[order]), self.sample_hours * 3600, side="right"))
        return order[: max(1, count)]

    def _crops(self, rng, sample, paths, durations, hop):
        """A batch of random crops (aligned to the teacher's frames) of sampled utterances."""
        crop = int(self.crop_seconds * SAMPLE_RATE) // hop * hop
        waveforms = []
        for position in rng.choice(sample, self.batch_size):
            start, length = random_aligned_crop(round(float(durations[position]) * SAMPLE_RATE), crop, hop)
            waveforms.append(load_audio(paths[position], start=start, stop=start + length))
        wavs, wav_lens = padded_batch(waveforms)
        return wavs.to(self.device), wav_lens.to(self.device)

    def _teacher(self, teacher, layers, stats, wavs, wav_lens):
        """Standardised targets ``[N, B, T, D]``, the teacher's CNN output, frame lengths and all hidden states."""
        hidden, cnn, frame_lengths = teacher.forward_with_cnn(wavs, wav_lens)
        targets = hidden[layers]
        if stats is not None:
            mean, std = stats
            targets = (targets - mean[:, None, None]) / std[:, None, None]
        return targets, cnn, frame_lengths, hidden

    def _target_statistics(self, teacher, layers, rng, sample, paths, durations):
        """Per-layer mean and std ``[N, D]`` of the teacher's targets over ``stat_batches`` batches of crops."""
        hop = round(SAMPLE_RATE / teacher.frame_rate)
        total = total_sq = count = 0
        for _ in range(self.stat_batches):
            wavs, wav_lens = self._crops(rng, sample, paths, durations, hop)
            targets, _, frame_lengths, _ = self._teacher(teacher, layers, None, wavs, wav_lens)
            mask = frame_mask(frame_lengths, targets.shape[2]).to(targets.dtype)[None, :, :, None]
            total = total + (targets * mask).sum(dim=(1, 2))
            total_sq = total_sq + (targets * targets * mask).sum(dim=(1, 2))
            count += float(mask.sum())
        mean = total / max(count, 1.0)
        return mean, (total_sq / max(count, 1.0) - mean * mean).clamp(min=1e-10).sqrt().clamp(min=1e-5)

    def _train(self, teacher, proxy, layers, stats, rng, sample, paths, durations):
        """``train_steps`` AdamW steps on random crops of the sample."""
        hop = round(SAMPLE_RATE / teacher.frame_rate)
        optimizer = torch.optim.AdamW([p for p in proxy.parameters() if p.requires_grad], lr=self.lr)
        proxy.train()
        progress = tqdm(range(self.train_steps), desc="difficulty: proxy training", unit="step", mininterval=5)
        for _ in progress:
            wavs, wav_lens = self._crops(rng, sample, paths, durations, hop)
            targets, cnn, _, _ = self._teacher(teacher, layers, stats, wavs, wav_lens)
            predictions, frame_lengths = proxy(wavs, wav_lens, cnn_features=cnn)
            n_frames = min(predictions.shape[2], targets.shape[2])
            loss, _ = l1_cosine_loss(predictions[:, :, :n_frames], targets[:, :, :n_frames],
                                     frame_mask(frame_lengths, n_frames))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            progress.set_postfix(loss=f"{float(loss.detach()):.3f}", refresh=False)
        proxy.eval()

    @torch.no_grad()
    def _score(self, teacher, proxy, layers, stats, paths, durations, embedding_layer):
        """Length-normalised loss and embedding of every utterance, whole, in batches of similar durations."""
        losses = np.empty(len(paths))
        embeddings = None
        order = np.argsort(durations, kind="stable")
        batches = [order[i : i + self.score_batch_size] for i in range(0, len(order), self.score_batch_size)]
        for batch in tqdm(batches, desc="difficulty: scoring the pool", unit="batch", mininterval=5):
            wavs, wav_lens = padded_batch([load_audio(paths[i]) for i in batch])
            wavs, wav_lens = wavs.to(self.device), wav_lens.to(self.device)
            targets, cnn, teacher_frames, hidden = self._teacher(teacher, layers, stats, wavs, wav_lens)
            predictions, frame_lengths = proxy(wavs, wav_lens, cnn_features=cnn)
            n_frames = min(predictions.shape[2], targets.shape[2])
            mask = frame_mask(frame_lengths, n_frames)
            losses[batch] = l1_cosine_per_utterance(predictions[:, :, :n_frames], targets[:, :, :n_frames],
                                                    mask).cpu().double().numpy()
            vectors = frame_mean_std(hidden[embedding_layer], teacher_frames)
            if embeddings is None:
                embeddings = np.empty((len(paths), vectors.shape[1]), dtype=np.float16)
            embeddings[batch] = vectors
        return losses, embeddings


def frame_mean_std(hidden, frame_lengths):
    """Mean and standard deviation over each utterance's real frames, ``[B, 2 D]`` float16, of ``hidden [B, T, D]``.

    Example
    -------
    >>> hidden = torch.tensor([[[1.0], [3.0], [100.0]]])
    >>> frame_mean_std(hidden, torch.tensor([2])).tolist()
    [[2.0, 1.0]]
    """
    mask = frame_mask(frame_lengths, hidden.shape[1]).to(hidden.dtype)[:, :, None]
    count = mask.sum(1).clamp(min=1)
    mean = (hidden * mask).sum(1) / count
    std = (((hidden - mean[:, None]) ** 2 * mask).sum(1) / count).sqrt()
    return torch.cat([mean, std], dim=1).cpu().numpy().astype(np.float16)
