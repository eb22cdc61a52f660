"""The project's one MFCC front end: SpeechBrain's MFCC, one utterance at a time.

:class:`MFCCFrontEnd` is the unit features of selection and of the teacher's
pretraining targets (``selection.features.MFCCExtractor`` is this class) and the
frames of the probes' MFCC floor (:class:`lobes.mfcc_encoder.MFCCEncoder`).
"""

import contextlib

import torch
from speechbrain.lobes.features import MFCC

from common.audio import SAMPLE_RATE

HOP_SAMPLES = 160  # 10 ms at 16 kHz


class MFCCFrontEnd:
    """MFCCs with first and second derivatives (39 dims by default) at 100 frames/s.

    Uses :class:`speechbrain.lobes.features.MFCC` (25 ms window, 10 ms hop, no
    context frames), one utterance at a time, so no padding leaks into the edge
    frames or the derivatives.

    Parameters
    ----------
    n_mfcc : int
        Number of cepstral coefficients.
    deltas : bool
        Append first and second derivatives (dimension ``3 * n_mfcc``).
    sample_rate : int
        Rate of the waveforms given.
    threads : int or None
        Torch intra-op threads while computing (restored afterwards); ``None``
        keeps the current setting.

    Notes
    -----
    Per-utterance calls are small tensor operations that gain nothing from
    intra-op threads, and OpenMP spin-waiting makes them up to 50x slower when
    cores are shared with other processes; hence ``threads=1`` by default. Use
    several processes (one shard each, see :func:`selection.units.shard_ids`)
    to use several cores.
    """

    def __init__(self, n_mfcc=13, deltas=True, sample_rate=SAMPLE_RATE, threads=1):
        self.mfcc = MFCC(deltas=deltas, context=False, n_mfcc=n_mfcc, sample_rate=sample_rate)
        self.n_mfcc = int(n_mfcc)
        self.deltas = bool(deltas)
        self.sample_rate = int(sample_rate)
        self.threads = threads
        self.dim = n_mfcc * (3 if deltas else 1)
        self.frame_rate = sample_rate / HOP_SAMPLES

    def settings(self):
        """What identifies these features (for stage hashes and provenance)."""
        return {"kind": "mfcc", "n_mfcc": self.n_mfcc, "deltas": self.deltas, "sample_rate": self.sample_rate}

    def __call__(self, wavs):
        """Features of each waveform.

        Parameters
        ----------
        wavs : list of torch.Tensor
            1-D waveforms.

        Returns
        -------
        list of numpy.ndarray
            ``float32`` arrays ``[frames, dim]``.
        """
        return [self.utterance(w).numpy() for w in wavs]

    def utterance(self, wav):
        """``[S // 160 + 1, dim]`` features (a float32 tensor) of one unpadded waveform ``[S]``."""
        with torch.inference_mode(), _torch_threads(self.threads):
            return self.mfcc(wav.reshape(1, -1).float())[0]


@contextlib.contextmanager
def _torch_threads(threads):
    """Run a block with ``threads`` torch intra-op threads (``None``: unchanged)."""
    if threads is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
