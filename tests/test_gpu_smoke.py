"""The GPU smoke tier (``pytest -m gpu``): the LibriSpeech recipes for a few steps on a GPU, in fp16.

What only a GPU shows: fp16 autocast and gradient scaling in distillation and the
probe, the nccl process group with one process per GPU (2 when there are 2 GPUs),
the teacher and student on the device. A fake LibriSpeech tree and the tiny HF
HuBERT stand in for the corpus and the hub teacher. Skipped without CUDA.
"""

import json
import math
import re
import subprocess
import sys

import pytest
import torch
from conftest import ROOT
from fake_corpora import make_fake_librispeech

LIBRISPEECH = ROOT / "recipes" / "LibriSpeech"

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="the GPU tier needs CUDA")]


@pytest.fixture(scope="module")
def fake_librispeech(tmp_path_factory):
    splits = ["train-clean-100", "train-clean-360", "train-other-500", "dev-clean", "dev-other", "test-clean",
              "test-other"]
    return make_fake_librispeech(tmp_path_factory.mktemp("ls"), splits, speakers=2, chapters=1, utterances=4)


def test_librispeech_distillation_fp16_over_the_gpus(fake_librispeech, tiny_hubert_dir, tmp_path):
    n_processes = min(torch.cuda.device_count(), 2)
    output = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n_processes}",
               str(LIBRISPEECH / "distillation" / "train.py"),
               str(LIBRISPEECH / "distillation" / "hparams" / "distill_hubert_kmeans.yaml"),
               f"--data_folder={fake_librispeech}", f"--manifest_folder={tmp_path / 'manifests'}",
               f"--teacher_source={tiny_hubert_dir}", f"--output_folder={output}",
               f"--units_folder={tmp_path / 'units'}", "--units_overrides={n_clusters: 8, fit_hours: 0.01}",
               "--budget_fraction=0.5", "--num_workers=0", "--batch_size=2", "--crop_seconds=1.0",
               "--valid_utterances=2", "--target_layers=[1,2]", "--student_layers=1", "--total_steps=null", "--number_of_epochs=2",
               "--precision=fp16"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((output / "distillation.json").read_text())
    assert summary["epochs"] == 2 and summary["optimizer_steps"] == summary["schedule_steps"]
    losses = [float(v) for v in re.findall(r"train loss: ([^,\s]+)", (output / "train_log.txt").read_text())]
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses), losses
    assert json.loads((output / "selection" / "selection.json").read_text())["world_size"] == n_processes
    assert (output / "save" / "student" / "config.json").exists()


def test_librispeech_asr_probe_fp16_on_the_gpu(fake_librispeech, tiny_hubert_dir, tmp_path):
    from tasks.asr_probe import main

    argv = [str(LIBRISPEECH / "ASR" / "hparams" / "ctc_probe.yaml"), f"--data_folder={fake_librispeech}",
            f"--manifest_folder={tmp_path / 'manifests'}", f"--encoder_source={tiny_hubert_dir}",
            "--encoder_name=tiny", f"--output_folder={tmp_path / 'asr'}", f"--feature_folder={tmp_path / 'f'}",
            "--lstm_units=16", "--lstm_layers=1", "--number_of_epochs=2", "--num_workers=0",
            "--device=cuda:0", "--precision=fp16"]
    main(argv)
    results = json.loads((tmp_path / "asr" / "results.json").read_text())
    assert set(results["metrics"]) == {"test-clean", "test-other"}
    for metrics in results["metrics"].values():
        assert all(math.isfinite(value) for value in metrics.values()), metrics


def test_two_folders_to_a_student_on_the_gpu(tiny_hubert_dir, tmp_path):
    """The one command of your own audio, on the GPU in fp16, with the placement SpeechBrain resolves."""
    from test_audio_folders import noise, write

    for i in range(24):
        write(tmp_path / "pool" / f"p{i:02d}.wav", noise(2.0, seed=i), 16000, subtype="PCM_16")
    write(tmp_path / "pool" / "long.flac", noise(70.0, seed=99), 16000)
    for i in range(12):
        write(tmp_path / "target" / f"t{i:02d}.wav", noise(1.5, seed=100 + i), 16000, subtype="PCM_16")
    output = tmp_path / "run"
    command = [sys.executable, str(ROOT / "recipes" / "AudioFolders" / "distillation" / "train.py"),
               str(ROOT / "recipes" / "AudioFolders" / "distillation" / "hparams" / "distill.yaml"),
               f"--pool_folder={tmp_path / 'pool'}", f"--target_folder={tmp_path / 'target'}", "--budget_hours=0.01",
               f"--teacher_source={tiny_hubert_dir}", f"--manifest_folder={tmp_path / 'manifests'}",
               f"--output_folder={output}", f"--units_folder={tmp_path / 'units'}", "--units_overrides={n_clusters: 8}",
               "--number_of_epochs=2", "--num_workers=0", "--batch_size=4", "--crop_seconds=1.0",
               "--valid_utterances=3", "--heldout_splits=[heldout_pool]", "--precision=fp16"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((output / "distillation.json").read_text())
    assert summary["epochs"] == 2 and summary["heldout_loss"]["heldout_pool"]
    assert summary["device"].startswith("cuda") and summary["precision"] == "fp16"  # resolved, not asked for
