"""Manifest reading and validation."""

import pytest

from common.manifest import ManifestError, read_manifest

HEADER = "ID,duration,wav,spk_id,wrd,domain,engine,voice,lang,aug\n"


def _write(tmp_path, text, name="m.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_reads_rows_and_replaces_data_root(tmp_path):
    path = _write(tmp_path, HEADER
                  + "a,1.5,$data_root/pool/formant/a.flac,s1,hello,formant,e,v,en,none\n"
                  + "b,2.0,/abs/b.flac,s2,world,neural,e,v,en,none\n")
    manifest = read_manifest(path, data_root="/data")
    assert manifest.ids == ["a", "b"]
    assert manifest.fieldnames == HEADER.strip().split(",")
    assert manifest.durations.tolist() == [1.5, 2.0]
    assert manifest.wav_path("a") == "/data/pool/formant/a.flac"
    assert manifest.wav_path("b") == "/abs/b.flac"
    assert manifest.row("a")["wav"] == "$data_root/pool/formant/a.flac"  # raw row kept
    assert manifest.column("domain") == ["formant", "neural"]
    assert manifest.column("missing") is None
    assert manifest.total_hours == pytest.approx(3.5 / 3600)


def test_minimal_columns_are_enough(tmp_path):
    manifest = read_manifest(_write(tmp_path, "ID,duration,wav\nx,1,x.flac\n"))
    assert len(manifest) == 1 and "x" in manifest


def test_missing_required_column_names_file_and_column(tmp_path):
    path = _write(tmp_path, "ID,wav\na,a.flac\n")
    with pytest.raises(ManifestError, match=r"m\.csv.*missing required column.*duration"):
        read_manifest(path)


def test_duplicate_id_names_both_lines(tmp_path):
    path = _write(tmp_path, "ID,duration,wav\na,1,a.flac\nb,1,b.flac\na,2,c.flac\n")
    with pytest.raises(ManifestError, match=r"m\.csv, line 4: duplicate ID 'a' \(first on line 2\)"):
        read_manifest(path)


@pytest.mark.parametrize("value", ["abc", "-1", "nan", "inf", ""])
def test_bad_duration_names_line(tmp_path, value):
    path = _write(tmp_path, f"ID,duration,wav\na,1,a.flac\nb,{value},b.flac\n")
    with pytest.raises(ManifestError, match=r"m\.csv, line 3: duration .* of ID 'b'"):
        read_manifest(path)


def test_short_row_and_empty_file(tmp_path):
    with pytest.raises(ManifestError, match="line 2: expected 3 fields"):
        read_manifest(_write(tmp_path, "ID,duration,wav\na,1\n"))
    with pytest.raises(ManifestError, match="empty file"):
        read_manifest(_write(tmp_path, "", name="empty.csv"))


def test_placeholder_without_data_root(tmp_path):
    manifest = read_manifest(_write(tmp_path, "ID,duration,wav\na,1,$data_root/a.flac\n"))
    with pytest.raises(ManifestError, match="no data_root"):
        manifest.wav_path("a")
