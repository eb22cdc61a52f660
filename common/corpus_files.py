"""Reading a corpus tree for its preparation script: listings, audio durations, the record of what is done.

Shared by the dataset preparation scripts (``recipes/<Dataset>/<dataset>_prepare.py``),
which walk folders of many thousands of files: ``os.scandir`` listings (no stat per
entry beyond what scandir gives) and durations from the audio header only.
"""

import json
import logging
import os
from pathlib import Path

import soundfile as sf

logger = logging.getLogger(__name__)


def list_subfolders(folder):
    """Sorted names of the visible (not dot-prefixed) sub-folders of ``folder``."""
    with os.scandir(folder) as entries:
        return sorted(entry.name for entry in entries if entry.is_dir() and not entry.name.startswith("."))


def list_files(folder, suffix=""):
    """Sorted names of the visible files of ``folder`` that end with ``suffix``."""
    with os.scandir(folder) as entries:
        return sorted(entry.name for entry in entries
                      if entry.is_file() and not entry.name.startswith(".") and entry.name.endswith(suffix))


def audio_duration(path):
    """Duration in seconds from the audio file's header.

    Raises
    ------
    RuntimeError
        Naming ``path`` when soundfile cannot open it.
    """
    try:
        info = sf.info(str(path))
    except RuntimeError as exc:
        raise RuntimeError(f"cannot read audio file {path}: {exc}") from exc
    return info.frames / info.samplerate


def load_record(path, data_folder, **empty):
    """The JSON record of a previous preparation, or a new one when missing or made from another folder.

    Parameters
    ----------
    path : pathlib.Path
        The record (``<dataset>_prepare.json`` in the manifest folder).
    data_folder : str or os.PathLike
        The corpus folder being prepared; a record of another folder is discarded.
    **empty
        The other keys of a new record.

    Returns
    -------
    dict
        With ``data_folder`` (resolved, as a string).
    """
    source = str(Path(data_folder).resolve())
    if path.exists():
        record = json.loads(path.read_text(encoding="utf-8"))
        if record.get("data_folder") == source:
            return record
        logger.info("%s was prepared from %s: preparing again from %s", path.parent, record.get("data_folder"), source)
    return {"data_folder": source, **empty}
