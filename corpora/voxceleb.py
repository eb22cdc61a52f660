"""Prepare VoxCeleb1: SpeechBrain CSV manifests for speaker identification and verification.

Expected layout (``vox1_dev_wav.zip`` and ``vox1_test_wav.zip`` both unzipped
into ``data_folder``, so that their ``wav/`` folders merge; 16 kHz WAV)::

    <data_folder>/
        wav/<speaker id>/<youtube id>/<nnnnn>.wav     e.g. wav/id10001/1zcIwhmdeo4/00001.wav
        iden_split.txt                                 lines "<set> <speaker>/<video>/<nnnnn>.wav"

Identification (``iden_split.txt``, set 1 = train, 2 = validation, 3 = test)
writes ``sid_train.csv``, ``sid_dev.csv`` and ``sid_test.csv``. Verification
(a trials list such as ``veri_test2.txt``, lines ``<0|1> <path a> <path b>``
with paths relative to ``wav/``) writes ``asv_test.csv`` (every utterance of
the trials, once), ``asv_trials.txt`` (the trials, in the same order, as
``<label> <ID a> <ID b>``) and ``asv_train.csv`` (every utterance of ``wav/``
whose speaker is in no trial: with the original test trials, the VoxCeleb1 dev
speakers, as in the SUPERB ASV protocol).

CSV columns: ``ID,duration,wav,spk_id,wrd``; ``ID`` is the path relative to
``wav/`` without extension, ``/`` replaced by ``_`` (``id10001_1zcIwhmdeo4_00001``);
``wav`` is ``$data_root/wav/<speaker>/<video>/<nnnnn>.wav`` (``$data_root``
stands for ``data_folder``); ``spk_id`` the speaker folder; ``wrd`` empty; rows
sorted by ID. ``voxceleb_prepare.json`` records the data folder, the list file
of each task and the statistics of each output.

Idempotent: a task recorded for the same data folder and list file whose
outputs are all present is not redone. Every file is written to a hidden
temporary name and renamed, so a failed run leaves no half-written file. Every
listed file is checked against ``wav/``; a mismatch stops the run with the list
file, line and path at fault.

Usage
-----
python recipes/VoxCeleb/voxceleb_prepare.py --data_folder /data/VoxCeleb1 \
    --save_folder data/VoxCeleb1/manifests --trials_file /data/VoxCeleb1/veri_test2.txt

Example
-------
>>> from corpora.voxceleb import prepare_voxceleb1
>>> prepare_voxceleb1("/data/VoxCeleb1", "manifests", trials_file="/data/VoxCeleb1/veri_test2.txt")  # doctest: +SKIP
"""

import argparse
import json
import logging
from pathlib import Path

from tqdm import tqdm

from common.atomic import atomic_write_csv, atomic_write_text
from common.corpus_files import audio_duration, list_files, list_subfolders, load_record

logger = logging.getLogger(__name__)

COLUMNS = ("ID", "duration", "wav", "spk_id", "wrd")
LAYOUT = "<data_folder>/wav/<speaker id>/<youtube id>/<nnnnn>.wav"
IDEN_SETS = {"1": "sid_train", "2": "sid_dev", "3": "sid_test"}
TRIAL_LABELS = ("0", "1")
TASK_FILES = {
    "identification": ("sid_train.csv", "sid_dev.csv", "sid_test.csv"),
    "verification": ("asv_train.csv", "asv_test.csv", "asv_trials.txt"),
}
RECORD_NAME = "voxceleb_prepare.json"
PROGRESS_MIN_FILES = 1000


def prepare_voxceleb1(data_folder, save_folder, iden_split_file=None, trials_file=None, skip_prep=False):
    """Write the VoxCeleb1 identification and verification manifests.

    Parameters
    ----------
    data_folder : str or Path
        The VoxCeleb1 root, holding ``wav/<speaker>/<video>/<nnnnn>.wav``.
    save_folder : str or Path
        Where the manifests and ``voxceleb_prepare.json`` go (created if needed).
    iden_split_file : str or Path, optional
        The identification split list; default ``<data_folder>/iden_split.txt``, and identification is
        skipped (with a log line) when that default is missing.
    trials_file : str or Path, optional
        The verification trials (e.g. ``veri_test2.txt``); None skips verification.
    skip_prep : bool
        Do nothing (SpeechBrain convention).

    Returns
    -------
    dict or None
        Per output of the tasks prepared: ``utterances``, ``hours`` and ``speakers`` for a CSV
        (``sid_train``, ``sid_dev``, ``sid_test``, ``asv_train``, ``asv_test``) and ``trials``,
        ``target`` and ``nontarget`` for ``asv_trials``; None when ``skip_prep``.

    Raises
    ------
    FileNotFoundError
        ``data_folder``, its ``wav/`` folder, a list file given explicitly, or a listed audio file is missing.
    ValueError
        A malformed or duplicated list line, or a trial label other than 0 or 1.
    RuntimeError
        An audio file that soundfile cannot open.
    """
    if skip_prep:
        return None
    data_folder, save_folder = Path(data_folder), Path(save_folder)
    wav_folder = _check_layout(data_folder)
    lists = _task_lists(data_folder, iden_split_file, trials_file)
    if not lists:
        logger.warning("VoxCeleb1: nothing to prepare (no iden_split.txt in %s and no trials_file)", data_folder)
        return {}

    record_path = save_folder / RECORD_NAME
    record = load_record(record_path, data_folder)
    todo = [task for task, list_file in lists.items() if not _is_recorded(record, task, list_file, save_folder)]
    if not todo:
        logger.info("VoxCeleb1 already prepared in %s (%s): skipping", save_folder, ", ".join(lists))
        return _summary(record, lists)

    wav_files = _scan_wav(wav_folder)
    manifests, trials = {}, None
    if "identification" in todo:
        manifests.update(_identification_sets(lists["identification"], wav_files, wav_folder))
    if "verification" in todo:
        trials = _read_trials(lists["verification"], wav_files, wav_folder)
        manifests.update(_verification_sets(trials, wav_files))
    durations = _read_durations(wav_folder, sorted(set().union(*manifests.values())))

    save_folder.mkdir(parents=True, exist_ok=True)
    outputs = {name: _write_manifest(save_folder / f"{name}.csv", files, durations)
               for name, files in manifests.items()}
    if trials is not None:
        outputs["asv_trials"] = _write_trials(save_folder / "asv_trials.txt", trials)
    for task in todo:
        names = [file_name.rsplit(".", 1)[0] for file_name in TASK_FILES[task]]
        record[task] = {"list_file": _resolved(lists[task]), "outputs": {name: outputs[name] for name in names}}
    atomic_write_text(record_path, json.dumps(record, indent=2))
    return _summary(record, lists)


def _check_layout(data_folder):
    """Return the ``wav/`` folder, failing with the expected layout when it or ``data_folder`` is missing."""
    if not data_folder.is_dir():
        raise FileNotFoundError(f"VoxCeleb1 folder {data_folder} does not exist: expected {LAYOUT}")
    wav_folder = data_folder / "wav"
    if not wav_folder.is_dir():
        raise FileNotFoundError(
            f"no wav/ folder in {data_folder}: expected {LAYOUT} "
            "(unzip vox1_dev_wav.zip and vox1_test_wav.zip into the same folder)")
    return wav_folder


def _task_lists(data_folder, iden_split_file, trials_file):
    """``{task: list file}`` of the tasks to prepare."""
    lists = {}
    if iden_split_file is not None:
        lists["identification"] = _existing(Path(iden_split_file), "iden_split_file")
    elif (data_folder / "iden_split.txt").exists():
        lists["identification"] = data_folder / "iden_split.txt"
    else:
        logger.info("VoxCeleb1: no %s, skipping identification", data_folder / "iden_split.txt")
    if trials_file is not None:
        lists["verification"] = _existing(Path(trials_file), "trials_file")
    return lists


def _existing(path, option):
    if not path.is_file():
        raise FileNotFoundError(f"{option} {path} does not exist")
    return path


def _is_recorded(record, task, list_file, save_folder):
    """True when ``task`` was prepared from ``list_file`` and all its outputs are still in ``save_folder``."""
    entry = record.get(task)
    return (entry is not None and entry["list_file"] == _resolved(list_file)
            and all((save_folder / name).exists() for name in TASK_FILES[task]))


def _scan_wav(wav_folder):
    """Set of the ``<speaker>/<video>/<nnnnn>.wav`` paths under ``wav/``."""
    files = {f"{speaker}/{video}/{name}"
             for speaker in list_subfolders(wav_folder)
             for video in list_subfolders(wav_folder / speaker)
             for name in list_files(wav_folder / speaker / video, ".wav")}
    if not files:
        raise FileNotFoundError(f"no .wav file under {wav_folder}: expected {LAYOUT}")
    return files


def _identification_sets(list_file, wav_files, wav_folder):
    """``{sid_train|sid_dev|sid_test: [path, ...]}`` from ``iden_split.txt``."""
    sets = {name: [] for name in IDEN_SETS.values()}
    seen = {}
    for line_number, (set_id, path) in _list_lines(list_file, 2, "<1|2|3> <speaker>/<video>/<nnnnn>.wav"):
        if set_id not in IDEN_SETS:
            raise ValueError(f"{list_file}, line {line_number}: set {set_id!r} is not 1, 2 or 3")
        _check_listed(list_file, line_number, path, wav_files, wav_folder)
        if path in seen:
            raise ValueError(f"{list_file}, line {line_number}: {path} already listed on line {seen[path]}")
        seen[path] = line_number
        sets[IDEN_SETS[set_id]].append(path)
    return sets


def _read_trials(list_file, wav_files, wav_folder):
    """``[(label, path a, path b), ...]`` of a trials list, in its order."""
    trials = []
    for line_number, (label, path_a, path_b) in _list_lines(list_file, 3, "<0|1> <path a> <path b>"):
        if label not in TRIAL_LABELS:
            raise ValueError(f"{list_file}, line {line_number}: trial label {label!r} is not 0 or 1")
        for path in (path_a, path_b):
            _check_listed(list_file, line_number, path, wav_files, wav_folder)
        trials.append((label, path_a, path_b))
    return trials


def _verification_sets(trials, wav_files):
    """``asv_test``: the files of the trials; ``asv_train``: the files of the speakers in no trial."""
    test_files = {path for _, path_a, path_b in trials for path in (path_a, path_b)}
    test_speakers = {_speaker(path) for path in test_files}
    train_files = [path for path in wav_files if _speaker(path) not in test_speakers]
    if not train_files:
        logger.warning("VoxCeleb1: every speaker of wav/ is in the trials, asv_train.csv is empty")
    return {"asv_train": train_files, "asv_test": list(test_files)}


def _list_lines(list_file, n_fields, expected):
    """Yield ``(line number, fields)`` of the non-blank lines, failing on a wrong number of fields."""
    with open(list_file, encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != n_fields:
                raise ValueError(f"{list_file}, line {line_number}: expected '{expected}', got {line.strip()!r}")
            yield line_number, fields


def _check_listed(list_file, line_number, path, wav_files, wav_folder):
    """Fail unless ``path`` is a well-formed ``<speaker>/<video>/<nnnnn>.wav`` that exists under ``wav/``."""
    parts = path.split("/")
    if len(parts) != 3 or not path.endswith(".wav") or any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"{list_file}, line {line_number}: expected a <speaker>/<video>/<nnnnn>.wav path, "
                         f"got {path!r}")
    if path not in wav_files:
        raise FileNotFoundError(f"{list_file}, line {line_number}: {wav_folder / path} does not exist")


def _read_durations(wav_folder, paths):
    """``{path: seconds}`` from the audio headers."""
    return {path: audio_duration(wav_folder / path)
            for path in tqdm(paths, desc="VoxCeleb1", unit="utt", disable=len(paths) < PROGRESS_MIN_FILES)}


def _write_manifest(csv_path, paths, durations):
    """Write the CSV of ``paths`` (rows sorted by ID) and return its statistics."""
    rows = sorted(({"ID": _utterance_id(path), "duration": f"{durations[path]:.3f}", "wav": f"$data_root/wav/{path}",
                    "spk_id": _speaker(path), "wrd": ""} for path in paths), key=lambda row: row["ID"])
    atomic_write_csv(csv_path, rows, COLUMNS)
    stats = {"utterances": len(rows),
             "hours": round(sum(float(row["duration"]) for row in rows) / 3600, 4),
             "speakers": len({row["spk_id"] for row in rows})}
    logger.info("VoxCeleb1 %s: %d utterances, %.2f h, %d speakers",
                csv_path.name, stats["utterances"], stats["hours"], stats["speakers"])
    return stats


def _write_trials(path, trials):
    """Write ``<label> <ID a> <ID b>`` lines and return the trial counts."""
    atomic_write_text(path, "".join(f"{label} {_utterance_id(a)} {_utterance_id(b)}\n" for label, a, b in trials))
    target = sum(label == "1" for label, _, _ in trials)
    logger.info("VoxCeleb1 %s: %d trials, %d target", path.name, len(trials), target)
    return {"trials": len(trials), "target": target, "nontarget": len(trials) - target}


def _summary(record, lists):
    """The recorded statistics of the outputs of the tasks in ``lists``."""
    return {name: stats for task in lists for name, stats in record[task]["outputs"].items()}


def _utterance_id(path):
    """``id10001/1zcIwhmdeo4/00001.wav`` -> ``id10001_1zcIwhmdeo4_00001``."""
    return path[:-len(".wav")].replace("/", "_")


def _speaker(path):
    return path.split("/", 1)[0]


def _resolved(path):
    return str(Path(path).resolve())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_folder", required=True, help="the VoxCeleb1 root holding wav/")
    parser.add_argument("--save_folder", required=True, help="where the manifests go")
    parser.add_argument("--iden_split_file", default=None,
                        help="identification split list (default: <data_folder>/iden_split.txt when present)")
    parser.add_argument("--trials_file", default=None, help="verification trials, e.g. veri_test2.txt")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    summary = prepare_voxceleb1(args.data_folder, args.save_folder, args.iden_split_file, args.trials_file)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
