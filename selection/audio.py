"""Load manifest audio as 16 kHz mono, skipping (and recording) unreadable files.

Choices
-------
* Audio is read with :mod:`soundfile` (as SpeechBrain's dataio does), as float32.
* Multi-channel audio is averaged to mono.
* Another sample rate is converted with :func:`torchaudio.functional.resample`
  (band-limited sinc interpolation with a Hann window, torchaudio's default), the
  same kernel SpeechBrain's ``Resample`` uses: good quality, no extra dependency.
* A missing, unreadable (corrupt) or empty file, or one holding non-finite
  samples, raises :class:`AudioError` from :func:`load_audio`; :class:`AudioStream`
  logs a warning, records ``(utt_id, reason)`` in ``skipped`` and goes on.
"""

import logging
import os

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

SAMPLE_RATE = 16000

logger = logging.getLogger(__name__)


class AudioError(RuntimeError):
    """An audio file cannot be used (missing, unreadable, empty or non-finite)."""


def load_audio(path, sample_rate=SAMPLE_RATE):
    """Read one audio file as a mono float32 waveform at ``sample_rate``.

    Parameters
    ----------
    path : str or os.PathLike
        Audio file in any format libsndfile reads (FLAC, WAV, ...).
    sample_rate : int
        Output sample rate; other rates are resampled (see module notes).

    Returns
    -------
    torch.Tensor
        Waveform, shape ``[samples]``, float32.

    Raises
    ------
    AudioError
        If the file is missing, unreadable, empty or holds non-finite samples.
    """
    if not os.path.isfile(path):
        raise AudioError(f"missing file {path}")
    try:
        data, file_rate = sf.read(path, dtype="float32", always_2d=True)
    except (RuntimeError, OSError, ValueError) as err:  # LibsndfileError is a RuntimeError
        raise AudioError(f"unreadable file {path}: {err}") from None
    if data.shape[0] == 0:
        raise AudioError(f"empty file {path}")
    if not np.isfinite(data).all():
        raise AudioError(f"non-finite samples in {path}")
    wav = torch.from_numpy(data.mean(axis=1) if data.shape[1] > 1 else data[:, 0])
    if file_rate != sample_rate:
        wav = AF.resample(wav, file_rate, sample_rate)
    return wav


class AudioStream:
    """Iterate ``(utt_id, waveform)`` over manifest utterances, one at a time.

    Parameters
    ----------
    manifest : selection.manifest.Manifest
        Where IDs and paths come from.
    ids : sequence of str, optional
        Which utterances, in which order (default: all, in manifest order).
    sample_rate : int
        Output sample rate.

    Attributes
    ----------
    skipped : list of (str, str)
        ``(utt_id, reason)`` of every utterance whose audio could not be used,
        filled while iterating (reset when a new iteration starts). Each skip
        is also logged as a warning.
    """

    def __init__(self, manifest, ids=None, sample_rate=SAMPLE_RATE):
        self.manifest = manifest
        self.ids = list(manifest.ids if ids is None else ids)
        self.sample_rate = sample_rate
        self.skipped = []

    def __len__(self):
        return len(self.ids)

    def __iter__(self):
        self.skipped = []
        for utt_id in self.ids:
            try:
                wav = load_audio(self.manifest.wav_path(utt_id), self.sample_rate)
            except AudioError as err:
                logger.warning("skipping %s: %s", utt_id, err)
                self.skipped.append((utt_id, str(err)))
                continue
            yield utt_id, wav
