"""A manifest's IDs, durations and row positions as arrays: pools of millions of rows without a dict per row.

:func:`read_manifest_columns` streams a SpeechBrain CSV in blocks of rows and keeps
three arrays (IDs as UTF-8 bytes, durations, the byte offset of each row), with the
checks and messages of :func:`common.manifest.read_manifest`;
:func:`write_manifest_rows` copies chosen rows, byte for byte, into a new manifest;
:class:`ColumnarManifest` (:func:`read_columnar_manifest`) reads like
:class:`common.manifest.Manifest`, a row's other fields read from the file when asked for.
At 10 M rows of 30-byte IDs that is about 0.5 GB, where Python dicts take several GB.

Rows must each be one line (a quoted field may hold commas, not line breaks), which
is how SpeechBrain writes manifests; a field spanning lines is an error naming its line.

Example
-------
>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> _ = (folder / "pool.csv").write_text("ID,duration,wav\\nb,2.5,b.flac\\na,1.0,a.flac\\n")
>>> columns = read_manifest_columns(folder / "pool.csv")
>>> columns.positions(["a", "b"]).tolist(), columns.durations.tolist()
([1, 0], [2.5, 1.0])
>>> write_manifest_rows(columns, [1], folder / "subset.csv")
>>> (folder / "subset.csv").read_text()
'ID,duration,wav\\na,1.0,a.flac\\n'
"""

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.atomic import atomic_path
from common.manifest import DATA_ROOT_PLACEHOLDER, REQUIRED_COLUMNS, ManifestError

_BLOCK_ROWS = 100_000  # rows decoded or read at a time


@dataclass
class ManifestColumns:
    """The columns selection needs of a manifest, as arrays in file order.

    Attributes
    ----------
    path : pathlib.Path
        The CSV file.
    fieldnames : list of str
        Its columns.
    header : bytes
        Its header line, as written.
    ids : numpy.ndarray
        IDs, UTF-8 encoded (``S`` dtype).
    durations : numpy.ndarray
        Seconds (``float64``).
    offsets : numpy.ndarray
        Byte offset of each row in the file (``int64``).
    """

    path: Path
    fieldnames: list
    header: bytes
    ids: np.ndarray
    durations: np.ndarray
    offsets: np.ndarray

    def __post_init__(self):
        self._sorted = np.argsort(self.ids, kind="stable")

    def __len__(self):
        return len(self.ids)

    @property
    def total_hours(self):
        """Sum of durations, in hours."""
        return float(self.durations.sum() / 3600.0)

    def positions(self, ids):
        """Row positions (``int64``) of ``ids`` (strings or bytes); ``KeyError`` naming the first unknown one."""
        wanted = np.asarray([i.encode() if isinstance(i, str) else i for i in ids], dtype=bytes)
        if len(wanted) and wanted.dtype.itemsize > self.ids.dtype.itemsize:  # longer than every ID here
            longer = np.flatnonzero(np.char.str_len(wanted) > self.ids.dtype.itemsize)
            raise KeyError(f"{wanted[longer[0]].decode()!r} is not in {self.path}")
        wanted = wanted.astype(self.ids.dtype)
        found = np.searchsorted(self.ids, wanted, sorter=self._sorted)
        found = self._sorted[np.minimum(found, len(self.ids) - 1)] if len(self.ids) else found
        missing = np.flatnonzero(self.ids[found] != wanted) if len(self.ids) else np.arange(len(wanted))
        if len(missing):
            raise KeyError(f"{wanted[missing[0]].decode()!r} is not in {self.path}")
        return found.astype(np.int64)


def _lines(handle, start):
    """``(offset, line)`` of each line from byte ``start`` of a binary file."""
    offset = start
    for line in handle:
        yield offset, line
        offset += len(line)


def _parse_block(lines, fieldnames, first_line, path):
    """IDs and duration texts of a block of raw lines (line numbers from ``first_line``)."""
    id_col, duration_col = fieldnames.index("ID"), fieldnames.index("duration")
    ids, durations = [], []
    for number, fields in enumerate(csv.reader(line.decode("utf-8") for line in lines), start=first_line):
        if len(fields) != len(fieldnames):
            raise ManifestError(f"{path}, line {number}: expected {len(fieldnames)} fields, found {len(fields)}"
                                + (" (a quoted field spans lines?)" if len(fields) < len(fieldnames) else ""))
        if not fields[id_col]:
            raise ManifestError(f"{path}, line {number}: empty ID")
        ids.append(fields[id_col])
        durations.append(fields[duration_col])
    return ids, durations


def _durations(texts, path, first_line, ids):
    """Parse duration texts; the message of :func:`common.manifest.read_manifest` for a bad one."""
    try:
        values = np.array(texts, dtype=np.float64)
    except ValueError:
        values = None
    bad = np.arange(len(texts)) if values is None else np.flatnonzero(~np.isfinite(values) | (values < 0))
    for i in bad:
        text = texts[i]
        try:
            value = float(text)
        except ValueError:
            raise ManifestError(f"{path}, line {first_line + i}: duration {text!r} of ID {ids[i]!r} is not a "
                                "number") from None
        if not math.isfinite(value) or value < 0:
            raise ManifestError(f"{path}, line {first_line + i}: duration {text!r} of ID {ids[i]!r} must be "
                                "finite and >= 0")
    return values


def read_manifest_columns(path, block_rows=200_000):
    """Read a SpeechBrain CSV into :class:`ManifestColumns`, ``block_rows`` rows at a time.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ManifestError
        A missing column, a row with the wrong number of fields, an empty or duplicate ID,
        a duration that is not a finite number >= 0 (the message names the file and line).
    """
    path = Path(path)
    ids, durations, offsets = [], [], []
    with open(path, "rb") as handle:
        header = handle.readline()
        if not header.strip():
            raise ManifestError(f"{path}: empty file (no header line)")
        start = len(header)
        if header.startswith(b"\xef\xbb\xbf"):  # a byte-order mark is not part of the first column's name
            header = header[3:]
        fieldnames = [name.strip() for name in next(csv.reader([header.decode("utf-8")]))]
        missing = [c for c in REQUIRED_COLUMNS if c not in fieldnames]
        if missing:
            raise ManifestError(f"{path}: missing required column(s) {missing}; found {fieldnames}")
        block, block_offsets, line = [], [], 2
        for offset, raw in _lines(handle, start):
            if not raw.strip():
                continue
            block.append(raw)
            block_offsets.append(offset)
            if len(block) == block_rows:
                line = _add_block(block, block_offsets, fieldnames, line, path, ids, durations, offsets)
                block, block_offsets = [], []
        _add_block(block, block_offsets, fieldnames, line, path, ids, durations, offsets)
    columns = ManifestColumns(path, fieldnames, header, _concatenate(ids, "S1"), _concatenate(durations, np.float64),
                              _concatenate(offsets, np.int64))
    _check_unique(columns)
    return columns


def _add_block(block, block_offsets, fieldnames, line, path, ids, durations, offsets):
    """Parse one block into arrays appended to the lists; returns the next line number."""
    if block:
        block_ids, texts = _parse_block(block, fieldnames, line, path)
        durations.append(_durations(texts, path, line, block_ids))
        ids.append(np.array([i.encode("utf-8") for i in block_ids]))
        offsets.append(np.array(block_offsets, dtype=np.int64))
    return line + len(block)


def _concatenate(parts, dtype):
    if not parts:
        return np.zeros(0, dtype=dtype)
    width = max(p.dtype.itemsize for p in parts) if np.dtype(dtype).kind == "S" else None
    return np.concatenate([p.astype(f"S{width}") if width else p for p in parts])


def _check_unique(columns):
    """A duplicate ID is an error naming both lines (lines counted as rows from 2: no blank lines)."""
    order = columns._sorted
    same = np.flatnonzero(columns.ids[order[1:]] == columns.ids[order[:-1]])
    if len(same):  # the first repeat in file order, and where its ID first appeared
        second = int(order[same + 1].min())
        first = int(order[np.searchsorted(columns.ids, columns.ids[second], sorter=order)])
        raise ManifestError(f"{columns.path}, line {second + 2}: duplicate ID {columns.ids[second].decode()!r} "
                            f"(first on line {first + 2})")


def write_manifest_rows(columns, rows, path, block_rows=100_000):
    """Write rows ``rows`` (positions, in the given order) of ``columns.path`` to ``path``, bytes unchanged.

    Parameters
    ----------
    columns : ManifestColumns
        The source manifest.
    rows : array-like of int
        Positions to copy, in output order.
    path : str or os.PathLike
        Destination (written to a temporary name, then renamed).
    block_rows : int
        Rows read at a time (in file order, so the source is read forward).
    """
    rows = np.asarray(rows, dtype=np.int64)
    with open(columns.path, "rb") as source, atomic_path(path) as tmp, open(tmp, "wb") as out:
        out.write(columns.header if columns.header.endswith(b"\n") else columns.header + b"\n")
        for start in range(0, len(rows), block_rows):
            block = rows[start : start + block_rows]
            lines = [b""] * len(block)
            for i in np.argsort(columns.offsets[block], kind="stable"):
                source.seek(int(columns.offsets[block[i]]))
                line = source.readline()
                lines[i] = line if line.endswith(b"\n") else line + b"\n"
            out.write(b"".join(lines))


class IdColumn(Sequence):
    """A manifest's IDs as a read-only sequence of ``str``, decoded from the byte array when reached.

    Parameters
    ----------
    columns : ManifestColumns
        The manifest's columns.
    """

    def __init__(self, columns):
        self._columns = columns

    def __len__(self):
        return len(self._columns.ids)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [i.decode() for i in self._columns.ids[index].tolist()]
        return self._columns.ids[index].decode()

    def __iter__(self):
        ids = self._columns.ids
        for start in range(0, len(ids), _BLOCK_ROWS):
            yield from (i.decode() for i in ids[start : start + _BLOCK_ROWS].tolist())

    def __contains__(self, utt_id):
        try:
            self._columns.positions([utt_id])
        except KeyError:
            return False
        return True

    def sorted_slice(self, start, step):
        """``sorted(self)[start::step]`` without decoding the others (UTF-8 bytes sort as code points)."""
        return [i.decode() for i in self._columns.ids[self._columns._sorted[start::step]].tolist()]


class ColumnarManifest:
    """A manifest held as :class:`ManifestColumns`, read like :class:`common.manifest.Manifest`.

    IDs, durations and row offsets are arrays; a row's other fields are read from the
    file when asked for (:meth:`row`, :meth:`rows_of`, :meth:`column`, :meth:`wav_paths`),
    so no Python object is kept per row.

    Parameters
    ----------
    columns : ManifestColumns
        The manifest's columns.
    data_root : str or os.PathLike, optional
        Replacement for ``$data_root`` in the ``wav`` column.
    """

    def __init__(self, columns, data_root=None):
        self.columns = columns
        self.path = columns.path
        self.fieldnames = list(columns.fieldnames)
        self.durations = columns.durations
        self.data_root = None if data_root is None else str(data_root)
        self.ids = IdColumn(columns)

    def __len__(self):
        return len(self.columns)

    def __contains__(self, utt_id):
        return utt_id in self.ids

    @property
    def total_hours(self):
        """Sum of durations, in hours."""
        return self.columns.total_hours

    def positions(self, ids):
        """Row positions (``int64``, file order from 0) of ``ids``; ``KeyError`` for an unknown ID."""
        return self.columns.positions(list(ids))

    def durations_of(self, ids):
        """Durations (seconds, float64 array) of ``ids``, in the given order."""
        return self.durations[self.positions(ids)]

    def duration(self, utt_id):
        """Duration of ``utt_id`` in seconds."""
        return float(self.durations_of([utt_id])[0])

    def rows_of(self, ids):
        """Raw rows (dicts of strings) of ``ids``, in the given order (read in file order, a block at a time)."""
        for positions in _blocks(self.positions(ids)):
            yield from self._rows_at(positions)

    def row(self, utt_id):
        """Raw row (dict of strings) of ``utt_id``."""
        return next(self.rows_of([utt_id]))

    def _rows_at(self, positions):
        """Rows at ``positions`` (a block), in that order."""
        lines = [b""] * len(positions)
        with open(self.path, "rb") as source:
            for i in np.argsort(self.columns.offsets[positions], kind="stable"):
                source.seek(int(self.columns.offsets[positions[i]]))
                lines[i] = source.readline()
        for fields in csv.reader(line.decode("utf-8") for line in lines):
            yield dict(zip(self.fieldnames, fields))

    def column(self, name):
        """Values of column ``name`` in file order (an iterator over the file), or ``None`` if absent."""
        if name not in self.fieldnames:
            return None
        return (row[name] for row in self._rows_in_file_order())

    def _rows_in_file_order(self):
        positions = np.arange(len(self), dtype=np.int64)
        for block in _blocks(positions):
            yield from self._rows_at(block)

    def wav_paths(self, ids=None):
        """Audio paths of ``ids`` (default: every row, file order), ``$data_root`` replaced (an iterator)."""
        if ids is None:
            positions, rows = range(len(self)), self._rows_in_file_order()
        else:
            positions = self.positions(ids)
            rows = (row for block in _blocks(positions) for row in self._rows_at(block))
        for position, row in zip(positions, rows):
            yield self._resolve(row["wav"], int(position))

    def wav_path(self, utt_id):
        """Audio path of ``utt_id`` with ``$data_root`` replaced (:meth:`common.manifest.Manifest.wav_path`)."""
        return self._resolve(self.row(utt_id)["wav"], int(self.positions([utt_id])[0]))

    def _resolve(self, wav, position):
        if DATA_ROOT_PLACEHOLDER in wav:
            if self.data_root is None:
                raise ManifestError(f"{self.path}, line {position + 2}: wav {wav!r} uses {DATA_ROOT_PLACEHOLDER} "
                                    "but no data_root was given")
            wav = wav.replace(DATA_ROOT_PLACEHOLDER, self.data_root)
        return wav


def read_columnar_manifest(path, data_root=None):
    """:func:`read_manifest_columns` as a :class:`ColumnarManifest` (the checks and messages of ``read_manifest``)."""
    return ColumnarManifest(read_manifest_columns(path), data_root=data_root)


def _blocks(positions):
    """``positions`` in consecutive blocks of :data:`_BLOCK_ROWS`."""
    for start in range(0, len(positions), _BLOCK_ROWS):
        yield positions[start : start + _BLOCK_ROWS]
