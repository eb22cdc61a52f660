"""MFCCs behind the frozen-encoder contract, the floor every SSL encoder must beat.

``forward(wavs, wav_lens) -> (hidden [1, B, T, D], frame_lengths [B])`` like
:class:`lobes.encoder.FrozenTeacher`, so the probes and the feature cache treat
both alike. :func:`load_encoder` picks one from a source string.
"""

import torch
from torch import nn

from common.mfcc import HOP_SAMPLES, MFCCFrontEnd
from lobes.encoder import FrozenTeacher, sample_mask


class MFCCEncoder(nn.Module):
    """MFCCs with deltas, normalised per utterance, at the SSL frame rate.

    The project's MFCC front end (:class:`common.mfcc.MFCCFrontEnd`: SpeechBrain's
    MFCC, 25 ms windows, 10 ms hop, no context window); each
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
        super().__init__()
        self.config = {"kind": "mfcc", "n_mfcc": n_mfcc, "deltas": deltas, "stack": stack,
                       "hop_samples": HOP_SAMPLES}
        self.stack = stack
        self.front_end = MFCCFrontEnd(n_mfcc=n_mfcc, deltas=deltas, threads=None)
        self.mfcc = self.front_end.mfcc  # a submodule: its buffers are part of the encoder's fingerprint
        self.hidden_size = n_mfcc * (3 if deltas else 1) * stack
        self.requires_grad_(False)
        super().train(False)

    def train(self, mode=True):
        """Stay in eval mode (nothing here trains)."""
        return super().train(False)

    @torch.no_grad()
    def forward(self, wavs, wav_lens):
        n_samples = sample_mask(wavs, wav_lens).sum(1)
        # one utterance at a time: the windows and deltas at its end never see the batch padding
        feats = [self.utterance(wav[:n]) for wav, n in zip(wavs.float(), n_samples)]
        frame_lengths = torch.tensor([len(f) for f in feats], dtype=torch.long)
        return nn.utils.rnn.pad_sequence(feats, batch_first=True)[None], frame_lengths

    def utterance(self, wav):
        """``[T, D]`` features of one unpadded waveform ``[S]``."""
        feats = self.front_end.utterance(wav)  # [S // HOP_SAMPLES + 1, F]
        feats = (feats - feats.mean(0)) / torch.sqrt(feats.var(0, unbiased=False) + 1e-5)
        n_frames = len(feats) // self.stack  # an incomplete last stack is dropped
        return feats[: n_frames * self.stack].reshape(n_frames, self.hidden_size)


def load_encoder(source, **mfcc_settings):
    """The frozen encoder named by ``source``: ``"mfcc"`` or an HF hub id / model folder."""
    if str(source).lower() == "mfcc":
        return MFCCEncoder(**mfcc_settings)
    return FrozenTeacher(source)
