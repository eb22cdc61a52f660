"""MFCCs behind the frozen-encoder contract, the floor every SSL encoder must beat.

``forward(wavs, wav_lens) -> (hidden [1, B, T, D], frame_lengths [B])`` like
:class:`lobes.encoder.FrozenTeacher`, so the probes and the feature cache treat
both alike. :func:`load_encoder` picks one from a source string.
"""

import torch
from torch import nn

from lobes.encoder import FrozenTeacher, frame_mask, sample_mask

HOP_SAMPLES = 160  # 10 ms at 16 kHz


class MFCCEncoder(nn.Module):
    """MFCCs with deltas, normalised per utterance, at the SSL frame rate.

    SpeechBrain's MFCC (25 ms windows, 10 ms hop, no context window); each
    coefficient is normalised to zero mean and unit variance over the
    utterance's real frames (CMVN), and ``stack`` consecutive frames are
    concatenated (2: 20 ms frames, the rate of HuBERT/WavLM).

    Parameters
    ----------
    n_mfcc : int
        Cepstral coefficients per 10 ms frame.
    deltas : bool
        Append first and second derivatives.
    stack : int
        Consecutive 10 ms frames per output frame.

    Example
    -------
    >>> encoder = MFCCEncoder()
    >>> hidden, frames = encoder(torch.randn(2, 16000), torch.tensor([1.0, 0.5]))
    >>> hidden.shape, frames.tolist()
    (torch.Size([1, 2, 50, 78]), [50, 25])
    """

    num_layers = 0  # a single hidden state, index 0

    def __init__(self, n_mfcc=13, deltas=True, stack=2):
        from speechbrain.lobes.features import MFCC

        super().__init__()
        self.config = {"kind": "mfcc", "n_mfcc": n_mfcc, "deltas": deltas, "stack": stack,
                       "hop_samples": HOP_SAMPLES}
        self.stack = stack
        self.mfcc = MFCC(n_mfcc=n_mfcc, deltas=deltas, context=False)
        self.hidden_size = n_mfcc * (3 if deltas else 1) * stack
        self.requires_grad_(False)
        super().train(False)

    def train(self, mode=True):
        """Stay in eval mode (nothing here trains)."""
        return super().train(False)

    @torch.no_grad()
    def forward(self, wavs, wav_lens):
        mask = sample_mask(wavs, wav_lens)
        feats = self.mfcc(wavs.float() * mask)  # [B, T10, F]
        lengths10 = torch.clamp(mask.sum(1) // HOP_SAMPLES + 1, max=feats.shape[1])
        valid = frame_mask(lengths10, feats.shape[1])[..., None].float()
        count = valid.sum(1, keepdim=True).clamp(min=1)
        mean = (feats * valid).sum(1, keepdim=True) / count
        std = torch.sqrt((((feats - mean) * valid) ** 2).sum(1, keepdim=True) / count + 1e-5)
        feats = (feats - mean) / std * valid
        n_frames = feats.shape[1] // self.stack
        feats = feats[:, : n_frames * self.stack].reshape(feats.shape[0], n_frames, self.hidden_size)
        return feats[None], (lengths10 // self.stack).long()


def load_encoder(source, **mfcc_settings):
    """The frozen encoder named by ``source``: ``"mfcc"`` or an HF hub id / model folder."""
    if str(source).lower() == "mfcc":
        return MFCCEncoder(**mfcc_settings)
    return FrozenTeacher(source)
