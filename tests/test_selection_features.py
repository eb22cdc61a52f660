"""Feature extractors: MFCC and hidden layers of tiny HF SSL models, streamed."""

import numpy as np
import pytest
import soundfile as sf
import torch

from selection.audio import AudioStream
from selection.features import MFCCExtractor, SSLExtractor, iter_features
from common.manifest import read_manifest


def test_mfcc_shapes_and_rate():
    extractor = MFCCExtractor()
    feats = extractor([torch.randn(16000), torch.randn(8000)])
    assert extractor.frame_rate == 100 and extractor.dim == 39
    assert [f.shape for f in feats] == [(101, 39), (51, 39)]
    assert all(f.dtype == np.float32 and np.isfinite(f).all() for f in feats)


@pytest.mark.parametrize("fixture", ["tiny_wavlm_dir", "tiny_hubert_dir"])
def test_ssl_layer_shapes_and_padding(fixture, request):
    extractor = SSLExtractor(request.getfixturevalue(fixture), layer=1)
    assert extractor.frame_rate == 50 and extractor.dim == 32
    long, short = torch.randn(16000), torch.randn(8000)
    batched = extractor([long, short])
    assert [f.shape for f in batched] == [(49, 32), (24, 32)]  # padded frames cut off
    alone = extractor([short])[0]
    assert alone.shape == (24, 32)
    assert np.allclose(batched[1], alone, atol=1e-4)  # the padding changes none of the real frames
    assert extractor([torch.randn(100)])[0].shape == (0, 32)  # shorter than the receptive field


def test_ssl_layer_range(tiny_wavlm_dir):
    assert SSLExtractor(tiny_wavlm_dir, layer=-1).layer == 2
    with pytest.raises(ValueError, match="layer 3 out of range"):
        SSLExtractor(tiny_wavlm_dir, layer=3)


def test_attention_mask_makes_batching_exact(tmp_path):
    """With a layer-norm front-end and a mask, padding does not change the features."""
    from transformers import Wav2Vec2FeatureExtractor, WavLMConfig, WavLMModel

    torch.manual_seed(0)
    config = WavLMConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        conv_dim=(32,) * 7, conv_stride=(5, 2, 2, 2, 2, 2, 2), conv_kernel=(10, 3, 3, 3, 3, 2, 2),
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, layerdrop=0.0,
        feat_extract_norm="layer", do_stable_layer_norm=True)
    WavLMModel(config).save_pretrained(tmp_path)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0,
                             do_normalize=True, return_attention_mask=True).save_pretrained(tmp_path)
    extractor = SSLExtractor(tmp_path, layer=2)
    assert extractor.encoder.use_mask and extractor.encoder.normalize
    short = torch.randn(8000)
    batched = extractor([torch.randn(16000), short])[1]
    assert np.allclose(batched, extractor([short])[0], atol=1e-4)


def test_iter_features_streams_per_utterance(tmp_path):
    rng = np.random.default_rng(0)
    lines = ["ID,duration,wav"]
    for i in range(5):
        sf.write(tmp_path / f"{i}.flac", 0.1 * rng.normal(size=1600 * (i + 1)), 16000)
        lines.append(f"u{i},{0.1 * (i + 1)},$data_root/{i}.flac")
    lines.append("gone,1,$data_root/gone.flac")
    (tmp_path / "m.csv").write_text("\n".join(lines) + "\n")
    stream = AudioStream(read_manifest(tmp_path / "m.csv", data_root=tmp_path))
    features = iter_features(stream, MFCCExtractor(), batch_size=2)
    assert iter(features) is features  # a generator, not a list
    got = list(features)
    assert [utt_id for utt_id, _ in got] == [f"u{i}" for i in range(5)]
    assert [f.shape[0] for _, f in got] == [1 + 1600 * (i + 1) // 160 for i in range(5)]
    assert [utt_id for utt_id, _ in stream.skipped] == ["gone"]
    with pytest.raises(ValueError):
        next(iter_features(stream, MFCCExtractor(), batch_size=0))
