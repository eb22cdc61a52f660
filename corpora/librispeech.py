"""Prepare LibriSpeech: SpeechBrain CSV manifests of the chosen splits.

Expected layout (the ``LibriSpeech`` folder that every OpenSLR archive unpacks
into; unpack the archives of all the splits you need into the same folder)::

    LibriSpeech/
        train-clean-100/
            <speaker>/<chapter>/
                <speaker>-<chapter>-<nnnn>.flac
                <speaker>-<chapter>.trans.txt    lines "<speaker>-<chapter>-<nnnn> <UPPER CASE TRANSCRIPT>"
        dev-clean/
        ...

Writes in ``save_folder``:

- ``<split>.csv`` for every split, columns ``ID,duration,wav,spk_id,wrd``:
  ``wav`` is ``$data_root/<split>/<speaker>/<chapter>/<ID>.flac`` (``$data_root``
  stands for ``data_folder``), ``spk_id`` the speaker folder, ``wrd`` the
  transcript; rows sorted by ID;
- ``<name>.csv`` for every merged set: its splits' CSVs concatenated in the
  order listed (e.g. ``pool`` = the three training splits);
- ``librispeech_prepare.json``: the data folder and, per CSV, its utterances,
  hours and speakers (and, for a merged set, its splits).

Idempotent: a CSV recorded in the json for the same data folder and still
present is not rewritten, so a re-run only prepares what is new. Every file is
written to a hidden temporary name in ``save_folder`` and renamed, so a killed
or failed run leaves no half-written CSV. The transcripts and audio files are
checked against each other; any mismatch stops the run with the file and line
at fault.

Usage
-----
python recipes/LibriSpeech/librispeech_prepare.py --data_folder /data/LibriSpeech \
    --save_folder data/LibriSpeech/manifests --splits dev-clean test-clean \
    --merge pool=train-clean-100,train-clean-360,train-other-500 target=dev-other

Example
-------
>>> from corpora.librispeech import prepare_librispeech
>>> prepare_librispeech("/data/LibriSpeech", "manifests", ["dev-clean"],
...                     merge={"target": ["dev-other"]})  # doctest: +SKIP
"""

import argparse
import csv
import json
import logging
from pathlib import Path

from tqdm import tqdm

from common.atomic import atomic_write_csv, atomic_write_text
from common.corpus_files import audio_duration, list_files, list_subfolders, load_record

logger = logging.getLogger(__name__)

COLUMNS = ("ID", "duration", "wav", "spk_id", "wrd")
KNOWN_SPLITS = ("train-clean-100", "train-clean-360", "train-other-500",
                "dev-clean", "dev-other", "test-clean", "test-other")
LAYOUT = ("<data_folder>/<split>/<speaker>/<chapter>/<speaker>-<chapter>-<nnnn>.flac, "
          "with one <speaker>-<chapter>.trans.txt per chapter folder")
RECORD_NAME = "librispeech_prepare.json"
TRANSCRIPT_SUFFIX = ".trans.txt"
PROGRESS_MIN_FILES = 1000


def prepare_librispeech(data_folder, save_folder, splits, merge=None, skip_prep=False):
    """Write the CSV manifests of LibriSpeech splits and of merged sets of splits.

    Parameters
    ----------
    data_folder : str or Path
        The ``LibriSpeech`` folder holding the split folders (``train-clean-100/``, ``dev-clean/``, ...).
    save_folder : str or Path
        Where ``<split>.csv``, ``<name>.csv`` and ``librispeech_prepare.json`` go (created if needed).
    splits : list of str
        Split folders to prepare, e.g. ``["dev-clean", "test-clean"]``.
    merge : dict, optional
        ``{name: [split, ...]}``: writes ``<name>.csv``, the concatenation of the splits' CSVs in that
        order. Its splits are prepared too, listed in ``splits`` or not.
    skip_prep : bool
        Do nothing (SpeechBrain convention).

    Returns
    -------
    dict or None
        Per split and merged set: ``utterances``, ``hours`` and ``speakers`` (merged sets also list
        their ``splits``); None when ``skip_prep``.

    Raises
    ------
    FileNotFoundError
        ``data_folder`` or a split folder is missing, a split holds no audio, a transcript line names a
        missing audio file, or a chapter has audio but no transcript file.
    ValueError
        No split given, a malformed or duplicated transcript line, an audio file with no transcript
        line, or a merged set that is ill-formed or named like a split.
    RuntimeError
        An audio file that soundfile cannot open.
    """
    if skip_prep:
        return None
    data_folder, save_folder = Path(data_folder), Path(save_folder)
    splits = [splits] if isinstance(splits, str) else list(splits)
    merge = _normalise_merge(merge)
    needed = list(dict.fromkeys(splits + [split for members in merge.values() for split in members]))
    if not needed:
        raise ValueError("no LibriSpeech split to prepare: give splits or merge")
    _check_merge_names(merge, needed)
    _check_layout(data_folder, needed)

    record_path = save_folder / RECORD_NAME
    record = load_record(record_path, data_folder, splits={}, merge={})
    todo_splits = [split for split in needed if not _is_recorded(record["splits"], split, save_folder)]
    todo_merges = [name for name, members in merge.items()
                   if not _is_recorded(record["merge"], name, save_folder)
                   or record["merge"][name]["splits"] != members or set(members) & set(todo_splits)]
    if not todo_splits and not todo_merges:
        logger.info("LibriSpeech already prepared in %s (%s): skipping",
                    save_folder, ", ".join(needed + list(merge)))
        return _summary(record, needed, merge)

    save_folder.mkdir(parents=True, exist_ok=True)
    for split in todo_splits:
        record["merge"].pop(split, None)
        record["splits"][split] = _prepare_split(data_folder, split, save_folder / f"{split}.csv")
        atomic_write_text(record_path, json.dumps(record, indent=2))
    for name in todo_merges:
        record["splits"].pop(name, None)
        record["merge"][name] = {"splits": merge[name], **_merge_csvs(save_folder, name, merge[name])}
        atomic_write_text(record_path, json.dumps(record, indent=2))
    return _summary(record, needed, merge)


def _normalise_merge(merge):
    """Return ``merge`` as ``{name: [split, ...]}`` (a single split may be given as a string)."""
    normalised = {}
    for name, members in (merge or {}).items():
        members = [members] if isinstance(members, str) else list(members)
        if not members or len(set(members)) != len(members):
            raise ValueError(f"merge {name!r}: expected a list of distinct splits, got {members}")
        normalised[name] = members
    return normalised


def _check_merge_names(merge, splits):
    """Refuse a merged set named like a split: its CSV would overwrite the split's."""
    for name in merge:
        if name in splits:
            raise ValueError(f"merge name {name!r} is also a split to prepare: {name}.csv would be overwritten")


def _check_layout(data_folder, splits):
    """Fail early, with the expected layout, when ``data_folder`` or one of ``splits`` is missing."""
    if not data_folder.is_dir():
        raise FileNotFoundError(f"LibriSpeech folder {data_folder} does not exist: expected {LAYOUT}")
    found = list_subfolders(data_folder)
    for split in splits:
        if split in found:
            continue
        if not set(found) & set(KNOWN_SPLITS):
            hint = f" (did you mean {data_folder / 'LibriSpeech'}?)" if "LibriSpeech" in found else ""
            raise FileNotFoundError(
                f"{data_folder} is not a LibriSpeech folder{hint}: it holds no split folder "
                f"({', '.join(KNOWN_SPLITS)}); expected {LAYOUT}")
        raise FileNotFoundError(
            f"LibriSpeech split {split!r} not found in {data_folder}; splits found: {', '.join(found)}")


def _is_recorded(entries, name, save_folder):
    """True when ``name`` is in the record and its CSV is still in ``save_folder``."""
    return name in entries and (save_folder / f"{name}.csv").exists()


def _prepare_split(data_folder, split, csv_path):
    """Write the CSV of one split and return its statistics."""
    split_folder = data_folder / split
    utterances = [utt for speaker, chapter in _chapters(split_folder)
                  for utt in _chapter_utterances(split_folder / speaker / chapter, speaker, chapter)]
    if not utterances:
        raise FileNotFoundError(f"no .flac file in LibriSpeech split {split_folder}: expected {LAYOUT}")
    rows = []
    for utt_id, speaker, chapter, text in tqdm(utterances, desc=split, unit="utt",
                                               disable=len(utterances) < PROGRESS_MIN_FILES):
        duration = audio_duration(split_folder / speaker / chapter / f"{utt_id}.flac")
        rows.append({"ID": utt_id, "duration": f"{duration:.3f}",
                     "wav": f"$data_root/{split}/{speaker}/{chapter}/{utt_id}.flac",
                     "spk_id": speaker, "wrd": text})
    rows.sort(key=lambda row: row["ID"])
    atomic_write_csv(csv_path, rows, COLUMNS)
    stats = _stats(rows)
    logger.info("LibriSpeech %s: %d utterances, %.2f h, %d speakers -> %s",
                split, stats["utterances"], stats["hours"], stats["speakers"], csv_path)
    return stats


def _chapters(split_folder):
    """``(speaker, chapter)`` folder names of a split, sorted."""
    return [(speaker, chapter) for speaker in list_subfolders(split_folder)
            for chapter in list_subfolders(split_folder / speaker)]


def _chapter_utterances(folder, speaker, chapter):
    """``(ID, speaker, chapter, transcript)`` of a chapter folder, its audio and transcript checked together."""
    audio_ids = [name[:-len(".flac")] for name in list_files(folder, ".flac")]
    transcript_path = folder / f"{speaker}-{chapter}{TRANSCRIPT_SUFFIX}"
    if not transcript_path.exists():
        if audio_ids:
            raise FileNotFoundError(
                f"{folder / audio_ids[0]}.flac has no transcript: {transcript_path} does not exist")
        return []
    transcripts = _read_transcripts(transcript_path, f"{speaker}-{chapter}-")
    audio_set = set(audio_ids)
    for utt_id, (line_number, _) in transcripts.items():
        if utt_id not in audio_set:
            raise FileNotFoundError(
                f"{transcript_path}, line {line_number}: audio file {folder / utt_id}.flac does not exist")
    for utt_id in audio_ids:
        if utt_id not in transcripts:
            raise ValueError(f"{folder / utt_id}.flac has no transcript line in {transcript_path}")
    return [(utt_id, speaker, chapter, text) for utt_id, (_, text) in transcripts.items()]


def _read_transcripts(path, prefix):
    """``{ID: (line number, transcript)}`` of a ``.trans.txt`` file whose IDs all start with ``prefix``."""
    transcripts = {}
    with open(path, encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            utt_id, _, text = line.strip().partition(" ")
            text = text.strip()
            if not (utt_id.startswith(prefix) and utt_id[len(prefix):].isdigit() and text):
                raise ValueError(
                    f"{path}, line {line_number}: expected '{prefix}<nnnn> <TRANSCRIPT>', got {line.strip()!r}")
            if utt_id in transcripts:
                raise ValueError(f"{path}, line {line_number}: {utt_id} already transcribed on line "
                                 f"{transcripts[utt_id][0]}")
            transcripts[utt_id] = (line_number, text)
    return transcripts


def _merge_csvs(save_folder, name, splits):
    """Write ``<name>.csv``, the concatenation of the splits' CSVs, and return its statistics."""
    rows = []
    for split in splits:
        with open(save_folder / f"{split}.csv", newline="", encoding="utf-8") as handle:
            rows.extend(csv.DictReader(handle))
    atomic_write_csv(save_folder / f"{name}.csv", rows, COLUMNS)
    stats = _stats(rows)
    logger.info("LibriSpeech %s = %s: %d utterances, %.2f h, %d speakers",
                name, " + ".join(splits), stats["utterances"], stats["hours"], stats["speakers"])
    return stats


def _summary(record, splits, merge):
    """The recorded statistics of ``splits`` and of the merged sets."""
    return {**{split: record["splits"][split] for split in splits},
            **{name: record["merge"][name] for name in merge}}


def _stats(rows):
    return {"utterances": len(rows),
            "hours": round(sum(float(row["duration"]) for row in rows) / 3600, 4),
            "speakers": len({row["spk_id"] for row in rows})}


def _merge_argument(text):
    """Parse ``NAME=SPLIT[,SPLIT...]`` from the command line."""
    name, _, members = text.partition("=")
    if not name or not members:
        raise argparse.ArgumentTypeError(f"expected NAME=SPLIT[,SPLIT...], got {text!r}")
    return name, members.split(",")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_folder", required=True, help="the LibriSpeech folder holding the split folders")
    parser.add_argument("--save_folder", required=True, help="where the CSV manifests go")
    parser.add_argument("--splits", nargs="*", default=[], help="split folders, e.g. dev-clean test-clean")
    parser.add_argument("--merge", nargs="*", default=[], type=_merge_argument, metavar="NAME=SPLIT,...",
                        help="merged sets, e.g. pool=train-clean-100,train-clean-360,train-other-500")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    summary = prepare_librispeech(args.data_folder, args.save_folder, args.splits, merge=dict(args.merge))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
