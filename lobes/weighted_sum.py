"""Padding-aware pieces shared by the downstream probes: a learnable layer mix and pooling.

Every probe scores a frozen encoder the same way (SUPERB): a softmax-weighted
sum of all its hidden states, learnt with the probe head. Frames past an
utterance's ``frame_lengths`` are padding and never reach a result.
"""

import torch
import torch.nn.functional as F
from torch import nn

from lobes.encoder import frame_mask


class WeightedLayerSum(nn.Module):
    """Softmax-weighted sum over the hidden states ``[N, B, T, D]`` of a frozen encoder.

    The weights start equal. With ``layer_norm`` each layer is normalised per
    frame first (no affine parameters), so layers of different scales mix on
    an equal footing. Build it with :meth:`from_encoder` to take the number
    of layers and the width from the encoder itself.

    Parameters
    ----------
    num_layers : int
        Number of hidden states ``N`` (``L + 1`` for an ``L``-layer transformer).
    hidden_size : int
        Width ``D`` of each hidden state (read by the probe heads).
    layer_norm : bool
        Normalise each layer over ``D`` before mixing.

    Example
    -------
    >>> mix = WeightedLayerSum(num_layers=3, hidden_size=4)
    >>> out, lengths = mix(torch.randn(3, 2, 5, 4), torch.tensor([5, 3]))
    >>> out.shape, bool(out[1, 3:].abs().sum() == 0)
    (torch.Size([2, 5, 4]), True)
    """

    def __init__(self, num_layers, hidden_size, layer_norm=True):
        super().__init__()
        self.hidden_size = int(hidden_size)
        self.layer_norm = layer_norm
        self.weights = nn.Parameter(torch.zeros(int(num_layers)))

    @classmethod
    def from_encoder(cls, encoder, **kwargs):
        """A mix sized for ``encoder`` (``num_layers`` and ``hidden_size`` properties)."""
        return cls(num_layers=encoder.num_layers + 1, hidden_size=encoder.hidden_size, **kwargs)

    def layer_weights(self):
        """The current mixing weights (they sum to one)."""
        return F.softmax(self.weights, dim=0)

    def forward(self, hidden, frame_lengths):
        """Mix ``hidden [N, B, T, D]``; returns ``([B, T, D], frame_lengths)`` with zeroed padding."""
        if hidden.shape[0] != len(self.weights) or hidden.shape[-1] != self.hidden_size:
            raise ValueError(f"expected [{len(self.weights)}, B, T, {self.hidden_size}] hidden states, "
                             f"got {list(hidden.shape)}")
        if self.layer_norm:
            hidden = F.layer_norm(hidden, hidden.shape[-1:])
        mixed = torch.einsum("n,nbtd->btd", self.layer_weights().to(hidden.dtype), hidden)
        mask = frame_mask(frame_lengths.to(mixed.device), mixed.shape[1])
        return mixed * mask[..., None], frame_lengths


def statistics_pooling(frames, frame_lengths):
    """Mean and standard deviation over the real frames: ``[B, T, D] -> [B, 2D]``.

    Padding does not change the result; an utterance needs at least one frame.
    """
    mask = frame_mask(frame_lengths.to(frames.device), frames.shape[1])[..., None].to(frames.dtype)
    count = mask.sum(1).clamp(min=1)
    mean = (frames * mask).sum(1) / count
    var = (((frames - mean[:, None]) * mask) ** 2).sum(1) / count
    return torch.cat([mean, torch.sqrt(var + 1e-5)], dim=-1)
