"""HuggingFace SSL encoders (WavLM, HuBERT, wav2vec 2.0) behind one padding-aware contract.

``forward(wavs, wav_lens) -> (hidden_states [L+1, B, T, D], frame_lengths [B])``:
index 0 of the hidden states is the CNN projection (after the positional
convolution), index ``i`` the output of transformer layer ``i``; frames past an
utterance's ``frame_lengths`` are padding.
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


def frame_mask(frame_lengths, n_frames):
    """``[B, T]`` bool mask of the real frames."""
    return torch.arange(n_frames, device=frame_lengths.device)[None, :] < frame_lengths[:, None]


class FrozenTeacher(nn.Module):
    """A frozen HF SSL teacher by hub id or local folder.

    Always in ``eval`` mode (``train()`` is a no-op), no gradients, layerdrop 0,
    fp32 outputs even under autocast. Keep it out of ``Brain.modules`` anyway, so
    that checkpoints do not carry its weights.

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
        with torch.autocast(device_type=wavs.device.type, enabled=False):
            hidden, frame_lengths = run_encoder(self.model, wavs.float(), wav_lens, self.normalize, self.use_mask)
        return hidden.float(), frame_lengths

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
            hidden, frame_lengths = self(wavs, wav_lens)
        finally:
            hook.remove()
        return hidden, captured[0].transpose(1, 2).float(), frame_lengths

