"""How the LibriSpeech-scale selection settings cost (prints figures; not a test).

(a) k-means fitting time of a ``KMeansCodebook`` (k = 500, 39-dim MFCC-sized
    frames, 10 epochs) on ``--fit-frames`` frames, and its rate in frame-epochs
    per second, from which the fit on 2 M frames (the LibriSpeech setting)
    follows; (b) the peak memory and counting + scoring rate of one trigram
    unit LM over 500 units (``NgramLM``) at several ``hash_bits``, on
    ``--tokens`` random tokens. Each figure is measured in a fresh process, so
    peaks do not mix.

Example::

    python benchmarks/bench_selection_scale.py --fit-frames 200000 --tokens 10000000
"""

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def kmeans_figures(n_frames, n_clusters, epochs):
    import numpy as np

    from selection.units import KMeansCodebook

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(n_clusters, 39)).astype(np.float32)
    frames = centres[rng.integers(0, n_clusters, n_frames)] + 0.3 * rng.normal(size=(n_frames, 39)).astype(np.float32)
    started = time.perf_counter()
    KMeansCodebook(n_clusters, n_epochs=epochs).fit(frames)
    seconds = time.perf_counter() - started
    return {"frames": n_frames, "clusters": n_clusters, "epochs": epochs, "fit_s": round(seconds, 1),
            "frame_epochs_per_s": round(n_frames * epochs / seconds)}


def ngram_figures(n_tokens, hash_bits):
    import numpy as np

    from selection.ngrams import NgramLM
    from selection.units import UnitSet

    per_utterance = 500
    n_utterances = n_tokens // per_utterance
    rng = np.random.default_rng(0)
    flat = rng.integers(0, 500, n_utterances * per_utterance).astype(np.int16)
    units = UnitSet([f"u{i}" for i in range(n_utterances)], np.arange(0, len(flat) + 1, per_utterance), flat,
                    100.0, 500)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    NgramLM(3, 500, 1.0, hash_bits).fit(units).utterance_log_probs(units)
    seconds = time.perf_counter() - started
    peak_gb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1e6  # kB on Linux
    return {"tokens": len(flat), "hash_bits": hash_bits, "peak_gb_over_units": round(peak_gb, 2),
            "fit_and_score_s": round(seconds, 1), "tokens_per_s": round(len(flat) / seconds)}


def in_fresh_process(function, *arguments):
    code = (f"import json, sys; sys.path.insert(0, {str(ROOT)!r}); import bench_selection_scale as b; "
            f"print(json.dumps(b.{function}(*{arguments!r})))")
    done = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parent, capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fit-frames", type=int, default=200_000)
    parser.add_argument("--clusters", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--tokens", type=int, default=10_000_000)
    parser.add_argument("--hash-bits", type=int, nargs="+", default=[22, 24, 26])
    args = parser.parse_args()
    print("k-means:", in_fresh_process("kmeans_figures", args.fit_frames, args.clusters, args.epochs), flush=True)
    for bits in args.hash_bits:
        print("trigram LM:", in_fresh_process("ngram_figures", args.tokens, bits), flush=True)


if __name__ == "__main__":
    main()
