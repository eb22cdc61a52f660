"""The one command from two folders of audio to a distilled, exported student."""

import json

import pytest
from transformers import AutoModel

from common.manifest import read_manifest
from conftest import ROOT
from corpora.audio_folders import REPORT_NAME
from tasks.asr_probe import main as asr_main
from tasks.distillation import main
from test_audio_folders import make_pool, noise, write

HPARAMS = ROOT / "recipes" / "AudioFolders" / "distillation" / "hparams" / "distill.yaml"
ASR_HPARAMS = ROOT / "recipes" / "AudioFolders" / "ASR" / "hparams" / "ctc_probe.yaml"


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A pool tree with every fault (mixed formats and rates, stereo, 70 s, corrupt, empty, nested, spaces) and a target."""
    root = tmp_path_factory.mktemp("your_audio")
    files = make_pool(root / "my pool")
    for i in range(50):  # enough target for a held-out draw of its own
        write(root / "my target" / f"sub {i % 3}" / f"t{i:02d}.wav", noise(1.0, seed=300 + i), 16000,
              subtype="PCM_16")
    for i in range(20):  # transcribed audio for the ASR probe, a transcript beside each file
        write(root / "transcribed" / f"u{i:02d}.flac", noise(1.0, seed=400 + i), 16000)
        (root / "transcribed" / f"u{i:02d}.txt").write_text(["hello world", "good morning", "see you"][i % 3])
    return root, files


@pytest.mark.parametrize("teacher", ["tiny_whisper_dir", "tiny_hubert_dir"])
def test_two_folders_to_an_exported_student(teacher, folders, request, tmp_path):
    """The default command with a tiny teacher; another teacher family is one argument, its student follows."""
    root, files = folders
    teacher_dir = request.getfixturevalue(teacher)
    manifests, run = tmp_path / "manifests", tmp_path / "run"
    main([str(HPARAMS), f"--pool_folder={root / 'my pool'}", f"--target_folder={root / 'my target'}",
          "--budget_hours=0.01", f"--teacher_source={teacher_dir}", f"--manifest_folder={manifests}",
          f"--output_folder={run}", f"--units_folder={tmp_path / 'units'}", "--units_overrides={n_clusters: 8}",
          "--number_of_epochs=1", "--num_workers=0", "--batch_size=4", "--crop_seconds=1.0",
          "--valid_utterances=3", f"--asr_train_folder={root / 'transcribed'}"])

    summary = json.loads((run / "distillation.json").read_text())
    assert summary["student"] == ("DistilWhisper" if teacher == "tiny_whisper_dir" else "DistilHuBERT")
    assert summary["teacher"] == str(teacher_dir) and summary["optimizer_steps"] > 0
    AutoModel.from_pretrained(run / "save" / "student")  # the exported student loads as any HF model
    sets = summary["evaluation_sets"]  # validation and held-out audio were never selectable
    assert sets["valid"]["utterances"] == 3 and sets["valid"]["in_pool"] == 0
    assert {split: entry["in_pool"] for split, entry in sets["heldout"].items()} == {"heldout_target": 0,
                                                                                    "heldout_pool": 0}
    assert set(summary["heldout_loss"]) == {"heldout_target", "heldout_pool"}

    report = json.loads((manifests / REPORT_NAME).read_text())
    skipped = json.dumps(report)
    for fault in ("corrupt", "empty", "zero_bytes", "nonfinite"):
        assert files[fault].name in skipped, fault
    subset = read_manifest(run / "selection" / "subset.csv")
    pool = set(read_manifest(manifests / "pool.csv").ids)
    assert subset.ids and set(subset.ids) <= pool and 0 < subset.total_hours <= 0.01 + 31 / 3600
    assert max(subset.durations) <= 30.0  # the 70 s file is read as segments only
    kaldi_ids = [line.split()[0] for line in (run / "selection" / "kaldi" / "segments").read_text().splitlines()]
    assert len(kaldi_ids) == len(subset)
    assert (run / "selection" / "lhotse" / "cuts.jsonl.gz").exists()

    probe = tmp_path / "asr"  # the exported student, probed on the transcribed folder's draws
    asr_main([str(ASR_HPARAMS), f"--encoder_source={run / 'save' / 'student'}", f"--manifest_folder={manifests}",
              f"--output_folder={probe}", f"--feature_folder={tmp_path / 'features'}", "--lstm_units=8",
              "--lstm_layers=1", "--number_of_epochs=1", "--num_workers=0", "--torch_threads=1"])
    results = json.loads((probe / "results.json").read_text())
    assert set(results["metrics"]) == {"asr_test"} and results["train_hours"] > 0


def test_the_probe_names_what_to_prepare_when_no_transcribed_audio_was(tmp_path):
    with pytest.raises(FileNotFoundError, match="asr_train.csv, asr_dev.csv, asr_test.csv missing .*--asr_train_folder"):
        asr_main([str(ASR_HPARAMS), f"--manifest_folder={tmp_path}", f"--output_folder={tmp_path / 'asr'}"])
