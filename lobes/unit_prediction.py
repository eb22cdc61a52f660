"""Units as distillation targets: the teacher layer's frames mapped to k-means units, and the student's codebook logits.

Used by the ``unit_prediction`` objective (:func:`lobes.losses.unit_prediction_loss`).
Units are cached with the other teacher targets as float16 values (exact up to 2048
units: 2 bytes a frame instead of ``2 D`` bytes of hidden state).
"""

import torch
import torch.nn.functional as F
from torch import nn

MAX_CACHED_UNITS = 2048  # float16 holds every integer up to 2048 exactly


def frame_units(hidden, frame_lengths, codebook):
    """Units ``[B, T]`` (``-1`` past each frame length) of one layer's frames ``hidden [B, T, D]``.

    Parameters
    ----------
    hidden : torch.Tensor
        ``[B, T, D]`` hidden states of the teacher layer.
    frame_lengths : torch.Tensor
        ``[B]`` real frames of each item.
    codebook : selection.units.KMeansCodebook
        Anything with ``predict(frames [n, D] numpy) -> [n]`` units and ``n_clusters``.

    Returns
    -------
    torch.Tensor
        ``[B, T]`` int64.
    """
    if codebook.n_clusters > MAX_CACHED_UNITS:
        raise ValueError(f"unit_prediction caches units as float16: at most {MAX_CACHED_UNITS} units, "
                         f"the codebook has {codebook.n_clusters}")
    units = torch.full(hidden.shape[:2], -1, dtype=torch.long)
    for i, n in enumerate(frame_lengths.tolist()):
        if n:
            frames = hidden[i, :n].float().cpu().numpy()
            units[i, :n] = torch.as_tensor(codebook.predict(frames), dtype=torch.long)
    return units


class UnitPredictionHead(nn.Module):
    """HuBERT's prediction head: a projection of the student's frames, cosine similarity to learnt unit embeddings / temperature.

    Trained with the student, not exported with it (as DistilHuBERT's prediction heads).

    Parameters
    ----------
    input_dim : int
        Size of the student's frames fed to the head (the prediction of the units' teacher layer).
    n_units : int
        Codebook size ``K``.
    projection_dim : int
        HuBERT's final projection size (256).
    temperature : float
        HuBERT's logit temperature (0.1).

    Example
    -------
    >>> head = UnitPredictionHead(8, n_units=5, projection_dim=4)
    >>> head(torch.randn(2, 3, 8)).shape
    torch.Size([2, 3, 5])
    """

    def __init__(self, input_dim, n_units, projection_dim=256, temperature=0.1):
        super().__init__()
        self.projection = nn.Linear(input_dim, projection_dim)
        self.unit_embeddings = nn.Parameter(torch.empty(n_units, projection_dim).uniform_(-1.0, 1.0))
        self.temperature = float(temperature)

    def forward(self, frames):
        """Logits ``[B, T, K]`` of frames ``[B, T, input_dim]``."""
        projected = F.normalize(self.projection(frames), dim=-1)
        return projected @ F.normalize(self.unit_embeddings, dim=-1).T / self.temperature
