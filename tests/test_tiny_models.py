"""The tiny local SSL models load offline through transformers and SpeechBrain."""

import pytest
import torch

from speechbrain.integrations.huggingface.wav2vec2 import Wav2Vec2


@pytest.mark.parametrize("fixture", ["tiny_wavlm_dir", "tiny_hubert_dir"])
def test_tiny_model_loads_through_speechbrain(fixture, request, tmp_path):
    folder = request.getfixturevalue(fixture)
    encoder = Wav2Vec2(str(folder), save_path=str(tmp_path), freeze=True, output_all_hiddens=True)
    wavs = torch.randn(2, 16000)
    hidden = encoder(wavs, torch.tensor([1.0, 0.5]))
    assert hidden.shape[0] == 3  # CNN projection + 2 transformer layers
    assert hidden.shape[1] == 2 and hidden.shape[-1] == 32
    assert hidden.shape[2] == 49  # 20 ms frames for 1 s at 16 kHz
