"""Distillation objectives over predicted teacher layers, with padded frames excluded.

Predictions and targets are ``[N, B, T, D]`` (N predicted teacher layers); the
frame mask ``[B, T]`` marks real frames. Each loss returns the total and the
per-layer values (a ``[N]`` tensor) for logging.
"""

import torch
import torch.nn.functional as F


def masked_mean(values, mask):
    """Mean of ``values [N, B, T]`` over the real frames of ``mask [B, T]``, per layer ``[N]``.

    Example
    -------
    >>> values = torch.tensor([[[1.0, 3.0, 100.0]]])
    >>> masked_mean(values, torch.tensor([[True, True, False]]))
    tensor([2.])
    """
    mask = mask.to(values.dtype)
    return (values * mask).sum(dim=(1, 2)) / mask.sum().clamp(min=1)


def l1_cosine_loss(predictions, targets, mask, cos_weight=1.0):
    """DistilHuBERT: ``L1 + cos_weight * mean(-log sigmoid(cos))`` per layer, averaged over layers.

    Parameters
    ----------
    predictions, targets : torch.Tensor
        ``[N, B, T, D]``.
    mask : torch.Tensor
        ``[B, T]`` bool, real frames.
    cos_weight : float
        Weight of the cosine term (lambda = 1 in DistilHuBERT).

    Returns
    -------
    tuple of (torch.Tensor, torch.Tensor)
        Scalar loss and per-layer losses ``[N]``.

    Example
    -------
    >>> x = torch.randn(3, 2, 5, 8)
    >>> loss, per_layer = l1_cosine_loss(x, x, torch.ones(2, 5, dtype=torch.bool))
    >>> per_layer.shape, bool(torch.allclose(per_layer, -F.logsigmoid(torch.tensor(1.0))))
    (torch.Size([3]), True)
    """
    per_layer = masked_mean(l1_cosine_frames(predictions, targets, cos_weight), mask)
    return per_layer.mean(), per_layer


def l1_cosine_frames(predictions, targets, cos_weight=1.0):
    """The DistilHuBERT loss of every frame, ``[N, B, T]`` (:func:`l1_cosine_loss` averages it)."""
    targets = targets.to(predictions.dtype)
    l1 = (predictions - targets).abs().mean(-1)
    return l1 - cos_weight * F.logsigmoid(F.cosine_similarity(predictions, targets, dim=-1))


def l1_cosine_per_utterance(predictions, targets, mask, cos_weight=1.0):
    """The DistilHuBERT loss of each utterance: over its real frames and the layers, ``[B]``.

    Length-normalised (a mean over frames), so long and short utterances compare.

    Example
    -------
    >>> x = torch.randn(3, 2, 5, 8)
    >>> mask = torch.tensor([[True] * 5, [True, True, False, False, False]])
    >>> bool(torch.allclose(l1_cosine_per_utterance(x, x, mask), -F.logsigmoid(torch.tensor(1.0))))
    True
    """
    frames = l1_cosine_frames(predictions, targets, cos_weight).mean(0)  # [B, T]
    mask = mask.to(frames.dtype)
    return (frames * mask).sum(1) / mask.sum(1).clamp(min=1)


def hint_mse_loss(predictions, targets, mask, weights):
    """FitHuBERT hints: ``sum_l weights[l] * MSE_l`` over the real frames.

    Parameters
    ----------
    predictions, targets : torch.Tensor
        ``[N, B, T, D]``.
    mask : torch.Tensor
        ``[B, T]`` bool, real frames.
    weights : sequence of float
        One weight per predicted layer (FitHuBERT: 0.1 for the hidden layers, 1.0 for the last).

    Returns
    -------
    tuple of (torch.Tensor, torch.Tensor)
        Scalar loss and per-layer (unweighted) MSE ``[N]``.
    """
    targets = targets.to(predictions.dtype)
    per_layer = masked_mean(((predictions - targets) ** 2).mean(-1), mask)
    weights = torch.as_tensor(weights, dtype=per_layer.dtype, device=per_layer.device)
    return (weights * per_layer).sum(), per_layer
