"""A manifest's IDs, durations and row positions as arrays: pools of millions of rows without a dict per row.

:func:`read_manifest_columns` streams a SpeechBrain CSV in blocks of rows and keeps
three arrays (IDs as UTF-8 bytes, durations, the byte offset of each row), with the
checks and messages of :func:`common.manifest.read_manifest`;
:func:`write_manifest_rows` copies chosen rows, byte for byte, into a new manifest.
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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.atomic import atomic_path
from common.manifest import REQUIRED_COLUMNS, ManifestError


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
