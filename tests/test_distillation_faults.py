"""Distillation refuses early, screens the whole pool like a selection, and resumes what it started, bit for bit."""

import json
import os
import signal
import stat
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf
import torch

import tasks.distillation
from common.atomic import atomic_write_text
from common.manifest import read_manifest
from conftest import ROOT, SYNTH_RECIPE
from tasks.run_identity import RunMismatchError
from test_distillation import tiny_overrides

FLAGSHIP = SYNTH_RECIPE / "distillation" / "hparams" / "distill_kmeans.yaml"
SELECTION_OUTPUTS = ("subset.csv", "selection.json", "report.png")


def argv_for(corpus, teacher, tmp_path, selection="random", *extra):
    return [str(FLAGSHIP), *tiny_overrides(corpus, teacher, tmp_path / "units", tmp_path / "run", FLAGSHIP, selection),
            "--number_of_epochs=1", *extra]


def pool_with_rows(corpus, path, faults=(), keep=12):
    """A copy of the first ``keep`` pool rows plus fault rows ``(ID, wav)`` (absolute paths)."""
    lines = (corpus["save_folder"] / "pool.csv").read_text().splitlines(True)
    header, body = lines[0], lines[1:keep + 1]
    template = body[0].split(",")
    for utt_id, wav in faults:
        body.append(",".join([utt_id, "1.0", str(wav), *template[3:]]))
    path.write_text(header + "".join(body))
    return path


def test_another_pool_in_a_finished_folder_is_refused_before_selection(tiny_corpus, tiny_whisper_dir, tmp_path):
    main = tasks.distillation.main
    main(argv_for(tiny_corpus, tiny_whisper_dir, tmp_path))
    before = {name: (tmp_path / "run" / "selection" / name).read_bytes() for name in SELECTION_OUTPUTS}
    other = pool_with_rows(tiny_corpus, tmp_path / "other_pool.csv", keep=30)
    with pytest.raises(RunMismatchError, match="pool_manifest_sha256"):
        main(argv_for(tiny_corpus, tiny_whisper_dir, tmp_path, "random", f"--pool_manifest={other}"))
    assert {name: (tmp_path / "run" / "selection" / name).read_bytes() for name in SELECTION_OUTPUTS} == before


def test_the_whole_pool_is_screened_like_a_selection(tiny_corpus, tiny_whisper_dir, tmp_path):
    """Missing, corrupt and empty files are left out and counted (file and line), never met by the teacher."""
    corrupt, empty = tmp_path / "corrupt.flac", tmp_path / "empty.wav"
    corrupt.write_bytes(b"fLaC" + bytes(200))
    sf.write(empty, np.zeros(0, dtype="float32"), 16000, subtype="PCM_16")
    faults = [("gone", tmp_path / "missing.flac"), ("broken", corrupt), ("silent", empty)]
    pool = pool_with_rows(tiny_corpus, tmp_path / "pool.csv", faults)
    tasks.distillation.main(argv_for(tiny_corpus, tiny_whisper_dir, tmp_path, "full", f"--pool_manifest={pool}"))
    record = json.loads((tmp_path / "run" / "selection" / "selection.json").read_text())
    assert record["pool_utterances_without_units"] == 3 and record["utterances"] == 12
    assert [(row["ID"], row["line"]) for row in record["skipped"]] == [("gone", 14), ("broken", 15), ("silent", 16)]
    assert "missing file" in record["skipped"][0]["reason"] and "empty file" in record["skipped"][2]["reason"]
    subset = read_manifest(tmp_path / "run" / "selection" / "subset.csv")
    assert len(subset) == 12 and not {"gone", "broken", "silent"} & set(subset.ids)
    summary = json.loads((tmp_path / "run" / "distillation.json").read_text())
    assert summary["subset_hours"] == pytest.approx(subset.total_hours, abs=1e-4)


def test_a_pool_without_rows_is_named_for_the_whole_pool_too(tiny_corpus, tiny_whisper_dir, tmp_path):
    header = (tiny_corpus["save_folder"] / "pool.csv").read_text().splitlines(True)[0]
    (tmp_path / "pool.csv").write_text(header)
    with pytest.raises(ValueError, match="pool.csv: the pool manifest has no utterances"):
        tasks.distillation.main(argv_for(tiny_corpus, tiny_whisper_dir, tmp_path, "full",
                                         f"--pool_manifest={tmp_path / 'pool.csv'}"))


def test_a_run_that_crashed_before_its_first_checkpoint_binds_nothing(tiny_corpus, tiny_whisper_dir, tmp_path,
                                                                      monkeypatch):
    """A crash in the target cache (after the run recorded itself), then a corrected pool in the same folder."""
    first = pool_with_rows(tiny_corpus, tmp_path / "first.csv", keep=20)
    real = tasks.distillation.build_caches

    def crash(*args, **kwargs):
        raise RuntimeError("killed")

    monkeypatch.setattr(tasks.distillation, "build_caches", crash)
    with pytest.raises(RuntimeError, match="killed"):
        tasks.distillation.main(argv_for(tiny_corpus, tiny_whisper_dir, tmp_path, "random", f"--pool_manifest={first}"))
    assert (tmp_path / "run" / "save" / "run_identity.json").exists()
    leftover = tmp_path / "run" / "save" / "teacher_targets" / "train-an-old-key"
    leftover.mkdir(parents=True)
    (leftover / ".targets.f16.partial").write_bytes(bytes(1000))  # what a killed cache build leaves,
    os.utime(leftover / ".targets.f16.partial", (time.time() - 3600,) * 2)  # untouched for an hour
    monkeypatch.setattr(tasks.distillation, "build_caches", real)
    corrected = pool_with_rows(tiny_corpus, tmp_path / "corrected.csv", keep=16)
    tasks.distillation.main(argv_for(tiny_corpus, tiny_whisper_dir, tmp_path, "random",
                                     f"--pool_manifest={corrected}"))
    assert json.loads((tmp_path / "run" / "distillation.json").read_text())["epochs"] == 1
    assert not leftover.exists()


def test_a_mistyped_teacher_folder_stops_before_anything_is_selected(tiny_corpus, tmp_path):
    with pytest.raises(FileNotFoundError, match="'teachr/teacher_hf' is no local folder, and no hub model"):
        tasks.distillation.main(argv_for(tiny_corpus, "teachr/teacher_hf", tmp_path))
    assert not (tmp_path / "run" / "selection").exists()


def test_the_budget_is_a_share_of_the_readable_audio(tiny_corpus, tiny_whisper_dir, tmp_path):
    pool = pool_with_rows(tiny_corpus, tmp_path / "pool.csv", [("gone", tmp_path / "missing.flac")], keep=20)
    tasks.distillation.main(argv_for(tiny_corpus, tiny_whisper_dir, tmp_path, "random", f"--pool_manifest={pool}",
                                     "--budget_fraction=0.5", "--debug", "--debug_batches=1"))
    record = json.loads((tmp_path / "run" / "selection" / "selection.json").read_text())
    readable = read_manifest(pool).durations[:20].sum() / 3600
    assert record["budget_hours"] == pytest.approx(0.5 * readable, rel=1e-6)


def test_a_manifest_with_a_byte_order_mark_reads_as_without(tiny_corpus, tmp_path):
    text = (tiny_corpus["save_folder"] / "pool.csv").read_text(encoding="utf-8")
    (tmp_path / "bom.csv").write_text("\ufeff" + text, encoding="utf-8")
    with_bom, plain = read_manifest(tmp_path / "bom.csv"), read_manifest(tiny_corpus["save_folder"] / "pool.csv")
    assert with_bom.fieldnames == plain.fieldnames and with_bom.ids == plain.ids


def test_outputs_have_the_mode_of_the_umask(tmp_path):
    previous = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.json", "{}")
        assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644
        os.umask(0o002)
        atomic_write_text(tmp_path / "b.json", "{}")
        assert stat.S_IMODE((tmp_path / "b.json").stat().st_mode) == 0o664
    finally:
        os.umask(previous)


def student_state(run):
    from transformers import AutoModel

    return AutoModel.from_pretrained(run / "save" / "student").state_dict()


def test_a_killed_run_resumes_to_the_uninterrupted_student_bit_for_bit(tiny_corpus, tiny_hubert_dir, tmp_path):
    """3 epochs at once, against 3 epochs killed (kill -9) once the first checkpoint is whole, then resumed."""
    def command(name):
        argv = [a for a in argv_for(tiny_corpus, tiny_hubert_dir, tmp_path / name, "full")
                if not a.startswith("--number_of_epochs")]
        argv = [a if not a.startswith("--num_workers") else "--num_workers=1" for a in argv]  # the default
        return [sys.executable, str(SYNTH_RECIPE / "distillation" / "train.py"), *argv, "--number_of_epochs=3",
                "--student_class=!name:lobes.student_for_teacher.distil_student"]

    whole = subprocess.run(command("whole"), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert whole.returncode == 0, whole.stdout[-3000:] + whole.stderr[-3000:]
    killed = subprocess.Popen(command("killed"), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    save = tmp_path / "killed" / "run" / "save"
    deadline = time.monotonic() + 600
    while not list(save.glob("CKPT+*/complete.ckpt")) and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # the first checkpoint is whole: the run is in its second epoch
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait()
    assert not (tmp_path / "killed" / "run" / "distillation.json").exists()  # it was stopped mid-way
    resumed = subprocess.run(command("killed"), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    expected, got = student_state(tmp_path / "whole" / "run"), student_state(tmp_path / "killed" / "run")
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[k], got[k]) for k in expected), [k for k in expected
                                                                     if not torch.equal(expected[k], got[k])]


def test_a_checkpoint_whose_save_was_killed_is_not_resumed_from(tiny_corpus, tiny_whisper_dir, tmp_path):
    """A checkpoint folder without its completion mark (SpeechBrain writes CKPT.yaml first) is discarded."""
    main = tasks.distillation.main
    main(argv_for(tiny_corpus, tiny_whisper_dir, tmp_path))
    save = tmp_path / "run" / "save"
    (complete,) = save.glob("CKPT+*")
    broken = save / "CKPT+2099-01-01+00-00-00+00"  # the newest: what a resumed run would take
    broken.mkdir()
    (broken / "CKPT.yaml").write_text((complete / "CKPT.yaml").read_text())
    (broken / "counter.ckpt").write_text("1")  # the student's file never written
    main([a for a in argv_for(tiny_corpus, tiny_whisper_dir, tmp_path) if a != "--number_of_epochs=1"] +
         ["--number_of_epochs=2"])
    assert not broken.exists()
    assert json.loads((tmp_path / "run" / "distillation.json").read_text())["epochs"] == 2
