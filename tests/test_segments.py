"""Fixed segments, the seeded segment schedule and the held-out loss, against brute-force oracles."""

import math

import numpy as np
import pytest
import torch

from lobes.heldout_loss import item_loss_sums
from lobes.losses import l1_cosine_per_utterance
from lobes.segments import SegmentSchedule, fixed_segments, segment_rows


@pytest.mark.parametrize("n_samples", [1, 319, 320, 32000, 32001, 50000, 64000, 64321, 160007])
@pytest.mark.parametrize("segment, hop", [(32000, 320), (16000, 320), (8000, 400)])
def test_segments_cover_the_utterance_in_equal_frame_aligned_pieces(n_samples, segment, hop):
    segments = fixed_segments(n_samples, segment, hop)
    if n_samples <= segment:
        assert segments == [(0, n_samples)]
        return
    assert len(segments) == min(math.ceil(n_samples / segment), (n_samples - segment) // hop + 1)  # distinct starts
    assert all(length == segment and start % hop == 0 for start, length in segments)
    starts = [start for start, _ in segments]
    assert starts[0] == 0 and starts == sorted(set(starts))
    assert n_samples - hop < starts[-1] + segment <= n_samples  # the last one ends within a frame of the end
    covered = np.zeros(n_samples, dtype=bool)
    for start, length in segments:
        covered[start: start + length] = True
    assert covered[: n_samples - n_samples % hop - hop].all()  # no gap between segments
    gaps = np.diff(starts)
    assert len(gaps) == 0 or gaps.max() - gaps.min() <= hop  # spread evenly


def test_segment_rows_name_their_utterance_and_keep_its_columns():
    rows = {"u1": {"wav": "u1.flac", "duration": 5.0, "domain": "neural"},
            "u2": {"wav": "u2.flac", "duration": 1.5, "domain": "formant"}}
    segments = segment_rows(rows, 2.0, 320, 16000)
    assert [key.split("@")[0] for key in segments] == ["u1", "u1", "u1", "u2"]
    assert all(row["utterance"] == key.split("@")[0] and row["stop"] - row["start"] == round(row["duration"] * 16000)
               and row["wav"] == rows[row["utterance"]]["wav"] for key, row in segments.items())
    assert segments["u2@0"]["duration"] == 1.5 and segments["u1@0"]["domain"] == "neural"


@pytest.mark.parametrize("n_items, per_epoch", [(7, 3), (5, 5), (4, 11)])
def test_the_schedule_is_a_stream_of_permutations_cut_into_epochs(n_items, per_epoch):
    schedule = SegmentSchedule(n_items, per_epoch, seed=3)
    epochs = 9
    stream = np.concatenate([schedule.indices(e) for e in range(1, epochs + 1)])
    assert all(len(schedule.indices(e)) == per_epoch for e in range(1, epochs + 1))
    for number in range(len(stream) // n_items):  # every whole permutation holds each item once
        assert sorted(stream[number * n_items: (number + 1) * n_items]) == list(range(n_items))
    counts = np.bincount(stream, minlength=n_items)
    assert counts.max() - counts.min() <= 1
    again = SegmentSchedule(n_items, per_epoch, seed=3)  # a resumed run draws the same
    again.set_epoch(5)
    assert list(again) == schedule.indices(5).tolist()
    other = np.concatenate([SegmentSchedule(n_items, per_epoch, seed=4).indices(e) for e in range(1, epochs + 1)])
    assert not np.array_equal(other, stream)


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
