"""Columnar manifests (common.manifest_columns) against the dict reader (common.manifest), the oracle.

Also the recipe path's outputs (run_selection), the same bytes from either reader.
"""

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from common.manifest import ManifestError, read_manifest
from common.manifest_columns import read_columnar_manifest, read_manifest_columns, write_manifest_rows
from selection import stages
from selection.features import MFCCExtractor
from selection.outputs import write_fairseq_tsv, write_len_for_bucket_csv, write_subset_csv
from selection.report import domain_hours
from selection.selectors import ContrastiveLMSelector
from selection.selectors.base import fill_budget
from selection.stages import run_selection
from selection.units import shard_ids

CONTENT = ('\ufeffID,duration,wav,wrd\n'
           'b-1,2.50,$data_root/b.flac,"HELLO, WORLD"\n'
           'a,1.0,$data_root/a.flac,\n'
           '\n'
           'ü-3,0.25,$data_root/u.flac,"SAID ""HI"""\n'
           'c,3,$data_root/c.flac,LAST')  # no final line break


def test_columns_match_the_dict_reader(tmp_path):
    path = tmp_path / "pool.csv"
    path.write_text(CONTENT, encoding="utf-8")
    oracle = read_manifest(path)
    columns = read_manifest_columns(path, block_rows=2)  # blocks end inside the file
    assert [i.decode() for i in columns.ids] == oracle.ids
    assert np.array_equal(columns.durations, oracle.durations)
    assert columns.fieldnames == oracle.fieldnames
    assert columns.positions(["c", "ü-3", "b-1"]).tolist() == [oracle.ids.index(i) for i in ("c", "ü-3", "b-1")]
    with pytest.raises(KeyError, match="'nope'"):
        columns.positions(["a", "nope"])
    with pytest.raises(KeyError, match="'a-much-longer-id-than-any'"):
        columns.positions(["a-much-longer-id-than-any"])


def test_written_rows_are_the_source_rows(tmp_path):
    path = tmp_path / "pool.csv"
    path.write_text(CONTENT, encoding="utf-8")
    columns = read_manifest_columns(path)
    write_manifest_rows(columns, columns.positions(["c", "ü-3", "b-1"]), tmp_path / "subset.csv", block_rows=2)
    subset = read_manifest(tmp_path / "subset.csv")
    oracle = read_manifest(path)
    assert subset.ids == ["c", "ü-3", "b-1"]
    assert [subset.row(i) for i in subset.ids] == [oracle.row(i) for i in subset.ids]


@pytest.mark.parametrize("content, message", [
    ("ID,wav\na,x.flac\n", r"missing required column\(s\) \['duration'\]"),
    ("ID,duration,wav\na,1.0,x.flac\nb,1.0,y.flac\nc,1,z\na,2.0,z.flac\nb,1,q\n",
     r"line 5: duplicate ID 'a' \(first on line 2\)"),
    ("ID,duration,wav\na,1.0,x.flac\nb,long,y.flac\n", r"line 3: duration 'long' of ID 'b' is not a number"),
    ("ID,duration,wav\na,-1,x.flac\n", r"line 2: duration '-1' of ID 'a' must be finite and >= 0"),
    ("ID,duration,wav\na,1.0\n", r"line 2: expected 3 fields"),
    ("ID,duration,wav\n,1.0,x.flac\n", r"line 2: empty ID"),
    ("", r"empty file"),
])
def test_bad_rows_are_named_as_the_dict_reader_names_them(content, message, tmp_path):
    path = tmp_path / "pool.csv"
    path.write_text(content)
    with pytest.raises(ManifestError, match=message):
        read_manifest(path)
    with pytest.raises(ManifestError, match=message):
        read_manifest_columns(path, block_rows=2)


def test_fill_budget_matches_the_greedy_walk():
    """Brute force: the one-at-a-time walk (take what fits, skip what does not) on random durations."""
    rng = np.random.default_rng(0)
    for _ in range(50):
        durations = rng.uniform(0.5, 20.0, size=rng.integers(1, 200))
        budget = rng.uniform(0, durations.sum())
        taken, gap = [], budget
        for i, d in enumerate(durations):
            if d <= gap:
                taken.append(i)
                gap -= d
        got = fill_budget(durations, budget)
        assert got.tolist() == taken or np.isclose(durations[got].sum(), durations[taken].sum())


def both_readers(tmp_path, content=CONTENT, newline="\n"):
    path = tmp_path / "pool.csv"
    path.write_bytes(content.replace("\n", newline).encode("utf-8"))
    return read_manifest(path, data_root="/audio"), read_columnar_manifest(path, data_root="/audio")


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_columnar_manifest_reads_like_the_dict_reader(newline, tmp_path):
    oracle, columnar = both_readers(tmp_path, newline=newline)
    assert list(columnar.ids) == oracle.ids and len(columnar) == len(oracle)
    assert columnar.ids[1:3] == oracle.ids[1:3] and columnar.ids[-1] == oracle.ids[-1]
    assert columnar.fieldnames == oracle.fieldnames and columnar.total_hours == oracle.total_hours
    wanted = ["c", "ü-3", "b-1", "c"]
    assert list(columnar.rows_of(wanted)) == [oracle.row(i) for i in wanted]
    assert [columnar.row(i) for i in oracle.ids] == [oracle.row(i) for i in oracle.ids]
    assert columnar.durations_of(wanted).tolist() == oracle.durations_of(wanted).tolist()
    assert [columnar.wav_path(i) for i in wanted] == list(columnar.wav_paths(wanted)) == \
        [oracle.wav_path(i) for i in wanted]
    assert list(columnar.wav_paths()) == list(oracle.wav_paths())
    assert list(columnar.column("wrd")) == oracle.column("wrd") and columnar.column("spk") is None
    assert ("a" in columnar, "ü-3" in columnar, "nope" in columnar) == (True, True, False)
    for world_size in (1, 2, 3):  # each process's shard, decoded without the others
        assert [shard_ids(columnar.ids, r, world_size) for r in range(world_size)] == \
            [shard_ids(oracle.ids, r, world_size) for r in range(world_size)]


def test_a_placeholder_without_data_root_names_the_line(tmp_path):
    path = tmp_path / "pool.csv"
    path.write_text(CONTENT, encoding="utf-8")
    columnar = read_columnar_manifest(path)
    with pytest.raises(ManifestError, match=r"pool.csv, line 3: wav '\$data_root/a.flac' uses"):
        columnar.wav_path("a")
    with pytest.raises(ManifestError, match=r"line 2: wav '\$data_root/b.flac'"):
        next(columnar.wav_paths())


def test_outputs_from_columns_are_the_bytes_of_the_dict_reader(tmp_path):
    """Subset, s3prl and fairseq lists and domain hours written from either reader are the same."""
    content = CONTENT.replace("ID,duration,wav,wrd", "ID,duration,wav,wrd,domain")
    content = "\n".join(line + f',"d,{k % 2}"' if k else line for k, line in enumerate(content.split("\n")) if line)
    written = {}
    for name, manifest in zip(("dict", "columns"), both_readers(tmp_path, content)):
        folder = tmp_path / name
        ids = ["c", "ü-3", "b-1"]
        write_subset_csv(manifest, ids, folder / "subset.csv")
        write_len_for_bucket_csv(manifest, ids, folder / "len.csv", "/", [3, 2, 1])
        write_fairseq_tsv(manifest, ids, folder / "train.tsv", "/", [3, 2, 1])
        written[name] = ({p.name: p.read_bytes() for p in folder.iterdir()},
                         domain_hours(manifest), domain_hours(manifest, ids))
    assert written["dict"] == written["columns"]
    assert set(written["dict"][1]) == {"d,0", "d,1"}


def test_run_selection_writes_what_the_dict_reader_wrote(tiny_corpus, tmp_path, monkeypatch, caplog):
    """The recipe path on columns: every output the same bytes as with ``read_manifest`` (CRLF, quoted fields)."""
    source = (tiny_corpus["save_folder"] / "pool.csv").read_text(encoding="utf-8").splitlines()
    pool = tmp_path / "pool.csv"  # a byte-order mark, CRLF, fields that need quotes
    pool.write_bytes(("\ufeff" + "\r\n".join(line if k == 0 else line.replace(",,", ',"SAID ""HI"", AGAIN",')
                                             for k, line in enumerate(source)) + "\r\n").encode("utf-8"))

    def run(output_folder):
        return run_selection(pool, tiny_corpus["save_folder"] / "target.csv", tiny_corpus["data_folder"],
                             MFCCExtractor(), {"n_clusters": 16, "fit_hours": 0.02, "kmeans_settings": {"n_epochs": 3}},
                             ContrastiveLMSelector(), output_folder, units_folder=tmp_path / "units", seed=3)[1]

    columns_result = run(tmp_path / "columns")
    monkeypatch.setattr(stages, "read_columnar_manifest", read_manifest)  # the reader the path had before
    with caplog.at_level(logging.INFO):
        dict_result = run(tmp_path / "dict")
    assert "units stage done" in caplog.text  # the same cache keys from either reader
    assert columns_result.ids == dict_result.ids and 0 < len(dict_result.ids) < len(source) - 1
    files = {p.relative_to(tmp_path / "dict") for p in (tmp_path / "dict").rglob("*.*")} - {Path("report.png")}
    assert {Path("subset.csv"), Path("scores.csv"), Path("fairseq/train.tsv")} <= files
    for name in files - {Path("selection.json")}:
        assert (tmp_path / "columns" / name).read_bytes() == (tmp_path / "dict" / name).read_bytes(), name
    records = [json.loads((tmp_path / folder / "selection.json").read_text()) for folder in ("columns", "dict")]
    for record in records:
        for key in ("created", "outputs", "selector_seconds"):
            record.pop(key)
    assert records[0] == records[1]
