"""Kaldi data directories and lhotse manifests: read as lists of utterances, and written back from a subset.

Reading (for :mod:`corpora.audio_folders`) gives :class:`Listed` utterances:
a recording's audio file and, for a window of it, the window's start and
stop in seconds, with the speaker and transcript when the lists have them
(transcripts upper-cased with single spaces, as the ``wrd`` column holds them).

* A Kaldi data directory: ``wav.scp`` (``<recording> <audio file path>``;
  a relative path is taken from the current directory, as Kaldi's tools do),
  optional ``segments`` (``<utterance> <recording> <start> <end>``, seconds;
  an end of ``-1`` is the recording's end), ``text`` and ``utt2spk``. Entries
  that are commands (``... |``) or archive offsets (``foo.ark:123``) are
  refused, naming the file and line: convert them to audio files first.
* A lhotse ``RecordingSet`` or ``CutSet`` (``.jsonl``, ``.jsonl.gz``, ``.json``),
  read through the ``lhotse`` package. A recording must be one audio file
  (``type: file``; commands and URLs are refused) and may carry resampling
  transforms only. A cut is a window of its recording, with the text of its
  supervisions (joined in time order) and their speaker when they agree; a
  cut's channel selection is not kept (audio is averaged to mono downstream).

Writing a subset (a SpeechBrain CSV with ``source``, ``source_start`` and
``source_stop``, as :mod:`corpora.audio_folders` writes and a selection keeps)
refers to the original recordings, not to the segment files:

* :func:`write_kaldi_dir`: ``wav.scp``, ``segments``, ``utt2spk``,
  ``spk2utt`` and, with a ``wrd`` column, ``text``; every file sorted by its
  first field (byte order, as Kaldi's ``LC_ALL=C`` sort). Without a known
  speaker each utterance is its own speaker (Kaldi's convention); with one
  (made safe as IDs are, see :func:`safe_id`), an utterance ID that does not
  start with its speaker ID is prefixed with ``<speaker>-`` so that
  ``utt2spk`` and ``spk2utt`` sort alike. An ID holding a space is refused.
* :func:`write_lhotse_manifests`: ``recordings.jsonl.gz``,
  ``supervisions.jsonl.gz`` and ``cuts.jsonl.gz`` (one cut per row, a window
  of its recording holding one supervision).

A manifest without the ``source`` columns works too: each ``wav`` file is its
own recording, from 0 to its ``duration``. Recording IDs come from the
recordings' paths relative to their common folder (:func:`unique_ids`).

Usage
-----
python recipes/AudioFolders/export_subset.py --subset results/selection/subset.csv \
    --kaldi_dir results/subset_kaldi --lhotse_dir results/subset_lhotse
"""

import argparse
import hashlib
import logging
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from common.atomic import atomic_path, atomic_write_text
from common.manifest import DATA_ROOT_PLACEHOLDER, ManifestError, read_manifest

logger = logging.getLogger(__name__)

LHOTSE_FILES = {"recordings": "recordings.jsonl.gz", "supervisions": "supervisions.jsonl.gz",
                "cuts": "cuts.jsonl.gz"}
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
_ARCHIVE_OFFSET = re.compile(r"\.ark:\d+$")


@dataclass(frozen=True)
class Listed:
    """One utterance of a list: a recording, or a window of it.

    Attributes
    ----------
    key : str
        Its unique name in the list (Kaldi utterance, lhotse cut or recording
        ID, or a file's path relative to its folder).
    path : str
        Absolute path of the recording's audio file.
    start : float
        Window start in the recording (seconds).
    stop : float or None
        Window stop (seconds); None: the recording's end.
    spk_id, wrd : str
        Speaker and transcript, empty when unknown.
    """

    key: str
    path: str
    start: float = 0.0
    stop: float = None
    spk_id: str = ""
    wrd: str = ""

    @property
    def whole(self):
        """Whether it is the whole recording."""
        return self.start == 0 and self.stop is None


def safe_id(name):
    """``name`` with every run of characters other than ``[A-Za-z0-9_-]`` made one ``_`` (never empty).

    Example
    -------
    >>> safe_id("speaker 1/take,2.b"), safe_id("日本")
    ('speaker_1_take_2_b', 'utt')
    """
    return _UNSAFE.sub("_", name).strip("_") or "utt"


def unique_ids(candidates):
    """Make candidate IDs unique: every member of a collision gets ``_`` and 8 hex digits of its key's SHA-1.

    The result depends only on the set of ``{key: candidate}`` pairs, not on their order.

    Parameters
    ----------
    candidates : dict
        ``{key: candidate ID}``; keys are distinct (paths, list IDs).

    Returns
    -------
    dict
        ``{key: ID}``, IDs distinct.

    Example
    -------
    >>> ids = unique_ids({"a b.wav": "a_b", "a_b.flac": "a_b", "c.wav": "c"})
    >>> ids["c.wav"], ids["a b.wav"] != ids["a_b.flac"], ids["a b.wav"].startswith("a_b_")
    ('c', True, True)
    """
    counts = Counter(candidates.values())
    ids = {key: name if counts[name] == 1 else f"{name}_{hashlib.sha1(key.encode()).hexdigest()[:8]}"
           for key, name in candidates.items()}
    if len(set(ids.values())) != len(ids):
        clash = [name for name, count in Counter(ids.values()).items() if count > 1]
        raise ValueError(f"IDs still collide after adding hash suffixes: {clash[:5]}; rename these files")
    return ids


# ---------------------------------------------------------------- reading Kaldi --

def read_kaldi_dir(folder):
    """The utterances of a Kaldi data directory.

    Parameters
    ----------
    folder : str or os.PathLike
        Holds ``wav.scp`` and optionally ``segments``, ``text``, ``utt2spk``.

    Returns
    -------
    (list of Listed, list of str)
        The utterances (one per recording without ``segments``, one per
        ``segments`` line with it) and the files they were read from (the
        lists and the audio files), for the record of what was prepared.

    Raises
    ------
    FileNotFoundError
        No ``wav.scp`` in ``folder``.
    ValueError
        A command or archive entry, a malformed or duplicated line, or a
        segment of a recording missing from ``wav.scp``; naming file and line.
    """
    folder = Path(folder)
    scp = folder / "wav.scp"
    if not folder.is_dir():
        raise FileNotFoundError(f"Kaldi data directory {folder} does not exist")
    if not scp.is_file():
        raise FileNotFoundError(f"{folder} is not a Kaldi data directory: it has no wav.scp")
    recordings = {key: _kaldi_audio_path(scp, line, rest) for line, key, rest in _kaldi_table(scp)}
    texts = {key: rest for _, key, rest in _kaldi_table(folder / "text", allow_empty=True)}
    speakers = {key: rest for _, key, rest in _kaldi_table(folder / "utt2spk")}
    windows = _kaldi_segments(folder / "segments", recordings)
    if windows is None:
        windows = {key: (path, 0.0, None) for key, path in recordings.items()}
    listed = [Listed(key, path, start, stop, speakers.get(key, ""), normalise_text(texts.get(key, "")))
              for key, (path, start, stop) in windows.items()]
    lists = [str(folder / name) for name in ("wav.scp", "segments", "text", "utt2spk") if (folder / name).is_file()]
    return listed, lists + sorted(set(recordings.values()))


def _kaldi_table(path, allow_empty=False):
    """``(line number, key, rest of the line)`` of a Kaldi table file (nothing when it does not exist)."""
    if not path.is_file():
        return
    seen = {}
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            key, *value = line.split(maxsplit=1)  # spaces or tabs, as Kaldi reads them
            rest = value[0].strip() if value else ""
            if not rest and not allow_empty:
                raise ValueError(f"{path}, line {number}: expected '<key> <value>', got {line.strip()!r}")
            if key in seen:
                raise ValueError(f"{path}, line {number}: {key!r} already on line {seen[key]}")
            seen[key] = number
            yield number, key, rest


def _kaldi_audio_path(scp, line, entry):
    """The absolute audio path of a ``wav.scp`` entry; commands and archive offsets are refused."""
    if entry.endswith("|") or entry == "-":
        raise ValueError(f"{scp}, line {line}: {entry!r} is a command; only audio file paths are supported "
                         "(write the audio to files, e.g. with Kaldi's wav-copy, and list those)")
    if _ARCHIVE_OFFSET.search(entry):
        raise ValueError(f"{scp}, line {line}: {entry!r} is an archive offset; only audio file paths are "
                         "supported (extract the audio to files first)")
    return os.path.abspath(entry)


def _kaldi_segments(path, recordings):
    """``{utterance: (audio path, start, stop or None)}`` from a ``segments`` file, or None without one."""
    if not path.is_file():
        return None
    windows = {}
    for number, key, rest in _kaldi_table(path):
        fields = rest.split()
        where = f"{path}, line {number}"
        if len(fields) != 3:
            raise ValueError(f"{where}: expected '<utterance> <recording> <start> <end>', got {key} {rest!r}")
        recording, start, end = fields[0], _seconds_field(fields[1], where), _seconds_field(fields[2], where)
        if recording not in recordings:
            raise ValueError(f"{where}: recording {recording!r} is not in wav.scp")
        stop = None if end == -1 else end
        if start < 0 or (stop is not None and stop <= start):
            raise ValueError(f"{where}: the window [{fields[1]}, {fields[2]}] is empty or negative")
        windows[key] = (recordings[recording], start, stop)
    return windows


def _seconds_field(text, where):
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{where}: {text!r} is not a time in seconds") from None


def normalise_text(text):
    """A transcript as the ``wrd`` column holds it: upper-case words separated by single spaces.

    Example
    -------
    >>> normalise_text("  Hello,  world\\n")
    'HELLO, WORLD'
    """
    return " ".join(text.split()).upper()


# --------------------------------------------------------------- reading lhotse --

def read_lhotse_manifest(path):
    """The utterances of a lhotse ``RecordingSet`` (whole recordings) or ``CutSet`` (windows).

    Parameters
    ----------
    path : str or os.PathLike
        The manifest (``.jsonl``, ``.jsonl.gz`` or ``.json``).

    Returns
    -------
    (list of Listed, list of str)
        The utterances and the files they were read from (the manifest and the audio files).

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        Another kind of manifest, a recording that is not one audio file or
        carries transforms other than resampling, or a cut that is not a
        window of one recording; naming the manifest and the item.
    """
    from lhotse import CutSet, RecordingSet, load_manifest

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"lhotse manifest {path} does not exist")
    manifest = load_manifest(path)
    if isinstance(manifest, RecordingSet):
        listed = [Listed(recording.id, _lhotse_audio_path(recording, path)) for recording in manifest]
    elif isinstance(manifest, CutSet):
        listed = [_lhotse_cut(cut, path) for cut in manifest]
    else:
        raise ValueError(f"{path} holds a {type(manifest).__name__}; expected a lhotse RecordingSet or CutSet")
    return listed, [str(path)] + sorted({item.path for item in listed})


def _lhotse_audio_path(recording, manifest):
    """The absolute path of a recording that is one audio file, else an error naming it."""
    sources = recording.sources
    if len(sources) != 1 or sources[0].type != "file":
        kinds = ", ".join(source.type for source in sources)
        raise ValueError(f"{manifest}: recording {recording.id!r} has sources of type [{kinds}]; only recordings "
                         "that are one audio file (type 'file') are supported")
    transforms = [type(t).__name__ for t in recording.transforms or []]
    if set(transforms) - {"Resample"}:
        raise ValueError(f"{manifest}: recording {recording.id!r} has transforms {transforms}; only resampling "
                         "is supported (the audio is used as stored)")
    return os.path.abspath(sources[0].source)


def _lhotse_cut(cut, manifest):
    """A cut as a window of its recording, with its supervisions' text and speaker."""
    if not getattr(cut, "has_recording", False) or not hasattr(cut, "recording"):
        raise ValueError(f"{manifest}: cut {cut.id!r} ({type(cut).__name__}) is not a window of one recording")
    recording = cut.recording
    whole = cut.start == 0 and abs(cut.duration - recording.duration) < 1e-3
    supervisions = sorted(cut.supervisions, key=lambda s: s.start)
    text = " ".join(s.text for s in supervisions if s.text)
    speakers = {s.speaker or "" for s in supervisions}
    speaker = speakers.pop() if len(speakers) == 1 else ""
    start, stop = (0.0, None) if whole else (float(cut.start), float(cut.end))
    return Listed(cut.id, _lhotse_audio_path(recording, manifest), start, stop, speaker, normalise_text(text))


# ---------------------------------------------------------------- writing back --

@dataclass(frozen=True)
class Window:
    """A row of a subset as a window of its original recording."""

    utt_id: str
    source: str
    start: float
    stop: float
    spk_id: str
    wrd: str


def subset_windows(subset_csv, data_root=None):
    """The rows of a SpeechBrain CSV as windows of their recordings (``source*`` columns, else ``wav`` whole).

    Parameters
    ----------
    subset_csv : str or os.PathLike
        A manifest, e.g. a selection's subset of ``pool.csv``.
    data_root : str, optional
        Replacement for ``$data_root`` in ``wav`` and ``source``.

    Returns
    -------
    (list of Window, bool)
        The windows in file order, and whether the manifest has a ``wrd`` column.
    """
    manifest = read_manifest(subset_csv, data_root=data_root)
    windows = []
    for utt_id in manifest.ids:
        row = manifest.row(utt_id)
        source = row.get("source") or manifest.wav_path(utt_id)
        if DATA_ROOT_PLACEHOLDER in source:
            if data_root is None:
                raise ManifestError(f"{subset_csv}: source {source!r} of {utt_id!r} uses {DATA_ROOT_PLACEHOLDER} "
                                    "but no data_root was given")
            source = source.replace(DATA_ROOT_PLACEHOLDER, str(data_root))
        start = float(row.get("source_start") or 0.0)
        stop = float(row["source_stop"]) if row.get("source_stop") else start + manifest.duration(utt_id)
        windows.append(Window(utt_id, os.path.abspath(source), start, stop, row.get("spk_id", ""), row.get("wrd", "")))
    return windows, "wrd" in manifest.fieldnames


def recording_ids(sources):
    """``{source path: recording ID}``: IDs from the paths relative to their common folder.

    Example
    -------
    >>> recording_ids(["/d/a/x 1.flac", "/d/b/y.wav"])
    {'/d/a/x 1.flac': 'a_x_1', '/d/b/y.wav': 'b_y'}
    """
    sources = sorted(set(sources))
    root = os.path.commonpath(sources) if len(sources) > 1 else os.path.dirname(sources[0])
    return unique_ids({source: safe_id(os.path.splitext(os.path.relpath(source, root))[0]) for source in sources})


def seconds_text(value):
    """Seconds as text, to the microsecond (a 16 kHz sample is 62.5 us), without trailing zeros.

    Example
    -------
    >>> seconds_text(26.25), seconds_text(0.0), seconds_text(3 / 16000)
    ('26.25', '0', '0.000188')
    """
    return f"{value:.6f}".rstrip("0").rstrip(".")


def write_kaldi_dir(subset_csv, out_dir, data_root=None):
    """Write a subset as a Kaldi data directory referring to the original recordings.

    Parameters
    ----------
    subset_csv : str or os.PathLike
        The subset (see :func:`subset_windows`).
    out_dir : str or os.PathLike
        The data directory (created; its ``wav.scp``, ``segments``, ``utt2spk``, ``spk2utt`` and ``text``
        are replaced).
    data_root : str, optional
        Replacement for ``$data_root`` in the manifest.

    Returns
    -------
    dict
        ``utterances``, ``recordings``, ``speakers`` and ``prefixed`` (utterance
        IDs given their speaker as prefix).
    """
    windows, transcribed = subset_windows(subset_csv, data_root)
    out_dir = Path(out_dir)
    rec_ids = recording_ids([w.source for w in windows])
    utts = {}
    for window in windows:
        if any(character.isspace() for character in window.utt_id):
            raise ValueError(f"{subset_csv}: ID {window.utt_id!r} holds a space, which Kaldi IDs cannot")
        speaker = safe_id(window.spk_id) if window.spk_id else window.utt_id
        own = window.utt_id == speaker or window.utt_id.startswith(f"{speaker}-")
        utt = window.utt_id if own else f"{speaker}-{window.utt_id}"
        if utt in utts:
            raise ValueError(f"{subset_csv}: ID {window.utt_id!r} becomes {utt!r} with its speaker as prefix, "
                             "which another utterance already is")
        utts[utt] = (window, speaker)
    spk2utt = {}
    for utt, (_, speaker) in sorted(utts.items()):
        spk2utt.setdefault(speaker, []).append(utt)
    tables = {
        "wav.scp": {rec: source for source, rec in rec_ids.items()},
        "segments": {utt: f"{rec_ids[w.source]} {seconds_text(w.start)} {seconds_text(w.stop)}"
                     for utt, (w, _) in utts.items()},
        "utt2spk": {utt: speaker for utt, (_, speaker) in utts.items()},
        "spk2utt": {speaker: " ".join(members) for speaker, members in spk2utt.items()},
    }
    if transcribed:
        tables["text"] = {utt: w.wrd for utt, (w, _) in utts.items()}
    elif (out_dir / "text").exists():
        (out_dir / "text").unlink()
    for name, table in tables.items():
        lines = (f"{key} {value}".rstrip() + "\n" for key, value in sorted(table.items()))
        atomic_write_text(out_dir / name, "".join(lines))
    prefixed = sum(utt != w.utt_id for utt, (w, _) in utts.items())
    if prefixed:
        logger.info("%d utterance IDs were prefixed with their speaker ID, as Kaldi sorts by it", prefixed)
    logger.info("Kaldi data directory %s: %d utterances of %d recordings", out_dir, len(utts), len(rec_ids))
    return {"utterances": len(utts), "recordings": len(rec_ids), "speakers": len(spk2utt), "prefixed": prefixed}


def write_lhotse_manifests(subset_csv, out_dir, data_root=None):
    """Write a subset as lhotse manifests: recordings, supervisions and cuts (windows of the recordings).

    Parameters
    ----------
    subset_csv : str or os.PathLike
        The subset (see :func:`subset_windows`).
    out_dir : str or os.PathLike
        Where the files named in :data:`LHOTSE_FILES` go (created; replaced).
    data_root : str, optional
        Replacement for ``$data_root`` in the manifest.

    Returns
    -------
    dict
        ``utterances`` and ``recordings``.
    """
    from lhotse import CutSet, MonoCut, MultiCut, RecordingSet, SupervisionSegment, SupervisionSet
    from lhotse.utils import fastcopy

    windows, _ = subset_windows(subset_csv, data_root)
    rec_ids = recording_ids([w.source for w in windows])
    recordings = {source: _lhotse_recording(rec_id, source) for source, rec_id in rec_ids.items()}
    supervisions, cuts = [], []
    for window in windows:
        recording = recordings[window.source]
        channels = recording.channel_ids
        channel = channels[0] if len(channels) == 1 else channels
        supervision = SupervisionSegment(id=window.utt_id, recording_id=recording.id, start=window.start,
                                         duration=round(window.stop - window.start, 6), channel=channel,
                                         text=window.wrd or None, speaker=window.spk_id or None)
        supervisions.append(supervision)
        cut_class = MonoCut if len(channels) == 1 else MultiCut
        cuts.append(cut_class(id=window.utt_id, start=window.start, duration=supervision.duration, channel=channel,
                              recording=recording, supervisions=[fastcopy(supervision, start=0.0)]))
    out_dir = Path(out_dir)
    for name, manifest in (("recordings", RecordingSet.from_recordings(recordings.values())),
                           ("supervisions", SupervisionSet.from_segments(supervisions)),
                           ("cuts", CutSet.from_cuts(cuts))):
        with atomic_path(out_dir / LHOTSE_FILES[name]) as tmp:
            manifest.to_file(tmp)
    logger.info("lhotse manifests in %s: %d cuts of %d recordings", out_dir, len(cuts), len(recordings))
    return {"utterances": len(cuts), "recordings": len(recordings)}


def _lhotse_recording(rec_id, source):
    """A lhotse Recording of one audio file, described from its header."""
    from lhotse import AudioSource, Recording

    info = sf.info(source)
    return Recording(id=rec_id, sources=[AudioSource(type="file", channels=list(range(info.channels)), source=source)],
                     sampling_rate=info.samplerate, num_samples=info.frames, duration=info.frames / info.samplerate)


def main(argv=None):
    """Write a subset manifest as a Kaldi data directory and/or lhotse manifests (command line)."""
    parser = argparse.ArgumentParser(description="Write a subset (SpeechBrain CSV) as Kaldi and lhotse lists "
                                                 "of windows of the original recordings.")
    parser.add_argument("--subset", required=True, help="the subset CSV, e.g. a selection's subset of pool.csv")
    parser.add_argument("--kaldi_dir", help="write a Kaldi data directory here")
    parser.add_argument("--lhotse_dir", help="write lhotse recordings, supervisions and cuts here")
    parser.add_argument("--data_root", help="replacement for $data_root in the manifest's paths")
    args = parser.parse_args(argv)
    if not args.kaldi_dir and not args.lhotse_dir:
        parser.error("give --kaldi_dir, --lhotse_dir or both")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if args.kaldi_dir:
        write_kaldi_dir(args.subset, args.kaldi_dir, args.data_root)
    if args.lhotse_dir:
        write_lhotse_manifests(args.subset, args.lhotse_dir, args.data_root)
