"""Another target domain by a re-split of the tiny corpus: the splits' contents, sizes, determinism, reuse."""

import csv
import json

import pytest

from corpora.synthdomains.prepare import prepare_synthdomains
from corpora.synthdomains.retarget import BASE_SPLITS, SPLITS, UNSEEN_VOICE_SPLIT, retarget_synthdomains
from corpora.synthdomains.voices import voice_of


def rows_of(folder, split):
    with open(folder / f"{split}.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def hours(rows):
    return sum(float(row["duration"]) for row in rows) / 3600


def test_formant_as_the_target(tiny_corpus, tmp_path):
    base, out = tiny_corpus["save_folder"], tmp_path / "target-formant"
    summary = retarget_synthdomains(base, out, "formant", seed=5)
    new = {split: rows_of(out, split) for split in SPLITS}
    old = {split: rows_of(base, split) for split in BASE_SPLITS}

    assert {row["domain"] for row in new["target"]} == {"formant"}
    # the tiny target holds a few of formant's 14 voices: its held-out audio may all be in other voices
    assert {row["domain"] for row in new["asr_test_target"] + new[UNSEEN_VOICE_SPLIT]} == {"formant"}
    for split in ("asr_train", "asr_dev", "asr_test_in"):  # the target domain is kept out of training and test_in
        assert "formant" not in {row["domain"] for row in new[split]}
        assert [r for r in old[split] if r["domain"] != "formant"] == new[split]
    longest = max(float(row["duration"]) for split in ("pool", "asr_train") for row in old[split]) / 3600
    pool_ids = {row["ID"] for row in new["pool"]}
    assert not pool_ids & {row["ID"] for row in new["target"]}
    test_ids = {row["ID"] for row in new["asr_test_target"]}
    unseen_ids = {row["ID"] for row in new[UNSEEN_VOICE_SPLIT]}
    assert not test_ids & unseen_ids and {row["domain"] for row in new[UNSEEN_VOICE_SPLIT]} <= {"formant"}
    assert test_ids | unseen_ids <= {row["ID"] for split in ("asr_test_in", "asr_train") for row in old[split]}
    assert {r["ID"] for r in old["asr_test_in"] if r["domain"] == "formant"} <= test_ids | unseen_ids
    # held-out audio by voice: the same voices as the target set, and voices it lacks
    target_voices = {voice_of(row) for row in new["target"]}
    assert {voice_of(row) for row in new["asr_test_target"]} <= target_voices
    assert not {voice_of(row) for row in new[UNSEEN_VOICE_SPLIT]} & target_voices
    assert new[UNSEEN_VOICE_SPLIT] and summary["voice_split"]["target_voices"] == sorted(target_voices)
    for rows in (new["asr_test_target"], new[UNSEEN_VOICE_SPLIT]):  # its asr_test_in rows, then asr_train ones
        from_test_in = [row for row in rows if row["ID"].startswith("asr_test_in")]
        assert hours(rows) <= max(hours(from_test_in), hours(old["asr_test_target"]) + longest) + 1e-9
    assert [r for r in old["pool"] if r["domain"] != "formant"] == [r for r in new["pool"] if r["domain"] != "formant"]
    # sizes of the generated corpus's target roles, within one utterance
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


@pytest.mark.parametrize("domain", ["concat", "parametric"])
def test_every_target_domain_has_unseen_voice_audio(tiny_corpus, tmp_path, domain):
    """Two and three voices: one held out, the target set keeps the rest."""
    out = tmp_path / f"target-{domain}"
    summary = retarget_synthdomains(tiny_corpus["save_folder"], out, domain, seed=0)
    target, same, unseen = rows_of(out, "target"), rows_of(out, "asr_test_target"), rows_of(out, UNSEEN_VOICE_SPLIT)
    assert unseen and same and target and not {voice_of(r) for r in unseen} & {voice_of(r) for r in target}
    assert {voice_of(r) for r in same} <= {voice_of(r) for r in target}
    assert summary["voice_split"]["unseen_voices"] == sorted({voice_of(r) for r in unseen})


def test_manifests_made_before_the_voice_split_are_refused(tiny_corpus, tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    for split in BASE_SPLITS:
        (old / f"{split}.csv").write_bytes((tiny_corpus["save_folder"] / f"{split}.csv").read_bytes())
    summary = json.loads((tiny_corpus["save_folder"] / "summary.json").read_text())
    summary.pop("voice_split")
    (old / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(ValueError, match="before the voice split: run the corpus preparation"):
        retarget_synthdomains(old, tmp_path / "new", "formant")
    assert not (tmp_path / "new").exists()


def test_a_re_split_from_before_the_voice_split_is_not_overwritten_by_the_preparation(tiny_corpus, tmp_path):
    out = tmp_path / "target-concat"
    retarget_synthdomains(tiny_corpus["save_folder"], out, "concat", seed=0)
    summary = json.loads((out / "summary.json").read_text())
    summary.pop("voice_split")  # as a re-split written before the voice split
    (out / "summary.json").write_text(json.dumps(summary))
    target = (out / "target.csv").read_bytes()
    with pytest.raises(RuntimeError, match="re-split for target 'concat'.*--target_domain concat"):
        prepare_synthdomains(tiny_corpus["data_folder"], out, scale=tiny_corpus["scale"], seed=0)
    assert (out / "target.csv").read_bytes() == target


@pytest.mark.parametrize("domain, message", [("neural", "own target"), ("nonenglish", "no pool and transcribed"),
                                             ("martian", "no pool and transcribed")])
def test_domains_that_cannot_be_targets(tiny_corpus, tmp_path, domain, message):
    with pytest.raises(ValueError, match=f"{message}.*one of \\['concat', 'formant'"):
        retarget_synthdomains(tiny_corpus["save_folder"], tmp_path / "x", domain)
