"""Downstream probes: layer mix, heads, feature cache, metrics, and both recipes on the tiny corpus."""

import csv
import importlib
import json
import math
import re

import pytest
import speechbrain as sb
import torch
from scipy.stats import binom

import lobes.feature_cache
from conftest import SYNTH_RECIPE
from lobes.encoder import FrozenTeacher
from lobes.feature_cache import NoisyCrops, cache_features
from lobes.mfcc_encoder import MFCCEncoder, load_encoder
from lobes.probe_heads import BiLSTMHead, StatsPoolingClassifier
from lobes.weighted_sum import WeightedLayerSum, statistics_pooling
from tasks.run_identity import RunMismatchError

ASR = SYNTH_RECIPE / "ASR"
SPEAKER = SYNTH_RECIPE / "speaker"


def load_recipe(folder):
    """The task module that the recipe folder's ``train.py`` runs."""
    return importlib.import_module({"ASR": "tasks.asr_probe", "speaker": "tasks.speaker_probe"}[folder.name])


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

    monkeypatch.setattr(lobes.feature_cache, "load_audio", lambda *a, **k: pytest.fail("features recomputed"))
    again = cache_features(MFCCEncoder(), csv, data_root, tmp_path)
    assert again.folder == cache.folder and torch.equal(again.get(ids[0]), cache.get(ids[0]))


def test_wer_and_cer_of_a_known_pair(tmp_path):
    recipe = load_recipe(ASR)
    train = sb.dataio.dataset.DynamicItemDataset({"u0": {"wrd": "THE CAT SAT DOWN"}})
    vocab = recipe.load_text_encoder(tmp_path, train)
    assert vocab.lab2ind["<blank>"] == 0 and len(vocab) == len(set("THE CAT SAT DOWN")) + 2  # + blank, <unk>
    hyp = "THE CAT SAT"
    index = vocab.lab2ind
    frames = [index[c] for c in "TTHHEE  CCAATT"] + [0] + [index[c] for c in "  SAAT"] + [0, 0, 0]
    log_probs = torch.full((1, len(frames) + 2, len(vocab)), -10.0)  # 2 padded frames beyond the length
    log_probs[0, torch.arange(len(frames)), torch.tensor(frames)] = 0.0
    log_probs[0, len(frames):, index["D"]] = 0.0
    hyps = recipe.greedy_transcripts(log_probs, torch.tensor([len(frames)]), vocab)
    assert hyps == [hyp.split()]
    stats = recipe.error_rate_stats()
    for s in stats.values():
        s.append(["u1"], hyps, [["THE", "CAT", "SAT", "DOWN"]])
    assert stats["WER"].summarize("error_rate") == pytest.approx(25.0)  # one deleted word of four
    assert stats["CER"].summarize("error_rate") == pytest.approx(100 * 5 / 16)  # "_DOWN" of "THE_CAT_SAT_DOWN"
    assert vocab.encode_sequence(list("THE QAT")) == [index[c] for c in "THE "] + [index["<unk>"]] + [
        index[c] for c in "AT"]  # unknown characters map to <unk>
    assert recipe.load_text_encoder(tmp_path, train).lab2ind == index  # saved once, reloaded on resume


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


def probe_args(hparams, corpus, encoder, name, tmp_path, epochs=1):
    return [str(hparams), f"--data_folder={corpus['data_folder']}", f"--manifest_folder={corpus['save_folder']}",
            f"--corpus_scale={corpus['scale']}", f"--encoder_source={encoder}", f"--encoder_name={name}",
            f"--feature_folder={tmp_path / 'features' / name}", "--num_workers=0", f"--number_of_epochs={epochs}"]


def manifest_rows(folder, split):
    with open(folder / f"{split}.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def transcripts(corpus, split):
    """``{ID: reference words}`` of a split, from its manifest."""
    return {row["ID"]: row["wrd"].split() for row in manifest_rows(corpus["save_folder"], split)}


def written_hypotheses(wer_file):
    """``{ID: hypothesis words}`` from the alignments of a ``wer_<split>.txt`` (ErrorRateStats.write_stats)."""
    lines = wer_file.read_text().splitlines()
    hyps = {}
    for k, line in enumerate(lines):
        match = re.match(r"(\S+), %WER ", line)
        if match:  # then the reference, the edit operations and the hypothesis, ';'-separated
            hyps[match.group(1)] = [w.strip() for w in lines[k + 3].split(";") if w.strip() not in ("", "<eps>")]
    return hyps


def error_rate(recipe, kind, refs, hyps):
    """WER or CER (%) of ``hyps`` against ``refs`` (both ``{ID: words}``), scored as the recipe scores."""
    stats = recipe.error_rate_stats()[kind]
    ids = sorted(refs)
    stats.append(ids, [hyps[i] for i in ids], [refs[i] for i in ids])
    return stats.summarize("error_rate")


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
        # every test utterance scored once, and the reported rates are those of the written hypotheses
        refs, hyps = transcripts(tiny_corpus, split), written_hypotheses(tmp_path / "asr" / f"wer_{split}.txt")
        assert hyps.keys() == refs.keys()
        for kind in ("WER", "CER"):
            assert results["metrics"][split][kind] == pytest.approx(error_rate(recipe, kind, refs, hyps)), kind
    assert {"train_minutes", "feature_minutes", "probe_parameters", "encoder_parameters"} <= set(results)

    # same command, one more epoch: resumes, and reads the cached features without touching audio
    data_files = sorted((tmp_path / "features" / encoder).glob("*/targets.f16"))
    assert len(data_files) == 4
    mtimes = [f.stat().st_mtime_ns for f in data_files]
    monkeypatch.setattr(lobes.feature_cache, "load_audio", lambda *a, **k: pytest.fail("features recomputed"))
    recipe.main([a for a in args if a != "--number_of_epochs=1"] + ["--number_of_epochs=2"])
    assert [f.stat().st_mtime_ns for f in data_files] == mtimes
    log = (tmp_path / "asr" / "train_log.txt").read_text()
    assert [int(e) for e in re.findall(r"^epoch: (\d+)", log, flags=re.M)] == [1, 2]

    # another encoder into the same output folder: refused before training, naming both encoders
    monkeypatch.undo()
    other = "mfcc" if encoder == "tiny_hubert" else tiny_hubert_dir
    switched = [a for a in args if not a.startswith(("--encoder_source", "--feature_folder"))] + [
        f"--encoder_source={other}", f"--feature_folder={tmp_path / 'features' / 'other'}"]
    with pytest.raises(RunMismatchError, match=f"(?s)recorded: .*{re.escape(str(source))}.*this run: .*"
                                               f"{re.escape(str(other))}"):
        recipe.main(switched)
    assert json.loads((tmp_path / "asr" / "results.json").read_text())["encoder_source"] == str(source)


def test_asr_probe_transcribes_what_it_hears(tiny_corpus, tmp_path, keep_threads):
    """MFCC + the convolutional CTC head, trained for a few seconds on the asr_train split.

    Every split: a CER below that of an all-blank output (which deletes every character). On the
    training utterances, also: the hypotheses match their own transcripts better than any other
    pairing of the same transcripts, i.e. the probe maps audio to its text, not merely to plausible text
    (the held-out splits are too small to show that: a probe trained on shuffled transcripts scores as well there).
    """
    splits = ["asr_train", "asr_test_in", "asr_test_target"]
    out = tmp_path / "asr"
    args = probe_args(ASR / "hparams" / "ctc_probe_conv.yaml", tiny_corpus, "mfcc", "mfcc", tmp_path, epochs=12) + [
        f"--output_folder={out}", f"--test_splits=[{','.join(splits)}]", "--conv_channels=64",
        "--max_batch_seconds=10", "--lr_head=0.005", "--torch_threads=1"]
    recipe = load_recipe(ASR)
    recipe.main(args)
    results = json.loads((out / "results.json").read_text())
    for split in splits:
        refs, hyps = transcripts(tiny_corpus, split), written_hypotheses(out / f"wer_{split}.txt")
        assert hyps.keys() == refs.keys()
        cer = results["metrics"][split]["CER"]
        assert cer == pytest.approx(error_rate(recipe, "CER", refs, hyps))
        all_blank = error_rate(recipe, "CER", refs, {utt: [] for utt in refs})
        assert cer < all_blank, (split, cer, all_blank)

    refs, hyps = transcripts(tiny_corpus, "asr_train"), written_hypotheses(out / "wer_asr_train.txt")
    ids = sorted(refs)
    own = error_rate(recipe, "CER", refs, hyps)
    for shift in range(1, len(ids)):  # every utterance scored against another utterance's transcript
        others = {utt: refs[ids[(k + shift) % len(ids)]] for k, utt in enumerate(ids)}
        assert own < error_rate(recipe, "CER", others, hyps), shift


def write_manifest(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_speaker_probe_scores_every_pair_of_test_utterances(tiny_corpus, tmp_path, keep_threads):
    args = probe_args(SPEAKER / "hparams" / "spk_probe.yaml", tiny_corpus, "mfcc", "mfcc", tmp_path) + [
        f"--output_folder={tmp_path / 'spk'}", "--n_crops=2", "--embedding_size=16"]
    load_recipe(SPEAKER).main(args)
    results = json.loads((tmp_path / "spk" / "results.json").read_text())
    test = results["metrics"]["spk_test"]
    train_rows, test_rows = (manifest_rows(tiny_corpus["save_folder"], s) for s in ("spk_train", "spk_test"))
    assert results["speakers"] == len({row["spk_id"] for row in train_rows})
    assert results["crops"]["train"] + results["crops"]["valid"] == 2 * len(train_rows)
    assert results["crops"]["test"] == 2 * len(test_rows)  # n_test_crops: 2
    speaker = {row["ID"]: row["spk_id"] for row in test_rows}
    ids = sorted(speaker)
    pairs = [[str(int(speaker[a] == speaker[b])), a, b] for i, a in enumerate(ids) for b in ids[i + 1:]]
    assert [line.split() for line in (tmp_path / "spk" / "trials.txt").read_text().splitlines()] == pairs
    assert test["trials"] == len(pairs) and test["target_trials"] == sum(same == "1" for same, _, _ in pairs)
    # the tiny corpus has one test utterance per speaker: no same-speaker trial, so no EER
    assert test["target_trials"] == 0 and test["EER"] is None
    # the per-crop outcomes behind the accuracy: every test crop once, their mean the accuracy
    outcomes = [line.split() for line in (tmp_path / "spk" / "identification.txt").read_text().splitlines()]
    assert sorted(crop for crop, _ in outcomes) == sorted(f"{utt}#{k}" for utt in ids for k in range(2))
    assert 100 * sum(int(right) for _, right in outcomes) / len(outcomes) == pytest.approx(test["accuracy"])


@pytest.mark.parametrize("encoder", ["tiny_hubert", "mfcc"])
def test_speaker_probe_identifies_and_verifies_above_chance(encoder, tiny_corpus, tiny_hubert_dir, tmp_path,
                                                           keep_threads):
    """Trained for a few seconds: test crops identified above chance, and unseen test utterances verified
    against the training utterances (same speaker or not) with an EER below chance (50 %)."""
    train_rows, test_rows = (manifest_rows(tiny_corpus["save_folder"], s) for s in ("spk_train", "spk_test"))
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    for split, rows in (("spk_train", train_rows), ("spk_test", test_rows), ("spk_enrol", test_rows + train_rows)):
        write_manifest(manifests / f"{split}.csv", rows)
    trials = [(a["ID"], b["ID"], a["spk_id"] == b["spk_id"]) for a in test_rows for b in train_rows]
    (manifests / "trials.txt").write_text("".join(f"{int(same)} {a} {b}\n" for a, b, same in trials))

    source = tiny_hubert_dir if encoder == "tiny_hubert" else "mfcc"
    corpus = {**tiny_corpus, "save_folder": manifests}
    args = probe_args(SPEAKER / "hparams" / "spk_probe.yaml", corpus, source, encoder, tmp_path, epochs=20) + [
        f"--output_folder={tmp_path / 'spk'}", "--skip_prep=True", "--verification_split=spk_enrol",
        f"--trials_file={manifests / 'trials.txt'}", "--n_crops=6", "--embedding_size=32", "--batch_size=16",
        "--lr_head=0.01", "--snr_db=30"]  # less noise than the recipe's 10 dB: a few seconds of training suffice
    load_recipe(SPEAKER).main(args)
    results = json.loads((tmp_path / "spk" / "results.json").read_text())
    test = results["metrics"]["spk_test"]
    n_speakers = len({row["spk_id"] for row in train_rows})
    n_crops = results["crops"]["test"]
    assert results["speakers"] == n_speakers and n_crops == 2 * len(test_rows)
    assert results["crops"]["verification"] == len(test_rows) + len(train_rows)  # one crop each
    # more test crops identified than chance (1 / speakers) would get with 99 % probability
    assert test["accuracy"] / 100 * n_crops > binom.ppf(0.99, n_crops, 1 / n_speakers), test["accuracy"]
    assert test["trials"] == len(trials) and test["target_trials"] == sum(same for _, _, same in trials) > 0
    assert test["EER"] < 50.0


def test_missing_offline_teacher_names_the_command(tiny_corpus, tmp_path, keep_threads):
    args = probe_args(ASR / "hparams" / "ctc_probe.yaml", tiny_corpus, tmp_path / "none", "x", tmp_path) + [
        f"--offline_teacher={tmp_path / 'none'}", f"--output_folder={tmp_path / 'asr'}"]
    with pytest.raises(FileNotFoundError, match="teacher/train.py"):
        load_recipe(ASR).main(args)
