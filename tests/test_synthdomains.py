"""The SynthDomains generator: splits, audio format, manifests, resume and failure handling."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf

from conftest import SYNTH_RECIPE
from common.atomic import TEMP_MARK
from corpora.synthdomains import engines, plan, prepare as synthdomains_prepare, texts
from corpora.synthdomains.voices import voice_of


def read_manifest(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def audio_path(corpus, row):
    return row["wav"].replace("$data_root", str(corpus["data_folder"]))


def all_rows(corpus):
    return {split: read_manifest(corpus["save_folder"] / f"{split}.csv") for split in synthdomains_prepare.SPLITS}


def test_every_split_and_pool_domain_present(tiny_corpus):
    rows = all_rows(tiny_corpus)
    # the unseen-voice held-out set is empty when the tiny target's held-out audio is all its main voice
    unseen = synthdomains_prepare.UNSEEN_VOICE_SPLIT
    assert all(rows[split] for split in synthdomains_prepare.SPLITS if split != unseen)
    assert bool(rows[unseen]) == (tiny_corpus["summary"]["voice_split"]["note"] is None)
    pool_domains = {r["domain"] for r in rows["pool"]}
    assert len(pool_domains) >= 5 and "neural" in pool_domains
    assert {r["domain"] for r in rows["target"]} == {"neural"}
    assert {r["engine"] for split in rows.values() for r in split} == set(engines.ENGINES)
    assert tiny_corpus["summary"]["speakers"]["spk_train"] >= 30
    assert tiny_corpus["summary"]["speakers"]["spk_test"] == tiny_corpus["summary"]["speakers"]["spk_train"]
    assert list(rows["pool"][0])[:6] == ["ID", "duration", "wav", "spk_id", "wrd", "domain"]


def test_two_workers_build_the_engines_assets_from_an_empty_cache(tiny_corpus):
    """The fixture ran with 2 workers and an empty KOKORO_JA_CACHE: every Kokoro utterance was made."""
    assert tiny_corpus["n_jobs"] == 2
    assert tiny_corpus["summary"]["n_failed"] == 0
    assert [p.name for p in tiny_corpus["kokoro_cache"].iterdir()] == ["kokoro-v1.0.int8.onnx"]  # no leftovers
    kokoro_rows = [r for rows in all_rows(tiny_corpus).values() for r in rows if r["engine"] == "kokoro"]
    assert kokoro_rows and all(os.path.exists(audio_path(tiny_corpus, r)) for r in kokoro_rows)


def test_sentences_disjoint_across_splits(tiny_corpus):
    text_cache = tiny_corpus["data_folder"] / "texts"
    sentences = {name: (text_cache / f"{name}.txt").read_text().splitlines() for name in texts.TEXT_SETS}
    entries = plan.build_plan(sentences, tiny_corpus["scale"], seed=0)
    assert len({e["text"] for e in entries}) == len(entries)  # no sentence used twice anywhere
    manifest_ids = {r["ID"] for split in all_rows(tiny_corpus).values() for r in split}
    unseen = set(tiny_corpus["summary"]["voice_split"]["unseen_voices"])
    left_out = {e["ID"] for e in entries if e["split"] == "target" and voice_of(target_row(e)) in unseen}
    assert manifest_ids == {e["ID"] for e in entries} - left_out  # the manifests are that plan
    transcribed = {split: {r["wrd"] for r in rows} for split, rows in all_rows(tiny_corpus).items()
                   if split in plan.TRANSCRIBED}
    for split, words in transcribed.items():
        assert "" not in words, split
        others = set().union(*(w for s, w in transcribed.items() if s != split))
        assert not words & others, split


def target_row(entry):
    """The manifest row of a planned utterance (any duration)."""
    return synthdomains_prepare._manifest_row(entry, 1.0)


def test_held_out_target_audio_is_split_by_the_target_sets_voices(tiny_corpus):
    """Same voice: voices of target.csv; unseen voice: none of them; planned target rows of those voices left out."""
    rows = all_rows(tiny_corpus)
    record = tiny_corpus["summary"]["voice_split"]
    target_voices = {voice_of(r) for r in rows["target"]}
    assert sorted(target_voices) == record["target_voices"]
    assert {voice_of(r) for r in rows["asr_test_target"]} <= target_voices
    unseen = rows[synthdomains_prepare.UNSEEN_VOICE_SPLIT]
    assert not {voice_of(r) for r in unseen} & target_voices
    assert {voice_of(r) for r in unseen} <= set(record["unseen_voices"])
    assert all(r["wrd"] and r["domain"] == "neural" for r in unseen)  # transcribed target-domain audio
    text_cache = tiny_corpus["data_folder"] / "texts"
    sentences = {name: (text_cache / f"{name}.txt").read_text().splitlines() for name in texts.TEXT_SETS}
    planned = {split: [target_row(e) for e in plan.build_plan(sentences, tiny_corpus["scale"], seed=0)
                       if e["split"] == split] for split in ("target", "asr_test_target")}
    assert {r["ID"] for r in rows["asr_test_target"] + unseen} == {r["ID"] for r in planned["asr_test_target"]}
    assert [r["ID"] for r in rows["target"]] == [r["ID"] for r in planned["target"]
                                                 if voice_of(r) not in set(record["unseen_voices"])]
    if record["note"]:  # the tiny corpus's held-out target audio may be one voice: the record says so
        assert not unseen and "voice(s)" in record["note"]


def test_manifests_of_an_older_split_are_rewritten_without_synthesis(tiny_corpus, monkeypatch):
    save_folder = tiny_corpus["save_folder"]
    before = all_rows(tiny_corpus)
    audio = [audio_path(tiny_corpus, r) for rows in before.values() for r in rows]
    mtimes = {p: os.stat(p).st_mtime_ns for p in audio}
    summary_path = save_folder / "summary.json"
    summary = json.loads(summary_path.read_text())
    summary.pop("voice_split")  # as written before the voice split
    summary_path.write_text(json.dumps(summary))
    (save_folder / f"{synthdomains_prepare.UNSEEN_VOICE_SPLIT}.csv").unlink()

    def no_synthesis(self, text, voice):
        raise AssertionError("audio synthesised again")

    for engine in engines.ENGINES.values():
        monkeypatch.setattr(engine, "synthesize", no_synthesis)
    rewritten = synthdomains_prepare.prepare_synthdomains(
        tiny_corpus["data_folder"], save_folder, scale=tiny_corpus["scale"], seed=0, n_jobs=1)
    assert rewritten["n_failed"] == 0 and rewritten["voice_split"] == tiny_corpus["summary"]["voice_split"]
    assert all_rows(tiny_corpus) == before
    assert {p: os.stat(p).st_mtime_ns for p in audio} == mtimes


def test_unlabelled_splits_have_no_transcripts(tiny_corpus):
    rows = all_rows(tiny_corpus)
    for split in ("pool", "target", "teacher"):
        assert all(r["wrd"] == "" for r in rows[split])


def test_audio_is_16k_mono_flac_and_durations_match(tiny_corpus):
    for split, rows in all_rows(tiny_corpus).items():
        for row in rows:
            info = sf.info(audio_path(tiny_corpus, row))
            assert (info.samplerate, info.channels, info.format) == (16000, 1, "FLAC"), row["ID"]
            assert abs(info.duration - float(row["duration"])) < 1e-3, row["ID"]
            assert 0.5 < info.duration < 30, row["ID"]


def test_summary_hours_match_manifests(tiny_corpus):
    summary = tiny_corpus["summary"]
    for split, rows in all_rows(tiny_corpus).items():
        assert summary["split_hours"][split] == pytest.approx(sum(float(r["duration"]) for r in rows) / 3600, abs=1e-3)
    assert set(summary["engine_versions"]) == set(engines.ENGINES)
    assert summary["elapsed_s"] > 0


def test_manifests_load_with_speechbrain(tiny_corpus):
    import speechbrain as sb

    dataset = sb.dataio.dataset.DynamicItemDataset.from_csv(
        str(tiny_corpus["save_folder"] / "asr_train.csv"),
        replacements={"data_root": str(tiny_corpus["data_folder"])},
    )

    @sb.utils.data_pipeline.takes("wav")
    @sb.utils.data_pipeline.provides("sig")
    def audio_pipeline(wav):
        return sb.dataio.dataio.read_audio(wav)

    sb.dataio.dataset.add_dynamic_item([dataset], audio_pipeline)
    sb.dataio.dataset.set_output_keys([dataset], ["id", "sig", "wrd", "duration"])
    item = dataset[0]
    assert item["sig"].ndim == 1
    assert item["sig"].shape[0] == pytest.approx(item["duration"] * 16000, abs=2)
    assert item["wrd"] == item["wrd"].upper() and item["wrd"]


def test_rerun_restores_exactly_the_deleted_files(tiny_corpus):
    rows = [r for split in all_rows(tiny_corpus).values() for r in split]
    # one utterance of each engine, piper included (its sampling noise is seeded per utterance)
    victims = {r["engine"]: r for r in rows}.values()
    before = {r["ID"]: sf.read(audio_path(tiny_corpus, r))[0] for r in victims}
    untouched = [audio_path(tiny_corpus, r) for r in rows if r["ID"] not in before]
    mtimes = {p: os.stat(p).st_mtime_ns for p in untouched}
    for row in victims:
        os.remove(audio_path(tiny_corpus, row))

    subprocess.run([sys.executable, str(SYNTH_RECIPE / "synthdomains_prepare.py"),
                    "--data_folder", str(tiny_corpus["data_folder"]), "--save_folder", str(tiny_corpus["save_folder"]),
                    "--scale", str(tiny_corpus["scale"]), "--seed", "0"], check=True, capture_output=True)

    for row in victims:
        restored, _ = sf.read(audio_path(tiny_corpus, row))
        np.testing.assert_array_equal(restored, before[row["ID"]], err_msg=row["ID"])
    assert all(os.stat(p).st_mtime_ns == mtimes[p] for p in untouched)


def test_engine_failure_is_counted_and_skipped(tiny_corpus, monkeypatch):
    flite_rows = [r for r in read_manifest(tiny_corpus["save_folder"] / "pool.csv") if r["engine"] == "flite"][:2]
    for row in flite_rows:
        os.remove(audio_path(tiny_corpus, row))

    def broken(self, text, voice):
        raise engines.SynthesisError("simulated crash")

    monkeypatch.setattr(engines.Flite, "synthesize", broken)
    summary = synthdomains_prepare.prepare_synthdomains(
        tiny_corpus["data_folder"], tiny_corpus["save_folder"], scale=tiny_corpus["scale"], seed=0, n_jobs=1)
    assert summary["n_failed"] == len(flite_rows)
    assert summary["failures_by_engine"] == {"flite": len(flite_rows)}
    pool_ids = {r["ID"] for r in read_manifest(tiny_corpus["save_folder"] / "pool.csv")}
    assert not pool_ids & {r["ID"] for r in flite_rows}

    monkeypatch.undo()  # the engine works again: a re-run retries the failed utterances
    summary = synthdomains_prepare.prepare_synthdomains(
        tiny_corpus["data_folder"], tiny_corpus["save_folder"], scale=tiny_corpus["scale"], seed=0, n_jobs=1)
    assert summary["n_failed"] == 0
    assert {r["ID"] for r in flite_rows} <= {r["ID"] for r in read_manifest(tiny_corpus["save_folder"] / "pool.csv")}


def test_missing_engine_names_its_package(tmp_path, monkeypatch):
    import shutil

    original = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name: None if name == "flite" else original(name))
    with pytest.raises(texts.MissingTool, match="apt-get install flite"):
        synthdomains_prepare.prepare_synthdomains(tmp_path / "d", tmp_path / "m", scale=0.01)
    assert not (tmp_path / "m").exists()  # failed before writing anything


def test_killed_run_leaves_only_complete_files(tiny_corpus, tmp_path):
    data_folder = tmp_path / "data"
    data_folder.mkdir()
    os.symlink(tiny_corpus["data_folder"] / "texts", data_folder / "texts")  # skip the text extraction
    process = subprocess.Popen(
        [sys.executable, str(SYNTH_RECIPE / "synthdomains_prepare.py"), "--data_folder", str(data_folder),
         "--save_folder", str(tmp_path / "manifests"), "--scale", "0.01", "--n_jobs", "2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    def final_files():  # a temporary file of the write under way (common.atomic) is not one
        return [path for path in data_folder.rglob("*.flac") if TEMP_MARK not in path.name]

    deadline = time.time() + 600  # generous: on loaded cores the first files come late
    while len(final_files()) < 3 and time.time() < deadline:
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    finished = final_files()
    assert finished, "the run was killed before writing anything"
    for path in finished:
        audio, rate = sf.read(path)
        assert rate == 16000 and len(audio) > 0
    assert not (tmp_path / "manifests" / "summary.json").exists()


def test_an_engine_that_hangs_is_a_counted_failure_not_a_crash():
    with pytest.raises(engines.SynthesisError, match="did not finish within 1 s"):
        engines._run(["sleep", "5"], timeout=1)


def test_progress_bar_counts_expected_work_so_its_eta_holds(tmp_path, monkeypatch):
    """Each utterance advances the bar by its expected CPU time: a Kokoro sentence weighs ~100 espeak ones."""
    jobs = [({"ID": f"{engine}-{i}", "text": "one two three four five", "voice": {"engine": engine}},
             str(tmp_path / f"{engine}-{i}.flac"), 0) for engine in ("kokoro", "espeak") for i in range(3)]
    (tmp_path / "espeak-0.flac").touch()  # made by an earlier run: counted as done from the start
    bars = []

    class Bar:
        def __init__(self, total, initial, **kwargs):
            self.total, self.n = total, initial
            bars.append(self)
        def __enter__(self):
            return self
        def __exit__(self, *exc):
            return False
        def set_postfix_str(self, *args, **kwargs):
            pass
        def update(self, n):
            self.n += n

    monkeypatch.setattr(synthdomains_prepare, "tqdm", Bar)
    monkeypatch.setattr(synthdomains_prepare.engines, "prepare_assets", lambda names: list(names))
    monkeypatch.setattr(synthdomains_prepare, "_synthesize_job", lambda job: (job[0]["ID"], 1.0, None, 0.0))
    results = synthdomains_prepare._run_jobs(jobs, rir_bank=None, n_jobs=1)

    assert len(results) == 6 and len(bars) == 1
    work = {e: synthdomains_prepare._expected_cpu_seconds(jobs[0 if e == "kokoro" else 3][0]) for e in ("kokoro", "espeak")}
    assert work["kokoro"] > 50 * work["espeak"]
    assert bars[0].total == pytest.approx(3 * work["kokoro"] + 3 * work["espeak"])
    assert bars[0].n == pytest.approx(bars[0].total)  # the existing file was not counted twice
    assert set(synthdomains_prepare.ENGINE_SPEED) == set(engines.ENGINES)
