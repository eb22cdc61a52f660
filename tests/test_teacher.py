"""The offline teacher recipe: a tiny HuBERT pretraining run on the tiny corpus."""

import re
import subprocess
import sys

import pytest
import torch

from conftest import SYNTH_RECIPE

TINY_MODEL = ["--encoder_dim=32", "--encoder_layers=2", "--encoder_heads=2", "--ffn_dim=64",
              "--conv_channels=32", "--n_clusters=20", "--batch_size=4", "--kmeans_fit_hours=0.02",
              "--num_workers=0", "--lr=0.002"]


def run_teacher(corpus, output_folder, epochs):
    command = [sys.executable, "train.py", "hparams/hubert_small.yaml",
               f"--data_folder={corpus['data_folder']}", f"--manifest_folder={corpus['save_folder']}",
               f"--corpus_scale={corpus['scale']}", f"--output_folder={output_folder}",
               f"--number_of_epochs={epochs}", *TINY_MODEL]
    subprocess.run(command, cwd=SYNTH_RECIPE / "teacher", check=True, capture_output=True, timeout=600)


def logged_epochs(output_folder):
    text = (output_folder / "train_log.txt").read_text()
    return [(int(e), float(loss)) for e, loss in re.findall(r"epoch: (\d+),.*?train loss: ([\d.e+-]+)", text)]


@pytest.fixture(scope="module")
def teacher_run(tiny_corpus, tmp_path_factory):
    output_folder = tmp_path_factory.mktemp("teacher")
    run_teacher(tiny_corpus, output_folder, epochs=2)
    first = logged_epochs(output_folder)
    run_teacher(tiny_corpus, output_folder, epochs=4)  # same command, more epochs: resumes
    return output_folder, first, logged_epochs(output_folder)


def test_rerun_resumes_from_checkpoint(teacher_run):
    _, first, second = teacher_run
    assert [e for e, _ in first] == [1, 2]
    assert [e for e, _ in second] == [1, 2, 3, 4]  # epochs 1-2 were not trained again


def test_training_loss_decreases(teacher_run):
    _, _, epochs = teacher_run
    losses = [loss for _, loss in epochs]
    assert losses[-1] < losses[0] - 0.05, losses


def test_exported_teacher_loads_offline(teacher_run, tmp_path):
    from speechbrain.integrations.huggingface.wav2vec2 import Wav2Vec2
    from transformers import AutoModel

    folder = teacher_run[0] / "save" / "teacher_hf"
    model = AutoModel.from_pretrained(folder)
    assert type(model).__name__ == "HubertModel" and model.config.num_hidden_layers == 2
    encoder = Wav2Vec2(str(folder), save_path=str(tmp_path), freeze=True, output_all_hiddens=True)
    hidden = encoder(torch.randn(2, 16000), torch.tensor([1.0, 0.6]))
    assert hidden.shape[:2] == (3, 2) and hidden.shape[-1] == 32


def test_results_report_accuracy_against_chance(teacher_run):
    import json

    results = json.loads((teacher_run[0] / "results.json").read_text())
    assert 0.0 <= results["masked_unit_acc"] <= 1.0
    assert results["chance_uniform"] == pytest.approx(1 / 20)
    assert results["kmeans_quality"]["clusters_used"] > 10


@pytest.mark.parametrize("name,millions", [("hubert_small", (3, 8)), ("hubert_base_gpu", (90, 100))])
def test_every_teacher_hparams_builds_a_hubert(name, millions):
    from hyperpyyaml import load_hyperpyyaml

    with open(SYNTH_RECIPE / "teacher" / "hparams" / f"{name}.yaml", encoding="utf-8") as handle:
        hparams = load_hyperpyyaml(handle)
    parameters = sum(p.numel() for p in hparams["hubert"].parameters()) / 1e6
    assert millions[0] < parameters < millions[1]
    assert hparams["hubert"].config.feat_extract_norm == "layer"
