"""Another pool domain as the target: a seeded re-split of the same audio, nothing regenerated.

The corpus is generated with ``neural`` as its target domain: unlabelled target audio
(``target.csv``), the domain thin in the pool, a transcribed test set of it (``asr_test_target``)
and none of it in ``asr_train``. :func:`retarget_synthdomains` writes manifests of the same audio
in which another domain plays that part, with the sizes of the generated corpus:

* ``target.csv``: a seeded draw of the domain's pool utterances, as many hours as the generated
  ``target.csv`` holds;
* ``pool.csv``: the pool without them, the domain thinned (seeded) to the hours ``neural`` has in
  the generated pool (the rest of it is left out of every split);
* ``asr_test_target.csv``: the domain's ``asr_test_in`` utterances, then a seeded draw of its
  ``asr_train`` ones, up to the hours of the generated ``asr_test_target``;
* ``asr_train``, ``asr_dev``, ``asr_test_in``: without the domain; ``teacher``, ``spk_train``,
  ``spk_test``: unchanged;
* ``summary.json``: the generated corpus's options (so the recipes' preparation, pointed at this
  folder, finds it complete and keeps it) and the hours of every split by domain.

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

logger = logging.getLogger(__name__)

SPLITS = ("pool", "target", "teacher", "asr_train", "asr_dev", "asr_test_in", "asr_test_target", "spk_train",
          "spk_test")
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
    splits = {split: _read(base_folder, split) for split in SPLITS}
    rows = {split: value[0] for split, value in splits.items()}
    default_target = {row["domain"] for row in rows["target"]}
    transcribed = {row["domain"] for split in ASR_SPLITS for row in rows[split]}
    eligible = sorted(({row["domain"] for row in rows["pool"]} & transcribed) - default_target)
    if target_domain not in eligible:
        why = "is the generated corpus's own target: use its manifests" if target_domain in default_target else \
            "has no pool and transcribed utterances"
        raise ValueError(f"target_domain {target_domain!r} {why}; another target can be one of {eligible}")
    base = json.loads((base_folder / "summary.json").read_text(encoding="utf-8"))
    identity = {"target_domain": target_domain, "seed": int(seed),
                "base_manifests": {split: file_sha256(base_folder / f"{split}.csv") for split in SPLITS}}
    summary_path = save_folder / "summary.json"
    if summary_path.exists():
        previous = json.loads(summary_path.read_text(encoding="utf-8"))
        if previous.get("retarget") == identity and all((save_folder / f"{s}.csv").exists() for s in SPLITS):
            logger.info("SynthDomains with target %s already in %s: keeping it", target_domain, save_folder)
            return previous

    rng = np.random.default_rng(seed)
    in_domain = [row for row in rows["pool"] if row["domain"] == target_domain]
    thin_hours = _hours([row for row in rows["pool"] if row["domain"] in default_target])
    target, rest = _draw(in_domain, _hours(rows["target"]), rng)
    kept, _ = _draw(rest, thin_hours, rng)
    kept_ids = {row["ID"] for row in kept}
    new = {"target": target,
           "pool": [row for row in rows["pool"] if row["domain"] != target_domain or row["ID"] in kept_ids]}
    test_in = [row for row in rows["asr_test_in"] if row["domain"] == target_domain]
    train = [row for row in rows["asr_train"] if row["domain"] == target_domain]
    missing = _hours(rows["asr_test_target"]) - _hours(test_in)
    new["asr_test_target"] = test_in + (_draw(train, missing, rng)[0] if missing > 0 and train else [])
    for split in ASR_SPLITS:
        new[split] = [row for row in rows[split] if row["domain"] != target_domain]
    save_folder.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        atomic_write_csv(save_folder / f"{split}.csv", new.get(split, rows[split]), splits[split][1])
    summary = {"options": base["options"], "n_failed": base["n_failed"], "retarget": identity,
               "hours": {split: hours_by_domain(new.get(split, rows[split])) for split in SPLITS}}
    atomic_write_text(summary_path, json.dumps(summary, indent=2))
    logger.info("SynthDomains with target %s written to %s: target %.3f h, pool %.3f h (%s %.3f h), "
                "asr_test_target %.3f h", target_domain, save_folder, _hours(target), _hours(new["pool"]),
                target_domain, _hours(kept), _hours(new["asr_test_target"]))
    return summary
