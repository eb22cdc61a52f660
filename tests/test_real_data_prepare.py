"""LibriSpeech and VoxCeleb1 preparation on tiny fake trees with the real layouts and file formats."""

import csv
import json
import logging
import os
from pathlib import Path

import pytest
import soundfile as sf

from fake_corpora import make_fake_librispeech, make_fake_voxceleb1

from corpora.librispeech import main as librispeech_main, prepare_librispeech
from corpora.voxceleb import main as voxceleb_main, prepare_voxceleb1

COLUMNS = ["ID", "duration", "wav", "spk_id", "wrd"]
SPLITS = ["dev-clean", "dev-other", "test-clean"]
OLD_MTIME_NS = 1_000_000_000 * 10**9


@pytest.fixture
def librispeech(tmp_path):
    """A fake LibriSpeech folder: 3 splits x 2 speakers x 3 utterances of 0.2-0.4 s."""
    return make_fake_librispeech(tmp_path / "corpus", SPLITS, seconds=(0.2, 0.4))


@pytest.fixture
def voxceleb(tmp_path):
    """A fake VoxCeleb1 root: 4 speakers x 2 videos x 2 utterances of 0.2-0.4 s, trials on the last 2."""
    return make_fake_voxceleb1(tmp_path / "vox1", speakers=4, videos=2, utterances=2, seconds=(0.2, 0.4))


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == COLUMNS
        return list(reader)


def audio_path(row, data_folder):
    assert row["wav"].startswith("$data_root/")
    return Path(row["wav"].replace("$data_root", str(data_folder)))


def check_rows(rows, data_folder):
    """IDs sorted and unique, every wav resolving to a file whose duration is the row's."""
    ids = [row["ID"] for row in rows]
    assert ids == sorted(set(ids))
    for row in rows:
        path = audio_path(row, data_folder)
        assert path.is_file()
        assert float(row["duration"]) == pytest.approx(sf.info(str(path)).duration, abs=1e-3)


def transcripts(folder):
    """``{ID: transcript}`` of every ``.trans.txt`` under ``folder``."""
    lines = (line.split(" ", 1) for path in folder.rglob("*.trans.txt") for line in path.read_text().splitlines())
    return {utt_id: text for utt_id, text in lines}


def age_files(folder):
    """Set the mtime of every file in ``folder`` far in the past, so that any rewrite shows."""
    for path in folder.iterdir():
        os.utime(path, ns=(OLD_MTIME_NS, OLD_MTIME_NS))


def rewritten(folder):
    return {path.name for path in folder.iterdir() if path.stat().st_mtime_ns != OLD_MTIME_NS}


# ---------------------------------------------------------------- LibriSpeech


def test_librispeech_manifests(librispeech, tmp_path):
    save = tmp_path / "manifests"
    summary = prepare_librispeech(librispeech, save, ["dev-clean", "dev-other"],
                                  merge={"pool": ["dev-clean", "test-clean"]})

    assert sorted(p.name for p in save.iterdir()) == [
        "dev-clean.csv", "dev-other.csv", "librispeech_prepare.json", "pool.csv", "test-clean.csv"]
    for split in SPLITS:
        rows = read_csv(save / f"{split}.csv")
        assert len(rows) == 6
        check_rows(rows, librispeech)
        expected = transcripts(librispeech / split)
        assert {row["ID"]: row["wrd"] for row in rows} == expected
        for row in rows:
            speaker, chapter, _ = row["ID"].split("-")
            assert row["spk_id"] == speaker
            assert row["wav"] == f"$data_root/{split}/{speaker}/{chapter}/{row['ID']}.flac"
        hours = sum(float(row["duration"]) for row in rows) / 3600
        assert summary[split] == {"utterances": 6, "hours": pytest.approx(hours, abs=1e-4), "speakers": 2}
    assert read_csv(save / "pool.csv") == read_csv(save / "dev-clean.csv") + read_csv(save / "test-clean.csv")
    assert summary["pool"]["utterances"] == 12 and summary["pool"]["speakers"] == 4
    record = json.loads((save / "librispeech_prepare.json").read_text())
    assert record["data_folder"] == str(librispeech.resolve())
    assert record["merge"]["pool"]["splits"] == ["dev-clean", "test-clean"]


def test_librispeech_is_idempotent_and_adds_splits(librispeech, tmp_path, caplog):
    save = tmp_path / "manifests"
    first = prepare_librispeech(librispeech, save, ["dev-clean"], merge={"target": ["dev-other"]})
    age_files(save)

    with caplog.at_level(logging.INFO):
        assert prepare_librispeech(librispeech, save, ["dev-clean"], merge={"target": ["dev-other"]}) == first
    assert "already prepared" in caplog.text
    assert rewritten(save) == set()

    prepare_librispeech(librispeech, save, ["dev-clean", "test-clean"], merge={"target": ["dev-other"]})
    assert rewritten(save) == {"test-clean.csv", "librispeech_prepare.json"}

    age_files(save)
    (save / "dev-clean.csv").unlink()
    prepare_librispeech(librispeech, save, ["dev-clean"])
    assert rewritten(save) == {"dev-clean.csv", "librispeech_prepare.json"}


def test_librispeech_skip_prep_and_cli(librispeech, tmp_path, capsys):
    assert prepare_librispeech(librispeech, tmp_path / "skipped", ["dev-clean"], skip_prep=True) is None
    assert not (tmp_path / "skipped").exists()

    save = tmp_path / "cli"
    librispeech_main(["--data_folder", str(librispeech), "--save_folder", str(save), "--splits", "dev-clean",
                      "--merge", "pool=dev-other,test-clean", "target=dev-clean"])
    printed = json.loads(capsys.readouterr().out)
    assert set(printed) == {"dev-clean", "dev-other", "test-clean", "pool", "target"}
    assert read_csv(save / "target.csv") == read_csv(save / "dev-clean.csv")


def test_librispeech_missing_folders(librispeech, tmp_path):
    save = tmp_path / "manifests"
    with pytest.raises(FileNotFoundError, match=r"nowhere does not exist: expected .*trans\.txt"):
        prepare_librispeech(tmp_path / "nowhere", save, ["dev-clean"])
    with pytest.raises(FileNotFoundError, match=r"not a LibriSpeech folder \(did you mean .*LibriSpeech\?\)"):
        prepare_librispeech(librispeech.parent, save, ["dev-clean"])
    with pytest.raises(FileNotFoundError, match="'train-clean-100' not found .*splits found: dev-clean, dev-other, "
                                                "test-clean"):
        prepare_librispeech(librispeech, save, ["dev-clean"], merge={"pool": ["train-clean-100"]})
    assert not save.exists()


@pytest.mark.parametrize("splits, merge, message", [
    ([], None, "no LibriSpeech split to prepare"),
    (["dev-clean"], {"dev-clean": ["dev-other"]}, r"merge name 'dev-clean' is also a split"),
    ([], {"pool": ["dev-clean", "dev-clean"]}, "merge 'pool': expected a list of distinct splits"),
])
def test_librispeech_bad_arguments(librispeech, tmp_path, splits, merge, message):
    with pytest.raises(ValueError, match=message):
        prepare_librispeech(librispeech, tmp_path / "manifests", splits, merge=merge)


def first_chapter(librispeech, split="dev-clean"):
    """``(chapter folder, .trans.txt path)`` of the first chapter of ``split``."""
    folder = sorted((librispeech / split).glob("*/*"))[0]
    return folder, folder / f"{folder.parent.name}-{folder.name}.trans.txt"


def assert_nothing_written(save):
    assert not save.exists() or sorted(p.name for p in save.iterdir()) == []


def test_librispeech_transcript_without_audio(librispeech, tmp_path):
    folder, trans = first_chapter(librispeech)
    utt_id = trans.read_text().splitlines()[1].split()[0]
    (folder / f"{utt_id}.flac").unlink()
    message = rf"{trans.name}, line 2: audio file .*{utt_id}\.flac does not exist"
    with pytest.raises(FileNotFoundError, match=message):
        prepare_librispeech(librispeech, tmp_path / "manifests", ["dev-clean"])
    assert_nothing_written(tmp_path / "manifests")


def test_librispeech_audio_without_transcript(librispeech, tmp_path):
    folder, trans = first_chapter(librispeech)
    lines = trans.read_text().splitlines()
    trans.write_text("\n".join(lines[:2]) + "\n")
    missing = lines[2].split()[0]
    with pytest.raises(ValueError, match=rf"{missing}\.flac has no transcript line in .*{trans.name}"):
        prepare_librispeech(librispeech, tmp_path / "manifests", ["dev-clean"])
    trans.unlink()
    message = rf"{lines[0].split()[0]}\.flac has no transcript: .*{trans.name} does not exist"
    with pytest.raises(FileNotFoundError, match=message):
        prepare_librispeech(librispeech, tmp_path / "manifests", ["dev-clean"])
    assert_nothing_written(tmp_path / "manifests")


@pytest.mark.parametrize("bad_line", ["NO-TRANSCRIPT-HERE", "{prefix}-0007", "1-2-0003 WRONG CHAPTER",
                                      "{prefix}-x1 A B"])
def test_librispeech_malformed_transcript_line(librispeech, tmp_path, bad_line):
    folder, trans = first_chapter(librispeech)
    prefix = f"{folder.parent.name}-{folder.name}"
    with open(trans, "a") as handle:
        handle.write(bad_line.format(prefix=prefix) + "\n")
    with pytest.raises(ValueError, match=rf"{trans.name}, line 4: expected '{prefix}-<nnnn> <TRANSCRIPT>'"):
        prepare_librispeech(librispeech, tmp_path / "manifests", ["dev-clean"])


def test_librispeech_duplicated_transcript_line(librispeech, tmp_path):
    _, trans = first_chapter(librispeech)
    first_line = trans.read_text().splitlines()[0]
    with open(trans, "a") as handle:
        handle.write(first_line + "\n")
    with pytest.raises(ValueError, match=rf"{trans.name}, line 4: .* already transcribed on line 1"):
        prepare_librispeech(librispeech, tmp_path / "manifests", ["dev-clean"])


def test_librispeech_unreadable_audio(librispeech, tmp_path):
    save = tmp_path / "manifests"
    prepare_librispeech(librispeech, save, ["dev-other"])
    age_files(save)
    folder, trans = first_chapter(librispeech)
    broken = folder / f"{trans.read_text().split()[0]}.flac"
    broken.write_bytes(b"not a flac file")
    with pytest.raises(RuntimeError, match=rf"cannot read audio file .*{broken.name}"):
        prepare_librispeech(librispeech, save, ["dev-clean", "dev-other"])
    assert sorted(p.name for p in save.iterdir()) == ["dev-other.csv", "librispeech_prepare.json"]
    assert rewritten(save) == set()


# ---------------------------------------------------------------- VoxCeleb1


def iden_sets(root):
    sets = {"1": set(), "2": set(), "3": set()}
    for line in (root / "iden_split.txt").read_text().splitlines():
        set_id, path = line.split()
        sets[set_id].add(path)
    return sets


def utterance_id(path):
    return path[:-len(".wav")].replace("/", "_")


def test_voxceleb_manifests(voxceleb, tmp_path):
    save = tmp_path / "manifests"
    summary = prepare_voxceleb1(voxceleb, save, trials_file=voxceleb / "veri_test.txt")

    for set_id, name in (("1", "sid_train"), ("2", "sid_dev"), ("3", "sid_test")):
        rows = read_csv(save / f"{name}.csv")
        check_rows(rows, voxceleb)
        assert {row["wav"] for row in rows} == {f"$data_root/wav/{path}" for path in iden_sets(voxceleb)[set_id]}
        assert all(row["ID"] == utterance_id(row["wav"][len("$data_root/wav/"):]) for row in rows)
        assert all(row["spk_id"] == row["ID"].split("_")[0] and row["wrd"] == "" for row in rows)
        assert summary[name]["utterances"] == len(rows) and summary[name]["speakers"] == 4
    first_video = sorted((voxceleb / "wav" / "id10001").iterdir())[0].name
    assert read_csv(save / "sid_train.csv")[0]["ID"] == f"id10001_{first_video}_00001"

    trials = [line.split() for line in (voxceleb / "veri_test.txt").read_text().splitlines()]
    mapped = [line.split() for line in (save / "asv_trials.txt").read_text().splitlines()]
    assert mapped == [[label, utterance_id(a), utterance_id(b)] for label, a, b in trials]
    assert {label for label, _, _ in mapped} == {"0", "1"}
    assert summary["asv_trials"] == {"trials": len(trials), "target": sum(t[0] == "1" for t in trials),
                                     "nontarget": sum(t[0] == "0" for t in trials)}

    test_rows = read_csv(save / "asv_test.csv")
    check_rows(test_rows, voxceleb)
    assert [row["ID"] for row in test_rows] == sorted({utterance_id(p) for t in trials for p in t[1:]})
    train_rows = read_csv(save / "asv_train.csv")
    check_rows(train_rows, voxceleb)
    trial_speakers = {row["spk_id"] for row in test_rows}
    assert trial_speakers == {"id10003", "id10004"}
    assert {row["spk_id"] for row in train_rows} == {"id10001", "id10002"}
    assert len(train_rows) == len(list((voxceleb / "wav/id10001").rglob("*.wav"))) * 2


def test_voxceleb_is_idempotent_and_adds_verification(voxceleb, tmp_path, caplog):
    save = tmp_path / "manifests"
    first = prepare_voxceleb1(voxceleb, save)
    assert set(first) == {"sid_train", "sid_dev", "sid_test"}
    age_files(save)

    with caplog.at_level(logging.INFO):
        assert prepare_voxceleb1(voxceleb, save) == first
    assert "already prepared" in caplog.text
    assert rewritten(save) == set()

    both = prepare_voxceleb1(voxceleb, save, trials_file=voxceleb / "veri_test.txt")
    assert set(both) == set(first) | {"asv_train", "asv_test", "asv_trials"}
    assert rewritten(save) == {"asv_train.csv", "asv_test.csv", "asv_trials.txt", "voxceleb_prepare.json"}


def test_voxceleb_list_files_and_skip_prep(voxceleb, tmp_path, caplog, capsys):
    assert prepare_voxceleb1(voxceleb, tmp_path / "skipped", skip_prep=True) is None
    assert not (tmp_path / "skipped").exists()

    (voxceleb / "iden_split.txt").rename(tmp_path / "my_split.txt")
    with caplog.at_level(logging.INFO):
        summary = prepare_voxceleb1(voxceleb, tmp_path / "asv", trials_file=voxceleb / "veri_test.txt")
    assert "skipping identification" in caplog.text
    assert set(summary) == {"asv_train", "asv_test", "asv_trials"}
    assert not (tmp_path / "asv" / "sid_train.csv").exists()

    with pytest.raises(FileNotFoundError, match=r"iden_split_file .*iden_split\.txt does not exist"):
        prepare_voxceleb1(voxceleb, tmp_path / "sid", iden_split_file=voxceleb / "iden_split.txt")
    with pytest.raises(FileNotFoundError, match=r"trials_file .*veri_test2\.txt does not exist"):
        prepare_voxceleb1(voxceleb, tmp_path / "sid", trials_file=voxceleb / "veri_test2.txt")

    voxceleb_main(["--data_folder", str(voxceleb), "--save_folder", str(tmp_path / "cli"),
                   "--iden_split_file", str(tmp_path / "my_split.txt")])
    assert set(json.loads(capsys.readouterr().out)) == {"sid_train", "sid_dev", "sid_test"}


def test_voxceleb_missing_folders(voxceleb, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere does not exist: expected <data_folder>/wav/"):
        prepare_voxceleb1(tmp_path / "nowhere", tmp_path / "manifests")
    with pytest.raises(FileNotFoundError, match=r"no wav/ folder in .*wav/<speaker id>"):
        prepare_voxceleb1(voxceleb / "wav", tmp_path / "manifests")


def replace_line(path, number, text):
    lines = path.read_text().splitlines()
    lines[number - 1] = text
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("list_name, line, error, message", [
    ("iden_split.txt", "1 id10001/abcdefghijk/00009.wav", FileNotFoundError,
     r"iden_split\.txt, line 3: .*wav/id10001/abcdefghijk/00009\.wav does not exist"),
    ("iden_split.txt", "1 id10001 extra", ValueError, r"iden_split\.txt, line 3: expected '<1\|2\|3> <speaker>/"),
    ("iden_split.txt", "4 {path}", ValueError, r"iden_split\.txt, line 3: set '4' is not 1, 2 or 3"),
    ("iden_split.txt", "1 id10001/00001.wav", ValueError, r"iden_split\.txt, line 3: expected a <speaker>/<video>"),
    ("veri_test.txt", "1 {path} id10004/abcdefghijk/00001.wav", FileNotFoundError,
     r"veri_test\.txt, line 3: .*id10004/abcdefghijk/00001\.wav does not exist"),
    ("veri_test.txt", "2 {path} {path}", ValueError, r"veri_test\.txt, line 3: trial label '2' is not 0 or 1"),
    ("veri_test.txt", "1 {path}", ValueError, r"veri_test\.txt, line 3: expected '<0\|1> <path a> <path b>'"),
])
def test_voxceleb_bad_list_line(voxceleb, tmp_path, list_name, line, error, message):
    list_file = voxceleb / list_name
    path = list_file.read_text().splitlines()[2].split()[1]
    replace_line(list_file, 3, line.format(path=path))
    with pytest.raises(error, match=message):
        prepare_voxceleb1(voxceleb, tmp_path / "manifests", trials_file=voxceleb / "veri_test.txt")
    assert_nothing_written(tmp_path / "manifests")


def test_voxceleb_duplicated_iden_line(voxceleb, tmp_path):
    first_line = (voxceleb / "iden_split.txt").read_text().splitlines()[0]
    replace_line(voxceleb / "iden_split.txt", 3, first_line)
    with pytest.raises(ValueError, match=r"iden_split\.txt, line 3: .* already listed on line 1"):
        prepare_voxceleb1(voxceleb, tmp_path / "manifests")


def test_voxceleb_unreadable_audio(voxceleb, tmp_path):
    broken = sorted((voxceleb / "wav" / "id10004").rglob("*.wav"))[0]
    broken.write_bytes(b"RIFF but not really")
    with pytest.raises(RuntimeError, match=rf"cannot read audio file .*id10004/.*/{broken.name}"):
        prepare_voxceleb1(voxceleb, tmp_path / "manifests", trials_file=voxceleb / "veri_test.txt")
    assert_nothing_written(tmp_path / "manifests")
