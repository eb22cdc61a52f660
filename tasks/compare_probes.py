"""Compare encoders scored by the ASR probe: error rates with intervals, and each against a baseline, paired.

Reads the probe's run folders ``<runs>/<encoder>/<seed>/wer_<split>.txt`` (every
seed found; the per-utterance alignments SpeechBrain writes), recomputes WER and
CER per utterance, and writes ``<runs>/comparison.md`` (and prints it): per
encoder and test split the rate, mean over seeds, with a 95 % bootstrap interval
over utterances and seeds; per encoder the paired difference to ``--baseline``
on the same utterances, with its interval and a verdict (better / worse /
indistinguishable). See :mod:`common.intervals`.

python recipes/SynthDomains/ASR/compare_encoders.py --runs results/asr_probe \
    --encoders teacher_whisper_base distill_contrastive mfcc --baseline mfcc
"""

import argparse
import re
import sys
from pathlib import Path

import numpy as np

from common.atomic import atomic_write_text
from common.intervals import paired_difference, rate_interval, utterance_errors

ALIGNMENT_HEADER = re.compile(r"^(\S+), %WER ")


def read_alignments(path):
    """``{utterance ID: (reference words, hypothesis words)}`` from SpeechBrain's ``ErrorRateStats.write_stats``.

    Each utterance is a header line ``<ID>, %WER ...`` followed by the
    reference, operations and hypothesis lines, tokens separated by ``;`` and
    ``<eps>`` for a gap.
    """
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    alignments = {}
    for index, line in enumerate(lines):
        match = ALIGNMENT_HEADER.match(line)
        if match is None:
            continue
        if index + 3 >= len(lines):
            raise ValueError(f"{path}, line {index + 1}: the alignment of {match.group(1)} is cut short")
        reference, hypothesis = (
            [word.strip() for word in lines[index + k].split(";") if word.strip() not in ("", "<eps>")]
            for k in (1, 3))
        alignments[match.group(1)] = (reference, hypothesis)
    if not alignments:
        raise ValueError(f"{path}: no utterance alignments (not a wer_<split>.txt of the probe?)")
    return alignments


def run_errors(path):
    """Sorted utterance IDs and their ``{"WER": [N, 2], "CER": [N, 2]}`` (edits, reference tokens).

    CER counts characters with one boundary symbol between words, as the
    probe's ``ErrorRateStats(split_tokens=True)`` does (SpeechBrain's ``split_word``).
    """
    alignments = read_alignments(path)
    ids = sorted(alignments)
    references = [alignments[i][0] for i in ids]
    hypotheses = [alignments[i][1] for i in ids]
    return ids, {"WER": utterance_errors(references, hypotheses),
                 "CER": utterance_errors([list("_".join(r)) for r in references],
                                         [list("_".join(h)) for h in hypotheses])}


def encoder_errors(folder):
    """``{split: {"WER": [S, N, 2], "CER": [S, N, 2]}}`` over the seed folders of one encoder, and the seeds."""
    seed_folders = sorted(p for p in Path(folder).iterdir() if p.is_dir() and list(p.glob("wer_*.txt")))
    if not seed_folders:
        raise FileNotFoundError(f"{folder}: no seed folder with wer_<split>.txt (has the probe finished?)")
    per_split = {}
    for seed_folder in seed_folders:
        for wer_file in sorted(seed_folder.glob("wer_*.txt")):
            ids, errors = run_errors(wer_file)
            split = wer_file.stem[len("wer_"):]
            known = per_split.setdefault(split, {"ids": ids, "WER": [], "CER": []})
            if known["ids"] != ids:
                raise ValueError(f"{wer_file}: other utterances than the other seeds' {split}")
            for kind in ("WER", "CER"):
                known[kind].append(errors[kind])
    missing = [s.name for s in seed_folders if any(not (s / f"wer_{split}.txt").exists() for split in per_split)]
    if missing:
        raise ValueError(f"{folder}: seeds {missing} lack some test split of {sorted(per_split)}")
    return ({split: {kind: np.stack(v[kind]) for kind in ("WER", "CER")} for split, v in per_split.items()},
            [s.name for s in seed_folders])


def comparison_markdown(results, seeds, baseline):
    """The tables of :func:`main` as markdown."""
    splits = sorted(next(iter(results.values())))
    lines = ["Error rates (%), mean over the probe's seeds, with 95 % bootstrap intervals "
             "(utterances and seeds resampled).", "",
             "| encoder | seeds | " + " | ".join(f"{kind} {split}" for split in splits for kind in ("WER", "CER"))
             + " |", "|---|---|" + "---|" * (2 * len(splits))]
    for name, per_split in results.items():
        cells = []
        for split in splits:
            for kind in ("WER", "CER"):
                rate, low, high = rate_interval(per_split[split][kind])
                cells.append(f"{rate:.1f} [{low:.1f}, {high:.1f}]")
        lines.append(f"| {name} | {len(seeds[name])} | " + " | ".join(cells) + " |")
    if baseline is not None:
        lines += ["", f"Paired differences to {baseline} (% points; negative: fewer errors), same test utterances, "
                  "95 % bootstrap intervals:", "",
                  "| encoder | " + " | ".join(f"{kind} {split}" for split in splits for kind in ("WER", "CER")) + " |",
                  "|---|" + "---|" * (2 * len(splits))]
        for name, per_split in results.items():
            if name == baseline:
                continue
            cells = []
            for split in splits:
                for kind in ("WER", "CER"):
                    d = paired_difference(per_split[split][kind], results[baseline][split][kind])
                    verdict = {"A better": "better", "A worse": "worse"}.get(d["verdict"], d["verdict"])
                    cells.append(f"{d['difference']:+.1f} [{d['low']:+.1f}, {d['high']:+.1f}] {verdict}")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="results/asr_probe", help="the probe's results folder")
    parser.add_argument("--encoders", nargs="+", required=True, help="encoder names (folders of --runs)")
    parser.add_argument("--baseline", default=None, help="one of --encoders, compared with each other one")
    parser.add_argument("--output", default=None, help="default: <runs>/comparison.md")
    args = parser.parse_args(argv)
    if args.baseline is not None and args.baseline not in args.encoders:
        parser.error(f"--baseline {args.baseline} is not one of --encoders {args.encoders}")
    results, seeds = {}, {}
    for name in args.encoders:
        results[name], seeds[name] = encoder_errors(Path(args.runs) / name)
    splits = {name: sorted(per_split) for name, per_split in results.items()}
    if len({tuple(s) for s in splits.values()}) > 1:
        raise ValueError(f"the encoders were tested on different splits: {splits}")
    text = comparison_markdown(results, seeds, args.baseline)
    atomic_write_text(args.output or Path(args.runs) / "comparison.md", text)
    print(text)
    return text


if __name__ == "__main__":
    main(sys.argv[1:])
