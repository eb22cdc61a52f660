"""Real audio through MFCC -> k-means -> units -> selectors: the target domain is found."""

import numpy as np
import pytest
import soundfile as sf

from selection.audio import AudioStream
from selection.features import MFCCExtractor, iter_features
from common.manifest import read_manifest
from selection.selectors import (
    ContrastiveLMSelector, DivergenceSelector, DSIRSelector, RandomSelector,
)
from selection.units import KMeansCodebook, extract_units, sample_frames

RATE = 16000


def _signal(domain, seconds, rng):
    """Audio with spectral content specific to ``domain``."""
    t = np.arange(int(seconds * RATE)) / RATE
    noise = rng.normal(size=len(t))
    if domain == "formant":  # low harmonic complex
        f0 = rng.uniform(100, 160)
        wav = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 6))
    elif domain == "concat":  # click train
        wav = np.zeros(len(t))
        wav[:: int(RATE / rng.uniform(20, 40))] = 5.0
    elif domain == "parametric":  # low tone
        wav = np.sin(2 * np.pi * rng.uniform(250, 350) * t)
    elif domain == "neural":  # target: amplitude-modulated 2-3 kHz tones
        wav = np.sin(2 * np.pi * rng.uniform(2000, 3000) * t) * (1 + np.sin(2 * np.pi * 4 * t))
    elif domain == "reverb":  # white noise
        wav = noise
    elif domain == "noisytel":  # 1 kHz tone in noise
        wav = np.sin(2 * np.pi * 1000 * t) + 0.5 * noise
    else:  # nonenglish: rising chirp
        wav = np.sin(2 * np.pi * (300 * t + 1500 * t**2))
    wav = wav + 0.01 * noise
    return (0.3 * wav / np.abs(wav).max()).astype(np.float32)


def _write_manifest(folder, name, domains, rng):
    lines = ["ID,duration,wav,domain"]
    for i, domain in enumerate(domains):
        seconds = float(rng.uniform(0.5, 1.0))
        path = folder / name / domain / f"{name}-{domain}-{i:04d}.flac"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, _signal(domain, seconds, rng), RATE)
        lines.append(f"{name}-{i:04d},{seconds:.4f},$data_root/{path.relative_to(folder)},{domain}")
    (folder / f"{name}.csv").write_text("\n".join(lines) + "\n")
    return read_manifest(folder / f"{name}.csv", data_root=folder)


@pytest.fixture(scope="module")
def audio_units(tmp_path_factory):
    folder = tmp_path_factory.mktemp("domains")
    rng = np.random.default_rng(0)
    others = ["formant", "concat", "parametric", "reverb", "noisytel", "nonenglish"]
    pool_domains = ["neural"] * 20 + [others[i % 6] for i in range(180)]
    pool = _write_manifest(folder, "pool", list(rng.permutation(pool_domains)), rng)
    target = _write_manifest(folder, "target", ["neural"] * 15, rng)
    extractor = MFCCExtractor()
    frames = sample_frames(iter_features(AudioStream(pool), extractor), 20000, seed=0,
                           frames_per_utterance=30)
    codebook = KMeansCodebook(24, seed=0, batch_size=2000, n_epochs=3)
    codebook.fit(frames)
    pool_units = extract_units(iter_features(AudioStream(pool), extractor), codebook, 100.0)
    target_units = extract_units(iter_features(AudioStream(target), extractor), codebook, 100.0)
    return pool, pool_units, target_units


@pytest.mark.parametrize("selector", [ContrastiveLMSelector(), DSIRSelector(),
                                      DivergenceSelector(), RandomSelector(seed=0)],
                         ids=lambda s: type(s).__name__)
def test_selectors_on_real_audio(selector, audio_units):
    pool, pool_units, target_units = audio_units
    domains = np.array(pool.column("domain"))
    budget = 0.8 * pool.durations[domains == "neural"].sum() / 3600
    result = selector.select(pool, pool_units, budget, target_units)
    precision = np.mean([pool.row(i)["domain"] == "neural" for i in result.ids])
    if selector.needs_target:
        assert precision >= 0.8
    else:
        assert precision <= 0.3
