"""Whisper's encoder on inputs of any length (up to 30 s), every hidden state at 50 Hz.

transformers' ``WhisperEncoder.forward`` accepts only 30 s of log-mel frames
(3000), padded with silence: about ten times the work of a 4 s utterance. The
encoder's own modules are run here on the utterance's frames alone, with the
first ``T`` rows of its position table; on a 30 s input the result equals
transformers' forward. Outputs of an unpadded input differ a little from the
30 s-padded ones (Whisper was trained on padded inputs), most in the last layer.

Frames: the log-mel front end (transformers' ``WhisperFeatureExtractor``: 25 ms
window, 10 ms hop, centred) gives ``S // 160`` frames for ``S`` samples; the
second convolution (stride 2, padding 1) halves that, rounding up. Encoder frame
``j`` is centred on sample ``320 j``. A HuBERT/WavLM CNN frame ``j`` spans samples
``[320 j, 320 j + 400)``, centred on ``320 j + 200``: the two frame grids share
their 20 ms step and are offset by 12.5 ms, less than a frame, so frame ``j`` of
one is taken to match frame ``j`` of the other, up to the shorter count.

Hidden states follow transformers' convention: index 0 is the input of the
first layer (convolutions + positions), ``i`` the output of layer ``i``, and the
last one after the encoder's final layer norm.
"""

import numpy as np
import torch
from torch import nn

HOP = 160
MIN_SAMPLES = 400  # one STFT window: shorter inputs are padded up to it and get at most one frame


def frame_lengths(n_samples):
    """Encoder frames of ``n_samples`` (tensor or int): ``ceil((n_samples // 160) / 2)``.

    Example
    -------
    >>> frame_lengths(torch.tensor([16000, 16160, 64000])).tolist()
    [50, 51, 200]
    """
    return (n_samples // HOP + 1) // 2


def log_mel(feature_extractor, wavs):
    """Whisper's log-mel features of equal-length waveforms, without padding to 30 s.

    Parameters
    ----------
    feature_extractor : transformers.WhisperFeatureExtractor
        The model's front end.
    wavs : torch.Tensor
        ``[B, S]`` waveforms at 16 kHz, all ``S`` samples real.

    Returns
    -------
    torch.Tensor
        ``[B, n_mels, S // 160]`` on the device of ``wavs``.
    """
    arrays = list(wavs.detach().float().cpu().numpy().astype(np.float32))
    features = feature_extractor(arrays, sampling_rate=feature_extractor.sampling_rate, padding="longest",
                                 truncation=False,  # its default cuts at 30 s, silently
                                 return_attention_mask=False, return_tensors="pt").input_features
    return features.to(wavs.device)


def convolutions(encoder, mel):
    """The output ``[B, T, D]`` of the encoder's two convolutions (GELU after each), before positions."""
    hidden = nn.functional.gelu(encoder.conv1(mel))
    return nn.functional.gelu(encoder.conv2(hidden)).transpose(1, 2)


def hidden_states(encoder, conv_out):
    """Every hidden state ``[L+1, B, T, D]`` of ``encoder`` from its convolutions' output ``[B, T, D]``.

    Raises
    ------
    ValueError
        When ``T`` exceeds the position table (30 s of audio).
    """
    n_frames = conv_out.shape[1]
    table = encoder.embed_positions.weight
    if n_frames > table.shape[0]:
        raise ValueError(f"{n_frames} frames ({n_frames / 50:.1f} s): Whisper's encoder takes at most "
                         f"{table.shape[0]} ({table.shape[0] / 50:.0f} s); cut the audio into shorter pieces")
    hidden = nn.functional.dropout(conv_out + table[:n_frames], p=encoder.dropout, training=encoder.training)
    states = [hidden]
    for layer in encoder.layers:
        hidden = layer(hidden, None)
        states.append(hidden)
    states[-1] = encoder.layer_norm(hidden)
    return torch.stack(states)


def run_whisper(encoder, feature_extractor, wavs):
    """Hidden states ``[L+1, B, T, D]`` and convolution output ``[B, T, D]`` of equal-length waveforms."""
    conv_out = convolutions(encoder, log_mel(feature_extractor, wavs))
    return hidden_states(encoder, conv_out), conv_out
