"""Channel effects that turn clean TTS output into acoustic domains.

All functions take and return float32 mono audio at :data:`SAMPLE_RATE` and
draw their randomness from the ``numpy.random.Generator`` they are given, so
that an utterance's audio is a function of its plan entry only.
"""

import subprocess

import numpy as np
from scipy import signal

from common.audio import SAMPLE_RATE

DITHER = 3e-4


def to_16k(audio, rate):
    """Resample to 16 kHz with a polyphase filter.

    Example
    -------
    >>> to_16k(np.zeros(22050, dtype=np.float32), 22050).shape
    (16000,)
    """
    if rate == SAMPLE_RATE:
        return audio.astype(np.float32)
    gcd = np.gcd(int(rate), SAMPLE_RATE)
    return signal.resample_poly(audio, SAMPLE_RATE // gcd, int(rate) // gcd).astype(np.float32)


def pitch_shift(audio, cents):
    """Shift the pitch by ``cents`` keeping the tempo (sox ``pitch``): a near-neighbour voice."""
    if cents == 0:
        return audio
    raw = ["-t", "raw", "-e", "floating-point", "-b", "32", "-c", "1", "-r", str(SAMPLE_RATE)]
    result = subprocess.run(["sox", *raw, "-", *raw, "-", "pitch", str(int(cents))],
                            input=audio.astype(np.float32).tobytes(), capture_output=True, check=True)
    return np.frombuffer(result.stdout, dtype=np.float32).copy()


def room_impulse_response(rng, rt60):
    """Simulate a shoebox-room RIR with pyroomacoustics (image source method).

    The room size, source and microphone positions are drawn from ``rng``.
    """
    import pyroomacoustics as pra

    size = rng.uniform([4.0, 3.5, 2.5], [10.0, 8.0, 4.0])
    absorption, max_order = pra.inverse_sabine(rt60, size)
    room = pra.ShoeBox(size, fs=SAMPLE_RATE, materials=pra.Material(absorption),
                       max_order=min(max_order, 20))
    room.add_source(rng.uniform([0.5, 0.5, 1.2], size - [0.5, 0.5, 0.8]))
    room.add_microphone(rng.uniform([0.5, 0.5, 0.8], size - [0.5, 0.5, 1.0]))
    room.compute_rir()
    rir = np.asarray(room.rir[0][0], dtype=np.float32)
    return rir / (np.abs(rir).max() + 1e-9)


def reverberate(audio, rir):
    """Convolve with a room impulse response, keeping the original length."""
    wet = signal.fftconvolve(audio, rir)[: len(audio)]
    return wet.astype(np.float32)


def coloured_noise(rng, n_samples, colour):
    """White, pink (1/f) or brown (1/f^2) noise of unit RMS."""
    spectrum = np.fft.rfft(rng.standard_normal(n_samples))
    freqs = np.maximum(np.fft.rfftfreq(n_samples), 1.0 / n_samples)
    exponent = {"white": 0.0, "pink": 0.5, "brown": 1.0}[colour]
    noise = np.fft.irfft(spectrum / freqs**exponent, n=n_samples)
    return (noise / (np.sqrt(np.mean(noise**2)) + 1e-12)).astype(np.float32)


def add_noise(audio, noise, snr_db):
    """Mix ``noise`` into ``audio`` at ``snr_db`` (power ratio over the whole utterance).

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> speech = np.sin(np.linspace(0, 800, 16000)).astype(np.float32)
    >>> mixed = add_noise(speech, coloured_noise(rng, 16000, "white"), 10.0)
    >>> round(float(10 * np.log10(np.mean(speech**2) / np.mean((mixed - speech)**2))), 1)
    10.0
    """
    speech_power = np.mean(audio**2) + 1e-12
    noise_power = np.mean(noise**2) + 1e-12
    scale = np.sqrt(speech_power / (noise_power * 10 ** (snr_db / 10)))
    return (audio + scale * noise).astype(np.float32)


def telephone(audio):
    """A narrow-band phone line: 8 kHz, 300-3400 Hz band-pass, 8-bit mu-law, back to 16 kHz."""
    narrow = signal.resample_poly(audio, 1, 2)
    sos = signal.butter(6, [300, 3400], btype="bandpass", fs=8000, output="sos")
    narrow = np.clip(signal.sosfilt(sos, narrow), -1.0, 1.0)
    mu = 255.0
    companded = np.sign(narrow) * np.log1p(mu * np.abs(narrow)) / np.log1p(mu)
    quantised = np.round((companded + 1) * 127.5) / 127.5 - 1
    expanded = np.sign(quantised) * ((1 + mu) ** np.abs(quantised) - 1) / mu
    return signal.resample_poly(expanded, 2, 1).astype(np.float32)


def normalise_peak(audio, peak):
    """Scale to a given peak amplitude (a level that varies per utterance)."""
    return (audio * (peak / (np.abs(audio).max() + 1e-9))).astype(np.float32)


def apply_channel(audio, aug, rng, rir_bank):
    """Apply the channel described by an ``aug`` dict of a plan entry.

    Parameters
    ----------
    audio : numpy.ndarray
        Clean 16 kHz speech.
    aug : dict
        Keys used: ``pitch`` (cents), ``rir`` (index into ``rir_bank``),
        ``noise`` (colour) with ``snr`` (dB), ``telephone`` (bool), ``peak``.
    rng : numpy.random.Generator
        Source of the noise samples.
    rir_bank : sequence of numpy.ndarray
        Room impulse responses indexed by ``aug["rir"]``.
    """
    audio = pitch_shift(audio, aug.get("pitch", 0))
    audio = normalise_peak(audio, 0.5)
    if "rir" in aug:
        audio = reverberate(audio, rir_bank[aug["rir"]])
    if "noise" in aug:
        audio = add_noise(audio, coloured_noise(rng, len(audio), aug["noise"]), aug["snr"])
    if aug.get("telephone"):
        audio = telephone(audio)
    audio = normalise_peak(audio, aug.get("peak", 0.7))
    # A recording floor (about -70 dBFS): no stretch of digital silence, as no microphone gives one.
    return (audio + DITHER * rng.standard_normal(len(audio))).astype(np.float32)
