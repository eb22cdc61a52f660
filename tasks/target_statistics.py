"""The standardisation of the teacher's targets (``normalize_targets``): from the pool, the same for every student.

``target_statistics: pool`` (the default) takes each target layer's mean and
standard deviation over a seeded sample of the pool (``target_statistics_hours``,
``target_statistics_seed``): every student of a teacher is trained on the same
objective whatever subset it got, so comparing students compares subsets only.
The statistics are cached in ``target_statistics_folder`` under a hash of the
teacher's weights and precision, the layers and the sample's audio.
``target_statistics: subset`` takes them from the run's own cached targets (the
statistics then follow the subset).
"""

import logging
from pathlib import Path

import speechbrain as sb
import torch
from speechbrain.utils.distributed import run_on_main

from common.atomic import atomic_path
from common.audio import AudioError, audio_info
from common.hashing import files_state, settings_hash
from common.manifest import load_dataset
from lobes.encoder import frame_mask
from lobes.feature_cache import encoder_fingerprint
from lobes.target_cache import module_device
from selection.units import sample_utterances
from tasks.teacher_targets import item_batches

logger = logging.getLogger(__name__)
SOURCES = ("pool", "subset")


def pool_sample(hparams):
    """The seeded sample of pool rows the statistics are taken on: ``{utt_id: row}``, unreadable files left out."""
    pool = load_dataset(hparams["pool_manifest"], hparams["data_folder"])
    ids = list(pool.data_ids)
    durations = [float(pool.data[i]["duration"]) for i in ids]
    chosen = sample_utterances(ids, durations, hparams["target_statistics_hours"], hparams["target_statistics_seed"])
    rows, unreadable = {}, []
    for utt_id in sorted(chosen):
        try:
            audio_info(pool.data[utt_id]["wav"])
            rows[utt_id] = pool.data[utt_id]
        except AudioError as err:
            unreadable.append(str(err))
    if unreadable:
        logger.warning("target statistics: %d sampled pool files left out: %s", len(unreadable), unreadable[:3])
    if not rows:
        raise ValueError(f"target_statistics: pool: no readable audio among {len(chosen)} sampled rows of "
                         f"{hparams['pool_manifest']} ({unreadable[:3]})")
    return rows


def layer_moments(teacher, batches, layers):
    """Mean and standard deviation ``[N, D]`` of the chosen hidden states over every real frame of ``batches``.

    Sums in float64; the teacher runs where it is.

    Example
    -------
    >>> class Teacher(torch.nn.Module):
    ...     def forward(self, wavs, wav_lens):
    ...         return wavs[None, :, :, None].repeat(2, 1, 1, 1), torch.tensor([2, 1])
    >>> batch = (["a", "b"], torch.tensor([[1.0, 3.0], [5.0, 100.0]]), torch.tensor([1.0, 0.5]))
    >>> mean, std = layer_moments(Teacher(), [batch], [1])
    >>> mean.tolist(), std.tolist()
    ([[3.0]], [[1.632993...]])
    """
    device = module_device(teacher)
    total = squares = None
    frames = 0
    with torch.no_grad():
        for _, wavs, wav_lens in batches:
            hidden, frame_lengths = teacher(wavs.to(device), wav_lens.to(device))
            chosen = hidden[list(layers)].double()  # [N, B, T, D]
            real = frame_mask(frame_lengths, chosen.shape[2]).to(chosen.device)[None, :, :, None].double()
            batch_sum = (chosen * real).sum(dim=(1, 2))
            batch_squares = (chosen ** 2 * real).sum(dim=(1, 2))
            total = batch_sum if total is None else total + batch_sum
            squares = batch_squares if squares is None else squares + batch_squares
            frames += int(frame_lengths.sum())
    if not frames:
        raise ValueError("no teacher frames to take the target statistics from")
    mean = total / frames
    std = (squares / frames - mean ** 2).clamp(min=0).sqrt()
    return mean.float().cpu(), std.float().cpu()


def pool_statistics(hparams, teacher, layers):
    """The target layers' ``(mean, std)`` ``[N, D]`` over the pool sample, computed once per teacher (main process).

    Returns
    -------
    tuple of (torch.Tensor, torch.Tensor, dict)
        Mean, standard deviation and a record of where they come from (for ``distillation.json``).
    """
    rows = pool_sample(hparams)
    key = settings_hash({"teacher": encoder_fingerprint(teacher), "precision": teacher.precision,
                         "layers": [int(layer) for layer in layers],
                         "sample": files_state(row["wav"] for row in rows.values()), "ids": list(rows)}, 12)
    path = Path(hparams["target_statistics_folder"]) / f"{Path(str(hparams['teacher_source'])).name}-{key}.pt"

    def compute():
        if path.exists():
            return
        dataset = sb.dataio.dataset.DynamicItemDataset({i: {k: v for k, v in row.items() if k != "id"}
                                                        for i, row in rows.items()})
        batches, _ = item_batches(dataset, hparams["cache_batch_size"])
        mean, std = layer_moments(teacher, batches, layers)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            torch.save({"mean": mean, "std": std}, tmp)

    run_on_main(compute)
    stats = torch.load(path)
    hours = sum(float(row["duration"]) for row in rows.values()) / 3600
    logger.info("targets standardised with the pool's statistics: %d utterances (%.3f h), %s", len(rows), hours, path)
    return stats["mean"], stats["std"], {"source": "pool", "utterances": len(rows), "hours": round(hours, 4),
                                         "seed": hparams["target_statistics_seed"], "file": str(path)}
