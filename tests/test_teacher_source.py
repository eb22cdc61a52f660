"""A teacher named by a folder that does not exist is an error naming it, not a hub look-up."""

import pytest

from lobes.encoder import FrozenTeacher


def test_a_missing_local_folder_is_named(tmp_path):
    missing = tmp_path / "results" / "teacher_hf"
    with pytest.raises(FileNotFoundError, match=f"model folder {missing} not found"):
        FrozenTeacher(missing)
    with pytest.raises(FileNotFoundError, match="model folder results/typo/save/teacher_hf not found"):
        FrozenTeacher("results/typo/save/teacher_hf")


def test_a_file_is_not_a_model_folder(tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(b"")
    with pytest.raises(NotADirectoryError, match="is a file"):
        FrozenTeacher(path)


def test_owner_slash_name_goes_to_the_hub(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OSError) as raised:  # transformers' own error: offline, not in the hub cache
        FrozenTeacher("no-such-owner/no-such-model")
    assert "not found (nor is it a hub id" not in str(raised.value)


def test_existing_folders_load(tiny_hubert_dir):
    assert FrozenTeacher(tiny_hubert_dir).source == str(tiny_hubert_dir)
