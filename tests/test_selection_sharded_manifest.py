"""Columnar manifests (common.manifest_columns) against the dict reader (common.manifest), the oracle."""

import numpy as np
import pytest

from common.manifest import ManifestError, read_manifest
from common.manifest_columns import read_manifest_columns, write_manifest_rows
from selection.selectors.base import fill_budget

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
