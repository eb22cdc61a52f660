"""Prepare your own audio: folders (or a Kaldi data directory, or a lhotse manifest) in, SpeechBrain CSVs out.

Inputs
------
* The pool (the audio to select from): exactly one of a folder, a Kaldi data
  directory or a lhotse ``RecordingSet``/``CutSet`` (:mod:`corpora.kaldi_lhotse`).
* The target (audio of the domain you care about): at most one of the same.
* Transcribed folders for the downstream ASR probe, ``{"train": folder,
  "dev": folder, "test": folder}``. A transcript is a ``<stem>.txt`` file
  beside the audio file, or a line ``<stem> <TEXT>`` of a LibriSpeech-style
  ``*.trans.txt`` in the audio's folder; the ``wrd`` column holds it in
  upper case with single spaces. An audio file without one is skipped and
  reported. Without ``dev`` or ``test``, the missing ones are drawn from
  ``train`` (:data:`ASR_DRAW_SHARE` of its utterances each, seeded, logged
  and reported).

Outputs, in ``save_folder``
---------------------------
* ``pool.csv``: the selectable part of the pool; ``heldout_pool.csv`` and
  ``valid.csv``: seeded draws kept out of it, for the student's held-out
  distillation loss and for validation during distillation.
* ``target.csv`` and ``heldout_target.csv`` (kept out of ``target.csv``): the
  held-out draw takes at most :data:`DRAW_SHARE` of the target's utterances
  and is made only when that is at least :data:`MIN_HELDOUT_TARGET`
  utterances (a target of 50 or more) and leaves some target; otherwise
  ``heldout_target.csv`` has no rows (the held-out loss then skips it), the
  whole target stays in ``target.csv`` and the report says why.
* ``asr_train.csv``, ``asr_dev.csv``, ``asr_test.csv`` from transcribed folders.
* ``audio_folders_report.json``: per split utterances, hours and recordings;
  every skipped file with its reason; the segmenting statistics; the draws;
  the settings, seed and elapsed time.
* ``audio_folders_prepare.json``: the record of what was prepared (see Resuming).
* ``segments/`` (or ``segments_folder``): the 16 kHz mono FLAC segments.

Columns: ``ID,duration,wav,source,source_start,source_stop``, plus ``spk_id``
when a speaker is known (Kaldi ``utt2spk``, lhotse supervisions) and ``wrd``
when transcribed. ``wav`` is the absolute path that every stage reads;
``source`` the absolute path of the original recording and
``source_start``/``source_stop`` the seconds of ``wav`` within it, so that a
subset can be written back as windows of the original recordings
(:func:`export_subset`: a Kaldi data directory and lhotse manifests).
Rows are sorted by ID; the files are written with the :mod:`csv` module, so
a path holding a comma or a space is quoted as CSV requires.

Rules
-----
* Scanning: folders are walked recursively, following symbolic links to
  files and folders (a folder reached twice is walked once); files and folders
  whose name starts with ``.`` are ignored. Audio files are those ending in
  :data:`AUDIO_SUFFIXES` (any case). Two paths of the same file (links) are
  listed once, under the first path in sorted order; the other is reported.
* IDs: a file's path relative to its folder without the extension (a list's
  own utterance ID), each run of characters other than ``[A-Za-z0-9_-]`` made
  one ``_``; names that collide within a split all get ``_`` and 8 hex digits
  of a hash of their full relative path; segments of a cut file add
  ``-000``, ``-001``, ... The same tree always gives the same IDs.
* Durations come from the audio headers (:func:`soundfile.info`), not by
  decoding; for mp3 the header's frame count matches a full decode on the
  pinned soundfile (the tests check it). Float WAV files are decoded once to
  check that their samples are finite.
* Skipped and reported (never a crash half-way): missing, unreadable,
  corrupt, empty (0 frames) or non-finite files, list windows past a
  recording's end, transcribed files without a transcript or longer than the
  cap. Damage in a file's data past a readable header is found where the file
  is decoded: here when it is cut, else by the stage that reads it.
* Long audio: a file longer than ``max_segment_seconds`` (30 s: also
  Whisper's input length), and every window of a Kaldi ``segments`` file or
  lhotse cut, is decoded (:func:`common.audio.load_audio`: 16 kHz mono) and
  written as FLAC segments; each cut is made at the quietest point (short-time
  energy, see :func:`segment_bounds`) of the last ``min(5 s, cap / 2)`` before
  the cap, and never later than ``min_segment_seconds`` before the end, so no
  segment is longer than the cap or shorter than ``min_segment_seconds`` and
  no audio is dropped (Libri-Light likewise cut its long recordings at
  silences). Files up to the cap are used in place, not copied. A transcribed
  (ASR) file longer than the cap is skipped: its transcript cannot be split;
  a split Kaldi or lhotse utterance keeps its speaker but not its transcript.
* Draws (held-out and validation sets): seeded (``seed``, one stream per
  draw), by recording: recordings are shuffled and taken whole while they
  fit in the draw's size (when none fits, the one with fewest segments), so
  held-out audio never shares a recording with the selectable pool. Each draw
  takes at most :data:`DRAW_SHARE` of its set's utterances.
* Overlap: the pool and the target may not be the same input, nor the pool
  folder inside the target folder. Recordings that are also target
  recordings (e.g. a target folder inside the pool folder) are left out of
  the pool and counted in the report.
* Resuming: the record holds the settings and a hash of the input listing
  (paths, sizes, modification times of the audio and list files) and of the
  outputs; a re-run with the same inputs and settings checks them and
  returns. Otherwise everything is prepared again (nothing mixed), reusing
  the segment files already written: a segment's file name holds its window
  and its folder a hash of its recording's path, size and modification time.
  Every output is written to a temporary name and renamed; temporaries left
  by a killed run are removed. Segment files of earlier settings stay in the
  segments folder (delete it to reclaim the space).

Usage
-----
python recipes/AudioFolders/audio_folders_prepare.py --save_folder results/my_manifests \
    --pool_folder /data/my_pool --target_folder /data/my_domain \
    --asr_train_folder /data/transcribed/train --seed 0

Example
-------
>>> from corpora.audio_folders import prepare_audio_folders
>>> prepare_audio_folders("results/my_manifests", pool_folder="/data/my_pool",
...                       target_folder="/data/my_domain")  # doctest: +SKIP
"""

import argparse
import csv
import json
import logging
import math
import multiprocessing
import os
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from common.atomic import TEMP_MARK, atomic_path, atomic_write_csv, atomic_write_text, remove_temporaries
from common.audio import SAMPLE_RATE, AudioError, audio_info, duration_disagrees, load_audio
from common.hashing import files_state, settings_hash
from corpora.kaldi_lhotse import (Listed, normalise_text, read_kaldi_dir, read_lhotse_manifest, safe_id, seconds_text,
                                  unique_ids, write_kaldi_dir, write_lhotse_manifests)

logger = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".aif", ".aiff", ".flac", ".mp3", ".ogg", ".opus", ".wav")
COLUMNS = ("ID", "duration", "wav", "source", "source_start", "source_stop")
OUTPUTS = ("pool", "target", "valid", "heldout_pool", "heldout_target", "asr_train", "asr_dev", "asr_test")
RECORD_NAME = "audio_folders_prepare.json"
REPORT_NAME = "audio_folders_report.json"
FORMAT_VERSION = 1
DRAW_SHARE = 0.2  # a held-out or validation draw takes at most this share of its set's utterances
MIN_HELDOUT_TARGET = 10  # a smaller held-out draw of the target is not made
ASR_DRAW_SHARE = 0.1  # asr_dev and asr_test drawn from asr_train: this share of it each
DRAW_STREAMS = {"heldout_pool": 1, "valid": 2, "heldout_target": 3, "asr_dev": 4, "asr_test": 5}
SEARCH_SECONDS = 5.0  # a cut is searched for in the last seconds before the cap
FRAME_SAMPLES = 320  # short-time energy frames: 20 ms at 16 kHz
SMOOTH_FRAMES = 5  # energy averaged over 100 ms, so a cut prefers a pause to one quiet frame
PAUSE_DB = -20.0  # a cut this far below the median frame energy of its file counts as in a pause
FLOAT_SUBTYPES = ("FLOAT", "DOUBLE")
PROGRESS_MIN = 200
INPUT_KINDS = ("folder", "kaldi", "lhotse")
ASR_SPLITS = ("train", "dev", "test")
TRANSCRIPT_LIST_SUFFIX = ".trans.txt"


@dataclass
class Listing:
    """The utterances of one input (a split's folder or list), before any audio is read."""

    kind: str
    items: list
    files: list
    skipped: list = field(default_factory=list)


def prepare_audio_folders(save_folder, pool_folder=None, target_folder=None, pool_kaldi=None, target_kaldi=None,
                          pool_lhotse=None, target_lhotse=None, asr_folders=None, segments_folder=None,
                          max_segment_seconds=30.0, min_segment_seconds=1.0, valid_utterances=60,
                          heldout_utterances=200, seed=0, n_jobs=1, skip_prep=False):
    """Write SpeechBrain CSV manifests of a pool, a target and transcribed folders (see the module notes).

    Parameters
    ----------
    save_folder : str or Path
        Where the manifests, the report and the record go (created if needed).
    pool_folder, pool_kaldi, pool_lhotse : str or Path, optional
        The pool: a folder of audio, a Kaldi data directory or a lhotse
        manifest; exactly one.
    target_folder, target_kaldi, target_lhotse : str or Path, optional
        The target, likewise; at most one.
    asr_folders : dict, optional
        ``{"train": folder, "dev": folder, "test": folder}`` of transcribed audio (any of them).
    segments_folder : str or Path, optional
        Where segment files go; default ``save_folder/segments``.
    max_segment_seconds : float
        The longest utterance; longer audio is cut.
    min_segment_seconds : float
        The shortest segment a cut makes (at most ``min(5, max_segment_seconds / 2)``).
    valid_utterances, heldout_utterances : int
        Sizes of the validation draw and of each held-out draw (at least 1).
    seed : int
        Seed of the draws.
    n_jobs : int
        Processes cutting long audio.
    skip_prep : bool
        Do nothing and use what is in ``save_folder`` (SpeechBrain convention).

    Returns
    -------
    dict or None
        Per written split: ``utterances``, ``hours`` and ``recordings``; None when ``skip_prep``.

    Raises
    ------
    FileNotFoundError
        An input that does not exist or holds no audio.
    ValueError
        Inputs given twice or not at all, the pool and target overlapping as
        described in the notes, bad settings, or too little usable audio for
        the draws.
    """
    if skip_prep:
        return None
    started = time.monotonic()
    save_folder = Path(save_folder).absolute()
    segments_folder = Path(segments_folder).absolute() if segments_folder else save_folder / "segments"
    inputs = _inputs(pool_folder, pool_kaldi, pool_lhotse, target_folder, target_kaldi, target_lhotse, asr_folders)
    _check_settings(max_segment_seconds, min_segment_seconds, valid_utterances, heldout_utterances, n_jobs)
    settings = {"version": FORMAT_VERSION, "inputs": inputs, "segments_folder": str(segments_folder),
                "max_segment_seconds": max_segment_seconds, "min_segment_seconds": min_segment_seconds,
                "valid_utterances": valid_utterances, "heldout_utterances": heldout_utterances, "seed": seed}
    listings = {role: _listing(role, kind, path) for role, (kind, path) in inputs.items()}
    excluded = _exclude_target_recordings(listings)
    state = files_state(sorted({path for listing in listings.values() for path in listing.files}))

    record_path = save_folder / RECORD_NAME
    previous = _finished_record(record_path, settings, state)
    if previous:
        logger.info("audio already prepared in %s with these inputs and settings: skipping", save_folder)
        return previous["summary"]

    _remove_temporaries(save_folder, segments_folder)
    rows, skipped, segmenting = _utterance_rows(listings, settings, n_jobs)
    splits, draws = _splits(rows, settings)
    _write_splits(save_folder, splits, rows)
    summary = {name: _split_stats(split_rows) for name, split_rows in splits.items()}
    report = {"settings": settings, "seed": seed, "splits": summary, "draws": draws,
              "excluded_from_pool": excluded, "segmenting": segmenting,
              "durations_from": f"audio headers (soundfile {sf.__version__}, libsndfile {sf.__libsndfile_version__})",
              "skipped": {"counts": dict(Counter(entry["role"] for entry in skipped)), "files": skipped},
              "elapsed_seconds": round(time.monotonic() - started, 2)}
    atomic_write_text(save_folder / REPORT_NAME, json.dumps(report, indent=2))
    record = {"settings": settings, "inputs_state": state, "outputs": list(splits),
              "outputs_state": _outputs_state(save_folder, list(splits)), "summary": summary}
    atomic_write_text(record_path, json.dumps(record, indent=2))
    for name, stats in summary.items():
        logger.info("%s: %d utterances, %.2f h, %d recordings", name, stats["utterances"], stats["hours"],
                    stats["recordings"])
    if skipped:
        logger.warning("%d files or utterances skipped: see %s", len(skipped), save_folder / REPORT_NAME)
    return summary


# ------------------------------------------------------------------- inputs --

def _inputs(pool_folder, pool_kaldi, pool_lhotse, target_folder, target_kaldi, target_lhotse, asr_folders):
    """``{role: [kind, absolute path]}`` of the inputs given, checked for the combinations refused."""
    inputs = {"pool": _one_input("pool", (pool_folder, pool_kaldi, pool_lhotse))}
    target = _one_input("target", (target_folder, target_kaldi, target_lhotse), required=False)
    if target:
        inputs["target"] = target
        _check_pool_and_target(inputs["pool"], target)
    unknown = sorted(set(asr_folders or {}) - set(ASR_SPLITS))
    if unknown:
        raise ValueError(f"asr_folders: unknown split(s) {unknown}; expected keys among {list(ASR_SPLITS)}")
    for split in ASR_SPLITS:
        if (asr_folders or {}).get(split):
            inputs[f"asr_{split}"] = ["folder", os.path.abspath(asr_folders[split])]
    return inputs


def _one_input(role, given, required=True):
    """``[kind, absolute path]`` of the one input given for ``role`` (None when optional and absent)."""
    named = [(kind, os.path.abspath(path)) for kind, path in zip(INPUT_KINDS, given) if path]
    if len(named) > 1 or (required and not named):
        options = ", ".join(f"{role}_{kind}" for kind in INPUT_KINDS)
        raise ValueError(f"give {'exactly' if required else 'at most'} one of {options} "
                         f"(got {[f'{role}_{kind}' for kind, _ in named] or 'none'})")
    return list(named[0]) if named else None


def _check_pool_and_target(pool, target):
    """Refuse the same input for both, and a pool folder inside the target folder."""
    pool_path, target_path = Path(pool[1]).resolve(), Path(target[1]).resolve()
    if pool_path == target_path:
        raise ValueError(f"the pool and the target are the same input ({pool[1]}): give the target separately")
    if pool[0] == target[0] == "folder" and pool_path.is_relative_to(target_path):
        raise ValueError(f"the pool folder {pool[1]} is inside the target folder {target[1]}: "
                         "move it out, or give a target folder without the pool")


def _check_settings(max_seconds, min_seconds, valid_utterances, heldout_utterances, n_jobs):
    if not max_seconds > 0:
        raise ValueError(f"max_segment_seconds must be > 0, got {max_seconds}")
    if not 0 < min_seconds <= _search_seconds(max_seconds):
        raise ValueError(f"min_segment_seconds must be in (0, {_search_seconds(max_seconds):g}] "
                         f"(min(5, max_segment_seconds / 2)), got {min_seconds}")
    for name, value in (("valid_utterances", valid_utterances), ("heldout_utterances", heldout_utterances),
                        ("n_jobs", n_jobs)):
        if int(value) != value or value < 1:
            raise ValueError(f"{name} must be a whole number >= 1, got {value}")


def _search_seconds(max_seconds):
    """The span before the cap in which a cut is searched for."""
    return min(SEARCH_SECONDS, max_seconds / 2)


# ------------------------------------------------------------------ listing --

def _listing(role, kind, path):
    """The utterances of one input; raises when it does not exist or holds none."""
    if kind == "folder":
        return _folder_listing(role, path, transcribed=role.startswith("asr_"))
    items, files = read_kaldi_dir(path) if kind == "kaldi" else read_lhotse_manifest(path)
    if not items:
        raise FileNotFoundError(f"{role}: {path} lists no utterance")
    return Listing(kind, items, files)


def _folder_listing(role, folder, transcribed):
    """The audio files of a folder (with their transcripts when ``transcribed``)."""
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{role} folder {folder} does not exist")
    audio, texts = scan_folder(folder)
    if not audio:
        raise FileNotFoundError(f"{role} folder {folder} holds no audio file (looked for "
                                f"{', '.join(AUDIO_SUFFIXES)} in any case, hidden files and folders ignored)")
    texts = texts if transcribed else []
    listing = Listing("folder", [], [os.path.join(folder, rel) for rel in audio + texts])
    transcripts = _folder_transcripts(folder, audio, texts) if transcribed else {}
    first_of = {}
    for rel in audio:
        path = os.path.join(folder, rel)
        real = os.path.realpath(path)
        if real in first_of:
            listing.skipped.append(_skip(role, path, f"the same file as {first_of[real]}"))
            continue
        first_of[real] = path
        if transcribed and not transcripts.get(rel):
            reason = "empty transcript" if rel in transcripts else (
                f"no transcript (no {os.path.splitext(os.path.basename(rel))[0]}.txt beside it, "
                f"no line for it in a *{TRANSCRIPT_LIST_SUFFIX} of its folder)")
            listing.skipped.append(_skip(role, path, reason))
            continue
        listing.items.append(Listed(rel, path, wrd=transcripts.get(rel, "")))
    return listing


def scan_folder(folder):
    """The audio files and ``.txt`` files under ``folder``: relative POSIX paths, each list sorted.

    Walks recursively, following links, each folder once; hidden names (``.``) are ignored.

    Example
    -------
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> for name in ("a/x.WAV", "a/x.txt", ".hidden/y.wav", "b/.z.flac", "b/notes.md"):
    ...     (root / name).parent.mkdir(parents=True, exist_ok=True)
    ...     _ = (root / name).write_text("")
    >>> scan_folder(root)
    (['a/x.WAV'], ['a/x.txt'])
    """
    audio, texts = [], []
    walked = set()
    for root, dirs, files in os.walk(folder, followlinks=True):
        stat = os.stat(root)
        if (stat.st_dev, stat.st_ino) in walked:
            dirs[:] = []
            continue
        walked.add((stat.st_dev, stat.st_ino))
        dirs[:] = [name for name in dirs if not name.startswith(".")]
        relative = Path(os.path.relpath(root, folder))
        for name in files:
            if name.startswith("."):
                continue
            if name.lower().endswith(AUDIO_SUFFIXES):
                audio.append((relative / name).as_posix())
            elif name.endswith(".txt"):
                texts.append((relative / name).as_posix())
    return sorted(audio), sorted(texts)


def _folder_transcripts(folder, audio, texts):
    """``{audio relative path: transcript}`` from ``<stem>.txt`` beside it, else its folder's ``*.trans.txt``."""
    listed = {}
    for rel in texts:
        if rel.endswith(TRANSCRIPT_LIST_SUFFIX):
            with open(os.path.join(folder, rel), encoding="utf-8") as handle:
                for line in handle:
                    stem, _, text = line.strip().partition(" ")
                    if stem:
                        listed[(os.path.dirname(rel), stem)] = normalise_text(text)
    text_files = set(texts)
    transcripts = {}
    for rel in audio:
        stem = os.path.splitext(rel)[0]
        if f"{stem}.txt" in text_files:
            transcripts[rel] = normalise_text(Path(folder, f"{stem}.txt").read_text(encoding="utf-8"))
        elif (os.path.dirname(rel), os.path.basename(stem)) in listed:
            transcripts[rel] = listed[(os.path.dirname(rel), os.path.basename(stem))]
    return transcripts


def _exclude_target_recordings(listings):
    """Leave out of the pool the utterances whose recording is also a target recording; return how many."""
    if "target" not in listings:
        return 0
    target = {os.path.realpath(item.path) for item in listings["target"].items}
    pool = listings["pool"]
    kept = [item for item in pool.items if os.path.realpath(item.path) not in target]
    excluded = len(pool.items) - len(kept)
    if not kept:
        raise ValueError("every pool recording is also a target recording: nothing is left to select from")
    if excluded:
        logger.info("%d pool utterances are from target recordings: left out of the pool", excluded)
    pool.items = kept
    return excluded


def _remove_temporaries(save_folder, segments_folder):
    """Remove the temporary files that a killed run left: of this module's outputs, and in the segments folder."""
    names = [f"{name}.csv" for name in OUTPUTS] + [REPORT_NAME, RECORD_NAME]
    removed = [path for name in names for path in save_folder.glob(f".{name}.*{TEMP_MARK}*")]
    for path in removed:
        path.unlink()
    count = len(removed) + (remove_temporaries(segments_folder) if segments_folder.is_dir() else 0)
    if count:
        logger.info("removed %d temporary files left by a killed run", count)


def _skip(role, path, reason):
    return {"role": role, "path": str(path), "reason": reason}


# ------------------------------------------------------------ audio to rows --

def _utterance_rows(listings, settings, n_jobs):
    """``{role: [row]}`` of every usable utterance (long audio cut), the skipped ones, and segmenting stats."""
    skipped = [entry for listing in listings.values() for entry in listing.skipped]
    recordings = {item.path for listing in listings.values() for item in listing.items}
    durations, failures = _probe_all(sorted(recordings))
    cap = settings["max_segment_seconds"]
    plans, windows = {}, defaultdict(set)
    for role, listing in listings.items():
        plans[role] = []
        for item in listing.items:
            window, reason = _window(item, durations, failures, cap, role.startswith("asr_"))
            if reason:
                skipped.append(_skip(role, item.path if item.whole else f"{item.path} [{item.key}]", reason))
                continue
            plans[role].append((item, window))
            if window is not None:
                windows[item.path].add(window)
    segments, cut_failures, segmenting = _cut_all(windows, settings, n_jobs)
    rows = {}
    for role, plan in plans.items():
        role_rows = []
        for item, window in plan:
            pieces = segments.get((item.path, window))
            if item.path in cut_failures:
                skipped.append(_skip(role, item.path, cut_failures[item.path]))
            elif pieces == []:
                skipped.append(_skip(role, f"{item.path} [{item.key}]", "no audio in the window once decoded "
                                                                        "(the file is shorter than its header says)"))
            else:
                role_rows.extend(_item_rows(item, durations[item.path], pieces, listings[role].kind))
        rows[role] = _with_ids(role_rows)
    return rows, skipped, segmenting


def _probe_all(paths):
    """Durations from the headers, and failure reasons, of the recordings."""
    durations, failures = {}, {}
    for path in tqdm(paths, desc="headers", unit="file", disable=len(paths) < PROGRESS_MIN):
        try:
            durations[path] = probe_duration(path)
        except AudioError as err:
            failures[path] = str(err)
    return durations, failures


def probe_duration(path):
    """Duration in seconds from an audio file's header.

    Raises
    ------
    common.audio.AudioError
        When the file is missing, unreadable, empty (0 frames) or, for float
        data (decoded to check), holds non-finite samples.

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "a.wav")
    >>> sf.write(path, np.zeros(12000, dtype="int16"), 8000)
    >>> probe_duration(path)
    1.5
    """
    info = audio_info(path)
    if info.subtype in FLOAT_SUBTYPES:
        load_audio(path)
    return info.frames / info.samplerate


def _window(item, durations, failures, cap, transcribed):
    """``(window, reason)``: the item's window to cut (None: used in place), or why it is skipped."""
    if item.path in failures:
        return None, failures[item.path]
    seconds = durations[item.path]
    if item.whole:
        if seconds <= cap:
            return None, None
        if transcribed:
            return None, f"longer than max_segment_seconds ({seconds:.1f} s > {cap:g} s): its transcript " \
                         "cannot be split"
        return (0.0, seconds), None
    stop = seconds if item.stop is None else item.stop
    if stop > seconds:
        if duration_disagrees(stop, seconds):
            return None, f"window [{item.start:g}, {stop:g}] s ends after the recording ({seconds:.3f} s)"
        stop = seconds
    if round(stop * SAMPLE_RATE) <= round(item.start * SAMPLE_RATE):
        return None, f"window [{item.start:g}, {stop:g}] s holds no audio (the recording lasts {seconds:.3f} s)"
    return (item.start, stop), None


def _item_rows(item, seconds, segments, kind):
    """The rows of one item: itself in place (``segments`` None), or its segments ``(start, stop, path)``.

    Each row carries ``candidate`` (its ID before collisions are resolved) and ``key`` (unique, hashed
    on a collision) for :func:`_with_ids`.
    """
    base = safe_id(os.path.splitext(item.key)[0] if kind == "folder" else item.key)
    common = {"source": item.path, "spk_id": item.spk_id}
    if segments is None:
        return [{"key": item.key, "candidate": base, "duration": seconds_text(seconds), "wav": item.path,
                 "source_start": "0", "source_stop": seconds_text(seconds), "wrd": item.wrd, **common}]
    single = len(segments) == 1
    return [{"key": item.key if single else f"{item.key}#{index}",
             "candidate": base if single else f"{base}-{index:03d}",
             "duration": seconds_text((stop - start) / SAMPLE_RATE), "wav": path,
             "source_start": seconds_text(start / SAMPLE_RATE), "source_stop": seconds_text(stop / SAMPLE_RATE),
             "wrd": item.wrd if single else "", **common}
            for index, (start, stop, path) in enumerate(segments)]


def _with_ids(rows):
    """The rows with their unique IDs (see the module notes), sorted by ID."""
    ids = unique_ids({row["key"]: row["candidate"] for row in rows})
    for row in rows:
        row["ID"] = ids[row.pop("key")]
        del row["candidate"]
    return sorted(rows, key=lambda row: row["ID"])


# ------------------------------------------------------------------ cutting --

def segment_bounds(wav, max_samples, min_samples, search_samples):
    """Cut a waveform into pieces of at most ``max_samples``, each cut at the quietest point before the cap.

    The short-time energy is the mean square of :data:`FRAME_SAMPLES` frames,
    averaged over :data:`SMOOTH_FRAMES` frames. While more than
    ``max_samples`` remain after the last cut ``pos``, the next cut is at the
    middle of the quietest stretch of frames lying in
    ``[pos + max_samples - search_samples, min(pos + max_samples, n - min_samples)]``.

    Parameters
    ----------
    wav : numpy.ndarray
        Mono waveform.
    max_samples, min_samples, search_samples : int
        The cap, the shortest piece, the search span (``min_samples <= search_samples <= max_samples / 2``).

    Returns
    -------
    (list of (int, int), list of float)
        The pieces ``[start, stop)`` (they tile ``wav``) and each cut's energy in dB
        relative to the median frame.

    Example
    -------
    >>> wav = np.ones(1000 * FRAME_SAMPLES, dtype=np.float32)
    >>> wav[600 * FRAME_SAMPLES: 620 * FRAME_SAMPLES] = 0.0  # a pause at frames 600-619
    >>> bounds, levels = segment_bounds(wav, 700 * FRAME_SAMPLES, 50 * FRAME_SAMPLES, 200 * FRAME_SAMPLES)
    >>> [(start // FRAME_SAMPLES, stop // FRAME_SAMPLES) for start, stop in bounds], levels[0] < PAUSE_DB
    ([(0, 610), (610, 1000)], True)
    """
    n = len(wav)
    frames = n // FRAME_SAMPLES
    power = np.square(wav[:frames * FRAME_SAMPLES].reshape(frames, FRAME_SAMPLES), dtype=np.float64).mean(axis=1)
    power = np.convolve(power, np.ones(SMOOTH_FRAMES) / SMOOTH_FRAMES, mode="same")
    reference = float(np.median(power)) if frames else 0.0
    bounds, levels, pos = [], [], 0
    while n - pos > max_samples:
        cut, level = _quietest_point(power, pos + max_samples - search_samples,
                                     min(pos + max_samples, n - min_samples))
        bounds.append((pos, cut))
        levels.append(10 * math.log10((level + 1e-12) / (reference + 1e-12)))
        pos = cut
    if n > pos:
        bounds.append((pos, n))
    return bounds, levels


def _quietest_point(power, low, high):
    """The sample in ``[low, high]`` at the middle of the quietest run of whole frames there, and its energy."""
    first, last = -(-low // FRAME_SAMPLES), high // FRAME_SAMPLES  # frames lying wholly in [low, high)
    if last <= first:
        return high, float(power[min(high // FRAME_SAMPLES, len(power) - 1)])
    span = power[first:last]
    best = int(np.argmin(span))
    quiet = span <= span[best] * (1 + 1e-6) + 1e-12  # ties: digital silence, or a constant level
    begin, end = best, best + 1
    while begin > 0 and quiet[begin - 1]:
        begin -= 1
    while end < len(span) and quiet[end]:
        end += 1
    return (2 * first + begin + end) * FRAME_SAMPLES // 2, float(span[best])


def _cut_all(windows, settings, n_jobs):
    """Cut every window of every recording into segment files.

    Returns ``{(path, window): [(start, stop, segment path)]}`` (samples in the
    recording at 16 kHz), ``{path: reason}`` for recordings that failed to
    decode, and the segmenting statistics.
    """
    folder = Path(settings["segments_folder"])
    limits = tuple(round(seconds * SAMPLE_RATE) for seconds in (
        settings["max_segment_seconds"], settings["min_segment_seconds"],
        _search_seconds(settings["max_segment_seconds"])))
    jobs = [(path, sorted(spans), str(folder / _segment_folder_name(path)), limits) for path, spans in
            sorted(windows.items())]
    segments, failures, levels = {}, {}, []
    written = reused = 0
    for path, results, error in _run_jobs(jobs, n_jobs):
        if error:
            failures[path] = error
            continue
        for window, (pieces, cut_levels) in results.items():
            segments[(path, window)] = [(start, stop, piece) for start, stop, piece, _ in pieces]
            reused += sum(was_there for *_, was_there in pieces)
            written += sum(not was_there for *_, was_there in pieces)
            levels.extend(cut_levels)
    stats = {"recordings_decoded": len(jobs) - len(failures), "segments_written": written,
             "segments_reused": reused, "cuts": len(levels),
             "cuts_in_pauses": sum(level <= PAUSE_DB for level in levels),
             "median_cut_db": round(float(np.median(levels)), 1) if levels else None,
             "rule": f"cut at the quietest {FRAME_SAMPLES / SAMPLE_RATE * 1000:g} ms-frame stretch (energy averaged "
                     f"over {SMOOTH_FRAMES} frames) of the last {_search_seconds(settings['max_segment_seconds']):g} s "
                     f"before the cap, at least min_segment_seconds before the end; 'in a pause': {PAUSE_DB:g} dB "
                     "or more below the file's median frame"}
    return segments, failures, stats


def _segment_folder_name(path):
    """A recording's segment folder: its name and a hash of its path, size and modification time."""
    stat = os.stat(path)
    return f"{safe_id(Path(path).stem)[:48]}-{settings_hash([path, stat.st_size, stat.st_mtime_ns], 12)}"


def _run_jobs(jobs, n_jobs):
    """Results of :func:`_cut_recording` for every job, in ``n_jobs`` processes."""
    progress = {"total": len(jobs), "desc": "cutting", "unit": "recording", "disable": len(jobs) < PROGRESS_MIN}
    if n_jobs == 1 or len(jobs) < 2:
        return [_cut_recording(job) for job in tqdm(jobs, **progress)]
    # spawned workers: a forked copy of a process that already ran torch's thread pool can hang
    with multiprocessing.get_context("spawn").Pool(min(n_jobs, len(jobs)), _one_thread) as pool:
        return list(tqdm(pool.imap_unordered(_cut_recording, jobs), **progress))


def _one_thread():
    import torch

    torch.set_num_threads(1)


def _cut_recording(job):
    """Decode one recording and write the segment files of its windows.

    Returns ``(path, {window: (pieces, cut levels)}, None)`` where a piece is
    ``(start, stop, segment path, already there)``, or ``(path, None, reason)``.
    """
    path, windows, folder, (max_samples, min_samples, search_samples) = job
    try:
        wav = load_audio(path).numpy()
    except AudioError as err:
        return path, None, str(err)
    results = {}
    for window in windows:
        offset = round(window[0] * SAMPLE_RATE)
        piece = wav[offset:round(window[1] * SAMPLE_RATE)]
        bounds, levels = segment_bounds(piece, max_samples, min_samples, search_samples)
        results[window] = ([_segment_file(piece[start:stop], offset + start, offset + stop, folder)
                            for start, stop in bounds], levels)
    return path, results, None


def _segment_file(samples, start, stop, folder):
    """Write (unless already there) the segment ``[start, stop)`` of a recording; ``(start, stop, path, was there)``."""
    path = Path(folder) / f"{start:010d}-{stop:010d}.flac"
    if path.exists():
        return start, stop, str(path), True
    with atomic_path(path) as tmp:
        sf.write(tmp, np.clip(samples, -1.0, 1.0), SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    return start, stop, str(path), False


# -------------------------------------------------------------------- draws --

def draw_by_recording(rows, count, seed, stream):
    """Draw about ``count`` rows, whole recordings at a time (seeded); return ``(drawn, rest)``.

    Recordings (rows sharing ``source``) are shuffled by ``numpy.random.default_rng([seed, stream])``
    and taken while they fit in ``count``; when none fits, the one with fewest rows is taken.

    Example
    -------
    >>> rows = [{"ID": f"{s}{i}", "source": s} for s, n in (("a", 3), ("b", 1), ("c", 2)) for i in range(n)]
    >>> drawn, rest = draw_by_recording(rows, 3, seed=0, stream=1)
    >>> len(drawn) == 3 and not {r["source"] for r in drawn} & {r["source"] for r in rest}
    True
    """
    by_source = defaultdict(list)
    for row in rows:
        by_source[row["source"]].append(row)
    sources = sorted(by_source)
    order = [sources[i] for i in np.random.default_rng([seed, stream]).permutation(len(sources))]
    chosen, total = set(), 0
    for source in order:
        if total + len(by_source[source]) <= count:
            chosen.add(source)
            total += len(by_source[source])
    if not chosen and order:
        chosen.add(min(order, key=lambda source: len(by_source[source])))
    return [row for row in rows if row["source"] in chosen], [row for row in rows if row["source"] not in chosen]


def _splits(rows, settings):
    """``{output name: rows}`` after the held-out, validation and ASR draws, and the draws' description."""
    seed = settings["seed"]
    splits, draws = {}, {}
    pool = _nonempty(rows["pool"], "pool")
    share = math.floor(DRAW_SHARE * len(pool))
    if share < 1:
        raise ValueError(f"the pool has {len(pool)} usable utterances: too few for a validation and a held-out "
                         f"draw of up to {DRAW_SHARE:.0%} each (at least {math.ceil(1 / DRAW_SHARE)} are needed)")
    splits["heldout_pool"], rest = draw_by_recording(pool, min(settings["heldout_utterances"], share), seed,
                                                     DRAW_STREAMS["heldout_pool"])
    splits["valid"], splits["pool"] = draw_by_recording(rest, min(settings["valid_utterances"], share), seed,
                                                        DRAW_STREAMS["valid"])
    if not splits["pool"]:
        raise ValueError(f"no pool utterance is left after the held-out and validation draws: the pool's "
                         f"{len({row['source'] for row in pool})} recordings are too few to keep them apart")
    for name in ("heldout_pool", "valid"):
        draws[name] = _draw_note(splits[name], "pool", seed, name)
    if "target" in rows:
        heldout, splits["target"], draws["heldout_target"] = _heldout_target(
            _nonempty(rows["target"], "target"), settings["heldout_utterances"], seed)
        splits["heldout_target"] = heldout or []  # no rows: too small a target to hold audio out
    asr = {split: rows[f"asr_{split}"] for split in ASR_SPLITS if f"asr_{split}" in rows}
    for split in ("dev", "test"):
        if split not in asr and "train" in asr:
            size = max(1, math.floor(ASR_DRAW_SHARE * len(rows["asr_train"])))
            asr[split], asr["train"] = draw_by_recording(asr["train"], size, seed, DRAW_STREAMS[f"asr_{split}"])
            draws[f"asr_{split}"] = _draw_note(asr[split], "asr_train", seed, f"asr_{split}")
            logger.info("no asr %s folder given: asr_%s.csv is a draw of %d utterances from asr_train (seed %d)",
                        split, split, len(asr[split]), seed)
    for split, split_rows in asr.items():
        splits[f"asr_{split}"] = _nonempty(split_rows, f"asr_{split}")
    return {name: splits[name] for name in OUTPUTS if name in splits}, draws


def _heldout_target(target, wanted, seed):
    """``(held-out rows or None, target rows, note)``: the target's held-out draw, when it is made."""
    size = min(wanted, math.floor(DRAW_SHARE * len(target)))
    if size < MIN_HELDOUT_TARGET:
        return None, target, {"written": False, "reason": (
            f"the target has {len(target)} utterances: a held-out draw of at most {DRAW_SHARE:.0%} of them would "
            f"hold {size}, fewer than {MIN_HELDOUT_TARGET}; the whole target is in target.csv")}
    heldout, rest = draw_by_recording(target, size, seed, DRAW_STREAMS["heldout_target"])
    if not rest:
        return None, target, {"written": False, "reason": "the target's recordings are too few to keep a held-out "
                                                          "draw apart; the whole target is in target.csv"}
    return heldout, rest, {"written": True, **_draw_note(heldout, "target", seed, "heldout_target")}


def _draw_note(rows, source, seed, name):
    return {"from": source, "seed": seed, "stream": DRAW_STREAMS[name], "utterances": len(rows),
            "recordings": len({row["source"] for row in rows}), "by": "recording"}


def _nonempty(rows, name):
    if not rows:
        raise ValueError(f"{name}: no usable utterance (every file was skipped: see the log)")
    return rows


# ------------------------------------------------------------------ writing --

def _write_splits(save_folder, splits, rows):
    """Write each split's CSV; remove the outputs of an earlier preparation that are not made now.

    A split has ``spk_id`` and ``wrd`` columns when some utterance of its input has them, so the
    draws from one input have its columns.
    """
    drawn_from = {"valid": "pool", "heldout_pool": "pool", "heldout_target": "target"}
    for name in OUTPUTS:
        path = save_folder / f"{name}.csv"
        if name not in splits:
            if path.exists():
                path.unlink()
            continue
        source_rows = rows.get(drawn_from.get(name, name)) or splits[name]
        columns = list(COLUMNS) + [column for column in ("spk_id", "wrd") if any(row[column] for row in source_rows)]
        split_rows = sorted(splits[name], key=lambda row: row["ID"])
        atomic_write_csv(path, [{column: row[column] for column in columns} for row in split_rows], columns)


def _split_stats(rows):
    return {"utterances": len(rows), "hours": round(sum(float(row["duration"]) for row in rows) / 3600, 4),
            "recordings": len({row["source"] for row in rows})}


def _outputs_state(save_folder, names):
    """Hash of the state of the output CSVs and of every audio file they name."""
    paths = []
    for name in names:
        csv_path = save_folder / f"{name}.csv"
        paths.append(str(csv_path))
        if csv_path.exists():
            with open(csv_path, newline="", encoding="utf-8") as handle:
                paths.extend(row["wav"] for row in csv.DictReader(handle))
    return files_state(paths)


def _finished_record(record_path, settings, state):
    """The record of a preparation with these settings and inputs whose outputs are intact, else None."""
    if not record_path.exists():
        return None
    record = json.loads(record_path.read_text(encoding="utf-8"))
    if record.get("settings") != settings or record.get("inputs_state") != state:
        logger.info("%s records other inputs or settings: preparing again", record_path)
        return None
    if record.get("outputs_state") != _outputs_state(record_path.parent, record["outputs"]):
        logger.info("the outputs recorded in %s changed or are missing: preparing again", record_path)
        return None
    return record


# ------------------------------------------------------------------ export --

def export_subset(subset_csv, folder, data_root=None):
    """Write a subset as ``folder/kaldi/`` (a Kaldi data directory) and ``folder/lhotse/`` (lhotse manifests).

    Both refer to windows of the original recordings (see :mod:`corpora.kaldi_lhotse`).

    Parameters
    ----------
    subset_csv : str or os.PathLike
        The subset, e.g. a selection's ``subset.csv`` of ``pool.csv``.
    folder : str or os.PathLike
        Where the ``kaldi`` and ``lhotse`` folders go.
    data_root : str, optional
        Replacement for ``$data_root`` in the manifest.

    Returns
    -------
    dict
        ``{"kaldi": ..., "lhotse": ...}``: what each writer returns.
    """
    folder = Path(folder)
    return {"kaldi": write_kaldi_dir(subset_csv, folder / "kaldi", data_root),
            "lhotse": write_lhotse_manifests(subset_csv, folder / "lhotse", data_root)}


def require_splits(save_folder, splits):
    """Stop, naming what to run, when a recipe reads splits that no preparation wrote.

    For recipes that read what another one prepared (the ASR probe reads the
    ``asr_*`` manifests that the distillation's preparation writes from
    ``--asr_train_folder`` and friends).

    Raises
    ------
    FileNotFoundError
        Listing the missing manifests and the options that make them.

    Example
    -------
    >>> import tempfile
    >>> require_splits(tempfile.mkdtemp(), ["asr_train"])
    Traceback (most recent call last):
    ...
    FileNotFoundError: asr_train.csv missing in ...
    """
    missing = [f"{split}.csv" for split in splits if not (Path(save_folder) / f"{split}.csv").is_file()]
    if missing:
        raise FileNotFoundError(
            f"{', '.join(missing)} missing in {save_folder}: prepare the folders first, e.g. "
            "python recipes/AudioFolders/audio_folders_prepare.py --save_folder=<this folder> --pool_folder=... "
            "--asr_train_folder=<transcribed audio> (or give --asr_train_folder to the distillation command)")


# -------------------------------------------------------------- command line --

def main(argv=None):
    """Prepare folders of audio (command line; see the module notes)."""
    parser = argparse.ArgumentParser(description="Folders of audio (or Kaldi / lhotse lists) in, SpeechBrain "
                                                 "CSV manifests out.")
    parser.add_argument("--save_folder", required=True, help="where the manifests and the report go")
    for role in ("pool", "target"):
        parser.add_argument(f"--{role}_folder", help=f"the {role}: a folder of audio (searched recursively)")
        parser.add_argument(f"--{role}_kaldi", help=f"the {role}: a Kaldi data directory")
        parser.add_argument(f"--{role}_lhotse", help=f"the {role}: a lhotse RecordingSet or CutSet manifest")
    for split in ASR_SPLITS:
        parser.add_argument(f"--asr_{split}_folder", help=f"transcribed audio for the ASR probe's {split} split")
    parser.add_argument("--segments_folder", help="where segments of long audio go (default: save_folder/segments)")
    parser.add_argument("--max_segment_seconds", type=float, default=30.0)
    parser.add_argument("--min_segment_seconds", type=float, default=1.0)
    parser.add_argument("--valid_utterances", type=int, default=60)
    parser.add_argument("--heldout_utterances", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n_jobs", type=int, default=1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    summary = prepare_audio_folders(
        args.save_folder, pool_folder=args.pool_folder, target_folder=args.target_folder,
        pool_kaldi=args.pool_kaldi, target_kaldi=args.target_kaldi, pool_lhotse=args.pool_lhotse,
        target_lhotse=args.target_lhotse,
        asr_folders={split: getattr(args, f"asr_{split}_folder") for split in ASR_SPLITS},
        segments_folder=args.segments_folder, max_segment_seconds=args.max_segment_seconds,
        min_segment_seconds=args.min_segment_seconds, valid_utterances=args.valid_utterances,
        heldout_utterances=args.heldout_utterances, seed=args.seed, n_jobs=args.n_jobs)
    print(json.dumps(summary, indent=2))
