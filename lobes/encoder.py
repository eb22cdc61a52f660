"""HuggingFace SSL encoders (WavLM, HuBERT, wav2vec 2.0) behind one padding-aware contract.

``forward(wavs, wav_lens) -> (hidden_states [L+1, B, T, D], frame_lengths [B])``:
index 0 of the hidden states is the CNN projection (after the positional
convolution), index ``i`` the output of transformer layer ``i``; frames past an
utterance's ``frame_lengths`` are padding.

Batching never changes an utterance's outputs. Models that take an attention
mask (layer-norm CNNs: WavLM, Large models) run the padded batch with the mask.
Models that take none (group-norm CNNs: HuBERT Base, wav2vec 2.0 Base, WavLM
Base+) normalise each CNN channel over the whole padded input, so padding would
change every real frame of the shorter utterances (by about half the
hidden-state norm for an utterance batched with one three times longer); they
run one forward per group of equal-length utterances, without padding.
"""

import torch
from torch import nn


def input_policy(source, config):
    """How a checkpoint expects its input: ``(normalize, use_attention_mask)``.

    Read from its feature-extractor config when there is one (``do_normalize``,
    ``return_attention_mask``); otherwise models with layer-norm front-ends
    (WavLM, large models) take an attention mask and group-norm ones
    (HuBERT/wav2vec 2.0 Base) take plain zero padding, as HF advises.
    """
    from transformers import AutoFeatureExtractor

    try:
        processor = AutoFeatureExtractor.from_pretrained(str(source))
        return bool(getattr(processor, "do_normalize", False)), bool(getattr(processor, "return_attention_mask", False))
    except OSError:
        return False, getattr(config, "feat_extract_norm", "group") == "layer"


def sample_mask(wavs, wav_lens):
    """``[B, S]`` bool mask of the real samples, from SpeechBrain relative lengths."""
    n_samples = torch.round(wav_lens * wavs.shape[1]).long()
    return torch.arange(wavs.shape[1], device=wavs.device)[None, :] < n_samples[:, None]


def normalize_valid(wavs, mask):
    """Zero mean, unit variance over each utterance's real samples; padding stays 0."""
    count = mask.sum(1, keepdim=True).clamp(min=1)
    mean = (wavs * mask).sum(1, keepdim=True) / count
    var = (((wavs - mean) * mask) ** 2).sum(1, keepdim=True) / count
    return (wavs - mean) / torch.sqrt(var + 1e-7) * mask


def model_input(wavs, wav_lens, normalize):
    """The waveforms as the model takes them (padding zeroed, normalised if asked) and their ``[B, S]`` mask."""
    mask = sample_mask(wavs, wav_lens)
    return (normalize_valid(wavs, mask) if normalize else wavs * mask), mask


def frame_lengths_of(model, mask):
    """Frames the model's CNN makes of each waveform's real samples."""
    return model._get_feat_extract_output_lengths(mask.sum(1)).clamp(min=0).long()


def run_encoder(model, wavs, wav_lens, normalize, use_mask):
    """Hidden states ``[L+1, B, T, D]`` and frame lengths of an HF SSL model."""
    wavs, mask = model_input(wavs, wav_lens, normalize)
    out = model(wavs, attention_mask=mask.long() if use_mask else None, output_hidden_states=True)
    return torch.stack(out.hidden_states), frame_lengths_of(model, mask)


def receptive_field(config):
    """Samples one output frame of an HF SSL model's CNN sees (its shortest usable input)."""
    field = 1
    for kernel, stride in zip(reversed(config.conv_kernel), reversed(config.conv_stride)):
        field = (field - 1) * stride + kernel
    return field


def run_unpadded(model, wavs, wav_lens, normalize, min_samples):
    """As :func:`run_encoder` for a model without attention mask: no utterance sees another's padding.

    Utterances of equal length share one forward; outputs are zero-padded to
    the longest afterwards. An utterance shorter than ``min_samples`` (no
    frame) is padded up to it, and its frame length is 0 as in a batch.

    Returns
    -------
    (torch.Tensor, torch.Tensor, list of (torch.Tensor, torch.Tensor))
        Hidden states ``[L+1, B, T, D]``, frame lengths ``[B]``, and the
        ``(indices, n_samples)`` of each group, in the order they were run.
    """
    mask = sample_mask(wavs, wav_lens)
    n_samples = mask.sum(1)
    frame_lengths = frame_lengths_of(model, mask)
    groups, outputs = [], []
    for length in torch.unique(n_samples):
        rows = torch.nonzero(n_samples == length).flatten()
        width = max(int(length), min_samples)
        group = torch.zeros(len(rows), width, dtype=wavs.dtype, device=wavs.device)
        group[:, : int(length)] = wavs[rows, : int(length)]
        group_lens = torch.full((len(rows),), int(length) / width, device=wavs.device)
        hidden, _ = run_encoder(model, group, group_lens, normalize, use_mask=False)
        groups.append((rows, length))
        outputs.append(hidden)
    n_frames = int(frame_lengths.max()) if len(frame_lengths) else 0
    n_states, _, _, dim = outputs[0].shape
    hidden = outputs[0].new_zeros(n_states, len(wavs), n_frames, dim)
    for (rows, _), out in zip(groups, outputs):
        keep = min(out.shape[2], n_frames)
        hidden[:, rows, :keep] = out[:, :, :keep]
    return hidden * frame_mask(frame_lengths, n_frames)[None, :, :, None], frame_lengths, groups


def frame_mask(frame_lengths, n_frames):
    """``[B, T]`` bool mask of the real frames."""
    return torch.arange(n_frames, device=frame_lengths.device)[None, :] < frame_lengths[:, None]


class FrozenTeacher(nn.Module):
    """A frozen HF SSL teacher by hub id or local folder.

    Always in ``eval`` mode (``train()`` is a no-op), no gradients, layerdrop 0,
    fp32 outputs even under autocast. Keep it out of ``Brain.modules`` anyway, so
    that checkpoints do not carry its weights. Outputs do not depend on what an
    utterance is batched with (module notes): models without attention mask run
    unpadded, one forward per group of equal-length utterances.

    Parameters
    ----------
    source : str or os.PathLike
        Hub id (``microsoft/wavlm-base-plus``) or folder written by ``save_pretrained``.

    Example
    -------
    >>> teacher = FrozenTeacher("microsoft/wavlm-base-plus")  # doctest: +SKIP
    >>> hidden, frames = teacher(torch.randn(2, 16000), torch.tensor([1.0, 0.5]))  # doctest: +SKIP
    >>> hidden.shape  # doctest: +SKIP
    torch.Size([13, 2, 49, 768])
    """

    def __init__(self, source):
        from transformers import AutoModel

        super().__init__()
        self.source = str(source)
        self.model = AutoModel.from_pretrained(self.source, layerdrop=0.0)
        self.model.requires_grad_(False)
        self.normalize, self.use_mask = input_policy(self.source, self.model.config)
        super().train(False)

    @property
    def config(self):
        return self.model.config

    @property
    def num_layers(self):
        return self.model.config.num_hidden_layers

    @property
    def hidden_size(self):
        return self.model.config.hidden_size

    def train(self, mode=True):
        """Stay in eval mode: dropout and layerdrop never switch on."""
        return super().train(False)

    @torch.no_grad()
    def forward(self, wavs, wav_lens):
        hidden, frame_lengths, _ = self._encode(wavs, wav_lens)
        return hidden, frame_lengths

    def _encode(self, wavs, wav_lens):
        """Hidden states, frame lengths and the row groups of each forward run (``None``: one padded batch)."""
        with torch.autocast(device_type=wavs.device.type, enabled=False):
            if self.use_mask:
                hidden, frame_lengths = run_encoder(self.model, wavs.float(), wav_lens, self.normalize, True)
                return hidden.float(), frame_lengths, None
            hidden, frame_lengths, groups = run_unpadded(self.model, wavs.float(), wav_lens, self.normalize,
                                                         receptive_field(self.config))
            return hidden.float(), frame_lengths, groups

    @torch.no_grad()
    def forward_with_cnn(self, wavs, wav_lens):
        """As :meth:`forward`, plus the CNN's output ``[B, T, C]`` of the same pass (before the feature projection).

        A frozen student CNN copied from the teacher computes exactly these, so they can be cached and fed
        to it instead (``SSLStudent.forward(..., cnn_features=...)``).

        Returns
        -------
        tuple of (torch.Tensor, torch.Tensor, torch.Tensor)
            Hidden states ``[L+1, B, T, D]``, CNN features ``[B, T, C]``, frame lengths ``[B]``.
        """
        captured = []
        hook = self.model.feature_extractor.register_forward_hook(lambda module, args, out: captured.append(out))
        try:
            hidden, frame_lengths, groups = self._encode(wavs, wav_lens)
        finally:
            hook.remove()
        if groups is None:
            return hidden, captured[0].transpose(1, 2).float(), frame_lengths
        n_frames = hidden.shape[2]
        cnn = hidden.new_zeros(len(wavs), n_frames, captured[0].shape[1])
        for (rows, _), out in zip(groups, captured):
            keep = min(out.shape[2], n_frames)
            cnn[rows, :keep] = out[:, :, :keep].transpose(1, 2).float()
        return hidden, cnn * frame_mask(frame_lengths, n_frames)[:, :, None], frame_lengths

