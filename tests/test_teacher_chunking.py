"""Teachers run utterances of any length: long ones in overlapping windows, stitched frame for frame.

The references are the same tiny teachers run in one piece (a ``chunk_seconds``
above the utterance's length). What must be exact: the frame count, the CNN
output, hidden state 0 of the SSL models (CNN projection + positional
convolution, a local function of the samples), and each window's kept frames,
which are the teacher's outputs on that window's audio alone. The transformer
layers of a window attend within it only, so they are compared by cosine
similarity with the one-piece run.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from lobes import whisper_encoder
from lobes.encoder import FrozenTeacher, windows

SAMPLE_RATE = 16000
LONG_SECONDS = 70.0
TAIL = 123  # samples past whole seconds: the utterance does not end on a frame boundary
CHUNK_SECONDS = 20.0
ATOL = 1e-5  # float32 rounding of the same computation on inputs of other lengths: up to 5e-6 seen
# Transformer layers of 20 s windows with 1 s of context against the one-piece run of the tiny teachers (random
# weights, residual stream dominated by the input frames): lowest cosine similarity over all frames and layers
# 0.999998 (HuBERT), 0.9999995 (WavLM), 0.999997 (HuBERT with a group-norm CNN). A misaligned stitch is far
# below: frames one step apart have cosine similarity 0.54 on average.
MIN_COSINE = 0.9999
SSL_TEACHERS = ["tiny_hubert_dir", "tiny_wavlm_dir"]  # layer-norm CNNs: each window's run alone is exact


def long_waveform(seconds=LONG_SECONDS, seed=0):
    """Noise and two slowly modulated tones, ``seconds`` long plus ``TAIL`` samples (deterministic)."""
    generator = torch.Generator().manual_seed(seed)
    n_samples = int(seconds * SAMPLE_RATE) + TAIL
    time = torch.arange(n_samples) / SAMPLE_RATE
    gliding = 300 + 100 * torch.sin(2 * math.pi * 0.1 * time)
    return (0.1 * torch.randn(n_samples, generator=generator)
            + 0.3 * torch.sin(2 * math.pi * 220 * time) * torch.sin(2 * math.pi * 0.7 * time)
            + 0.2 * torch.sin(2 * math.pi * gliding * time))


def run_alone(teacher, wav):
    """Hidden states ``[L+1, T, D]`` and CNN output ``[T, C]`` of one unpadded waveform."""
    hidden, cnn, _ = teacher.forward_with_cnn(wav[None], torch.ones(1))
    return hidden[:, 0], cnn[0]


def positional_reach(teacher):
    """Frames the positional convolution looks at on either side of a frame."""
    return teacher.config.num_conv_pos_embeddings // 2


def window_audio(teacher, wav, start, last):
    """The samples a window starting at frame ``start`` runs on: the last one takes the utterance's end."""
    return wav[teacher.frame_hop * start:][: None if last else teacher.window_samples]


@pytest.fixture(scope="module")
def wav():
    return long_waveform()


def test_the_windows_tile_the_utterance_and_keep_their_context():
    for n_frames, chunk, context in [(3500, 1000, 50), (1001, 1000, 50), (2001, 1000, 499), (5000, 333, 10)]:
        plan = list(windows(n_frames, chunk, context))
        assert [kept for _, kept, _ in plan] == [0] + [end for _, _, end in plan[:-1]]
        assert plan[-1][2] == n_frames and plan[-1][0] + chunk == n_frames
        for i, (start, kept_start, kept_end) in enumerate(plan):
            assert 0 <= start and start + chunk <= n_frames and kept_start < kept_end
            assert i == 0 or kept_start - start >= context
            assert i == len(plan) - 1 or start + chunk - kept_end >= context
    with pytest.raises(ValueError, match="keep nothing"):
        list(windows(3000, 100, 50))


def test_a_window_is_the_fewest_samples_that_make_its_frames(tiny_hubert_dir, tiny_whisper_dir):
    for folder in (tiny_hubert_dir, tiny_whisper_dir):
        teacher = FrozenTeacher(folder, chunk_seconds=CHUNK_SECONDS)
        assert teacher.frame_hop == 320 and teacher.frame_rate == 50.0
        samples = torch.tensor([teacher.window_samples - 1, teacher.window_samples])
        assert teacher.frame_lengths(samples).tolist() == [teacher.chunk_frames - 1, teacher.chunk_frames]
        # one frame more for every hop more: a window starting at frame a has the frames from a on
        shifted = torch.tensor([SAMPLE_RATE + TAIL + teacher.frame_hop * a for a in range(5)])
        assert (teacher.frame_lengths(shifted) - teacher.frame_lengths(shifted[:1])).tolist() == list(range(5))


@pytest.mark.parametrize("teacher_fixture", SSL_TEACHERS)
def test_long_ssl_utterance_has_the_one_piece_frames_cnn_and_layer_zero(teacher_fixture, request, wav):
    folder = request.getfixturevalue(teacher_fixture)
    whole = FrozenTeacher(folder, chunk_seconds=LONG_SECONDS + 10)
    chunked = FrozenTeacher(folder, chunk_seconds=CHUNK_SECONDS, context_seconds=1.0)
    assert chunked.context_frames >= positional_reach(chunked)
    expected_hidden, expected_cnn = run_alone(whole, wav)
    hidden, cnn, frames = chunked.forward_with_cnn(wav[None], torch.ones(1))
    assert len(list(windows(int(frames[0]), chunked.chunk_frames, chunked.context_frames))) == 4
    assert int(frames[0]) == expected_hidden.shape[1] == (len(wav) - 400) // 320 + 1
    assert hidden.shape[2] == expected_hidden.shape[1] and cnn.shape[1] == expected_cnn.shape[0]
    assert torch.allclose(cnn[0], expected_cnn, atol=ATOL)
    assert torch.allclose(hidden[0, 0], expected_hidden[0], atol=ATOL)
    for layer in range(1, hidden.shape[0]):
        cosine = F.cosine_similarity(hidden[layer, 0], expected_hidden[layer], dim=-1)
        assert cosine.min() > MIN_COSINE, layer


def test_context_short_of_the_positional_reach_changes_layer_zero(tiny_hubert_dir, wav):
    """Control: with less context than the positional convolution sees, hidden state 0 is not exact."""
    whole = FrozenTeacher(tiny_hubert_dir, chunk_seconds=LONG_SECONDS + 10)
    reach = positional_reach(whole)
    short = FrozenTeacher(tiny_hubert_dir, chunk_seconds=CHUNK_SECONDS, context_seconds=(reach - 1) / 50)
    hidden, _ = run_alone(short, wav)
    assert not torch.allclose(hidden[0], run_alone(whole, wav)[0][0], atol=1e-2)


@pytest.mark.parametrize("teacher_fixture", SSL_TEACHERS)
def test_each_window_keeps_what_the_teacher_gives_its_audio_alone(teacher_fixture, request, wav):
    teacher = FrozenTeacher(request.getfixturevalue(teacher_fixture), chunk_seconds=CHUNK_SECONDS,
                            context_seconds=1.0)
    hidden, cnn = run_alone(teacher, wav)
    plan = list(windows(hidden.shape[1], teacher.chunk_frames, teacher.context_frames))
    for i, (start, kept_start, kept_end) in enumerate(plan):
        alone_hidden, alone_cnn = run_alone(teacher, window_audio(teacher, wav, start, i == len(plan) - 1))
        assert alone_hidden.shape[1] == teacher.chunk_frames
        kept = slice(kept_start - start, kept_end - start)
        assert torch.allclose(hidden[:, kept_start:kept_end], alone_hidden[:, kept], atol=ATOL), i
        assert torch.allclose(cnn[kept_start:kept_end], alone_cnn[kept], atol=ATOL), i


def test_group_norm_cnn_of_a_long_utterance_is_normalised_over_all_of_it(tiny_groupnorm_hubert_dir, wav):
    """A group-norm CNN normalises each channel over its whole input, and its teacher normalises the waveform:
    windows use the statistics of the whole utterance (each window's own would move the CNN output by about 1.4)."""
    whole = FrozenTeacher(tiny_groupnorm_hubert_dir, chunk_seconds=LONG_SECONDS + 10)
    chunked = FrozenTeacher(tiny_groupnorm_hubert_dir, chunk_seconds=CHUNK_SECONDS, context_seconds=1.0)
    assert chunked.normalize and not chunked.use_mask
    expected_hidden, expected_cnn = run_alone(whole, wav)
    hidden, cnn = run_alone(chunked, wav)
    assert torch.allclose(cnn, expected_cnn, atol=ATOL)
    assert torch.allclose(hidden[0], expected_hidden[0], atol=ATOL)
    for layer in range(1, hidden.shape[0]):
        assert F.cosine_similarity(hidden[layer], expected_hidden[layer], dim=-1).min() > MIN_COSINE, layer
    assert isinstance(chunked.model.feature_extractor.conv_layers[0].layer_norm, torch.nn.GroupNorm)  # put back


def test_whisper_runs_70_seconds_with_its_frame_rule_and_its_convolutions(tiny_whisper_dir, wav):
    """Whisper's encoder takes 30 s at most; its convolutions take any length: the stitched CNN output is
    theirs on the log-mel of the whole utterance. (The log-mel floor, 80 dB under the loudest frame, does not
    bind on this waveform, so each window's log-mel equals the whole one's.)"""
    teacher = FrozenTeacher(tiny_whisper_dir)
    hidden, cnn, frames = teacher.forward_with_cnn(wav[None], torch.ones(1))
    assert teacher.chunk_frames == 1500
    assert int(frames[0]) == whisper_encoder.frame_lengths(len(wav)) == 3500
    assert hidden.shape == (3, 1, 3500, 32) and cnn.shape == (1, 3500, 32)
    mel = whisper_encoder.log_mel(teacher.feature_extractor, wav[None])
    assert mel.min() > mel.max() - 2.0  # log-mel scaled by 1/4: the floor is 2 under the maximum
    with torch.no_grad():
        expected_cnn = whisper_encoder.convolutions(teacher.model, mel)
    assert torch.allclose(cnn, expected_cnn, atol=1e-4 * expected_cnn.abs().max())
    assert torch.all(hidden[:, 0].abs().amax(-1) > 0)  # every frame written


def test_whisper_windows_are_its_runs_on_their_audio_alone(tiny_whisper_dir, wav):
    """No one-piece run exists past 30 s: each window's kept frames are the encoder's output on its audio alone
    (positions from 0); the first window's are the output on the first 30 s."""
    teacher = FrozenTeacher(tiny_whisper_dir)
    hidden, cnn = run_alone(teacher, wav)
    plan = list(windows(hidden.shape[1], teacher.chunk_frames, teacher.context_frames))
    assert len(plan) == 3 and plan[0][2] == 1500 - teacher.context_frames
    first_30_s, _ = run_alone(teacher, wav[: 30 * SAMPLE_RATE])
    assert torch.allclose(hidden[:, : plan[0][2]], first_30_s[:, : plan[0][2]], atol=ATOL)
    for i, (start, kept_start, kept_end) in enumerate(plan):
        alone_hidden, alone_cnn = run_alone(teacher, window_audio(teacher, wav, start, i == len(plan) - 1))
        kept = slice(kept_start - start, kept_end - start)
        assert torch.allclose(hidden[:, kept_start:kept_end], alone_hidden[:, kept], atol=ATOL), i
        assert torch.allclose(cnn[kept_start:kept_end], alone_cnn[kept], atol=ATOL), i


def test_whisper_windows_longer_than_its_positions_are_refused(tiny_whisper_dir):
    with pytest.raises(ValueError, match="at most 1500"):
        FrozenTeacher(tiny_whisper_dir, chunk_seconds=31)
    with pytest.raises(ValueError, match="keep nothing"):
        FrozenTeacher(tiny_whisper_dir, chunk_seconds=4, context_seconds=2)


@pytest.mark.parametrize("teacher_fixture", [*SSL_TEACHERS, "tiny_groupnorm_hubert_dir", "tiny_whisper_dir"])
def test_a_long_utterance_leaves_the_short_ones_of_its_batch_as_they_are(teacher_fixture, request, wav):
    teacher = FrozenTeacher(request.getfixturevalue(teacher_fixture), chunk_seconds=CHUNK_SECONDS,
                            context_seconds=1.0)
    shorts = [long_waveform(3.0, seed=1), long_waveform(5.0, seed=2)]
    batch = torch.nn.utils.rnn.pad_sequence([shorts[0], wav, shorts[1]], batch_first=True)
    lens = torch.tensor([len(shorts[0]), len(wav), len(shorts[1])]) / batch.shape[1]
    hidden, cnn, frames = teacher.forward_with_cnn(batch, lens)
    short_batch = torch.nn.utils.rnn.pad_sequence(shorts, batch_first=True)
    short_lens = torch.tensor([len(w) for w in shorts]) / short_batch.shape[1]
    short_hidden, short_cnn, short_frames = teacher.forward_with_cnn(short_batch, short_lens)
    assert frames[[0, 2]].tolist() == short_frames.tolist()
    n = short_hidden.shape[2]
    assert torch.equal(hidden[:, [0, 2], :n], short_hidden) and torch.equal(cnn[[0, 2], :n], short_cnn)
    assert torch.all(hidden[:, [0, 2], n:] == 0) and torch.all(cnn[[0, 2], n:] == 0)
    for row, wav_alone in zip([0, 2], shorts):
        alone_hidden, alone_cnn = run_alone(teacher, wav_alone)
        length = int(frames[row])
        assert torch.allclose(hidden[:, row, :length], alone_hidden, atol=ATOL), row
        assert torch.allclose(cnn[row, :length], alone_cnn, atol=ATOL), row
    long_hidden, long_cnn = run_alone(teacher, wav)
    assert torch.equal(hidden[:, 1], long_hidden) and torch.equal(cnn[1], long_cnn)
