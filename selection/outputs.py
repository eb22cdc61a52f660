"""Write a selection: subset manifest, s3prl and fairseq lists, provenance JSON.

Every writer goes through a temporary file renamed into place
(:mod:`common.atomic`), so an interrupted run leaves either the old file or
the complete new one.
"""

import csv
import io
import json
import os
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from common.atomic import atomic_write_text
from common.hashing import file_sha256


def write_subset_csv(pool, ids, path):
    """Write the selected rows of the pool manifest, unchanged, in ``ids`` order.

    Parameters
    ----------
    pool : common.manifest.Manifest or common.manifest_columns.ColumnarManifest
        Pool manifest (columns and raw rows, ``$data_root`` kept).
    ids : sequence of str
        Selected IDs.
    path : str or os.PathLike
        Destination CSV.
    """
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=pool.fieldnames, lineterminator="\n")
    writer.writeheader()
    writer.writerows(pool.rows_of(ids))
    atomic_write_text(path, buffer.getvalue())


def count_samples(manifest, ids):
    """Samples in each file (from the file header, at the file's own rate).

    Returns
    -------
    list of int
        One count per ID, in ``ids`` order.
    """
    return [sf.info(path).frames for path in manifest.wav_paths(ids)]


def _relative_paths(manifest, ids, root):
    return [os.path.relpath(os.path.abspath(path), os.path.abspath(root)) for path in manifest.wav_paths(ids)]


def write_fairseq_tsv(manifest, ids, path, root, num_samples=None):
    """Write a fairseq audio list: the root folder, then ``relative_path<TAB>num_samples``.

    Parameters
    ----------
    manifest : common.manifest.Manifest
        Where paths come from (``data_root`` set if paths use the placeholder).
    ids : sequence of str
        Utterances to list, in order.
    path : str or os.PathLike
        Destination ``.tsv``.
    root : str or os.PathLike
        Folder the listed paths are relative to (written on the first line, absolute).
    num_samples : sequence of int, optional
        Sample counts (default: read from the files with :func:`count_samples`).
    """
    counts = count_samples(manifest, ids) if num_samples is None else list(num_samples)
    lines = [os.path.abspath(root)]
    lines += [f"{rel}\t{n}" for rel, n in zip(_relative_paths(manifest, ids, root), counts)]
    atomic_write_text(path, "\n".join(lines) + "\n")


def write_len_for_bucket_csv(manifest, ids, path, root, num_samples=None):
    """Write an s3prl ``len_for_bucket`` CSV: ``,file_path,length,label``.

    ``length`` is in samples, ``file_path`` relative to ``root``, the first
    (unnamed) column a running index; ``label`` is the ``wrd`` column when the
    manifest has one, else empty (as s3prl's own preprocessing writes it).

    Parameters
    ----------
    manifest, ids, path, root, num_samples
        As for :func:`write_fairseq_tsv`.
    """
    counts = count_samples(manifest, ids) if num_samples is None else list(num_samples)
    labels = [row.get("wrd", "") for row in manifest.rows_of(ids)]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["", "file_path", "length", "label"])
    for index, (rel, n, label) in enumerate(zip(_relative_paths(manifest, ids, root), counts, labels)):
        writer.writerow([index, rel, n, label])
    atomic_write_text(path, buffer.getvalue())


def _plain(value):
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    return value


def _input_record(path):
    """Path and SHA-256 of an input file; names and total size of a list of them."""
    if isinstance(path, (list, tuple)):
        return {"pieces": [Path(p).name for p in path], "bytes": sum(Path(p).stat().st_size for p in path)}
    return {"path": str(path), "sha256": file_sha256(path)}


def write_selection_json(path, result, inputs, seed=None, extra=None):
    """Write the provenance of a selection.

    Parameters
    ----------
    path : str or os.PathLike
        Destination ``.json``.
    result : selection.selectors.base.SelectionResult
        The selection.
    inputs : dict
        ``{name: path}`` of the input files (pool manifest, units, target...);
        each is recorded with its SHA-256. A list of paths (units in pieces
        spread over processes) is recorded by the files' names and sizes only.
    seed : int, optional
        Seed of the run.
    extra : dict, optional
        More figures to record (unit quality, divergences, ...).
    """
    record = {
        "selector": result.selector,
        "settings": result.settings,
        "budget_hours": result.budget_hours,
        "hours": result.hours,
        "utterances": result.n_utterances,
        "diagnostics": result.diagnostics,
        "seed": seed,
        "inputs": {name: _input_record(p) for name, p in inputs.items()},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if extra:
        record.update(extra)
    atomic_write_text(path, json.dumps(_plain(record), indent=2) + "\n")
