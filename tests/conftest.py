"""Shared fixtures: tiny HF SSL models built locally and a tiny SynthDomains corpus."""

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SYNTH_RECIPE = ROOT / "recipes" / "SynthDomains"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _save_tiny_ssl(folder, config_class, model_class, norm="layer"):
    """Save a tiny model; ``norm="group"`` gives the HuBERT Base / WavLM Base+ shape (no attention mask)."""
    from transformers import Wav2Vec2FeatureExtractor

    config = config_class(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        conv_dim=(32, 32, 32, 32, 32, 32, 32), conv_stride=(5, 2, 2, 2, 2, 2, 2),
        conv_kernel=(10, 3, 3, 3, 3, 2, 2), num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4, layerdrop=0.0, hidden_dropout=0.1, attention_dropout=0.1,
        feat_extract_norm=norm,
    )
    model_class(config).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(  # as the released models: layer norm with a mask, group norm normalised without
        feature_size=1, sampling_rate=16000, padding_value=0.0,
        do_normalize=norm == "group", return_attention_mask=norm == "layer",
    ).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_wavlm_dir(tmp_path_factory):
    """A 2-layer, 32-wide WavLM (dropout 0.1) saved with ``save_pretrained`` (loads offline)."""
    import torch
    from transformers import WavLMConfig, WavLMModel

    torch.manual_seed(0)
    return _save_tiny_ssl(tmp_path_factory.mktemp("tiny_wavlm"), WavLMConfig, WavLMModel)


@pytest.fixture(scope="session")
def tiny_hubert_dir(tmp_path_factory):
    """A 2-layer, 32-wide HuBERT (dropout 0.1) saved with ``save_pretrained`` (loads offline)."""
    import torch
    from transformers import HubertConfig, HubertModel

    torch.manual_seed(0)
    return _save_tiny_ssl(tmp_path_factory.mktemp("tiny_hubert"), HubertConfig, HubertModel)


@pytest.fixture(scope="session")
def tiny_groupnorm_hubert_dir(tmp_path_factory):
    """A 2-layer, 32-wide HuBERT with a group-norm CNN and no attention mask (the HuBERT Base shape)."""
    import torch
    from transformers import HubertConfig, HubertModel

    torch.manual_seed(0)
    return _save_tiny_ssl(tmp_path_factory.mktemp("tiny_groupnorm_hubert"), HubertConfig, HubertModel, norm="group")


@pytest.fixture(scope="session")
def tiny_whisper_dir(tmp_path_factory):
    """A 2-layer, 32-wide Whisper (random weights, 80 mel bins) saved with ``save_pretrained``."""
    import torch
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny_whisper")
    config = WhisperConfig(vocab_size=64, num_mel_bins=80, d_model=32, encoder_layers=2, decoder_layers=1,
                           encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
                           decoder_ffn_dim=64, max_source_positions=1500, max_target_positions=32,
                           pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1)
    WhisperModel(config).save_pretrained(folder)
    WhisperFeatureExtractor(feature_size=80, sampling_rate=16000).save_pretrained(folder)
    return folder


TINY_SCALE = 0.01
TINY_JOBS = 2


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """A tiny SynthDomains corpus made by the real generator (every split, domain and engine).

    Made as on a fresh machine: two worker processes and an empty Kokoro model
    cache (``KOKORO_JA_CACHE``), so that the engines' one-time assets must be
    built without racing.

    Returns a dict with ``data_folder``, ``save_folder`` (manifests), ``summary``,
    ``scale``, ``n_jobs`` and ``kokoro_cache``.
    """
    from corpora.synthdomains.prepare import prepare_synthdomains

    root = tmp_path_factory.mktemp("synthdomains")
    data_folder, save_folder, kokoro_cache = root / "data", root / "manifests", root / "kokoro_cache"
    previous = os.environ.get("KOKORO_JA_CACHE")
    os.environ["KOKORO_JA_CACHE"] = str(kokoro_cache)
    try:
        summary = prepare_synthdomains(data_folder, save_folder, scale=TINY_SCALE, seed=0, n_jobs=TINY_JOBS)
    finally:
        if previous is None:
            os.environ.pop("KOKORO_JA_CACHE")
        else:
            os.environ["KOKORO_JA_CACHE"] = previous
    return {"data_folder": data_folder, "save_folder": save_folder, "summary": summary, "scale": TINY_SCALE,
            "n_jobs": TINY_JOBS, "kokoro_cache": kokoro_cache}


@pytest.fixture
def keep_threads():
    """The probe recipes set torch's thread count; give the rest of the session its own back."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
