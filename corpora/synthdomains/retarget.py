"""Another pool domain as the target: a seeded re-split of the same audio, nothing regenerated.

The corpus is generated with ``neural`` as its target domain: unlabelled target audio
(``target.csv``), the domain thin in the pool, a transcribed test set of it (``asr_test_target``)
and none of it in ``asr_train``. :func:`retarget_synthdomains` writes manifests of the same audio
in which another domain plays that part, with the sizes of the generated corpus:

* the domain's voices split (:func:`corpora.synthdomains.voices.choose_unseen_voices`, from its
  pool and transcribed utterances): some voices are held out of the target set;
* ``target.csv``: a seeded draw of the domain's pool utterances in the other voices, as many hours
  as the generated ``target.csv`` holds;
* ``pool.csv``: the pool without them, the domain thinned (seeded) to the hours ``neural`` has in
  the generated pool (the rest of it is left out of every split);
* ``asr_test_target.csv`` (same voice): the domain's ``asr_test_in`` utterances in the target's
  voices, then a seeded draw of its ``asr_train`` ones in those voices, up to the hours of the
  generated ``asr_test_target``; ``asr_test_target_unseen_voice.csv``: the same, in the voices
  the target set lacks (the held-out ones, and any the draw missed);
* ``asr_train``, ``asr_dev``, ``asr_test_in``: without the domain; ``teacher``, ``spk_train``,
  ``spk_test``: unchanged;
* ``summary.json``: the generated corpus's options and voice-split record (so the recipes'
  preparation, pointed at this folder, finds it complete and keeps it), the hours of every split
  by domain, and this split's voices (``voice_split``).

Any recipe then runs on the new target with ``--manifest_folder=<save_folder>``.
"""

import csv
import json
import logging
from collections import defaultdict
from pathlib import Path

import numpy as np

from common.atomic import atomic_write_csv, atomic_write_text
from common.hashing import file_sha256

from .voices import UNSEEN_SHARE, UNSEEN_SUFFIX, choose_unseen_voices, voice_hours, voice_of

logger = logging.getLogger(__name__)

UNSEEN_VOICE_SPLIT = "asr_test_target" + UNSEEN_SUFFIX
BASE_SPLITS = ("pool", "target", "teacher", "asr_train", "asr_dev", "asr_test_in", "asr_test_target", "spk_train",
               "spk_test")  # read from the generated corpus
SPLITS = BASE_SPLITS + (UNSEEN_VOICE_SPLIT,)  # written
ASR_SPLITS = ("asr_train", "asr_dev", "asr_test_in")


def _read(folder, split):
    with open(Path(folder) / f"{split}.csv", newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        return list(reader), reader.fieldnames


def _hours(rows):
    return sum(float(row["duration"]) for row in rows) / 3600


def _draw(rows, hours, rng):
    """A seeded draw of ``rows`` holding at most ``hours`` (at least one row), and the rest (file order kept)."""
    order = rng.permutation(len(rows))
    held = np.cumsum([float(rows[i]["duration"]) for i in order])
    count = max(1, int(np.searchsorted(held, hours * 3600, side="right")))
    chosen = set(order[:count].tolist())
    return ([row for i, row in enumerate(rows) if i in chosen], [row for i, row in enumerate(rows) if i not in chosen])


def _heldout(test_in, train, hours, rng):
    """``test_in``, then a seeded draw of ``train`` up to ``hours`` in all (file order kept)."""
    missing = hours - _hours(test_in)
    return test_in + (_draw(train, missing, rng)[0] if missing > 0 and train else [])


def hours_by_domain(rows):
    """``{domain: hours}`` of manifest rows (rounded to 1e-4 h)."""
    hours = defaultdict(float)
    for row in rows:
        hours[row["domain"]] += float(row["duration"]) / 3600
    return {domain: round(value, 4) for domain, value in sorted(hours.items())}


def retarget_synthdomains(base_folder, save_folder, target_domain, seed=0):
    """Write the manifests of the generated corpus with ``target_domain`` as its target (module notes).

    Parameters
    ----------
    base_folder : str or os.PathLike
        Manifests of the generated corpus (``prepare_synthdomains``'s ``save_folder``).
    save_folder : str or os.PathLike
        Where the re-split manifests and ``summary.json`` go; kept when written before from the same
        base manifests, domain and seed.
    target_domain : str
        A pool domain with transcribed utterances (in ``asr_train`` or ``asr_test_in``).
    seed : int
        Seed of the draws.

    Returns
    -------
    dict
        The content of ``summary.json``.

    Raises
    ------
    ValueError
        For the generated target domain itself, or a domain without pool or transcribed utterances
        (the message lists the domains that can be targets).
    """
    base_folder, save_folder = Path(base_folder), Path(save_folder)
    splits = {split: _read(base_folder, split) for split in BASE_SPLITS}
    rows = {split: value[0] for split, value in splits.items()}
    default_target = {row["domain"] for row in rows["target"]}
    transcribed = {row["domain"] for split in ASR_SPLITS for row in rows[split]}
    eligible = sorted(({row["domain"] for row in rows["pool"]} & transcribed) - default_target)
    if target_domain not in eligible:
        why = "is the generated corpus's own target: use its manifests" if target_domain in default_target else \
            "has no pool and transcribed utterances"
        raise ValueError(f"target_domain {target_domain!r} {why}; another target can be one of {eligible}")
    base = json.loads((base_folder / "summary.json").read_text(encoding="utf-8"))
    if "voice_split" not in base:
        raise ValueError(f"{base_folder} holds manifests made before the voice split: run the corpus preparation "
                         "on it again (it rewrites the manifests from the audio on disk) and retarget then")
    identity = {"target_domain": target_domain, "seed": int(seed), "unseen_share": UNSEEN_SHARE,
                "base_manifests": {split: file_sha256(base_folder / f"{split}.csv") for split in BASE_SPLITS}}
    summary_path = save_folder / "summary.json"
    if summary_path.exists():
        previous = json.loads(summary_path.read_text(encoding="utf-8"))
        if previous.get("retarget") == identity and all((save_folder / f"{s}.csv").exists() for s in SPLITS):
            logger.info("SynthDomains with target %s already in %s: keeping it", target_domain, save_folder)
            return previous

    rng = np.random.default_rng(seed)
    in_domain = [row for row in rows["pool"] if row["domain"] == target_domain]
    thin_hours = _hours([row for row in rows["pool"] if row["domain"] in default_target])
    test_in = [row for row in rows["asr_test_in"] if row["domain"] == target_domain]
    train = [row for row in rows["asr_train"] if row["domain"] == target_domain]
    unseen = set(choose_unseen_voices(in_domain, test_in + train, seed=seed))
    target, _ = _draw([row for row in in_domain if voice_of(row) not in unseen], _hours(rows["target"]), rng)
    target_ids = {row["ID"] for row in target}
    kept, _ = _draw([row for row in in_domain if row["ID"] not in target_ids], thin_hours, rng)
    kept_ids = {row["ID"] for row in kept}
    new = {"target": target,
           "pool": [row for row in rows["pool"] if row["domain"] != target_domain or row["ID"] in kept_ids]}
    heldout_hours, heard = _hours(rows["asr_test_target"]), set(voice_hours(target))  # the target set's voices
    new["asr_test_target"] = _heldout([r for r in test_in if voice_of(r) in heard],
                                      [r for r in train if voice_of(r) in heard], heldout_hours, rng)
    new[UNSEEN_VOICE_SPLIT] = _heldout([r for r in test_in if voice_of(r) not in heard],
                                       [r for r in train if voice_of(r) not in heard], heldout_hours, rng)
    if not new[UNSEEN_VOICE_SPLIT]:
        logger.warning("SynthDomains with target %s: no unseen-voice held-out audio: its transcribed audio is in "
                       "%s, all needed by the target set", target_domain, sorted(voice_hours(test_in + train)))
    for split in ASR_SPLITS:
        new[split] = [row for row in rows[split] if row["domain"] != target_domain]
    output = {**rows, **new}
    save_folder.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        columns = splits[split if split in splits else "asr_test_target"][1]
        atomic_write_csv(save_folder / f"{split}.csv", output[split], columns)
    summary = {"options": base["options"], "n_failed": base["n_failed"], "retarget": identity,
               "voice_split": {**base["voice_split"], "unseen_voices": sorted(voice_hours(new[UNSEEN_VOICE_SPLIT])),
                               "target_voices": sorted(heard),
                               "note": None if new[UNSEEN_VOICE_SPLIT] else
                               f"no unseen-voice held-out audio for {target_domain}"},
               "hours": {split: hours_by_domain(output[split]) for split in SPLITS}}
    atomic_write_text(summary_path, json.dumps(summary, indent=2))
    logger.info("SynthDomains with target %s written to %s: target %.3f h, pool %.3f h (%s %.3f h), "
                "asr_test_target %.3f h", target_domain, save_folder, _hours(target), _hours(new["pool"]),
                target_domain, _hours(kept), _hours(new["asr_test_target"]))
    return summary
