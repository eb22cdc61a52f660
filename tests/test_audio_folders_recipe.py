"""The one command from two folders of audio to a distilled, exported student."""

import json

import pytest
from transformers import AutoModel

from common.manifest import read_manifest
from conftest import ROOT
from corpora.audio_folders import REPORT_NAME
from tasks.distillation import main
from test_audio_folders import make_pool, noise, write

HPARAMS = ROOT / "recipes" / "AudioFolders" / "distillation" / "hparams" / "distill.yaml"


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A pool tree with every fault (mixed formats and rates, stereo, 70 s, corrupt, empty, nested, spaces) and a target."""
    root = tmp_path_factory.mktemp("your_audio")
    files = make_pool(root / "my pool")
    for i in range(50):  # enough target for a held-out draw of its own
        write(root / "my target" / f"sub {i % 3}" / f"t{i:02d}.wav", noise(1.0, seed=300 + i), 16000,
              subtype="PCM_16")
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
          "--valid_utterances=3"])

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
