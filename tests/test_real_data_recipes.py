"""The LibriSpeech and VoxCeleb recipes, end to end in debug mode on fake trees with the real layout.

Each runs the task script every dataset shares (the recipe folders link to it)
with its own hparams file, its preparation and the tiny HF HuBERT as teacher or
encoder: selection + distillation on a fake train-960, the ASR probe on fake
train-clean-100 / test-clean / test-other with live features, the speaker probe
on fake VoxCeleb1 identification splits and trials.
"""

import csv
import importlib
import importlib.util
import json
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from speechbrain.utils.metric_stats import EER

from conftest import ROOT
from tasks.asr_probe import error_rate_stats
from fake_corpora import make_fake_librispeech, make_fake_voxceleb1

LIBRISPEECH = ROOT / "recipes" / "LibriSpeech"
VOXCELEB = ROOT / "recipes" / "VoxCeleb"
LS_DISTILL_HPARAMS = sorted((LIBRISPEECH / "distillation" / "hparams").glob("*.yaml"))
LS_SPLITS = ["train-clean-100", "train-clean-360", "train-other-500", "dev-clean", "dev-other",
             "test-clean", "test-other"]


def load_script(path):
    """A recipe script as a module: its own file, whose ``main`` is the task's."""
    spec = importlib.util.spec_from_file_location(f"recipe_{path.parent.parent.name}_{path.parent.name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def written_hypotheses(wer_file):
    """``{ID: hypothesis words}`` from the alignments of a ``wer_<split>.txt`` (ErrorRateStats.write_stats)."""
    lines = wer_file.read_text().splitlines()
    return {match.group(1): [w.strip() for w in lines[k + 3].split(";") if w.strip() not in ("", "<eps>")]
            for k, line in enumerate(lines) if (match := re.match(r"(\S+), %WER ", line))}


@pytest.fixture(scope="module")
def fake_librispeech(tmp_path_factory):
    return make_fake_librispeech(tmp_path_factory.mktemp("ls"), LS_SPLITS, speakers=2, chapters=1, utterances=3)


@pytest.fixture(scope="module")
def fake_voxceleb(tmp_path_factory):
    return make_fake_voxceleb1(tmp_path_factory.mktemp("vox"), speakers=6, videos=2, utterances=3, trial_speakers=2)


def test_each_dataset_script_runs_the_shared_task():
    for dataset, task, module in [(LIBRISPEECH, "distillation", "tasks.distillation"), (LIBRISPEECH, "ASR",
                                   "tasks.asr_probe"), (VOXCELEB, "speaker", "tasks.speaker_probe"),
                                  (LIBRISPEECH, "selection", "tasks.select_subset")]:
        script = next((dataset / task).glob("*.py"))
        assert not script.is_symlink()
        assert load_script(script).main is importlib.import_module(module).main


LS_VARIANTS = [(p, None) for p in LS_DISTILL_HPARAMS] + [
    (LIBRISPEECH / "distillation" / "hparams" / "distill_hubert_kmeans.yaml", s) for s in ("random", "full")]


@pytest.mark.parametrize("hparams_file, selection", LS_VARIANTS, ids=lambda v: getattr(v, "stem", v))
def test_librispeech_distillation_runs(hparams_file, selection, fake_librispeech, tiny_hubert_dir, tmp_path):
    manifests = tmp_path / "manifests"
    argv = [str(hparams_file), f"--data_folder={fake_librispeech}", f"--manifest_folder={manifests}",
            f"--teacher_source={tiny_hubert_dir}", f"--output_folder={tmp_path / 'run'}",
            "--num_workers=0", "--batch_size=2", "--crop_seconds=1.0", "--valid_utterances=2",
            "--debug", "--debug_batches=1", "--debug_epochs=1", f"--units_folder={tmp_path / 'units'}",
            "--units_overrides={n_clusters: 8, fit_hours: 0.01}"]
    if selection is not None:  # another method (the LibriSpeech contrastive knobs apply to contrastive only)
        argv += [f"--selection={selection}"]
    if "fithubert" in hparams_file.stem:  # the tiny teacher is 32 wide and 2 layers deep
        argv += ["--fit_hidden=16", "--fit_ffn=16", "--fit_heads=2", "--fit_conv_channels=[16,16,16,16,16,16,16]",
                 "--hint_weights=[0.1,1.0]"]
    else:
        argv += ["--target_layers=[1,2]", "--student_layers=1"]
    load_script(LIBRISPEECH / "distillation" / "train.py").main(argv)

    pool = (manifests / "pool.csv").read_text().splitlines()
    assert pool[0] == "ID,duration,wav,spk_id,wrd" and len(pool) - 1 == 3 * 2 * 3  # three training splits
    assert (manifests / "target.csv").exists() and (manifests / "dev-clean.csv").exists()
    summary = json.loads((tmp_path / "run" / "distillation.json").read_text())
    assert summary["teacher"] == str(tiny_hubert_dir)
    assert (tmp_path / "run" / "save" / "student" / "config.json").exists()
    pool_hours = sum(float(line.split(",")[1]) for line in pool[1:]) / 3600
    if selection == "full":
        assert summary["subset_hours"] == pytest.approx(pool_hours, abs=1e-3)
    else:
        assert summary["subset_hours"] <= 0.1 * pool_hours + 2.5 / 3600  # the budget, within one utterance


def test_librispeech_asr_probe_runs_live(fake_librispeech, tiny_hubert_dir, tmp_path, keep_threads):
    argv = [str(LIBRISPEECH / "ASR" / "hparams" / "ctc_probe.yaml"), f"--data_folder={fake_librispeech}",
            f"--manifest_folder={tmp_path / 'manifests'}", f"--encoder_source={tiny_hubert_dir}",
            "--encoder_name=tiny", f"--output_folder={tmp_path / 'asr'}", f"--feature_folder={tmp_path / 'f'}",
            "--lstm_units=16", "--lstm_layers=1", "--number_of_epochs=1", "--num_workers=0", "--torch_threads=1"]
    load_script(LIBRISPEECH / "ASR" / "train.py").main(argv)
    results = json.loads((tmp_path / "asr" / "results.json").read_text())
    assert set(results["metrics"]) == {"test-clean", "test-other"}
    for split, metrics in results["metrics"].items():
        # every utterance of the split scored once; the rates are those of the hypotheses written
        with open(tmp_path / "manifests" / f"{split}.csv", newline="") as handle:
            refs = {row["ID"]: row["wrd"].split() for row in csv.DictReader(handle)}
        hyps = written_hypotheses(tmp_path / "asr" / f"wer_{split}.txt")
        assert hyps.keys() == refs.keys() and len(refs) == 2 * 3  # speakers x utterances of the fake split
        for kind, stats in error_rate_stats().items():
            stats.append(list(refs), [hyps[i] for i in refs], list(refs.values()))
            assert metrics[kind] == pytest.approx(stats.summarize("error_rate")), (split, kind)
    assert not (tmp_path / "f").exists()  # live features: nothing cached


@pytest.mark.parametrize("probe", ["sid_probe", "asv_probe"])
def test_voxceleb_speaker_probe_runs_live(probe, fake_voxceleb, tiny_hubert_dir, tmp_path, keep_threads):
    argv = [str(VOXCELEB / "speaker" / "hparams" / f"{probe}.yaml"), f"--data_folder={fake_voxceleb}",
            f"--voxceleb_trials={Path(fake_voxceleb) / 'veri_test.txt'}",
            f"--manifest_folder={tmp_path / 'manifests'}", f"--encoder_source={tiny_hubert_dir}",
            "--encoder_name=tiny", f"--output_folder={tmp_path / 'spk'}", "--crop_seconds=1.0",
            "--embedding_size=16", "--number_of_epochs=1", "--num_workers=0", "--torch_threads=1",
            "--valid_fraction=0.2"]
    brain = load_script(VOXCELEB / "speaker" / "train.py").main(argv)
    results = json.loads((tmp_path / "spk" / "results.json").read_text())
    trials = [line.split() for line in (tmp_path / "manifests" / "asv_trials.txt").read_text().splitlines()
              if line.strip()]
    (split, metrics), = results["metrics"].items()
    assert metrics["trials"] == len(trials) and metrics["target_trials"] == sum(t[0] == "1" for t in trials)
    assert 0 < metrics["target_trials"] < metrics["trials"]
    # the EER is that of the cosine scores of the trials' embeddings (first crop of each utterance)
    embeddings = brain.verification_embeddings()
    scores = torch.stack([F.cosine_similarity(embeddings[f"{a}#0"], embeddings[f"{b}#0"], dim=0)
                          for _, a, b in trials])
    target = torch.tensor([label == "1" for label, _, _ in trials])
    assert metrics["EER"] == pytest.approx(100 * EER(scores[target], scores[~target])[0], abs=1e-4)
    if probe == "sid_probe":  # every crop of the test split identified once
        with open(tmp_path / "manifests" / "sid_test.csv", newline="") as handle:
            test_utterances = len(list(csv.DictReader(handle)))
        assert split == "sid_test" and results["speakers"] == 6
        assert len(brain.outcomes) == results["crops"]["test"] == brain.hparams.n_test_crops * test_utterances
        assert metrics["accuracy"] == pytest.approx(100 * sum(brain.outcomes.values()) / len(brain.outcomes))
    else:  # trained on the speakers outside the trials only
        assert split == "asv_test" and "accuracy" not in metrics and results["speakers"] == 6 - 2


def test_librispeech_selection_recipe_uses_the_shared_selection_file(fake_librispeech, tmp_path):
    """LibriSpeech's own selection recipe: the contrastive file with its LibriSpeech knobs, budget kept."""
    from common.manifest import read_manifest

    argv = [str(LIBRISPEECH / "selection" / "hparams" / "select.yaml"), f"--data_folder={fake_librispeech}",
            f"--manifest_folder={tmp_path / 'manifests'}", f"--output_folder={tmp_path / 'selection'}",
            f"--units_folder={tmp_path / 'units'}", "--units_overrides={n_clusters: 8, fit_hours: 0.01}"]
    load_script(LIBRISPEECH / "selection" / "select_subset.py").main(argv)
    record = json.loads((tmp_path / "selection" / "selection.json").read_text())
    assert record["selector"] == "ContrastiveLMSelector"
    assert (record["settings"]["order"], record["settings"]["hash_bits"]) == (3, 24)  # LibriSpeech's knobs
    pool = read_manifest(tmp_path / "manifests" / "pool.csv")
    subset = read_manifest(tmp_path / "selection" / "subset.csv")
    assert set(subset.ids) <= set(pool.ids) and 0 < len(subset.ids) < len(pool.ids)
    assert subset.total_hours <= 0.1 * pool.total_hours + pool.durations.max() / 3600
