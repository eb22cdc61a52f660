"""Distillation objectives over predicted teacher layers, with padded frames excluded.

Predictions and targets are ``[N, B, T, D]`` (N predicted teacher layers); the
frame mask ``[B, T]`` marks real frames. Each loss returns the total and the
per-layer values (a ``[N]`` tensor) for logging.

An objective that needs more than predictions and hidden-state targets says so
with :func:`objective`: ``masks_input`` (the student sees some of its input
frames replaced by a learned mask embedding; the loss gets those frames as
``masked_frames [B, T]``) and ``targets="units"`` (the teacher layer's k-means
units ``[B, T]`` instead of hidden states, the student's prediction of that
layer turned into codebook logits ``[B, T, K]``). The distillation task reads
these marks (:func:`needs`); adding an objective is one function here, one
line under ``objectives`` in ``recipes/distillation/base.yaml`` and one test.
"""

import functools

import torch
import torch.nn.functional as F

HIDDEN_STATES = "hidden_states"
UNITS = "units"


def objective(masks_input=False, targets=HIDDEN_STATES):
    """Mark what a loss function needs from the training step (see the module notes).

    Example
    -------
    >>> @objective(masks_input=True)
    ... def my_loss(predictions, targets, mask, masked_frames):
    ...     return predictions.sum(), predictions.sum()[None]
    >>> needs(my_loss)
    {'masks_input': True, 'targets': 'hidden_states'}
    """
    if targets not in (HIDDEN_STATES, UNITS):
        raise ValueError(f"targets: {targets!r}; an objective learns {HIDDEN_STATES!r} or {UNITS!r}")

    def mark(function):
        function.needs = {"masks_input": bool(masks_input), "targets": targets}
        return function

    return mark


def needs(loss):
    """What ``loss`` (a function, or a ``functools.partial`` of one as ``!name:`` gives) asks of the step.

    Example
    -------
    >>> needs(functools.partial(l1_cosine_loss, cos_weight=1.0))
    {'masks_input': False, 'targets': 'hidden_states'}
    """
    function = loss.func if isinstance(loss, functools.partial) else loss
    return dict(getattr(function, "needs", {"masks_input": False, "targets": HIDDEN_STATES}))


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


def hint_mse_loss(predictions, targets, mask, weights=None):
    """FitHuBERT hints: ``sum_l weights[l] * MSE_l`` over the real frames.

    Parameters
    ----------
    predictions, targets : torch.Tensor
        ``[N, B, T, D]``.
    mask : torch.Tensor
        ``[B, T]`` bool, real frames.
    weights : sequence of float, optional
        One weight per predicted layer (default FitHuBERT's: 0.1 for the hidden layers, 1.0 for the last).

    Returns
    -------
    tuple of (torch.Tensor, torch.Tensor)
        Scalar loss and per-layer (unweighted) MSE ``[N]``.
    """
    targets = targets.to(predictions.dtype)
    per_layer = masked_mean(((predictions - targets) ** 2).mean(-1), mask)
    if weights is None:
        weights = [0.1] * (len(per_layer) - 1) + [1.0]
    weights = torch.as_tensor(weights, dtype=per_layer.dtype, device=per_layer.device)
    return (weights * per_layer).sum(), per_layer


@objective(masks_input=True)
def masked_l1_cosine_loss(predictions, targets, mask, masked_frames, cos_weight=1.0, masked_weight=1.0,
                          unmasked_weight=1.0):
    """MaskHuBERT's masking distillation: the student sees masked input, the targets are the teacher's on the whole input.

    The DistilHuBERT loss is averaged over the masked and the unmasked real frames
    separately and the two are summed with their weights (Jang et al. 2023 treat the
    two kinds of frames as two terms).

    Parameters
    ----------
    predictions, targets : torch.Tensor
        ``[N, B, T, D]``.
    mask : torch.Tensor
        ``[B, T]`` bool, real frames.
    masked_frames : torch.Tensor
        ``[B, T]`` bool, the frames whose input the student saw masked.
    cos_weight : float
        Weight of the cosine term.
    masked_weight, unmasked_weight : float
        Weights of the two terms.

    Returns
    -------
    tuple of (torch.Tensor, torch.Tensor)
        Scalar loss and per-layer losses ``[N]``.

    Example
    -------
    >>> x = torch.randn(2, 1, 4, 8)
    >>> masked = torch.tensor([[True, False, False, False]])
    >>> loss, _ = masked_l1_cosine_loss(x, x, torch.ones(1, 4, dtype=torch.bool), masked)
    >>> bool(torch.isclose(loss, -2 * F.logsigmoid(torch.tensor(1.0))))
    True
    """
    frames = l1_cosine_frames(predictions, targets, cos_weight)
    masked_frames = masked_frames.to(mask.device)
    per_layer = (masked_weight * masked_mean(frames, mask & masked_frames)
                 + unmasked_weight * masked_mean(frames, mask & ~masked_frames))
    return per_layer.mean(), per_layer


def temporal_gram(hidden, mask):
    """Temporal Gram matrices ``h h^T / D`` of every layer and utterance, ``[N, B, T, T]``, zero at padded frames.

    Example
    -------
    >>> hidden = torch.tensor([[[[1.0, 0.0], [1.0, 1.0], [5.0, 5.0]]]])
    >>> temporal_gram(hidden, torch.tensor([[True, True, False]]))[0, 0]
    tensor([[0.5000, 0.5000, 0.0000],
            [0.5000, 1.0000, 0.0000],
            [0.0000, 0.0000, 0.0000]])
    """
    hidden = hidden * mask[None, :, :, None].to(hidden.dtype)
    return hidden @ hidden.transpose(-1, -2) / hidden.shape[-1]


def temporal_relation_loss(predictions, targets, mask, cos_weight=1.0, relation_weight=1.0):
    """STaR's temporal relation added to DistilHuBERT's loss: the student's frame-to-frame Gram matrices match the teacher's.

    Per layer: the L1 + cosine loss, plus ``relation_weight`` times the mean squared
    difference of the temporal Gram matrices (:func:`temporal_gram`) over the pairs of
    real frames (Jang et al., ICASSP 2024, layer-wise temporal Gram matrix).

    Parameters
    ----------
    predictions, targets : torch.Tensor
        ``[N, B, T, D]``.
    mask : torch.Tensor
        ``[B, T]`` bool, real frames.
    cos_weight, relation_weight : float
        Weights of the cosine and relation terms.

    Returns
    -------
    tuple of (torch.Tensor, torch.Tensor)
        Scalar loss and per-layer losses ``[N]``.
    """
    targets = targets.to(predictions.dtype)
    _, per_layer = l1_cosine_loss(predictions, targets, mask, cos_weight)
    pairs = (mask[:, :, None] & mask[:, None, :]).to(predictions.dtype)  # [B, T, T]
    squared = (temporal_gram(predictions, mask) - temporal_gram(targets, mask)) ** 2
    relation = (squared * pairs).sum(dim=(1, 2, 3)) / pairs.sum().clamp(min=1)
    per_layer = per_layer + relation_weight * relation
    return per_layer.mean(), per_layer


@objective(masks_input=True, targets=UNITS)
def unit_prediction_loss(logits, units, mask, masked_frames, unmasked_weight=0.0):
    """HuBERT's masked prediction of the teacher layer's k-means units (DiceHuBERT's objective).

    Cross-entropy over the codebook at the masked real frames, plus
    ``unmasked_weight`` times that at the unmasked ones (HuBERT: 0).

    Parameters
    ----------
    logits : torch.Tensor
        ``[B, T, K]`` codebook logits (:class:`lobes.unit_prediction.UnitPredictionHead`).
    units : torch.Tensor
        ``[B, T]`` integer units of the teacher layer.
    mask, masked_frames : torch.Tensor
        ``[B, T]`` bool: real frames, and those the student saw masked.
    unmasked_weight : float
        Weight of the unmasked frames' term.

    Returns
    -------
    tuple of (torch.Tensor, torch.Tensor)
        Scalar loss and ``[1]`` (the one predicted layer).

    Example
    -------
    >>> logits = torch.log(torch.tensor([[[0.5, 0.25, 0.25], [0.1, 0.8, 0.1]]]))
    >>> loss, _ = unit_prediction_loss(logits, torch.tensor([[0, 1]]), torch.ones(1, 2, dtype=torch.bool),
    ...                                torch.tensor([[True, False]]))
    >>> round(loss.item(), 4) == round(-torch.log(torch.tensor(0.5)).item(), 4)
    True
    """
    per_frame = F.cross_entropy(logits.transpose(1, 2).float(), units.long(), reduction="none")[None]  # [1, B, T]
    masked_frames = masked_frames.to(mask.device)
    loss = masked_mean(per_frame, mask & masked_frames)
    if unmasked_weight:
        loss = loss + unmasked_weight * masked_mean(per_frame, mask & ~masked_frames)
    return loss.sum(), loss
