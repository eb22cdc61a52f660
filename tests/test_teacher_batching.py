"""Teacher outputs do not depend on batching, wherever teacher inputs are batched.

Four tiny teachers: HuBERT and WavLM with layer-norm CNNs and an attention
mask, HuBERT with a group-norm CNN and no attention mask (the HuBERT Base /
WavLM Base+ shape, whose real frames change when the batch is padded), and a
Whisper encoder (no mask either). Every
place that runs a teacher on a batch (the teacher wrapper, SSL features for
units, the distillation target cache, the probe feature cache) must give each
utterance what it gets alone.
"""

import numpy as np
import pytest
import soundfile as sf
import torch

from lobes.encoder import FrozenTeacher, run_encoder
from lobes.feature_cache import cache_features
from lobes.target_cache import build_target_caches
from selection.features import SSLExtractor, iter_features

LENGTHS = (5000, 15000, 9000, 15000)  # two of equal length share a forward without padding
FP16_ATOL = 2e-3  # cached values are fp16: about 3 significant digits on values of order 1


@pytest.fixture(params=["tiny_hubert_dir", "tiny_wavlm_dir", "tiny_groupnorm_hubert_dir", "tiny_whisper_dir"])
def teacher_dir(request):
    return request.getfixturevalue(request.param)


def _waveforms(seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(n, generator=generator) * 0.1 for n in LENGTHS]


def _padded(wavs):
    batch = torch.nn.utils.rnn.pad_sequence(wavs, batch_first=True)
    return batch, torch.tensor([len(w) for w in wavs], dtype=torch.float) / batch.shape[1]


def _alone(teacher, wav):
    hidden, frames = teacher(wav[None], torch.ones(1))
    return hidden[:, 0, : int(frames[0])]


def test_the_group_norm_fixture_is_changed_by_padding(tiny_groupnorm_hubert_dir):
    """Control: naive padded batching does change this teacher's frames (what the wrapper must avoid)."""
    teacher = FrozenTeacher(tiny_groupnorm_hubert_dir)
    assert not teacher.use_mask and teacher.model.config.feat_extract_norm == "group"
    wavs = _waveforms()
    batch, lens = _padded(wavs)
    naive, frames = run_encoder(teacher.model, batch, lens, teacher.normalize, use_mask=False)
    short = naive[:, 0, : int(frames[0])]
    assert not torch.allclose(short, _alone(teacher, wavs[0]), atol=1e-2)


def test_teacher_outputs_do_not_depend_on_the_batch(teacher_dir):
    teacher = FrozenTeacher(teacher_dir)
    wavs = _waveforms()
    hidden, frames = teacher(*_padded(wavs))
    for i, wav in enumerate(wavs):
        alone = _alone(teacher, wav)
        assert int(frames[i]) == alone.shape[1]
        assert torch.allclose(hidden[:, i, : int(frames[i])], alone, atol=1e-5), i


def test_teacher_cnn_output_does_not_depend_on_the_batch(teacher_dir):
    teacher = FrozenTeacher(teacher_dir)
    wavs = _waveforms(1)
    hidden, cnn, frames = teacher.forward_with_cnn(*_padded(wavs))
    for i, wav in enumerate(wavs):
        alone_hidden, alone_cnn, alone_frames = teacher.forward_with_cnn(wav[None], torch.ones(1))
        n = int(frames[i])
        assert n == int(alone_frames[0])
        assert torch.allclose(cnn[i, :n], alone_cnn[0, :n], atol=1e-5), i
        assert torch.allclose(hidden[:, i, :n], alone_hidden[:, 0, :n], atol=1e-5), i


def test_ssl_unit_features_do_not_depend_on_the_batch(teacher_dir):
    extractor = SSLExtractor(teacher_dir, layer=1)
    pairs = [(f"u{i}", wav) for i, wav in enumerate(_waveforms(2))]
    batched = dict(iter_features(pairs, extractor, batch_size=len(pairs)))
    alone = dict(iter_features(pairs, extractor, batch_size=1))
    for utt_id in alone:
        assert batched[utt_id].shape == alone[utt_id].shape
        np.testing.assert_allclose(batched[utt_id], alone[utt_id], atol=1e-5, err_msg=utt_id)


def test_target_cache_holds_each_utterance_as_the_teacher_gives_it_alone(teacher_dir, tmp_path):
    teacher = FrozenTeacher(teacher_dir)
    wavs = _waveforms(3)
    ids = [f"u{i}" for i in range(len(wavs))]

    def encoder(batch, lens):
        hidden, cnn, frames = teacher.forward_with_cnn(batch, lens)
        return {"hidden": hidden, "cnn": cnn[None]}, frames

    caches = build_target_caches(encoder, [(ids, *_padded(wavs))],
                                 {"hidden": ([1, 2], tmp_path / "targets"), "cnn": (None, tmp_path / "cnn")})
    for utt_id, wav in zip(ids, wavs):
        alone_hidden, alone_cnn, _ = teacher.forward_with_cnn(wav[None], torch.ones(1))
        alone_targets = alone_hidden[[1, 2], 0].transpose(0, 1)  # [T, 2, D]
        cached = caches["hidden"].get(utt_id)
        assert cached.shape == alone_targets.shape
        assert torch.allclose(torch.as_tensor(cached), alone_targets, atol=FP16_ATOL), utt_id
        cached_cnn = torch.as_tensor(caches["cnn"].get(utt_id))[:, 0]
        assert torch.allclose(cached_cnn, alone_cnn[0], atol=FP16_ATOL * alone_cnn.abs().max()), utt_id


def test_probe_feature_cache_holds_each_utterance_as_the_teacher_gives_it_alone(teacher_dir, tmp_path):
    teacher = FrozenTeacher(teacher_dir)
    wavs = _waveforms(4)
    rows = ["ID,duration,wav"]
    for i, wav in enumerate(wavs):
        sf.write(tmp_path / f"u{i}.flac", wav.numpy(), 16000, subtype="PCM_24")
        rows.append(f"u{i},{len(wav) / 16000:.4f},$data_root/u{i}.flac")
    manifest = tmp_path / "items.csv"
    manifest.write_text("\n".join(rows) + "\n")
    cache = cache_features(teacher, manifest, tmp_path, tmp_path / "cache", batch_size=len(wavs))
    for i in range(len(wavs)):
        audio = torch.from_numpy(sf.read(tmp_path / f"u{i}.flac", dtype="float32")[0])
        alone = _alone(teacher, audio).transpose(0, 1)  # [T, L+1, D]
        cached = torch.as_tensor(cache.get(f"u{i}"))
        assert cached.shape == alone.shape
        assert torch.allclose(cached, alone, atol=FP16_ATOL), i
