"""Another target domain by a re-split of the tiny corpus: the splits' contents, sizes, determinism, reuse."""

import csv
import json

import pytest

from corpora.synthdomains.prepare import prepare_synthdomains
from corpora.synthdomains.retarget import SPLITS, retarget_synthdomains


def rows_of(folder, split):
    with open(folder / f"{split}.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def hours(rows):
    return sum(float(row["duration"]) for row in rows) / 3600


def test_formant_as_the_target(tiny_corpus, tmp_path):
    base, out = tiny_corpus["save_folder"], tmp_path / "target-formant"
    summary = retarget_synthdomains(base, out, "formant", seed=5)
    new = {split: rows_of(out, split) for split in SPLITS}
    old = {split: rows_of(base, split) for split in SPLITS}

    assert {row["domain"] for row in new["target"]} == {"formant"}
    assert {row["domain"] for row in new["asr_test_target"]} == {"formant"}
    for split in ("asr_train", "asr_dev", "asr_test_in"):  # the target domain is kept out of training and test_in
        assert "formant" not in {row["domain"] for row in new[split]}
        assert [r for r in old[split] if r["domain"] != "formant"] == new[split]
    pool_ids = {row["ID"] for row in new["pool"]}
    assert not pool_ids & {row["ID"] for row in new["target"]}
    test_ids = {row["ID"] for row in new["asr_test_target"]}
    assert test_ids <= {row["ID"] for split in ("asr_test_in", "asr_train") for row in old[split]}
    assert {r["ID"] for r in old["asr_test_in"] if r["domain"] == "formant"} <= test_ids
    assert [r for r in old["pool"] if r["domain"] != "formant"] == [r for r in new["pool"] if r["domain"] != "formant"]
    # sizes of the generated corpus's target roles, within one utterance
    longest = max(float(row["duration"]) for row in old["pool"]) / 3600
    assert hours(new["target"]) <= max(hours(old["target"]), longest) + 1e-9
    thin = hours([r for r in new["pool"] if r["domain"] == "formant"])
    assert thin <= max(hours([r for r in old["pool"] if r["domain"] == "neural"]), longest) + 1e-9
    for split in ("teacher", "spk_train", "spk_test"):
        assert new[split] == old[split]
    assert summary["options"] == json.loads((base / "summary.json").read_text())["options"]
    assert summary["hours"]["target"] == {"formant": pytest.approx(hours(new["target"]), abs=1e-4)}

    # the same call keeps the folder; another seed draws other utterances
    stamp = (out / "pool.csv").stat().st_mtime_ns
    assert retarget_synthdomains(base, out, "formant", seed=5) == summary
    assert (out / "pool.csv").stat().st_mtime_ns == stamp
    again = retarget_synthdomains(base, tmp_path / "other-seed", "formant", seed=6)
    assert again["retarget"]["seed"] == 6
    # a recipe's preparation pointed at the folder finds the corpus complete and keeps it
    prepare_synthdomains(tiny_corpus["data_folder"], out, scale=tiny_corpus["scale"], seed=0)
    assert (out / "pool.csv").stat().st_mtime_ns == stamp


@pytest.mark.parametrize("domain, message", [("neural", "own target"), ("nonenglish", "no pool and transcribed"),
                                             ("martian", "no pool and transcribed")])
def test_domains_that_cannot_be_targets(tiny_corpus, tmp_path, domain, message):
    with pytest.raises(ValueError, match=f"{message}.*one of \\['concat', 'formant'"):
        retarget_synthdomains(tiny_corpus["save_folder"], tmp_path / "x", domain)
