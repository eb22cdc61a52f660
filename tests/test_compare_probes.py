"""Comparing encoders from the ASR probe's alignment files (tasks.compare_probes)."""

import random

import pytest

from tasks.asr_probe import error_rate_stats
from tasks.compare_probes import encoder_errors, main, read_alignments

WORDS = ["THE", "CAT", "SAT", "ON", "A", "MAT", "DOG", "RAN"]


def noisy(words, rng, rate):
    """Each word kept, dropped or garbled with the given error rate."""
    out = []
    for word in words:
        roll = rng.random()
        if roll < rate / 2:
            continue
        out.append(word[::-1] + "X" if roll < rate else word)
    return out


def write_run(folder, references, rate, seed):
    """A probe run folder: ``wer_test.txt`` written by SpeechBrain's stats; returns its WER and CER."""
    rng = random.Random(seed)
    ids = sorted(references)
    hypotheses = [noisy(references[i], rng, rate) for i in ids]
    stats = error_rate_stats()
    for kind_stats in stats.values():
        kind_stats.append(ids, hypotheses, [references[i] for i in ids])
    folder.mkdir(parents=True)
    with open(folder / "wer_test.txt", "w") as handle:
        stats["WER"].write_stats(handle)
    return {kind: s.summarize("error_rate") for kind, s in stats.items()}


@pytest.fixture
def references():
    rng = random.Random(0)
    return {f"utt{k:03d}": rng.choices(WORDS, k=rng.randint(3, 9)) for k in range(80)}


def test_rates_are_the_probe_s_own(references, tmp_path):
    """WER and CER re-computed from the alignments equal SpeechBrain's, seed by seed."""
    expected = [write_run(tmp_path / "enc" / str(seed), references, 0.3, seed) for seed in (1, 2)]
    alignments = read_alignments(tmp_path / "enc" / "1" / "wer_test.txt")
    assert sorted(alignments) == sorted(references)
    assert all(alignments[i][0] == references[i] for i in references)
    errors, seeds = encoder_errors(tmp_path / "enc")
    assert seeds == ["1", "2"]
    for kind in ("WER", "CER"):
        per_seed = errors["test"][kind]
        for k in range(2):
            assert 100 * per_seed[k, :, 0].sum() / per_seed[k, :, 1].sum() == pytest.approx(expected[k][kind])


def test_comparison_table_says_better_and_indistinguishable(references, tmp_path):
    for seed in (1, 2):
        write_run(tmp_path / "good" / str(seed), references, 0.1, seed)
        write_run(tmp_path / "bad" / str(seed), references, 0.6, 10 + seed)
        write_run(tmp_path / "bad_too" / str(seed), references, 0.6, 20 + seed)
    text = main(["--runs", str(tmp_path), "--encoders", "good", "bad_too", "bad", "--baseline", "bad"])
    rows = {line.split(" | ")[0].strip("| "): line for line in text.splitlines() if line.startswith("| ")}
    assert (tmp_path / "comparison.md").read_text() == text
    assert rows["good"].count("better") == 2  # WER and CER of the one split
    assert rows["bad_too"].count("indistinguishable") == 2


def test_unfinished_or_mismatched_runs_are_refused(references, tmp_path):
    write_run(tmp_path / "a" / "1", references, 0.2, 1)
    (tmp_path / "empty" / "1").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="has the probe finished"):
        main(["--runs", str(tmp_path), "--encoders", "a", "empty"])
    fewer = dict(list(references.items())[:40])
    write_run(tmp_path / "b" / "1", references, 0.2, 1)
    write_run(tmp_path / "b" / "2", fewer, 0.2, 2)
    with pytest.raises(ValueError, match="other utterances"):
        main(["--runs", str(tmp_path), "--encoders", "a", "b"])
    (tmp_path / "c" / "1").mkdir(parents=True)
    (tmp_path / "c" / "1" / "wer_test.txt").write_text("%WER 10.0\n")
    with pytest.raises(ValueError, match="no utterance alignments"):
        main(["--runs", str(tmp_path), "--encoders", "c"])
