"""Read and validate SpeechBrain CSV manifests.

A manifest has at least the columns ``ID``, ``duration`` (seconds) and ``wav``
(path, possibly with a ``$data_root`` placeholder). Any other column (``spk_id``,
``wrd``, ``domain``, ...) is kept verbatim so that a subset can be written back
with exactly the same columns and row content.
"""

import csv
import math
from pathlib import Path

import numpy as np

from common.audio import duration_disagrees
from common.corpus_files import audio_duration

REQUIRED_COLUMNS = ("ID", "duration", "wav")
DATA_ROOT_PLACEHOLDER = "$data_root"


class ManifestError(ValueError):
    """A manifest is malformed; the message names the file and the offending line."""


class Manifest:
    """Validated rows of a SpeechBrain CSV, addressable by utterance ID.

    Parameters
    ----------
    path : str or os.PathLike
        Where the rows came from (used in error messages and hashes).
    fieldnames : list of str
        CSV columns, in file order.
    rows : list of dict
        Raw rows (strings, placeholders not replaced), in file order.
    data_root : str, optional
        Replacement for ``$data_root`` in the ``wav`` column.

    Raises
    ------
    ManifestError
        If a required column is missing, an ID is empty or duplicated, or a
        duration is not a finite, non-negative number.
    """

    def __init__(self, path, fieldnames, rows, data_root=None):
        self.path = Path(path)
        self.fieldnames = list(fieldnames)
        self.rows = rows
        self.data_root = None if data_root is None else str(data_root)
        missing = [c for c in REQUIRED_COLUMNS if c not in self.fieldnames]
        if missing:
            raise ManifestError(
                f"{self.path}: missing required column(s) {missing}; found {self.fieldnames}"
            )
        self._index = {}
        durations = np.empty(len(rows), dtype=np.float64)
        for i, row in enumerate(rows):
            line = i + 2  # header is line 1
            if None in row or any(v is None for v in row.values()):
                raise ManifestError(
                    f"{self.path}, line {line}: expected {len(self.fieldnames)} fields"
                )
            utt_id = row["ID"]
            if not utt_id:
                raise ManifestError(f"{self.path}, line {line}: empty ID")
            if utt_id in self._index:
                raise ManifestError(
                    f"{self.path}, line {line}: duplicate ID {utt_id!r} "
                    f"(first on line {self._index[utt_id] + 2})"
                )
            self._index[utt_id] = i
            durations[i] = _parse_duration(row["duration"], self.path, line, utt_id)
        self.durations = durations
        self.ids = [row["ID"] for row in rows]

    def __len__(self):
        return len(self.rows)

    def __contains__(self, utt_id):
        return utt_id in self._index

    def row(self, utt_id):
        """Raw row (dict of strings) of ``utt_id``."""
        return self.rows[self._index[utt_id]]

    def rows_of(self, ids):
        """Raw rows (dicts of strings) of ``ids``, in the given order."""
        return (self.row(i) for i in ids)

    def duration(self, utt_id):
        """Duration of ``utt_id`` in seconds."""
        return float(self.durations[self._index[utt_id]])

    def positions(self, ids):
        """Row positions (``int64``, file order from 0) of ``ids``; ``KeyError`` for an unknown ID."""
        return np.fromiter((self._index[i] for i in ids), dtype=np.int64, count=len(ids))

    def durations_of(self, ids):
        """Durations (seconds, float64 array) of ``ids``, in the given order."""
        return self.durations[[self._index[i] for i in ids]]

    @property
    def total_hours(self):
        """Sum of durations, in hours."""
        return float(self.durations.sum() / 3600.0)

    def column(self, name):
        """Values of column ``name`` in file order, or ``None`` if the column is absent."""
        if name not in self.fieldnames:
            return None
        return [row[name] for row in self.rows]

    def wav_paths(self, ids=None):
        """Audio paths of ``ids`` (default: every row, file order), ``$data_root`` replaced (see :meth:`wav_path`)."""
        return (self.wav_path(i) for i in (self.ids if ids is None else ids))

    def wav_path(self, utt_id):
        """Audio path of ``utt_id`` with ``$data_root`` replaced.

        Raises
        ------
        ManifestError
            If the path holds the placeholder but no ``data_root`` was given.
        """
        wav = self.row(utt_id)["wav"]
        if DATA_ROOT_PLACEHOLDER in wav:
            if self.data_root is None:
                raise ManifestError(
                    f"{self.path}, line {self._index[utt_id] + 2}: wav {wav!r} uses "
                    f"{DATA_ROOT_PLACEHOLDER} but no data_root was given"
                )
            wav = wav.replace(DATA_ROOT_PLACEHOLDER, self.data_root)
        return wav


def _parse_duration(text, path, line, utt_id):
    try:
        value = float(text)
    except ValueError:
        raise ManifestError(
            f"{path}, line {line}: duration {text!r} of ID {utt_id!r} is not a number"
        ) from None
    if not math.isfinite(value) or value < 0:
        raise ManifestError(
            f"{path}, line {line}: duration {text!r} of ID {utt_id!r} must be finite and >= 0"
        )
    return value


def read_manifest(path, data_root=None):
    """Read and validate a SpeechBrain CSV manifest.

    Parameters
    ----------
    path : str or os.PathLike
        CSV file with a header line.
    data_root : str or os.PathLike, optional
        Replacement for ``$data_root`` in the ``wav`` column (applied when a
        path is asked for, so manifests can be read without their audio).

    Returns
    -------
    Manifest
        The validated manifest.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ManifestError
        See :class:`Manifest`; also for a file without a header.
    """
    path = Path(path)
    # utf-8-sig: a byte-order mark (as spreadsheets export) is not part of the first column's name
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None:
            raise ManifestError(f"{path}: empty file (no header line)")
        fieldnames = [name.strip() for name in reader.fieldnames]
        reader.fieldnames = fieldnames
        rows = list(reader)
    return Manifest(path, fieldnames, rows, data_root=data_root)


def dataset_rows(path, data_root):
    """A manifest's rows as SpeechBrain's ``load_data_csv`` gives them, after validation.

    ``{ID: {column: value}}`` in file order, ``$data_root`` replaced by
    ``data_root`` in every column and ``duration`` a float; the same checks and
    messages as :func:`read_manifest`.
    """
    manifest = read_manifest(path, data_root=data_root)
    root = str(data_root)
    rows = {}
    for row in manifest.rows:
        entry = {key: value.replace(DATA_ROOT_PLACEHOLDER, root) for key, value in row.items() if key != "ID"}
        entry["duration"] = float(row["duration"])
        rows[row["ID"]] = entry
    return rows


def load_dataset(path, data_root):
    """A validated manifest as a SpeechBrain ``DynamicItemDataset`` (see :func:`dataset_rows`)."""
    from speechbrain.dataio.dataset import DynamicItemDataset

    return DynamicItemDataset(dataset_rows(path, data_root))


def check_durations(rows, path):
    """Stop when ``rows`` (from :func:`dataset_rows`) hold durations that disagree with their audio.

    Durations are read from each file's header (cheap); unreadable files are
    left to the stage that reads them. The tolerance is
    :data:`common.audio.DURATION_TOLERANCE`.

    Raises
    ------
    ManifestError
        Naming ``path`` and the first files, with both durations.
    """
    wrong = []
    for utt_id, row in rows.items():
        try:
            seconds = audio_duration(row["wav"])
        except RuntimeError:
            continue
        if duration_disagrees(row["duration"], seconds):
            wrong.append(f"{utt_id}: manifest {row['duration']:.2f} s, audio {seconds:.2f} s")
    if wrong:
        raise ManifestError(f"{path}: {len(wrong)} durations disagree with the audio: {'; '.join(wrong[:10])}")
