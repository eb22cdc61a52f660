"""Downstream probes: layer mix, heads, feature cache, metrics, and both recipes on the tiny corpus."""

import importlib.util
import json
import math
import re

import pytest
import torch

import lobes.feature_cache
from conftest import SYNTH_RECIPE
from lobes.encoder import FrozenTeacher
from lobes.feature_cache import NoisyCrops, cache_features
from lobes.mfcc_encoder import MFCCEncoder, load_encoder
from lobes.probe_heads import BiLSTMHead, StatsPoolingClassifier
from lobes.weighted_sum import WeightedLayerSum, statistics_pooling

ASR = SYNTH_RECIPE / "ASR"
SPEAKER = SYNTH_RECIPE / "speaker"


def load_recipe(folder):
    spec = importlib.util.spec_from_file_location(f"probe_{folder.name}", folder / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_weighted_sum_takes_its_sizes_from_the_encoder(tiny_hubert_dir):
    teacher = FrozenTeacher(tiny_hubert_dir)
    mix = WeightedLayerSum.from_encoder(teacher)
    hidden, frames = teacher(torch.randn(2, 8000), torch.tensor([1.0, 0.6]))
    out, lengths = mix(hidden, frames)
    assert len(mix.weights) == 3 and mix.hidden_size == 32 and out.shape == hidden.shape[1:]
    assert torch.allclose(mix.layer_weights(), torch.full((3,), 1 / 3))

    mfcc = load_encoder("mfcc")
    mix = WeightedLayerSum.from_encoder(mfcc)
    hidden, frames = mfcc(torch.randn(2, 8000), torch.tensor([1.0, 0.6]))
    assert len(mix.weights) == 1 and hidden.shape == (1, 2, 25, mix.hidden_size) == (1, 2, 25, 78)
    assert frames.tolist() == [25, 15] and hidden[0, 1, 15:].abs().sum() == 0
    with pytest.raises(ValueError, match="expected"):
        mix(torch.randn(3, 2, 25, 78), frames)


def test_padding_changes_nothing():
    torch.manual_seed(0)
    mix, lstm, pool = WeightedLayerSum(3, 8), BiLSTMHead(8, 5, hidden_size=4).eval(), StatsPoolingClassifier(8, 3)
    with torch.no_grad():
        mix.weights.copy_(torch.tensor([0.5, -1.0, 2.0]))
    alone = torch.randn(3, 1, 6, 8)
    padded = torch.cat([alone, 100 * torch.randn(3, 1, 4, 8)], dim=2)  # garbage in the padding
    batch = torch.cat([padded, torch.randn(3, 1, 10, 8)], dim=1)
    lengths = torch.tensor([6, 10])
    mixed_alone, _ = mix(alone, lengths[:1])
    mixed_batch, _ = mix(batch, lengths)
    assert mixed_batch[0, 6:].abs().sum() == 0
    assert torch.allclose(statistics_pooling(mixed_alone, lengths[:1])[0],
                          statistics_pooling(mixed_batch, lengths)[0], atol=1e-6)
    pool.eval()
    assert torch.allclose(pool(mixed_alone, lengths[:1])[1][0], pool(mixed_batch, lengths)[1][0], atol=1e-5)
    assert torch.allclose(lstm(mixed_alone, lengths[:1])[0], lstm(mixed_batch, lengths)[0, :6], atol=1e-5)


def test_noisy_crops_are_seeded_and_at_the_snr():
    crops = NoisyCrops(n_crops=3, seconds=1.0, snr_db=10.0, seed=7)
    items = crops.items("utt", "a.flac", 40000)
    other_seed = NoisyCrops(3, 1.0, 10.0, seed=8)
    assert items == crops.items("utt", "a.flac", 40000) != other_seed.items("utt", "a.flac", 40000)
    assert NoisyCrops(5, 1.0, 10.0, seed=7).items("utt", "a.flac", 40000)[:3] == items  # crop k: independent of n
    assert [i[0] for i in items] == ["utt#0", "utt#1", "utt#2"] and all(b - a == 16000 for _, _, a, b in items)
    assert crops.items("short", "b.flac", 8000) == [(f"short#{k}", "b.flac", 0, 8000) for k in range(3)]
    sig = torch.sin(torch.arange(16000) / 5.0)
    noisy = crops.corrupt(sig, "utt#1")
    assert torch.equal(noisy, crops.corrupt(sig, "utt#1"))
    snr = 10 * math.log10(float(sig.pow(2).mean() / (noisy - sig).pow(2).mean()))
    assert snr == pytest.approx(10.0, abs=0.3)


def test_feature_cache_is_keyed_and_reused(tiny_corpus, tmp_path, monkeypatch):
    csv, data_root = tiny_corpus["save_folder"] / "asr_test_target.csv", tiny_corpus["data_folder"]
    encoder = MFCCEncoder()
    cache = cache_features(encoder, csv, data_root, tmp_path)
    items = lobes.feature_cache.manifest_items(csv, data_root)
    ids, wavs, wav_lens = next(lobes.feature_cache.item_batches(items[:1], 1))
    hidden, frames = encoder(wavs, wav_lens)
    assert len(cache) == len(items) and cache.frames(ids[0]) == int(frames[0])
    assert torch.allclose(cache.get(ids[0])[:, 0], hidden[0, 0], atol=1e-2 * hidden.abs().max())  # fp16
    other = cache_features(MFCCEncoder(n_mfcc=20), csv, data_root, tmp_path)
    assert other.folder != cache.folder and other.dim == 120

    monkeypatch.setattr(lobes.feature_cache, "read_audio", lambda *a, **k: pytest.fail("features recomputed"))
    again = cache_features(MFCCEncoder(), csv, data_root, tmp_path)
    assert again.folder == cache.folder and torch.equal(again.get(ids[0]), cache.get(ids[0]))


def test_wer_and_cer_of_a_known_pair():
    recipe = load_recipe(ASR)
    vocab = recipe.CharVocabulary.from_texts(["THE CAT SAT DOWN"])
    hyp = "THE CAT SAT"
    frames = [vocab.index[c] for c in "TTHHEE  CCAATT"] + [0] + [vocab.index[c] for c in "  SAAT"] + [0, 0, 0]
    log_probs = torch.full((1, len(frames), len(vocab)), -10.0)
    log_probs[0, torch.arange(len(frames)), torch.tensor(frames)] = 0.0
    hyps = recipe.greedy_transcripts(log_probs, torch.tensor([len(frames)]), vocab)
    assert hyps == [hyp.split()]
    stats = recipe.error_rate_stats()
    for s in stats.values():
        s.append(["u1"], hyps, [["THE", "CAT", "SAT", "DOWN"]])
    assert stats["WER"].summarize("error_rate") == pytest.approx(25.0)  # one deleted word of four
    assert stats["CER"].summarize("error_rate") == pytest.approx(100 * 5 / 16)  # "_DOWN" of "THE_CAT_SAT_DOWN"
    assert vocab.encode("THE QAT") == [vocab.index[c] for c in "THE AT"]  # unknown characters dropped


def test_trial_eer():
    recipe = load_recipe(SPEAKER)
    trials = recipe.verification_trials(["a1", "a2", "b1", "b2"], ["A", "A", "B", "B"])
    assert len(trials) == 6 and sum(same for _, _, same in trials) == 2
    good = {"a1": torch.tensor([1.0, 0.1]), "a2": torch.tensor([1.0, -0.1]),
            "b1": torch.tensor([0.1, 1.0]), "b2": torch.tensor([-0.1, 1.0])}
    assert recipe.trial_eer(trials, good) == 0.0
    bad = {"a1": good["a1"], "a2": good["b1"], "b1": good["a2"], "b2": good["b2"]}
    assert recipe.trial_eer(trials, bad) >= 50.0  # same-speaker pairs score no higher than the others
    assert recipe.trial_eer([("a1", "b1", False)], good) is None


def probe_args(hparams, corpus, encoder, name, tmp_path):
    return [str(hparams), f"--data_folder={corpus['data_folder']}", f"--manifest_folder={corpus['save_folder']}",
            f"--corpus_scale={corpus['scale']}", f"--encoder_source={encoder}", f"--encoder_name={name}",
            f"--feature_folder={tmp_path / 'features' / name}", "--num_workers=0", "--number_of_epochs=1"]


@pytest.mark.parametrize("encoder", ["tiny_hubert", "mfcc"])
def test_asr_probe_runs_and_reuses_its_features(encoder, tiny_corpus, tiny_hubert_dir, tmp_path, keep_threads,
                                                monkeypatch):
    source = tiny_hubert_dir if encoder == "tiny_hubert" else "mfcc"
    args = probe_args(ASR / "hparams" / "ctc_probe.yaml", tiny_corpus, source, encoder, tmp_path) + [
        f"--output_folder={tmp_path / 'asr'}", "--lstm_units=16", "--lstm_layers=1", "--max_batch_seconds=30"]
    recipe = load_recipe(ASR)
    recipe.main(args)
    results = json.loads((tmp_path / "asr" / "results.json").read_text())
    assert results["encoder_name"] == encoder and results["epochs"] == 1
    assert len(results["layer_weights"]) == (3 if encoder == "tiny_hubert" else 1)
    for split in ("asr_test_in", "asr_test_target"):
        assert results["metrics"][split]["WER"] >= 0 and results["metrics"][split]["CER"] >= 0
        assert (tmp_path / "asr" / f"wer_{split}.txt").exists()
    assert {"train_minutes", "feature_minutes", "probe_parameters", "encoder_parameters"} <= set(results)

    # same command, one more epoch: resumes, and reads the cached features without touching audio
    data_files = sorted((tmp_path / "features" / encoder).glob("*/targets.f16"))
    assert len(data_files) == 4
    mtimes = [f.stat().st_mtime_ns for f in data_files]
    monkeypatch.setattr(lobes.feature_cache, "read_audio", lambda *a, **k: pytest.fail("features recomputed"))
    recipe.main([a for a in args if a != "--number_of_epochs=1"] + ["--number_of_epochs=2"])
    assert [f.stat().st_mtime_ns for f in data_files] == mtimes
    log = (tmp_path / "asr" / "train_log.txt").read_text()
    assert [int(e) for e in re.findall(r"^epoch: (\d+)", log, flags=re.M)] == [1, 2]


@pytest.mark.parametrize("encoder", ["tiny_hubert", "mfcc"])
def test_speaker_probe_runs(encoder, tiny_corpus, tiny_hubert_dir, tmp_path, keep_threads):
    source = tiny_hubert_dir if encoder == "tiny_hubert" else "mfcc"
    args = probe_args(SPEAKER / "hparams" / "spk_probe.yaml", tiny_corpus, source, encoder, tmp_path) + [
        f"--output_folder={tmp_path / 'spk'}", "--n_crops=2", "--embedding_size=16"]
    load_recipe(SPEAKER).main(args)
    results = json.loads((tmp_path / "spk" / "results.json").read_text())
    test = results["metrics"]["spk_test"]
    assert results["speakers"] == 32 and 0 <= test["accuracy"] <= 100
    assert results["crops"]["train"] + results["crops"]["valid"] == 2 * 64 and results["crops"]["test"] == 2 * 32
    # the tiny corpus has one test utterance per speaker: no same-speaker trial, so no EER
    assert test["trials"] == 32 * 31 // 2 and test["target_trials"] == 0 and test["EER"] is None
    assert len((tmp_path / "spk" / "trials.txt").read_text().splitlines()) == test["trials"]


def test_missing_offline_teacher_names_the_command(tiny_corpus, tmp_path, keep_threads):
    args = probe_args(ASR / "hparams" / "ctc_probe.yaml", tiny_corpus, tmp_path / "none", "x", tmp_path) + [
        f"--offline_teacher={tmp_path / 'none'}", f"--output_folder={tmp_path / 'asr'}"]
    with pytest.raises(FileNotFoundError, match="teacher/train.py"):
        load_recipe(ASR).main(args)
