"""Frozen speech encoders (HF WavLM, HuBERT, wav2vec 2.0; Whisper) behind one padding-aware contract.

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
run one forward per group of equal-length utterances, without padding. So does
Whisper's encoder, which takes no mask either (:mod:`lobes.whisper_encoder`).
"""

import re
from pathlib import Path

import torch
from torch import nn

from lobes import whisper_encoder


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


def run_unpadded(run_group, wavs, wav_lens, frame_lengths, min_samples):
    """Run a model that takes no attention mask so that no utterance sees another's padding.

    Utterances of equal length share one forward (``run_group``); outputs are
    zero-padded to the longest afterwards. An utterance shorter than
    ``min_samples`` is padded up to it (it has no frame, or one).

    Parameters
    ----------
    run_group : callable
        ``run_group(wavs [G, S], rows [G]) -> (hidden [L+1, G, T, D], cnn [G, T, C])`` on unpadded
        waveforms; ``rows`` are their indices in the batch.
    wavs, wav_lens : torch.Tensor
        The batch (``[B, S]``, relative lengths ``[B]``).
    frame_lengths : torch.Tensor
        ``[B]`` frames of each utterance's real samples.
    min_samples : int
        Shortest input the model takes.

    Returns
    -------
    (torch.Tensor, torch.Tensor)
        Hidden states ``[L+1, B, T, D]`` and CNN output ``[B, T, C]``, zero past each frame length.
    """
    n_samples = sample_mask(wavs, wav_lens).sum(1)
    n_frames = int(frame_lengths.max()) if len(frame_lengths) else 0
    hidden = cnn = None
    for length in torch.unique(n_samples).tolist():
        rows = torch.nonzero(n_samples == length).flatten()
        group = wavs.new_zeros(len(rows), max(length, min_samples))
        group[:, :length] = wavs[rows, :length]
        group_hidden, group_cnn = run_group(group, rows)
        if hidden is None:
            hidden = group_hidden.new_zeros(group_hidden.shape[0], len(wavs), n_frames, group_hidden.shape[-1])
            cnn = group_cnn.new_zeros(len(wavs), n_frames, group_cnn.shape[-1])
        keep = min(group_hidden.shape[2], n_frames)
        hidden[:, rows, :keep] = group_hidden[:, :, :keep]
        cnn[rows, :keep] = group_cnn[:, :keep]
    mask = frame_mask(frame_lengths, n_frames)
    return hidden * mask[None, :, :, None], cnn * mask[:, :, None]


HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def checked_source(source):
    """``source`` as a string, when it is an existing folder or looks like a hub id (``owner/name``).

    Raises
    ------
    FileNotFoundError
        For a path that does not exist and is not of the ``owner/name`` form (a mistyped local
        folder would otherwise be looked up on the hub, and fail late with a network error).

    Example
    -------
    >>> checked_source("microsoft/wavlm-base-plus")
    'microsoft/wavlm-base-plus'
    >>> checked_source("results/no/such/teacher")
    Traceback (most recent call last):
    ...
    FileNotFoundError: model folder results/no/such/teacher not found (nor is it a hub id like owner/name)
    """
    source = str(source)
    if Path(source).is_dir() or (HUB_ID.fullmatch(source) and not source.startswith((".", "/"))):
        return source
    if Path(source).exists():
        raise NotADirectoryError(f"{source} is a file; a model is a folder written by save_pretrained, or a hub id")
    raise FileNotFoundError(f"model folder {source} not found (nor is it a hub id like owner/name)")


def frame_mask(frame_lengths, n_frames):
    """``[B, T]`` bool mask of the real frames."""
    return torch.arange(n_frames, device=frame_lengths.device)[None, :] < frame_lengths[:, None]


class FrozenTeacher(nn.Module):
    """A frozen teacher by hub id or local folder: HF SSL models (WavLM, HuBERT, wav2vec 2.0) or Whisper encoders.

    Always in ``eval`` mode (``train()`` is a no-op), no gradients, layerdrop 0,
    fp32 outputs even under autocast. Keep it out of ``Brain.modules`` anyway, so
    that checkpoints do not carry its weights. Outputs do not depend on what an
    utterance is batched with (module notes): models without attention mask run
    unpadded, one forward per group of equal-length utterances.

    A Whisper checkpoint (``model_type: whisper``) is used through its encoder
    alone, on log-mel input without the 30 s padding (:mod:`lobes.whisper_encoder`,
    which also states how its 50 Hz frames line up with the waveform models').

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
        from transformers import AutoConfig, AutoFeatureExtractor, AutoModel

        super().__init__()
        self.source = checked_source(source)
        self.is_whisper = AutoConfig.from_pretrained(self.source).model_type == "whisper"
        if self.is_whisper:
            self.model = AutoModel.from_pretrained(self.source).encoder  # the decoder is not used
            self.feature_extractor = AutoFeatureExtractor.from_pretrained(self.source)
            self.normalize, self.use_mask = False, False
            self.min_samples = whisper_encoder.MIN_SAMPLES
        else:
            self.model = AutoModel.from_pretrained(self.source, layerdrop=0.0)
            self.normalize, self.use_mask = input_policy(self.source, self.model.config)
            self.min_samples = receptive_field(self.model.config)
        self.model.requires_grad_(False)
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

    @property
    def frame_rate(self):
        """Frames per second of the hidden states (50 for every supported family)."""
        if self.is_whisper:
            return 16000 / (2 * whisper_encoder.HOP)
        return 16000 / float(torch.tensor(self.config.conv_stride).prod())

    def frame_lengths(self, n_samples):
        """Frames the teacher makes of ``n_samples`` real samples (``[B]`` tensor)."""
        if self.is_whisper:
            return whisper_encoder.frame_lengths(n_samples).long()
        return self.model._get_feat_extract_output_lengths(n_samples).clamp(min=0).long()

    def train(self, mode=True):
        """Stay in eval mode: dropout and layerdrop never switch on."""
        return super().train(False)

    @torch.no_grad()
    def forward(self, wavs, wav_lens):
        hidden, _, frame_lengths = self.forward_with_cnn(wavs, wav_lens)
        return hidden, frame_lengths

    @torch.no_grad()
    def forward_with_cnn(self, wavs, wav_lens):
        """As :meth:`forward`, plus the CNN's output ``[B, T, C]`` of the same pass (before the feature projection).

        A frozen student CNN copied from the teacher computes exactly these, so they can be cached and fed
        to it instead (``SSLStudent.forward(..., cnn_features=...)``). For Whisper, the output of its two
        convolutions, before the positions are added.

        Returns
        -------
        tuple of (torch.Tensor, torch.Tensor, torch.Tensor)
            Hidden states ``[L+1, B, T, D]``, CNN features ``[B, T, C]``, frame lengths ``[B]``.
        """
        with torch.autocast(device_type=wavs.device.type, enabled=False):
            wavs = wavs.float()
            frame_lengths = self.frame_lengths(sample_mask(wavs, wav_lens).sum(1))
            if self.use_mask:
                hidden, cnn = self._run_ssl(wavs, wav_lens, use_mask=True)
            else:
                hidden, cnn = run_unpadded(self._run_group, wavs, wav_lens, frame_lengths, self.min_samples)
        return hidden.float(), cnn.float(), frame_lengths

    def _run_group(self, wavs, rows=None):
        """Hidden states and CNN output of unpadded, equal-length waveforms (``rows``: unused)."""
        if self.is_whisper:
            return whisper_encoder.run_whisper(self.model, self.feature_extractor, wavs)
        return self._run_ssl(wavs, torch.ones(len(wavs), device=wavs.device), use_mask=False)

    def _run_ssl(self, wavs, wav_lens, use_mask):
        captured = []
        hook = self.model.feature_extractor.register_forward_hook(lambda module, args, out: captured.append(out))
        try:
            hidden, _ = run_encoder(self.model, wavs, wav_lens, self.normalize, use_mask)
        finally:
            hook.remove()
        return hidden, captured[0].transpose(1, 2)
