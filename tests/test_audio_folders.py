"""Folders of audio (and Kaldi / lhotse lists) in, SpeechBrain manifests out; subsets written back.

One mixed folder tree is prepared once (module fixture): formats, sample rates, a stereo
file, a 70 s file with silent gaps at known places, corrupt and empty files, hidden files,
nested folders, names with spaces, a comma and colliding IDs.
"""

import csv
import gzip
import json
import os
import random
import re
import shutil
import time

import numpy as np
import pytest
import soundfile as sf

from common.manifest import read_manifest
from corpora import audio_folders
from corpora.audio_folders import COLUMNS, RECORD_NAME, REPORT_NAME, export_subset, prepare_audio_folders
from corpora.kaldi_lhotse import read_kaldi_dir, read_lhotse_manifest, unique_ids, write_lhotse_manifests
from corpora.kaldi_lhotse import main as export_main

SR = 16000
CAP = 30.0
GAPS = ((26.0, 26.6), (53.0, 53.6))  # silences in the 70 s file, where its cuts must land
SAFE_ID = re.compile(r"^[A-Za-z0-9_-]+$")
MP3 = "MP3" in sf.available_formats()


def noise(seconds, rate=SR, channels=1, seed=0):
    """Speech-level noise (a stand-in for speech: no silence anywhere)."""
    shape = (round(seconds * rate), channels) if channels > 1 else round(seconds * rate)
    return (np.random.default_rng(seed).standard_normal(shape) * 0.2).clip(-0.9, 0.9).astype("float32")


def write(path, data, rate, **kwargs):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, data, rate, **kwargs)
    return path


def seventy_seconds():
    wav = noise(70, seed=7)
    for start, stop in GAPS:
        wav[round(start * SR): round(stop * SR)] = 0.0
    return wav


def make_pool(root):
    """The mixed tree; returns ``{name: path}`` of the files the tests look at."""
    files = {
        "wav16": write(root / "a" / "speech 16k.wav", noise(3.0, seed=1), SR, subtype="PCM_16"),
        "flac8k": write(root / "a" / "b" / "deep,file.flac", noise(2.0, 8000, seed=2), 8000),
        "stereo44k": write(root / "c" / "stereo 44k.wav", noise(2.5, 44100, 2, seed=3), 44100, subtype="PCM_16"),
        "ogg": write(root / "c" / "clip.ogg", noise(2.0, seed=4), SR),
        "upper": write(root / "c" / "LOUD.WAV", noise(1.0, seed=5), SR, subtype="PCM_16"),
        "long": write(root / "long" / "seventy.flac", seventy_seconds(), SR),
        "dup_space": write(root / "d" / "dup a.wav", noise(1.0, seed=8), SR, subtype="PCM_16"),
        "dup_under": write(root / "d" / "dup_a.wav", noise(1.0, seed=9), SR, subtype="PCM_16"),
        "empty": write(root / "bad" / "empty.wav", np.zeros(0, dtype="float32"), SR, subtype="PCM_16"),
        "hidden": write(root / ".hidden" / "secret.wav", noise(1.0), SR),
        "dotfile": write(root / "c" / ".dot.wav", noise(1.0), SR),
        "nonfinite": write(root / "bad" / "nan.wav", np.full(SR, np.nan, dtype="float32"), SR, subtype="FLOAT"),
    }
    if MP3:
        files["mp3"] = write(root / "c" / "clip.mp3", noise(2.0, seed=6), SR)
    files["corrupt"] = root / "bad" / "corrupt.wav"
    files["corrupt"].write_bytes(b"RIFF" + bytes(range(256)) * 4)
    files["zero_bytes"] = root / "bad" / "zero.flac"
    files["zero_bytes"].write_bytes(b"")
    for i in range(12):  # enough utterances for the validation and held-out draws
        write(root / "many" / f"utt{i:02d}.flac", noise(0.5, seed=100 + i), SR)
    (root / "links").mkdir()
    files["link"] = root / "links" / "again.wav"  # a second path of a file: listed once
    files["link"].symlink_to(files["wav16"])
    (root / "links" / "loop").symlink_to(root, target_is_directory=True)  # followed once, not forever
    return files


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("audio_folders")
    pool, target, save = root / "my pool", root / "target", root / "manifests"
    files = make_pool(pool)
    for i in range(6):
        write(target / f"t{i}.wav", noise(1.5, seed=200 + i), SR, subtype="PCM_16")
    started = time.monotonic()
    summary = prepare_audio_folders(save, pool_folder=pool, target_folder=target, valid_utterances=3,
                                    heldout_utterances=4, seed=1)
    return {"root": root, "pool": pool, "target": target, "save": save, "files": files, "summary": summary,
            "seconds": time.monotonic() - started,
            "report": json.loads((save / REPORT_NAME).read_text()),
            "csv": {name: read_manifest(save / f"{name}.csv") for name in ("pool", "valid", "heldout_pool", "target")}}


def rows(manifest):
    return [manifest.row(utt_id) for utt_id in manifest.ids]


def pool_rows(prepared):
    return [row for name in ("pool", "valid", "heldout_pool") for row in rows(prepared["csv"][name])]


def test_manifests_have_the_columns_absolute_paths_and_header_durations(prepared):
    for name, manifest in prepared["csv"].items():
        assert manifest.fieldnames == list(COLUMNS), name
        for row in rows(manifest):
            assert SAFE_ID.match(row["ID"]) and os.path.isabs(row["wav"]) and os.path.isfile(row["wav"])
            assert os.path.isabs(row["source"]) and os.path.isfile(row["source"])
    in_place = {row["wav"]: row for row in pool_rows(prepared) if row["wav"] == row["source"]}
    files = prepared["files"]
    expected = ["wav16", "flac8k", "stereo44k", "ogg", "upper", "dup_space", "dup_under"] + ["mp3"] * MP3
    for name in expected:
        row = in_place[str(files[name])]  # short files are used where they are, whatever their rate or channels
        info = sf.info(files[name])
        assert float(row["duration"]) == pytest.approx(info.frames / info.samplerate, abs=1e-6)
        assert (float(row["source_start"]), float(row["source_stop"])) == (0.0, pytest.approx(info.duration, abs=1e-6))
    assert len(pool_rows(prepared)) == len(expected) + 12 + 3  # + the 70 s file's three segments


def test_a_path_with_a_space_and_a_comma_survives_the_csv(prepared):
    path = str(prepared["files"]["flac8k"])
    assert " " in path and "," in path
    raw = (prepared["save"] / "pool.csv").read_text() + (prepared["save"] / "valid.csv").read_text() + \
        (prepared["save"] / "heldout_pool.csv").read_text()
    assert f'"{path}"' in raw  # quoted, as CSV requires
    assert path in {row["wav"] for row in pool_rows(prepared)}
    ids = {row["wav"]: row["ID"] for row in pool_rows(prepared)}
    assert ids[path] == "a_b_deep_file" and ids[str(prepared["files"]["wav16"])] == "a_speech_16k"


def test_colliding_names_get_hash_suffixes_and_ids_do_not_depend_on_order():
    candidates = {"d/dup a.wav": "d_dup_a", "d/dup_a.wav": "d_dup_a", "x.wav": "x", "x.flac": "x", "y.wav": "y"}
    ids = unique_ids(candidates)
    assert ids["y.wav"] == "y" and len(set(ids.values())) == 5
    assert all(ids[key].startswith(candidates[key] + "_") and len(ids[key]) == len(candidates[key]) + 9
               for key in ("d/dup a.wav", "d/dup_a.wav", "x.wav", "x.flac"))
    for seed in range(3):
        keys = list(candidates)
        random.Random(seed).shuffle(keys)
        assert unique_ids({key: candidates[key] for key in keys}) == ids


def test_ids_are_stable_across_runs_and_a_shuffled_scan(prepared, tmp_path, monkeypatch):
    real_walk = os.walk

    def shuffled_walk(top, **kwargs):
        for root, dirs, files in real_walk(top, **kwargs):
            random.Random(root).shuffle(dirs)
            random.Random(root).shuffle(files)
            yield root, dirs, files

    monkeypatch.setattr(audio_folders.os, "walk", shuffled_walk)
    prepare_audio_folders(tmp_path / "again", pool_folder=prepared["pool"], target_folder=prepared["target"],
                          segments_folder=prepared["save"] / "segments", valid_utterances=3, heldout_utterances=4,
                          seed=1)
    for name in ("pool", "valid", "heldout_pool", "target"):
        assert (tmp_path / "again" / f"{name}.csv").read_text() == (prepared["save"] / f"{name}.csv").read_text()


def test_bad_files_are_reported_and_left_out_hidden_ones_ignored(prepared):
    files, report = prepared["files"], prepared["report"]
    reasons = {entry["path"]: entry["reason"] for entry in report["skipped"]["files"]}
    assert set(reasons) == {str(files[name]) for name in ("empty", "corrupt", "zero_bytes", "nonfinite", "link")}
    assert "empty" in reasons[str(files["empty"])] and "unreadable" in reasons[str(files["corrupt"])]
    assert "non-finite" in reasons[str(files["nonfinite"])]
    assert reasons[str(files["link"])] == f"the same file as {files['wav16']}"
    assert report["skipped"]["counts"] == {"pool": 5}
    used = {row["source"] for row in pool_rows(prepared)}
    assert not used & {str(files[name]) for name in ("empty", "corrupt", "zero_bytes", "nonfinite", "hidden",
                                                     "dotfile")}


def test_the_long_file_is_cut_at_its_silences_into_segments_that_tile_it(prepared):
    long_path = str(prepared["files"]["long"])
    segments = sorted((row for row in pool_rows(prepared) if row["source"] == long_path),
                      key=lambda row: float(row["source_start"]))
    assert [row["ID"] for row in segments] == ["long_seventy-000", "long_seventy-001", "long_seventy-002"]
    starts = [float(row["source_start"]) for row in segments]
    stops = [float(row["source_stop"]) for row in segments]
    assert starts[0] == 0 and stops[-1] == pytest.approx(70.0, abs=0.02) and starts[1:] == stops[:-1]
    assert sum(float(row["duration"]) for row in segments) == pytest.approx(sf.info(long_path).duration, abs=0.02)
    for (low, high), cut in zip(GAPS, stops[:-1]):
        assert low < cut < high
    original = sf.read(long_path, dtype="float32")[0]
    for row, start, stop in zip(segments, starts, stops):
        assert float(row["duration"]) <= CAP and row["wav"] != long_path
        info = sf.info(row["wav"])
        assert (info.samplerate, info.channels, info.format) == (SR, 1, "FLAC")
        assert info.frames == round((stop - start) * SR) == round(float(row["duration"]) * SR)
        piece = sf.read(row["wav"], dtype="float32")[0]
        assert np.abs(piece - original[round(start * SR): round(stop * SR)]).max() < 1e-3
    segmenting = prepared["report"]["segmenting"]
    assert segmenting["cuts"] == 2 and segmenting["cuts_in_pauses"] == 2 and segmenting["segments_written"] == 3


def test_held_out_and_validation_draws_are_disjoint_from_the_pool_and_by_recording(prepared):
    manifests, report = prepared["csv"], prepared["report"]
    ids = {name: set(manifests[name].ids) for name in ("pool", "valid", "heldout_pool")}
    sources = {name: {row["source"] for row in rows(manifests[name])} for name in ids}
    assert len(ids["valid"]) <= 3 and 1 <= len(ids["heldout_pool"]) <= 4 and ids["valid"]
    for first, second in (("pool", "valid"), ("pool", "heldout_pool"), ("valid", "heldout_pool")):
        assert not ids[first] & ids[second] and not sources[first] & sources[second]
    assert report["draws"]["valid"]["seed"] == 1 and report["draws"]["heldout_pool"]["by"] == "recording"
    target = report["draws"]["heldout_target"]
    assert not target["written"] and "6 utterances" in target["reason"]  # too small a target: all of it in target.csv
    assert len(manifests["target"]) == 6 and len(read_manifest(prepared["save"] / "heldout_target.csv")) == 0


def test_a_rerun_is_quick_and_rewrites_nothing_and_skip_prep_does_nothing(prepared):
    save = prepared["save"]
    outputs = sorted(p for p in save.rglob("*") if p.is_file())
    mtimes = {p: p.stat().st_mtime_ns for p in outputs}
    kwargs = {"pool_folder": prepared["pool"], "target_folder": prepared["target"], "valid_utterances": 3,
              "heldout_utterances": 4, "seed": 1}
    started = time.monotonic()
    assert prepare_audio_folders(save, **kwargs) == prepared["summary"]
    assert time.monotonic() - started < max(1.0, prepared["seconds"] / 2)
    assert prepare_audio_folders(save, skip_prep=True, **kwargs) is None
    assert sorted(p for p in save.rglob("*") if p.is_file()) == outputs
    assert {p: p.stat().st_mtime_ns for p in outputs} == mtimes


def test_other_settings_prepare_again_reusing_segments_and_clearing_temporaries(prepared, tmp_path):
    save = tmp_path / "manifests"
    shutil.copytree(prepared["save"], save)
    segment_files = sorted((save / "segments").rglob("*.flac"))
    mtimes = {p: p.stat().st_mtime_ns for p in segment_files}
    leftovers = [save / ".pool.csv.abc123.partial.csv", save / "segments" / ".0000-0001.flac.x1.partial.flac"]
    for path in leftovers:
        path.write_bytes(b"half")
    prepare_audio_folders(save, pool_folder=prepared["pool"], target_folder=prepared["target"], valid_utterances=2,
                          heldout_utterances=4, seed=2)
    report = json.loads((save / REPORT_NAME).read_text())
    assert report["seed"] == 2 and report["draws"]["valid"]["utterances"] <= 2
    assert report["segmenting"]["segments_reused"] == 3 and report["segmenting"]["segments_written"] == 0
    assert {p: p.stat().st_mtime_ns for p in segment_files} == mtimes
    assert not any(path.exists() for path in leftovers)
    record = json.loads((save / RECORD_NAME).read_text())
    assert record["settings"]["seed"] == 2
    os.utime(prepared["files"]["ogg"])  # an input changed: prepared again
    prepare_audio_folders(save, pool_folder=prepared["pool"], target_folder=prepared["target"], valid_utterances=2,
                          heldout_utterances=4, seed=2)
    assert json.loads((save / RECORD_NAME).read_text())["inputs_state"] != record["inputs_state"]


def test_bad_inputs_stop_before_anything_is_written(prepared, tmp_path):
    save, pool = tmp_path / "out", prepared["pool"]
    (tmp_path / "no_audio").mkdir()
    (tmp_path / "no_audio" / "readme.txt").write_text("nothing here")
    cases = [
        ({"pool_folder": tmp_path / "missing"}, FileNotFoundError, "missing does not exist"),
        ({"pool_folder": tmp_path / "no_audio"}, FileNotFoundError, "no_audio holds no audio"),
        ({"pool_folder": pool, "target_folder": pool}, ValueError, "same input"),
        ({"pool_folder": pool / "many", "target_folder": pool}, ValueError, "inside the target folder"),
        ({"pool_folder": pool, "pool_kaldi": tmp_path}, ValueError, "exactly one of pool_folder"),
        ({}, ValueError, "exactly one of pool_folder"),
        ({"pool_folder": pool, "asr_folders": {"eval": pool}}, ValueError, "unknown split"),
        ({"pool_folder": pool, "min_segment_seconds": 20}, ValueError, "min_segment_seconds"),
        ({"pool_folder": pool / "bad"}, ValueError, "pool: no usable utterance"),
    ]
    for kwargs, error, message in cases:
        with pytest.raises(error, match=re.escape(message)):
            prepare_audio_folders(save, **kwargs)
        assert not save.exists(), kwargs


def test_a_target_inside_the_pool_folder_is_left_out_of_the_pool(prepared, tmp_path):
    save = tmp_path / "out"
    summary = prepare_audio_folders(save, pool_folder=prepared["pool"], target_folder=prepared["pool"] / "many",
                                    valid_utterances=2, heldout_utterances=2,
                                    segments_folder=prepared["save"] / "segments")
    report = json.loads((save / REPORT_NAME).read_text())
    assert report["excluded_from_pool"] == 12 and summary["target"]["utterances"] == 12
    pool_sources = {row["source"] for name in ("pool", "valid", "heldout_pool")
                    for row in rows(read_manifest(save / f"{name}.csv"))}
    assert not any("/many/" in source for source in pool_sources)


def test_transcribed_folders_give_upper_case_words_and_draw_dev_and_test(tmp_path, prepared):
    train = tmp_path / "asr" / "train"
    for i in range(12):
        write(train / "spk1" / f"own{i}.wav", noise(1.0, seed=300 + i), SR, subtype="PCM_16")
        (train / "spk1" / f"own{i}.txt").write_text(f"  hello   world {i}\n")
    for i in range(8):
        write(train / "19" / "198" / f"19-198-{i:04d}.flac", noise(1.0, seed=400 + i), SR)
    (train / "19" / "198" / "19-198.trans.txt").write_text(
        "".join(f"19-198-{i:04d} libri style {i}\n" for i in range(7)))  # the last file has no line
    write(train / "long.wav", noise(31.0, seed=5), SR, subtype="PCM_16")
    (train / "long.txt").write_text("too long to split")
    save = tmp_path / "out"
    summary = prepare_audio_folders(save, pool_folder=prepared["pool"], asr_folders={"train": train},
                                    segments_folder=prepared["save"] / "segments", valid_utterances=2,
                                    heldout_utterances=2)
    splits = {name: read_manifest(save / f"asr_{name}.csv") for name in ("train", "dev", "test")}
    assert all(manifest.fieldnames == list(COLUMNS) + ["wrd"] for manifest in splits.values())
    words = {row["ID"]: row["wrd"] for manifest in splits.values() for row in rows(manifest)}
    assert len(words) == 19 and words["spk1_own3"] == "HELLO WORLD 3" and words["19_198_19-198-0002"] == "LIBRI STYLE 2"
    assert sum(summary[f"asr_{name}"]["utterances"] for name in ("train", "dev", "test")) == 19
    assert summary["asr_dev"]["utterances"] == summary["asr_test"]["utterances"] == 1
    report = json.loads((save / REPORT_NAME).read_text())
    assert report["draws"]["asr_dev"]["from"] == "asr_train"
    reasons = {os.path.basename(entry["path"]): entry["reason"] for entry in report["skipped"]["files"]
               if entry["role"] == "asr_train"}
    assert "no transcript" in reasons["19-198-0007.flac"] and "cannot be split" in reasons["long.wav"]


@pytest.mark.skipif(not MP3, reason="this soundfile's libsndfile cannot write mp3")
def test_mp3_header_frames_match_a_full_decode(tmp_path):
    for rate, seconds in ((16000, 3.01), (44100, 2.5), (8000, 1.7)):
        path = write(tmp_path / f"x{rate}.mp3", noise(seconds, rate), rate)
        assert sf.info(path).frames == len(sf.read(path)[0]) == round(seconds * rate)


def kaldi_dir(root, recordings):
    """A Kaldi data directory: ``recordings`` is ``{rec: (path, [(utt, spk, start, end, text)])}``."""
    root.mkdir(parents=True)
    lines = {"wav.scp": [], "segments": [], "text": [], "utt2spk": []}
    for rec, (path, utts) in sorted(recordings.items()):
        lines["wav.scp"].append(f"{rec} {path}")
        for utt, spk, start, end, text in utts:
            lines["segments"].append(f"{utt} {rec} {start} {end}")
            lines["text"].append(f"{utt} {text}")
            lines["utt2spk"].append(f"{utt} {spk}")
    for name, content in lines.items():
        (root / name).write_text("".join(f"{line}\n" for line in sorted(content)))
    return root


def test_kaldi_round_trip_with_segments_text_and_speakers(tmp_path):
    recordings, originals = {}, {}
    for r in range(6):
        path = write(tmp_path / "audio" / f"rec {r}.flac", noise(12.0, seed=500 + r), SR)
        utts = [(f"spk{r % 3}-rec{r}-{k:02d}", f"spk{r % 3}", round(k * 1.2, 2), round(k * 1.2 + 1.0, 2),
                 f"words of {r} {k}") for k in range(10)]
        recordings[f"rec{r}"] = (path, utts)
        originals.update({utt: (str(path), start, end, spk, text.upper()) for utt, spk, start, end, text in utts})
    path = write(tmp_path / "audio" / "long one.wav", noise(25.0, seed=9), SR, subtype="PCM_16")
    recordings["long"] = (path, [("spk9-long-00", "spk9", 0.5, 24.5, "cut in pieces")])
    data = kaldi_dir(tmp_path / "data" / "train", recordings)
    for i in range(5):
        write(tmp_path / "pool" / f"p{i}.wav", noise(1.0, seed=700 + i), SR, subtype="PCM_16")
    save = tmp_path / "out"
    summary = prepare_audio_folders(save, pool_folder=tmp_path / "pool", target_kaldi=data, max_segment_seconds=10,
                                    valid_utterances=2, heldout_utterances=12, n_jobs=2)
    target, heldout = read_manifest(save / "target.csv"), read_manifest(save / "heldout_target.csv")
    assert summary["heldout_target"] == {"utterances": 10, "hours": pytest.approx(10 / 3600, abs=1e-4),
                                         "recordings": 1}  # whole recordings: one of 10 utterances fits in 12
    assert target.fieldnames == list(COLUMNS) + ["spk_id", "wrd"]
    assert not {row["source"] for row in rows(target)} & {row["source"] for row in rows(heldout)}
    long_rows = [row for row in rows(target) + rows(heldout) if row["source"] == str(path)]
    assert len(long_rows) >= 3 and all(row["spk_id"] == "spk9" and row["wrd"] == "" for row in long_rows)
    bounds = [(float(row["source_start"]), float(row["source_stop"])) for row in long_rows]  # sorted by ID
    assert bounds[0][0] == 0.5 and bounds[-1][1] == 24.5
    assert all(stop == next_start for (_, stop), (next_start, _) in zip(bounds, bounds[1:]))
    for row in rows(target) + rows(heldout):
        assert float(row["duration"]) <= 10 and row["wav"] != row["source"]  # windows are cut to their own files
        assert sf.info(row["wav"]).frames == round(float(row["duration"]) * SR)
        if row["ID"] in originals:
            source, start, end, spk, text = originals[row["ID"]]
            assert (row["source"], float(row["source_start"]), float(row["source_stop"]), row["spk_id"],
                    row["wrd"]) == (source, start, end, spk, text)

    assert export_subset(save / "heldout_target.csv", tmp_path / "export")["kaldi"]["prefixed"] == 0
    out = tmp_path / "export" / "kaldi"
    written, _ = read_kaldi_dir(out)
    assert {item.key: (item.path, item.start, item.stop, item.spk_id, item.wrd) for item in written} == \
        {utt_id: originals[utt_id] for utt_id in heldout.ids}
    for name in ("wav.scp", "segments", "utt2spk", "spk2utt", "text"):
        lines = (out / name).read_text().splitlines()
        assert lines == sorted(lines, key=lambda line: line.split(" ")[0].encode()), name


def test_kaldi_commands_and_unknown_recordings_are_refused_with_file_and_line(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "wav.scp").write_text("a /x/a.wav\nb sox /x/b.wav -t wav - |\n")
    with pytest.raises(ValueError, match=re.escape(f"{data / 'wav.scp'}, line 2") + ".*command"):
        read_kaldi_dir(data)
    (data / "wav.scp").write_text("a /x/a.wav\n")
    (data / "segments").write_text("u1 a 0 1\nu2 b 0 1\n")
    with pytest.raises(ValueError, match=re.escape(f"{data / 'segments'}, line 2") + ".*'b' is not in wav.scp"):
        read_kaldi_dir(data)


def test_lhotse_round_trip_of_cuts_and_recordings(tmp_path):
    from lhotse import CutSet, Recording, RecordingSet, SupervisionSegment
    from lhotse.utils import fastcopy

    cuts = []
    recordings = []
    for r in range(3):
        rate, channels = (44100, 2) if r == 0 else (SR, 1)
        path = write(tmp_path / "audio" / f"r{r}.wav", noise(8.0, rate, channels, seed=600 + r), rate,
                     subtype="PCM_16")
        recording = Recording.from_file(path, recording_id=f"r{r}")
        recordings.append(recording)
        for k in range(3):
            supervision = SupervisionSegment(id=f"r{r}_u{k}", recording_id=recording.id, start=0.0, duration=2.0,
                                             text=f"text {r} {k}", speaker=f"s{r}")
            cut = recording.to_cut().truncate(offset=k * 2.5, duration=2.0)
            cuts.append(fastcopy(cut, id=f"r{r}_u{k}", supervisions=[supervision]))
    CutSet.from_cuts(cuts).to_file(tmp_path / "cuts.jsonl.gz")
    RecordingSet.from_recordings(recordings).to_file(tmp_path / "recordings.jsonl.gz")
    listed, _ = read_lhotse_manifest(tmp_path / "recordings.jsonl.gz")
    assert [(item.key, item.whole) for item in listed] == [("r0", True), ("r1", True), ("r2", True)]

    save = tmp_path / "out"
    prepare_audio_folders(save, pool_lhotse=tmp_path / "cuts.jsonl.gz", valid_utterances=1, heldout_utterances=1)
    pool = read_manifest(save / "pool.csv")
    assert pool.fieldnames == list(COLUMNS) + ["spk_id", "wrd"]
    out = tmp_path / "lhotse_out"
    write_lhotse_manifests(save / "pool.csv", out)
    written = CutSet.from_file(out / "cuts.jsonl.gz")
    original = {cut.id: cut for cut in cuts}
    assert sorted(written.ids) == sorted(pool.ids)
    for cut in written:
        source = original[cut.id]
        assert cut.recording.sources[0].source == source.recording.sources[0].source
        assert (cut.start, cut.duration) == (pytest.approx(source.start, abs=1e-4), pytest.approx(2.0, abs=1e-4))
        assert cut.num_channels == source.recording.num_channels
        assert (cut.supervisions[0].text, cut.supervisions[0].speaker) == (source.supervisions[0].text.upper(),
                                                                           source.supervisions[0].speaker)
        assert cut.load_audio().shape[-1] == round(2.0 * cut.sampling_rate)
    with gzip.open(out / "supervisions.jsonl.gz", "rt") as handle:
        assert len(handle.read().splitlines()) == len(pool)


def test_export_of_a_manifest_without_source_columns_and_from_the_command_line(tmp_path):
    audio = write(tmp_path / "a, b.wav", noise(1.5), SR, subtype="PCM_16")
    subset = tmp_path / "subset.csv"
    with open(subset, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerows([["ID", "duration", "wav", "spk_id"], ["u1", "1.5", "$data_root/a, b.wav", "s1"]])
    export_main(["--subset", str(subset), "--data_root", str(tmp_path), "--kaldi_dir", str(tmp_path / "k"),
                 "--lhotse_dir", str(tmp_path / "l")])
    assert (tmp_path / "k" / "segments").read_text() == "s1-u1 a_b 0 1.5\n"
    assert (tmp_path / "k" / "wav.scp").read_text() == f"a_b {audio}\n"
    assert not (tmp_path / "k" / "text").exists()
    listed, _ = read_lhotse_manifest(tmp_path / "l" / "cuts.jsonl.gz")
    assert [(item.key, item.path, item.whole, item.spk_id) for item in listed] == [("u1", str(audio), True, "s1")]


def test_the_preparation_command_line(prepared, tmp_path):
    audio_folders.main(["--save_folder", str(tmp_path / "cli"), "--pool_folder", str(prepared["pool"]),
                        "--segments_folder", str(prepared["save"] / "segments"), "--valid_utterances", "2",
                        "--heldout_utterances", "2", "--seed", "3"])
    assert json.loads((tmp_path / "cli" / REPORT_NAME).read_text())["seed"] == 3


def test_kaldi_tables_separated_by_tabs_read_as_by_spaces(tmp_path):
    audio = write(tmp_path / "audio" / "rec.wav", noise(2.0, seed=11), SR, subtype="PCM_16")
    lists = tmp_path / "data"
    lists.mkdir()
    (lists / "wav.scp").write_text(f"rec\t{audio}\n")
    (lists / "text").write_text("rec\thello  world\n")
    (listed,), _ = read_kaldi_dir(lists)
    assert (listed.key, listed.path, listed.wrd) == ("rec", str(audio), "HELLO WORLD")
