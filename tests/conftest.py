"""Shared fixtures: tiny HF SSL models built locally and a tiny SynthDomains corpus."""

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SYNTH_RECIPE = ROOT / "recipes" / "SynthDomains"
sys.path.insert(0, str(SYNTH_RECIPE))  # makes `synthdomains_prepare` and `synthdomains` importable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _save_tiny_ssl(folder, config_class, model_class):
    from transformers import Wav2Vec2FeatureExtractor

    config = config_class(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        conv_dim=(32, 32, 32, 32, 32, 32, 32), conv_stride=(5, 2, 2, 2, 2, 2, 2),
        conv_kernel=(10, 3, 3, 3, 3, 2, 2), num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4, layerdrop=0.0, hidden_dropout=0.1, attention_dropout=0.1,
        feat_extract_norm="layer",  # per-frame norm: outputs do not depend on batch padding
    )
    model_class(config).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=16000, padding_value=0.0,
        do_normalize=False, return_attention_mask=True,
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


TINY_SCALE = 0.01


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """A tiny SynthDomains corpus made by the real generator (every split, domain and engine).

    Returns a dict with ``data_folder``, ``save_folder`` (manifests), ``summary`` and ``scale``.
    """
    from synthdomains_prepare import prepare_synthdomains

    root = tmp_path_factory.mktemp("synthdomains")
    data_folder, save_folder = root / "data", root / "manifests"
    summary = prepare_synthdomains(data_folder, save_folder, scale=TINY_SCALE, seed=0)
    return {"data_folder": data_folder, "save_folder": save_folder, "summary": summary, "scale": TINY_SCALE}


@pytest.fixture
def keep_threads():
    """The probe recipes set torch's thread count; give the rest of the session its own back."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
