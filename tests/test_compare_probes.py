"""Comparing encoders from the ASR probe's alignment files (tasks.compare_probes)."""

import pytest
from fake_probe_runs import fake_references, write_run

from tasks.compare_probes import encoder_errors, main, read_alignments


@pytest.fixture
def references():
    return fake_references(80)


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
