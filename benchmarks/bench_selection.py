"""Benchmark of the selection library (prints figures; not a test).

(a) MFCC unit extraction throughput, in audio hours per wall minute, on a
    manifest (``--manifest`` and ``--data-root``) or on 10 minutes of generated
    audio; (b) time and peak memory of the contrastive, DSIR and divergence
    selectors on ``--n`` synthetic unit sequences (~250 units, k = 500).

Example::

    python benchmarks/bench_selection.py --n 1000000
    python benchmarks/bench_selection.py --skip-scorers --manifest pool.csv --data-root /data
"""

import argparse
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from selection.audio import AudioStream  # noqa: E402
from selection.features import MFCCExtractor, iter_features  # noqa: E402
from common.manifest import read_manifest  # noqa: E402
from selection.selectors import ContrastiveLMSelector, DivergenceSelector, DSIRSelector  # noqa: E402
from selection.synthetic import synthetic_corpus  # noqa: E402
from selection.units import KMeansCodebook, extract_units, sample_frames  # noqa: E402

DOMAINS = ["formant", "concat", "parametric", "neural", "reverb", "noisytel", "nonenglish"]


def make_audio(folder, minutes=10.0, seconds_per_file=5.0, seed=0):
    """Write ``minutes`` of 16 kHz FLAC (tones plus noise) and a manifest; return its path."""
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    lines = ["ID,duration,wav"]
    t = np.arange(int(16000 * seconds_per_file)) / 16000.0
    for i in range(int(minutes * 60 / seconds_per_file)):
        freqs = rng.uniform(100, 4000, size=3)
        wav = sum(np.sin(2 * np.pi * f * t * (1 + 0.1 * np.sin(t))) for f in freqs)
        wav = 0.1 * wav + 0.05 * rng.normal(size=len(t))
        sf.write(folder / f"a{i:04d}.flac", wav.astype(np.float32), 16000)
        lines.append(f"a{i:04d},{seconds_per_file},$data_root/a{i:04d}.flac")
    (folder / "audio.csv").write_text("\n".join(lines) + "\n")
    return folder / "audio.csv"


def bench_mfcc(manifest_path, data_root, k):
    """Print MFCC -> k-means -> units throughput."""
    manifest = read_manifest(manifest_path, data_root=data_root)
    extractor = MFCCExtractor()
    start = time.perf_counter()
    frames = sample_frames(iter_features(AudioStream(manifest), extractor), 100_000, seed=0,
                           frames_per_utterance=200)
    codebook = KMeansCodebook(k, seed=0, n_epochs=5)
    quality = codebook.fit(frames)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    units = extract_units(iter_features(AudioStream(manifest), extractor), codebook,
                          extractor.frame_rate)
    wall = time.perf_counter() - start
    hours = manifest.total_hours
    print(f"[mfcc] {hours:.3f} h audio, {len(units)} utterances, k={k}; "
          f"k-means fit on {len(frames)} frames: {fit_s:.1f} s "
          f"(clusters used {quality.clusters_used}, entropy {quality.normalized_entropy:.3f})")
    print(f"[mfcc] read + MFCC + units: {wall:.1f} s = {hours / (wall / 60):.2f} audio h "
          f"per wall minute = {hours * 3600 / wall:.0f}x real time (torch threads: "
          f"{torch.get_num_threads()})")


def bench_scorers(n, budget_fraction):
    """Print time and peak traced memory of the target-aware scorers on synthetic units."""
    start = time.perf_counter()
    probs = [0.15, 0.15, 0.15, 0.1, 0.15, 0.15, 0.15]
    pool = synthetic_corpus(n, DOMAINS, probs, n_clusters=500, mean_length=250, seed=1)
    target = synthetic_corpus(max(100, n // 100), DOMAINS, [0, 0, 0, 1, 0, 0, 0],
                              n_clusters=500, mean_length=250, seed=2)
    manifest = pool.manifest()
    budget = manifest.total_hours * budget_fraction
    print(f"[scorers] generated {n} utterances, {int(pool.units.offsets[-1])} units, "
          f"{manifest.total_hours:.0f} h in {time.perf_counter() - start:.1f} s; "
          f"budget {budget:.0f} h")
    for selector in (ContrastiveLMSelector(), DSIRSelector(), DivergenceSelector()):
        tracemalloc.start()
        start = time.perf_counter()
        result = selector.select(manifest, pool.units, budget, target.units)
        wall = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        domains = pool.domains[pool.units.rows(result.ids)]
        print(f"[scorers] {type(selector).__name__:22s} {wall:6.1f} s, peak traced memory "
              f"{peak / 2**30:.2f} GiB, {result.n_utterances} utterances / {result.hours:.1f} h, "
              f"target precision {np.mean(domains == 'neural'):.3f}", flush=True)
    print(f"[scorers] process max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", help="SpeechBrain CSV for the MFCC benchmark")
    parser.add_argument("--data-root", help="replacement for $data_root in --manifest")
    parser.add_argument("--k", type=int, default=100, help="k-means clusters for MFCC units")
    parser.add_argument("--n", type=int, default=1_000_000, help="synthetic utterances for scorers")
    parser.add_argument("--budget-fraction", type=float, default=0.1)
    parser.add_argument("--threads", type=int, default=1, help="torch threads for MFCC")
    parser.add_argument("--skip-mfcc", action="store_true")
    parser.add_argument("--skip-scorers", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if not args.skip_mfcc:
        if args.manifest:
            bench_mfcc(args.manifest, args.data_root, args.k)
        else:
            with tempfile.TemporaryDirectory() as folder:
                bench_mfcc(make_audio(folder), folder, args.k)
    if not args.skip_scorers:
        bench_scorers(args.n, args.budget_fraction)


if __name__ == "__main__":
    main()
