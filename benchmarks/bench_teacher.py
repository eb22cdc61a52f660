"""Teacher forward speed: audio seconds per CPU second (and per wall second) over a manifest's utterances.

The teacher runs as the caches run it (:class:`lobes.encoder.FrozenTeacher`:
utterances sorted by duration, ``--batch_size`` at a time; models without an
attention mask, Whisper included, one forward per group of equal length).
CPU time is the process's (all threads), so the figure holds on a machine
shared with other jobs; the wall rate does not.

Usage
-----
python benchmarks/bench_teacher.py --teacher whisper-base --manifest data/SynthDomains/manifests/pool.csv \
    --data_root data/SynthDomains --max_hours 0.2 --threads 2
``--teacher`` is a packaged Whisper name (``whisper-base``, ``whisper-tiny.en``; converted into
``--teachers_folder`` when missing) or a model folder.
"""

import argparse
import csv
import random
import time

import torch
from speechbrain.dataio.dataio import read_audio

from lobes.encoder import FrozenTeacher
from lobes.packaged_whisper import PACKAGED_WHISPER, ensure_packaged_whisper


def sample_rows(manifest, data_root, max_hours, seed):
    """A seeded random sample of the manifest's rows holding at most ``max_hours`` of audio."""
    with open(manifest, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    random.Random(seed).shuffle(rows)
    chosen, seconds = [], 0.0
    for row in rows:
        if seconds + float(row["duration"]) > max_hours * 3600:
            break
        chosen.append(row["wav"].replace("$data_root", str(data_root)))
        seconds += float(row["duration"])
    return chosen


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", default="whisper-base")
    parser.add_argument("--teachers_folder", default="results/teachers")
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--data_root", required=True)
    parser.add_argument("--max_hours", type=float, default=0.2)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    source = (ensure_packaged_whisper(args.teacher, args.teachers_folder) if args.teacher in PACKAGED_WHISPER
              else args.teacher)
    teacher = FrozenTeacher(source)
    sigs = sorted((read_audio(path) for path in sample_rows(args.manifest, args.data_root, args.max_hours,
                                                              args.seed)), key=len)
    audio_seconds = sum(len(sig) for sig in sigs) / 16000
    teacher(sigs[0][None], torch.ones(1))  # warm-up
    cpu, wall = time.process_time(), time.perf_counter()
    for first in range(0, len(sigs), args.batch_size):
        batch = sigs[first: first + args.batch_size]
        wavs = torch.nn.utils.rnn.pad_sequence(batch, batch_first=True)
        teacher(wavs, torch.tensor([len(s) for s in batch], dtype=torch.float) / wavs.shape[1])
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    print(f"teacher {source}: {len(sigs)} utterances, {audio_seconds / 60:.1f} audio min, {args.threads} threads")
    print(f"  {audio_seconds / cpu:.1f} audio s per CPU s; {audio_seconds / wall:.1f} audio s per wall s "
          f"({cpu:.1f} CPU s, {wall:.1f} wall s)")


if __name__ == "__main__":
    main()
