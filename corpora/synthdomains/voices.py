"""Held-out target audio in voices the unlabelled target set does not have: a manifest-level split.

A target-aware selector picks pool audio like the unlabelled target set, and in
SynthDomains that set is mostly one voice (``neural``: piper ``joe``). A student's
held-out loss on more of the same voices can then improve by voice adaptation
alone. :func:`split_by_voice` therefore holds some voices of the target domain out
of the unlabelled target set, and splits the held-out target audio into
``same_voice`` (voices the target set has) and ``unseen_voice`` (voices it has
not), so that a results table shows both.

Which voices are held out (seeded, from the manifests alone):

* only voices with held-out audio can be held out, and a voice the target set
  lacks already is held out first;
* then the voices with the fewest target hours, until the held-out voices hold
  :data:`UNSEEN_SHARE` of the held-out hours;
* the target set keeps at least its one voice with the most hours: a domain
  whose held-out audio is all in that voice has no unseen-voice set (its
  manifest is empty, and the record says why).

A voice is the speaker of the engine (``spk_id``: ``piper-joe``,
``kokoro-jf_alpha``, ``flite-awb``) except for espeak-ng, whose voice is the
variant shared by its accents (``en-us+m3`` and ``en-gb+m3`` are both ``m3``): an
unseen voice has a timbre the target set never has.

Example
-------
>>> rows = [{"spk_id": "piper-joe", "engine": "piper", "voice": "joe", "duration": "3"},
...         {"spk_id": "kokoro-jm_kumo", "engine": "kokoro", "voice": "jm_kumo", "duration": "2"}]
>>> split = split_by_voice(rows, rows, seed=0)
>>> split["unseen_voices"], [r["spk_id"] for r in split["target"]]
(['kokoro-jm_kumo'], ['piper-joe'])
"""

from collections import defaultdict

import numpy as np

UNSEEN_SHARE = 0.3  # the held-out voices' least share of the held-out hours (fewer when the target needs them)
UNSEEN_SUFFIX = "_unseen_voice"  # asr_test_target -> asr_test_target_unseen_voice


def voice_of(row):
    """The voice of a manifest row: its ``spk_id``, but an espeak-ng variant for espeak-ng.

    Example
    -------
    >>> voice_of({"spk_id": "espeak-en-gb+m3", "engine": "espeak", "voice": "en-gb+m3"})
    'espeak-m3'
    >>> voice_of({"spk_id": "flite-awb", "engine": "flite", "voice": "awb"})
    'flite-awb'
    """
    if row["engine"] == "espeak":
        return "espeak-" + row["voice"].rsplit("+", 1)[-1]
    return row["spk_id"]


def voice_hours(rows):
    """``{voice: hours}`` of manifest rows."""
    hours = defaultdict(float)
    for row in rows:
        hours[voice_of(row)] += float(row["duration"]) / 3600
    return dict(hours)


def choose_unseen_voices(target_rows, heldout_rows, share=UNSEEN_SHARE, seed=0):
    """The voices to hold out of the target set (module notes), fewest target hours first.

    Parameters
    ----------
    target_rows : list of dict
        The unlabelled target set (or the rows it is drawn from).
    heldout_rows : list of dict
        The held-out target audio (or the rows it is drawn from).
    share : float
        The held-out voices' least share of the held-out hours, in ``(0, 1]``.
    seed : int
        Breaks ties between voices of equal target hours.

    Returns
    -------
    list of str
        The held-out voices, in the order chosen (empty: the domain has no voice to spare).
    """
    if not 0 < share <= 1:
        raise ValueError(f"share is a fraction of the held-out hours, in (0, 1]; got {share}")
    in_target, in_heldout = voice_hours(target_rows), voice_hours(heldout_rows)
    tie_break = np.random.default_rng(seed).permutation(len(in_heldout))
    candidates = sorted(zip(sorted(in_heldout), tie_break), key=lambda pair: (in_target.get(pair[0], 0.0), pair[1]))
    total, held, chosen = sum(in_heldout.values()), 0.0, []
    kept = max(sorted(in_target), key=in_target.get, default=None)  # the target set's voice with the most hours
    for voice, _ in candidates:
        if voice == kept or (held >= share * total and voice in in_target):
            break
        chosen.append(voice)
        held += in_heldout[voice]
    return chosen


def split_by_voice(target_rows, heldout_rows, share=UNSEEN_SHARE, seed=0):
    """Hold :func:`choose_unseen_voices` out of the target set and split the held-out rows by voice.

    Parameters
    ----------
    target_rows, heldout_rows, share, seed
        As in :func:`choose_unseen_voices`.

    Returns
    -------
    dict
        ``target`` (the target rows in kept voices), ``same_voice`` and
        ``unseen_voice`` (the held-out rows in kept and in held-out voices),
        ``unseen_voices`` (sorted) and ``note``: a sentence saying why no voice
        is held out, else ``None``. Row order is kept.
    """
    unseen = set(choose_unseen_voices(target_rows, heldout_rows, share, seed))
    note = None
    if not unseen:
        voices = sorted(voice_hours(heldout_rows))
        note = (f"no unseen-voice held-out audio: the held-out target audio is in {len(voices)} voice(s) "
                f"({', '.join(voices) or 'none'}), all of them needed by the target set")
    return {"target": [row for row in target_rows if voice_of(row) not in unseen],
            "same_voice": [row for row in heldout_rows if voice_of(row) not in unseen],
            "unseen_voice": [row for row in heldout_rows if voice_of(row) in unseen],
            "unseen_voices": sorted(unseen), "note": note}
