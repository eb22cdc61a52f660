"""The distillation objective a recipe chose (``objective`` among ``objectives``) and what it needs set up.

:func:`chosen_objective` returns the loss and its needs (:func:`lobes.losses.needs`):
input masking (:func:`draw_masked_frames`, the student's mask embedding) and, for
unit targets, the codebook, the predicted layer and the prediction head
(:func:`unit_targets`).
"""

import logging
from pathlib import Path

import numpy as np
import torch
from ruamel.yaml import YAML

from lobes.losses import UNITS, needs
from tasks.subset import selection_file
from tasks.unit_targets import unit_codebook

logger = logging.getLogger(__name__)


def chosen_objective(hparams):
    """The loss of ``hparams["objective"]`` and what it needs.

    Parameters
    ----------
    hparams : dict
        With ``objective`` (a name) and ``objectives`` (name -> loss function).

    Returns
    -------
    tuple of (callable, dict)
        The loss and ``{"masks_input": bool, "targets": "hidden_states" | "units"}``.

    Example
    -------
    >>> from lobes.losses import l1_cosine_loss
    >>> chosen_objective({"objective": "l1_cosine", "objectives": {"l1_cosine": l1_cosine_loss}})[1]
    {'masks_input': False, 'targets': 'hidden_states'}
    """
    name, known = hparams["objective"], hparams["objectives"]
    if name not in known:
        raise ValueError(f"objective: '{name}' is not one of objectives {sorted(known)}")
    return known[name], needs(known[name])


def draw_masked_frames(frame_lengths, n_frames, mask_prob, mask_length):
    """HuBERT's span masking of the student's input frames: ``[B, n_frames]`` bool, only real frames.

    Spans of ``mask_length`` frames start at about ``mask_prob / mask_length`` of
    each item's real frames (wav2vec 2.0 / HuBERT pretraining; transformers'
    ``_compute_mask_indices``, drawn from NumPy's global generator, which the
    run's checkpoints keep). An item shorter than a span has none.

    Example
    -------
    >>> np.random.seed(0)
    >>> masked = draw_masked_frames(torch.tensor([100, 40]), 100, 0.8, 10)
    >>> masked.shape, bool(masked[1, 40:].any()), 0.3 < masked[0].float().mean().item() < 0.9
    (torch.Size([2, 100]), False, True)
    """
    from transformers.models.wav2vec2.modeling_wav2vec2 import _compute_mask_indices

    masked = np.zeros((len(frame_lengths), n_frames), dtype=bool)
    if n_frames >= mask_length:
        real = (torch.arange(n_frames)[None] < frame_lengths.cpu()[:, None]).long()
        masked = _compute_mask_indices((len(frame_lengths), n_frames), mask_prob, mask_length, attention_mask=real)
        masked &= real.numpy().astype(bool)
    return torch.from_numpy(masked)


def unit_targets(hparams, teacher, student, device="cpu"):
    """The codebook, the teacher layer and the prediction head of the ``unit_prediction`` objective.

    Parameters
    ----------
    hparams : dict
        With ``unit_layer`` (``None``: the units file's layer), ``unit_head`` and the keys
        of :func:`tasks.unit_targets.unit_codebook`.
    teacher : lobes.encoder.FrozenTeacher
        The teacher (its width sizes the head's input).
    student : torch.nn.Module
        With ``target_layers``: the unit layer must be one of them (the head reads
        the student's prediction of that layer).
    device : str
        Where the teacher runs if the codebook is fitted now.

    Returns
    -------
    dict
        ``codebook``, ``codebook_path``, ``layer``, ``index`` (of the layer among the
        student's targets) and ``head``.
    """
    layer = hparams["unit_layer"]
    layer = int(units_file_layer(hparams) if layer is None else layer)
    if layer not in student.target_layers:
        raise ValueError(f"unit_layer {layer}: the student predicts teacher layers {list(student.target_layers)}; "
                         "choose one of them (--unit_layer=...) or add it to target_layers")
    codebook, path = unit_codebook(hparams, layer, device)
    head = hparams["unit_head"](input_dim=teacher.hidden_size, n_units=codebook.n_clusters)
    return {"codebook": codebook, "codebook_path": path, "layer": layer,
            "index": list(student.target_layers).index(layer), "head": head}


def units_file_layer(hparams):
    """The ``layer`` the units file ``unit_units`` sets (``unit_overrides`` applied), read without building it."""
    path = selection_file(Path(hparams["selection_folder"]) / "units", hparams["unit_units"])
    with open(path, encoding="utf-8") as handle:
        declared = YAML(typ="rt").load(handle)
    layer = hparams["unit_overrides"].get("layer", declared.get("layer"))
    if layer is None:
        raise ValueError(f"{path} sets no 'layer': give --unit_layer")
    return layer


def uses_units(objective_needs):
    """Whether the objective learns units rather than hidden states."""
    return objective_needs["targets"] == UNITS
