"""The offline teacher recipe: a tiny HuBERT pretraining run on the tiny corpus."""

import importlib
import json
import re
import subprocess
import sys
from types import SimpleNamespace

import pytest
import speechbrain as sb
import torch
import torch.nn.functional as F
from conftest import SYNTH_RECIPE

N_CLUSTERS = 20
WARMUP_FRACTION = 0.08  # hubert_small.yaml
TINY_MODEL = ["--encoder_dim=32", "--encoder_layers=2", "--encoder_heads=2", "--ffn_dim=64",
              "--conv_channels=32", f"--n_clusters={N_CLUSTERS}", "--batch_size=4", "--kmeans_fit_hours=0.02",
              "--num_workers=0", "--lr=0.002"]


def teacher_arguments(corpus, output_folder, epochs):
    return ["train.py", "hparams/hubert_small.yaml", f"--data_folder={corpus['data_folder']}",
            f"--manifest_folder={corpus['save_folder']}", f"--corpus_scale={corpus['scale']}",
            f"--output_folder={output_folder}", f"--number_of_epochs={epochs}", *TINY_MODEL]


def run_teacher(corpus, output_folder, epochs):
    subprocess.run([sys.executable, *teacher_arguments(corpus, output_folder, epochs)], cwd=SYNTH_RECIPE / "teacher",
                   check=True, capture_output=True, timeout=600)


def logged_epochs(output_folder):
    text = (output_folder / "train_log.txt").read_text()
    return [(int(e), float(loss)) for e, loss in re.findall(r"epoch: (\d+),.*?train loss: ([\d.e+-]+)", text)]


def logged_validation(output_folder):
    """``{stat: value}`` of every epoch's validation in train_log.txt (values as logged: 3 significant digits)."""
    return [{key: float(value) for key, value in re.findall(r"valid (\w+): ([\d.e+-]+)", line)}
            for line in (output_folder / "train_log.txt").read_text().splitlines() if line.startswith("epoch: ")]


def load_teacher_recipe():
    return importlib.import_module("tasks.teacher_pretraining")


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


def test_results_are_the_validation_of_the_best_checkpoint(teacher_run):
    """results.json holds the validation of the checkpoint with the lowest validation loss. The validation
    masks are fixed, so every epoch (either run) scores the same masked frames: one majority-class share.

    Masked-unit accuracy above that majority share is out of reach here: on the tiny corpus (about 30 teacher
    utterances) the tiny HuBERT stays below it even after 40 epochs (validation loss rises while it overfits).
    """
    results = json.loads((teacher_run[0] / "results.json").read_text())
    valid = logged_validation(teacher_run[0])
    assert len(valid) == 4
    assert len({stats["chance_majority"] for stats in valid}) == 1
    assert results["chance_majority"] == pytest.approx(valid[0]["chance_majority"], rel=5e-3)
    best = min(stats["loss"] for stats in valid)
    assert results["valid_loss"] == pytest.approx(best, rel=5e-3)
    assert any(results["masked_unit_acc"] == pytest.approx(stats["masked_unit_acc"], rel=5e-3)
               for stats in valid if stats["loss"] == best)
    assert results["chance_uniform"] == pytest.approx(1 / N_CLUSTERS)
    assert results["kmeans_quality"]["n_clusters"] == N_CLUSTERS
    assert results["kmeans_quality"]["clusters_used"] > N_CLUSTERS // 2


def test_masked_unit_accuracy_and_majority_count_masked_frames_only():
    """TeacherBrain's validation figures: accuracy and majority-class share over the masked frames with a
    target (not the unmasked ones, nor padding), accumulated over batches; the loss is on those frames."""
    recipe = load_teacher_recipe()
    brain = recipe.TeacherBrain(modules={"head": torch.nn.Identity()}, hparams={"n_clusters": 3},
                                run_opts={"device": "cpu"})

    def batch(targets, target_lens, masked, predicted):
        logits = 10.0 * F.one_hot(torch.tensor(predicted), 3).float()
        return (logits, torch.tensor(masked)), SimpleNamespace(targets=(torch.tensor(targets),
                                                                        torch.tensor(target_lens)))

    # utterance 2 has 3 targets (relative length 0.6): its frames 3-4 are padding, masked or not
    first = batch(targets=[[0, 0, 0, 1, 2], [2, 2, 1, 0, 0]], target_lens=[1.0, 0.6],
                  masked=[[False, False, False, True, True], [True, True, False, False, True]],
                  predicted=[[0, 0, 0, 0, 2], [1, 2, 1, 1, 1]])
    second = batch(targets=[[0, 0]], target_lens=[1.0], masked=[[True, True]], predicted=[[0, 0]])
    brain.on_stage_start(sb.Stage.TEST)
    loss = brain.compute_objectives(*first, sb.Stage.TEST)
    brain.compute_objectives(*second, sb.Stage.TEST)
    brain.on_stage_end(sb.Stage.TEST, 0.0)
    # masked frames with a target: targets 1, 2 | 2, 2 | 0, 0; predicted 0, 2 | 1, 2 | 0, 0
    assert brain.last_stats["masked_unit_acc"] == pytest.approx(4 / 6)
    assert brain.last_stats["chance_majority"] == pytest.approx(3 / 6)
    assert brain.last_stats["chance_uniform"] == pytest.approx(1 / 3)
    logits, _ = first[0]
    expected = F.cross_entropy(torch.stack([logits[0, 3], logits[0, 4], logits[1, 0], logits[1, 1]]),
                               torch.tensor([1, 2, 2, 2]))
    assert loss.item() == pytest.approx(expected.item())


@pytest.mark.parametrize("name,millions", [("hubert_small", (3, 8)), ("hubert_base_gpu", (90, 100))])
def test_every_teacher_hparams_builds_a_hubert(name, millions):
    from hyperpyyaml import load_hyperpyyaml

    with open(SYNTH_RECIPE / "teacher" / "hparams" / f"{name}.yaml", encoding="utf-8") as handle:
        hparams = load_hyperpyyaml(handle)
    parameters = sum(p.numel() for p in hparams["hubert"].parameters()) / 1e6
    assert millions[0] < parameters < millions[1]
    assert hparams["hubert"].config.feat_extract_norm == "layer"


def test_torchrun_two_processes_schedule_ends_where_training_does(tiny_corpus, tmp_path):
    """Under torchrun each process steps through its shard: the warm-up/decay schedule counts those steps."""
    output = tmp_path / "teacher"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               *teacher_arguments(tiny_corpus, output, epochs=2)]
    done = subprocess.run(command, cwd=SYNTH_RECIPE / "teacher", capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads((output / "results.json").read_text())
    assert results["optimizer_steps"] == results["schedule_steps"]
    log = (output / "train_log.txt").read_text()
    assert re.findall(r"^epoch: (\d+)", log, flags=re.M) == ["1", "2"]  # the main process logs
    last_lr = float(re.findall(r"^epoch: 2, lr: ([\d.e+-]+)", log, flags=re.M)[0])
    warmup = int(WARMUP_FRACTION * results["schedule_steps"])
    assert last_lr == pytest.approx(0.002 / max(1, results["schedule_steps"] - warmup), rel=0.02)
