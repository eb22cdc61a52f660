"""Load audio as 16 kHz mono float32: the one audio reader of every stage.

Choices
-------
* Audio is read with :mod:`soundfile` (as SpeechBrain's dataio does), as float32.
* Multi-channel audio is averaged to mono.
* A conversion is logged once per kind of input (rate, channels), naming the first file.
* Another sample rate is converted with :func:`torchaudio.functional.resample`
  (band-limited sinc interpolation with a Hann window, torchaudio's default), the
  same kernel SpeechBrain's ``Resample`` uses: good quality, no extra dependency.
* A missing, unreadable (corrupt) or empty file, or one holding non-finite
  samples, raises :class:`AudioError` naming the file.
"""

import logging
import os

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

SAMPLE_RATE = 16000
logger = logging.getLogger(__name__)
DURATION_TOLERANCE = (0.1, 0.01)  # seconds, fraction: a manifest duration may be off its audio by the larger


def duration_disagrees(manifest_seconds, audio_seconds):
    """Whether a manifest duration is off the audio's by more than :data:`DURATION_TOLERANCE`.

    Example
    -------
    >>> duration_disagrees(3.05, 3.0), duration_disagrees(0.0, 3.0)
    (False, True)
    """
    seconds, fraction = DURATION_TOLERANCE
    return abs(manifest_seconds - audio_seconds) > max(seconds, fraction * audio_seconds)


class AudioError(RuntimeError):
    """An audio file cannot be used (missing, unreadable, empty or non-finite)."""


def audio_info(path):
    """An audio file's header (``soundfile.info``), or :class:`AudioError` in :func:`load_audio`'s words.

    Raises
    ------
    AudioError
        When the file is missing, unreadable or empty (0 frames).

    Example
    -------
    >>> audio_info("no/such/file.flac")
    Traceback (most recent call last):
    ...
    common.audio.AudioError: missing file no/such/file.flac
    """
    if not os.path.isfile(path):
        raise AudioError(f"missing file {path}")
    try:
        info = sf.info(path)
    except (RuntimeError, OSError, ValueError) as err:  # LibsndfileError is a RuntimeError
        raise AudioError(f"unreadable file {path}: {err}") from None
    if info.frames <= 0:
        raise AudioError(f"empty file {path}")
    return info


def header_problem(path):
    """What makes an audio file unusable, read from its header alone (``None``: nothing).

    Example
    -------
    >>> header_problem("no/such/file.flac")
    'missing file no/such/file.flac'
    """
    try:
        audio_info(path)
    except AudioError as err:
        return str(err)
    return None


def load_audio(path, sample_rate=SAMPLE_RATE, start=0, stop=None):
    """Read one audio file (or a segment of it) as a mono float32 waveform at ``sample_rate``.

    Parameters
    ----------
    path : str or os.PathLike
        Audio file in any format libsndfile reads (FLAC, WAV, ...).
    sample_rate : int
        Output sample rate; other rates are resampled (see module notes).
    start, stop : int, optional
        The segment ``[start, stop)`` in output samples (default: the whole
        file). At the file's own rate only the segment is read; otherwise the
        whole file is resampled, then cut.

    Returns
    -------
    torch.Tensor
        Waveform, shape ``[samples]``, float32.

    Raises
    ------
    AudioError
        If the file is missing, unreadable, empty or holds non-finite samples.

    Example
    -------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "stereo_8k.wav")
    >>> sf.write(path, np.zeros((8000, 2), dtype="float32"), 8000)
    >>> load_audio(path).shape, load_audio(path, start=100, stop=400).shape
    (torch.Size([16000]), torch.Size([300]))
    """
    file_rate = audio_info(path).samplerate
    window = {"start": start, "stop": stop} if file_rate == sample_rate else {}
    try:
        data, file_rate = sf.read(path, dtype="float32", always_2d=True, **window)
    except (RuntimeError, OSError, ValueError) as err:
        raise AudioError(f"unreadable file {path}: {err}") from None
    if data.shape[0] == 0:
        raise AudioError(f"empty segment [{start}, {stop}) of {path}")
    if not np.isfinite(data).all():
        raise AudioError(f"non-finite samples in {path}")
    wav = torch.from_numpy(data.mean(axis=1) if data.shape[1] > 1 else data[:, 0])
    if file_rate != sample_rate:
        wav = AF.resample(wav, file_rate, sample_rate)[start:stop]
    _note_conversion(path, file_rate, data.shape[1], sample_rate)
    return wav


_NOTED = set()


def _note_conversion(path, file_rate, channels, sample_rate):
    """Log, once per kind of input, that audio is resampled or downmixed (naming the first such file)."""
    kind = (file_rate, channels)
    if (file_rate == sample_rate and channels == 1) or kind in _NOTED:
        return
    _NOTED.add(kind)
    logger.info("audio at %d Hz with %d channel(s) is converted to %d Hz mono (first: %s)", file_rate, channels,
                sample_rate, path)
