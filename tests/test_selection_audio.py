"""Audio loading: resampling, downmix, documented skips."""

import logging

import numpy as np
import soundfile as sf
import torch

from common.audio import load_audio
from selection.audio import AudioStream
from common.manifest import read_manifest


def _tone(freq, seconds, rate):
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_mono_16k_is_returned_as_is(tmp_path):
    wav = _tone(440, 0.5, 16000)
    sf.write(tmp_path / "a.flac", wav, 16000)
    out = load_audio(tmp_path / "a.flac")
    assert out.dtype == torch.float32 and out.shape == (8000,)
    assert np.allclose(out.numpy(), wav, atol=1e-4)  # FLAC is 16-bit


def test_stereo_is_averaged(tmp_path):
    left = _tone(440, 0.25, 16000)
    sf.write(tmp_path / "s.wav", np.stack([left, 0.5 * left], axis=1), 16000, subtype="FLOAT")
    assert np.allclose(load_audio(tmp_path / "s.wav").numpy(), 0.75 * left, atol=1e-6)


def test_8khz_is_resampled_to_16khz(tmp_path):
    sf.write(tmp_path / "n.flac", _tone(1000, 1.0, 8000), 8000)
    out = load_audio(tmp_path / "n.flac").numpy()
    assert len(out) == 16000
    spectrum = np.abs(np.fft.rfft(out))
    assert abs(np.argmax(spectrum) * 16000 / len(out) - 1000) <= 2


def test_stream_skips_missing_corrupt_and_empty_files(tmp_path, caplog):
    sf.write(tmp_path / "good.flac", _tone(300, 0.2, 16000), 16000)
    (tmp_path / "corrupt.flac").write_bytes(b"not audio at all" * 10)
    sf.write(tmp_path / "empty.wav", np.zeros(0, dtype=np.float32), 16000)
    (tmp_path / "m.csv").write_text(
        "ID,duration,wav\n"
        "good,0.2,$data_root/good.flac\nmissing,1,$data_root/missing.flac\n"
        "corrupt,1,$data_root/corrupt.flac\nempty,0,$data_root/empty.wav\n")
    stream = AudioStream(read_manifest(tmp_path / "m.csv", data_root=tmp_path))
    with caplog.at_level(logging.WARNING, logger="selection.audio"):
        got = [utt_id for utt_id, _ in stream]
    assert got == ["good"]
    reasons = dict(stream.skipped)
    assert set(reasons) == {"missing", "corrupt", "empty"}
    assert reasons["missing"].startswith("missing file")
    assert reasons["corrupt"].startswith("unreadable file")
    assert reasons["empty"].startswith("empty file")
    assert sum("skipping" in r.message for r in caplog.records) == 3
    list(stream)  # a second pass starts a fresh skip list
    assert len(stream.skipped) == 3


def test_a_conversion_is_logged_once_per_kind_of_input(tmp_path, caplog):
    import common.audio

    common.audio._NOTED.clear()
    for name in ("a", "b"):
        sf.write(tmp_path / f"{name}.wav", np.zeros((8000, 2), dtype="float32"), 8000)
    with caplog.at_level(logging.INFO, logger="common.audio"):
        load_audio(tmp_path / "a.wav")
        load_audio(tmp_path / "b.wav")
    notes = [r.getMessage() for r in caplog.records if "converted" in r.getMessage()]
    assert len(notes) == 1 and "8000 Hz with 2 channel(s)" in notes[0] and "a.wav" in notes[0]
