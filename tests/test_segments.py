"""Fixed segments, the seeded segment schedule and the held-out loss, against brute-force oracles."""

import numpy as np
import pytest
import torch

from lobes.heldout_loss import item_loss_sums
from lobes.losses import l1_cosine_per_utterance
from lobes.segments import SegmentSchedule, fixed_segments, segment_rows


def oracle_segments(n_samples, segment, hop, min_tail):
    """Brute force: walk the utterance one sample at a time, closing a segment at every whole segment."""
    segment = segment // hop * hop
    pieces, start = [], 0
    for sample in range(1, n_samples + 1):
        if sample - start == segment:
            pieces.append((start, segment))
            start = sample
    rest = n_samples - start
    if rest and (not pieces or rest >= min_tail * segment):
        pieces.append((start, rest))
    return pieces


@pytest.mark.parametrize("n_samples", [1, 319, 320, 32000, 32001, 47999, 48000, 50000, 64000, 64321, 160007])
@pytest.mark.parametrize("segment, hop", [(32000, 320), (16000, 320), (8000, 400), (32100, 320)])
@pytest.mark.parametrize("min_tail", [0.0, 0.5, 1.0])
def test_segments_cut_the_utterance_into_back_to_back_frame_aligned_pieces(n_samples, segment, hop, min_tail):
    segments = fixed_segments(n_samples, segment, hop, min_tail)
    assert segments == oracle_segments(n_samples, segment, hop, min_tail)
    full = segment // hop * hop
    assert all(start % hop == 0 and 0 < length <= full for start, length in segments)
    covered = np.zeros(n_samples, dtype=int)
    for start, length in segments:
        covered[start: start + length] += 1
    assert covered.max() == 1  # no overlap: no near-copy of any audio
    left_out = n_samples - covered.sum()
    assert left_out == 0 or (n_samples > full and left_out < min_tail * full)  # only a short end is left out
    assert sum(length < full for _, length in segments) <= 1  # at most one short piece: the end


def test_segment_rows_name_their_utterance_and_keep_its_columns():
    rows = {"u1": {"wav": "u1.flac", "duration": 5.0, "domain": "neural"},
            "u2": {"wav": "u2.flac", "duration": 1.5, "domain": "formant"},
            "u3": {"wav": "u3.flac", "duration": 4.5, "domain": "formant"}}
    segments = segment_rows(rows, 2.0, 320, 16000)
    assert [key.split("@")[0] for key in segments] == ["u1", "u1", "u1", "u2", "u3", "u3"]  # u3's 0.5 s end left out
    assert all(row["utterance"] == key.split("@")[0] and row["stop"] - row["start"] == round(row["duration"] * 16000)
               and row["wav"] == rows[row["utterance"]]["wav"] for key, row in segments.items())
    assert segments["u2@0"]["duration"] == 1.5 and segments["u1@0"]["domain"] == "neural"
    assert segments["u1@64000"]["duration"] == 1.0
    assert sum(row["duration"] for row in segments.values()) == pytest.approx(5.0 + 1.5 + 4.0)
    everything = segment_rows(rows, 2.0, 320, 16000, min_tail=0.0)
    assert sum(row["duration"] for row in everything.values()) == pytest.approx(11.0)


@pytest.mark.parametrize("n_items, per_epoch", [(7, 3), (5, 5), (4, 11)])
def test_without_durations_the_schedule_is_a_stream_of_permutations_cut_into_epochs(n_items, per_epoch):
    schedule = SegmentSchedule(n_items, per_epoch, seed=3)
    epochs = 9
    stream = np.concatenate([schedule.indices(e) for e in range(1, epochs + 1)])
    assert all(len(schedule.indices(e)) == per_epoch for e in range(1, epochs + 1))
    for number in range(len(stream) // n_items):  # every whole permutation holds each item once
        assert sorted(stream[number * n_items: (number + 1) * n_items]) == list(range(n_items))
    counts = np.bincount(stream, minlength=n_items)
    assert counts.max() - counts.min() <= 1
    equal = np.concatenate([SegmentSchedule(n_items, per_epoch, 3, [2.5] * n_items).indices(e)
                            for e in range(1, epochs + 1)])
    np.testing.assert_array_equal(equal, stream)  # equal durations: the same stream
    again = SegmentSchedule(n_items, per_epoch, seed=3)  # a resumed run draws the same
    again.set_epoch(5)
    assert list(again) == schedule.indices(5).tolist()
    other = np.concatenate([SegmentSchedule(n_items, per_epoch, seed=4).indices(e) for e in range(1, epochs + 1)])
    assert not np.array_equal(other, stream)


def oracle_pass(durations, order, offset, count):
    """Brute force: walk the items laid end to end in ``order`` and take the one under each of ``count`` points."""
    spacing = sum(durations) / count
    taken, edge, point = [], 0.0, offset * spacing
    for item in order:
        edge += durations[item]
        while len(taken) < count and point < edge:
            taken.append(item)
            point += spacing
    return taken


DURATIONS = [2.0, 2.0, 0.5, 1.25, 2.0, 0.75, 1.9, 0.3]


def test_a_weighted_pass_is_systematic_sampling_along_the_items():
    schedule = SegmentSchedule(len(DURATIONS), 5, seed=7, durations=DURATIONS)
    assert schedule.per_pass == int(sum(DURATIONS) // max(DURATIONS))
    for number in range(50):
        rng = np.random.default_rng([7, number])
        order = rng.permutation(len(DURATIONS))
        expected = oracle_pass(DURATIONS, order, rng.random(), schedule.per_pass)
        drawn = schedule.draw_pass(number)
        assert drawn.tolist() == expected
        assert len(set(drawn.tolist())) == len(drawn)  # an item at most once per pass


def test_weighted_draws_follow_audio_seconds():
    """Each item's share of the draws is its share of the audio; each example holds sum(d^2)/sum(d) s."""
    durations = np.array(DURATIONS)
    schedule = SegmentSchedule(len(durations), 1000, seed=1, durations=durations)
    stream = np.concatenate([schedule.indices(e) for e in range(1, 41)])
    share = np.bincount(stream, minlength=len(durations)) / len(stream)
    expected = durations / durations.sum()
    # binomial standard error of a share over 40 000 draws is below 0.0025: allow four of them
    np.testing.assert_allclose(share, expected, atol=0.01)
    uniform = np.full(len(durations), 1 / len(durations))
    assert np.abs(share - uniform).max() > 0.05  # not the unweighted draw
    assert durations[stream].mean() == pytest.approx((durations ** 2).sum() / durations.sum(), rel=0.01)
    again = SegmentSchedule(len(durations), 1000, seed=1, durations=durations)
    again.set_epoch(17)
    assert list(again) == schedule.indices(17).tolist()


def test_short_utterance_subsets_see_as_much_audio_per_draw_as_their_segments_hold():
    """Whole segments are drawn about once per pass, short ones in proportion to their seconds."""
    durations = np.array([2.0] * 10 + [0.5] * 40)  # ten whole segments, forty short utterances: 20 s each
    schedule = SegmentSchedule(len(durations), 500, seed=2, durations=durations)
    stream = np.concatenate([schedule.indices(e) for e in range(1, 21)])
    assert np.isin(np.arange(10), stream[:schedule.per_pass]).all()  # a whole segment is in every pass
    assert (stream < 10).mean() == pytest.approx(0.5, abs=0.02)  # half the audio, half the draws
    unweighted = SegmentSchedule(len(durations), 500, seed=2)
    assert (np.concatenate([unweighted.indices(e) for e in range(1, 21)]) < 10).mean() == pytest.approx(0.2, abs=0.02)


@pytest.mark.parametrize("durations, message", [([1.0, 2.0], "2 given for 3"), ([1.0, 0.0, 2.0], "positive"),
                                                ([1.0, float("nan"), 2.0], "positive")])
def test_bad_durations_are_refused(durations, message):
    with pytest.raises(ValueError, match=message):
        SegmentSchedule(3, 4, seed=0, durations=durations)


def test_a_schedule_without_items_is_refused():
    with pytest.raises(ValueError, match="needs items"):
        SegmentSchedule(0, 4, seed=0)


class _FixedStudent(torch.nn.Module):
    def __init__(self, predictions, frame_lengths):
        super().__init__()
        self.predictions, self.frame_lengths = predictions, frame_lengths

    def forward(self, wavs, wav_lens):
        return self.predictions, self.frame_lengths


class _Cache:
    def __init__(self, targets):
        self.targets = targets

    def get(self, item_id):
        return self.targets[item_id]


def test_heldout_loss_is_the_per_frame_loss_in_the_common_standardisation():
    """A student trained on standardised targets, scored in another standardisation: brute force per item."""
    torch.manual_seed(0)
    n_layers, dim = 2, 5
    targets = {"a": 3 * torch.randn(6, n_layers, dim) + 1, "b": 3 * torch.randn(4, n_layers, dim) + 1}
    predictions = torch.randn(n_layers, 2, 6, dim)
    student_stats = (torch.randn(n_layers, dim), torch.rand(n_layers, dim) + 0.5)
    reference = (torch.randn(n_layers, dim), torch.rand(n_layers, dim) + 0.5)
    sums = item_loss_sums(_FixedStudent(predictions, torch.tensor([6, 4])), [(["a", "b"], None, None)],
                          _Cache(targets), reference, student_stats)
    for row, (item, n_frames) in enumerate((("a", 6), ("b", 4))):
        raw = predictions[:, row, :n_frames] * student_stats[1][:, None] + student_stats[0][:, None]
        common = ((raw - reference[0][:, None]) / reference[1][:, None])[:, None]
        target = ((targets[item].permute(1, 0, 2) - reference[0][:, None]) / reference[1][:, None])[:, None]
        expected = l1_cosine_per_utterance(common, target, torch.ones(1, n_frames, dtype=torch.bool))
        assert sums[item][1] == n_frames
        assert sums[item][0] == pytest.approx(float(expected) * n_frames, rel=1e-5)


def test_heldout_loss_counts_only_the_frames_both_have():
    targets = {"a": torch.zeros(3, 1, 2)}
    sums = item_loss_sums(_FixedStudent(torch.zeros(1, 1, 5, 2), torch.tensor([5])), [(["a"], None, None)],
                          _Cache(targets), (torch.zeros(1, 2), torch.ones(1, 2)))
    assert sums["a"][1] == 3
