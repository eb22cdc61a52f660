"""The distillation loss of a student on held-out audio: an intrinsic measure that needs no labels.

Students trained on different subsets standardise their targets with
different statistics (each its own training cache), so their training losses
do not compare. Here every student's predictions are mapped back to the
teacher's scale and the DistilHuBERT loss (L1 + cosine) is taken after one
common standardisation: the held-out set's own per-layer statistics, the same
for every student scored on it.
"""

import torch
from torch.nn.utils.rnn import pad_sequence

from lobes.encoder import frame_mask
from lobes.losses import l1_cosine_frames
from lobes.target_cache import module_device


def standardise(values, stats):
    """``(values - mean) / std`` with ``stats`` ``(mean, std)`` ``[N, D]``; ``values`` ``[N, B, T, D]``."""
    mean, std = (stat.to(values.device, values.dtype)[:, None, None] for stat in stats)
    return (values - mean) / std


@torch.no_grad()
def item_loss_sums(student, batches, cache, reference_stats, student_stats=None, cos_weight=1.0):
    """Each item's DistilHuBERT loss summed over its frames, and its frame count.

    Parameters
    ----------
    student : torch.nn.Module
        ``student(wavs, wav_lens) -> (predictions [N, B, T, D], frame_lengths [B])``,
        predicting the cached layers; switched to ``eval`` mode.
    batches : iterable of (list of str, torch.Tensor, torch.Tensor)
        ``(ids, wavs, wav_lens)`` of the held-out items.
    cache : lobes.target_cache.TargetCache
        The teacher's targets of those items (``[T, N, D]`` each).
    reference_stats : (torch.Tensor, torch.Tensor)
        ``(mean, std)`` ``[N, D]``: the common standardisation of targets and predictions.
    student_stats : (torch.Tensor, torch.Tensor), optional
        The standardisation the student was trained to predict in (``None``:
        it predicts the teacher's raw hidden states).
    cos_weight : float
        Weight of the cosine term.

    Returns
    -------
    dict
        ``{item_id: (loss_sum, n_frames)}``; the loss over a set of items is
        ``sum(loss_sum) / sum(n_frames)``.

    Example
    -------
    >>> from types import SimpleNamespace
    >>> targets = {"a": torch.ones(4, 1, 3), "b": torch.ones(2, 1, 3)}
    >>> cache = SimpleNamespace(get=lambda i: targets[i])
    >>> class Perfect(torch.nn.Module):
    ...     def forward(self, wavs, wav_lens):
    ...         return torch.ones(1, 2, 4, 3), torch.tensor([4, 2])
    >>> stats = (torch.zeros(1, 3), torch.ones(1, 3))
    >>> sums = item_loss_sums(Perfect(), [(["a", "b"], None, None)], cache, stats)
    >>> {i: (round(s, 3), n) for i, (s, n) in sums.items()}
    {'a': (1.253, 4), 'b': (0.627, 2)}
    """
    student.eval()
    device = module_device(student)  # the student runs where it is
    sums = {}
    for ids, wavs, wav_lens in batches:
        if wavs is not None:
            wavs, wav_lens = wavs.to(device), wav_lens.to(device)
        predictions, frame_lengths = student(wavs, wav_lens)
        cached = [cache.get(i) for i in ids]  # [T, N, D] each, read once
        targets = pad_sequence(cached, batch_first=True).permute(2, 0, 1, 3).to(predictions.device)  # [N, B, T, D]
        cached_lengths = torch.tensor([item.shape[0] for item in cached])
        n_frames = min(predictions.shape[2], targets.shape[2])
        predictions, targets = predictions[:, :, :n_frames].float(), targets[:, :, :n_frames]
        if student_stats is not None:
            mean, std = (stat.to(predictions.device)[:, None, None] for stat in student_stats)
            predictions = predictions * std + mean
        losses = l1_cosine_frames(standardise(predictions, reference_stats), standardise(targets, reference_stats),
                                  cos_weight).mean(0)  # [B, T]
        lengths = torch.minimum(frame_lengths.cpu(), cached_lengths).clamp(max=n_frames)
        mask = frame_mask(lengths, n_frames).to(losses.device, losses.dtype)
        for utt_id, total, frames in zip(ids, (losses * mask).sum(1).tolist(), lengths.tolist()):
            sums[utt_id] = (total, int(frames))
    return sums
