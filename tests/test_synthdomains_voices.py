"""The voice split of the target's held-out audio: rules of the held-out voices, against brute force."""

import numpy as np
import pytest

from corpora.synthdomains.voices import UNSEEN_SHARE, choose_unseen_voices, split_by_voice, voice_hours, voice_of


def rows_of(spec, prefix):
    """Manifest rows from ``{spk_id: [durations]}`` (espeak-ng voices named ``espeak-<accent>+<variant>``)."""
    rows = []
    for spk_id, durations in spec.items():
        engine = spk_id.split("-")[0]
        for k, duration in enumerate(durations):
            rows.append({"ID": f"{prefix}-{spk_id}-{k}", "spk_id": spk_id, "engine": engine,
                         "voice": spk_id.split("-", 1)[1], "duration": f"{duration:.3f}"})
    return rows


def oracle_unseen(target_rows, heldout_rows, share):
    """The rule, by brute force over prefixes: voices the target lacks, then the shortest run of the others by
    increasing target hours whose held-out hours reach the share, stopping before the target's main voice."""
    in_target, in_heldout = voice_hours(target_rows), voice_hours(heldout_rows)
    main = max(sorted(in_target), key=in_target.get)
    must = {v for v in in_heldout if v not in in_target}
    others = sorted((v for v in in_heldout if v in in_target), key=in_target.get)
    others = others[: others.index(main)] if main in others else others
    total = sum(in_heldout.values())
    for k in range(len(others) + 1):
        chosen = must | set(others[:k])
        if sum(in_heldout[v] for v in chosen) >= share * total:
            return chosen
    return must | set(others)


def random_spec(rng, voices, max_rows):
    return {v: list(rng.uniform(1, 8, int(rng.integers(1, max_rows + 1)))) for v in voices}


@pytest.mark.parametrize("case", range(40))
def test_the_held_out_voices_are_few_and_leave_the_target_its_main_voice(case):
    rng = np.random.default_rng(case)
    voices = [f"flite-v{k}" for k in range(int(rng.integers(1, 6)))]
    in_target = [v for v in voices if rng.random() < 0.8] or voices[:1]
    target = rows_of(random_spec(rng, in_target, 6), "t")
    heldout = rows_of(random_spec(rng, [v for v in voices if rng.random() < 0.8] or voices[-1:], 4), "h")
    share = float(rng.choice([0.1, UNSEEN_SHARE, 0.6]))
    chosen = choose_unseen_voices(target, heldout, share, seed=case)
    in_target_hours = voice_hours(target)
    main = max(sorted(in_target_hours), key=in_target_hours.get)
    assert main not in chosen
    assert set(voice_hours(heldout)) - set(in_target_hours) <= set(chosen)  # voices the target lacks: all held out
    assert set(chosen) == oracle_unseen(target, heldout, share)
    split = split_by_voice(target, heldout, share, seed=case)
    assert not {voice_of(r) for r in split["target"]} & {voice_of(r) for r in split["unseen_voice"]}
    assert {voice_of(r) for r in split["same_voice"]} <= {voice_of(r) for r in split["target"]} | {main}
    assert sorted(split["same_voice"] + split["unseen_voice"], key=lambda r: r["ID"]) == \
        sorted(heldout, key=lambda r: r["ID"])
    assert split["target"] == [r for r in target if voice_of(r) not in set(chosen)]
    assert (split["note"] is None) == bool(chosen)


def test_neural_like_target_keeps_its_main_voice_and_holds_out_the_minor_ones():
    """Nine tenths piper joe, the rest Kokoro voices: the Kokoro voices are the unseen ones, joe the same voice."""
    kokoro = ["kokoro-jf_alpha", "kokoro-jf_nezumi", "kokoro-jm_kumo"]
    target = rows_of({"piper-joe": [5.0] * 27, **{v: [5.0] for v in kokoro}}, "t")
    heldout = rows_of({"piper-joe": [5.0] * 18, kokoro[0]: [5.0], kokoro[2]: [5.0, 5.0]}, "h")
    split = split_by_voice(target, heldout, seed=0)
    assert split["unseen_voices"] == [kokoro[0], kokoro[2]]  # below the share, but joe is the target's
    assert {voice_of(r) for r in split["same_voice"]} == {"piper-joe"}
    assert {voice_of(r) for r in split["unseen_voice"]} == {kokoro[0], kokoro[2]}
    assert "piper-joe" in {voice_of(r) for r in split["target"]}


def test_a_domain_with_one_voice_has_no_unseen_voice_set_and_says_why():
    target = rows_of({"piper-joe": [4.0, 3.0], "kokoro-jf_nezumi": [2.0]}, "t")
    heldout = rows_of({"piper-joe": [3.0, 3.0, 3.0]}, "h")
    split = split_by_voice(target, heldout, seed=0)
    assert split["unseen_voice"] == [] and split["same_voice"] == heldout and split["target"] == target
    assert "1 voice(s) (piper-joe)" in split["note"]


def test_espeak_voices_are_their_variants():
    rows = rows_of({"espeak-en-us+m3": [2.0], "espeak-en-gb+m3": [3.0], "espeak-en-us+f1": [1.0]}, "x")
    assert voice_hours(rows) == pytest.approx({"espeak-m3": 5 / 3600, "espeak-f1": 1 / 3600})
    split = split_by_voice(rows, rows, seed=0)
    assert split["unseen_voices"] == ["espeak-f1"]  # the accents of m3 stay together


def test_a_share_outside_the_unit_interval_is_refused():
    with pytest.raises(ValueError, match="share"):
        choose_unseen_voices([], [], share=0.0)
