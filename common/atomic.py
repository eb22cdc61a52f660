"""Write files and folders atomically: to a temporary name in the same folder, then rename.

A run killed half-way never leaves a truncated artefact under the final name, so a
stage that checks "does the output exist?" can be resumed safely. Temporary names
are hidden and carry :data:`TEMP_MARK` (``.<name>.<random>.partial<suffix>``), so
:func:`remove_temporaries` can clear what a killed run left behind.
"""

import contextlib
import csv
import os
import shutil
import tempfile
from pathlib import Path

TEMP_MARK = ".partial"


def _umask():
    """The process's file-mode creation mask (from ``/proc/self/status`` where there is one: nothing is changed)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # elsewhere: read by setting it and putting it back
    os.umask(mask)
    return mask


def as_created(path, folder=False):
    """Give ``path`` the mode a plain ``open``/``mkdir`` would (0666/0777 less the umask).

    ``tempfile`` makes its files 0600 and folders 0700; an output renamed from
    one keeps that mode, unlike every other file a run writes.
    """
    os.chmod(path, (0o777 if folder else 0o666) & ~_umask())


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    Parameters
    ----------
    path : str or os.PathLike
        Final destination. Its parent folder is created if needed.

    Yields
    ------
    pathlib.Path
        Temporary path to write to (same folder and suffix, so writers that
        look at the extension behave as for ``path``).

    Notes
    -----
    On an exception the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f"{TEMP_MARK}{path.suffix}")
    os.close(handle)
    tmp = Path(tmp)
    try:
        yield tmp
        if tmp.exists():  # a writer may have replaced it (numpy, torch): the mode is set on what is renamed
            as_created(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path, text):
    """Write ``text`` (UTF-8) to ``path`` atomically.

    Parameters
    ----------
    path : str or os.PathLike
        Destination file.
    text : str
        Content.
    """
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_csv(path, rows, fieldnames):
    """Write ``rows`` (dicts) as a CSV with a header to ``path`` atomically.

    Parameters
    ----------
    path : str or os.PathLike
        Destination file.
    rows : iterable of dict
        One dict per row, keyed by ``fieldnames``.
    fieldnames : sequence of str
        Columns, in order.

    Example
    -------
    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "m.csv"
    >>> atomic_write_csv(target, [{"ID": "a", "duration": 1.5}], ["ID", "duration"])
    >>> target.read_text().splitlines()
    ['ID,duration', 'a,1.5']
    """
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(fieldnames))
        writer.writeheader()
        writer.writerows(rows)


@contextlib.contextmanager
def atomic_folder(path):
    """Yield a temporary folder next to ``path``; it replaces ``path`` on success.

    Parameters
    ----------
    path : str or os.PathLike
        Final folder (a previous one is removed when the new one is complete).

    Yields
    ------
    pathlib.Path
        Empty temporary folder to fill.

    Example
    -------
    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "model"
    >>> with atomic_folder(target) as tmp:
    ...     _ = (tmp / "config.json").write_text("{}")
    >>> sorted(p.name for p in target.iterdir())
    ['config.json']
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_MARK))
    try:
        yield tmp
        as_created(tmp, folder=True)
        if path.exists():
            shutil.rmtree(path)
        tmp.rename(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def remove_temporaries(folder):
    """Remove the temporary files and folders that killed runs left under ``folder`` (recursively).

    Call it where no other process is writing into ``folder``.

    Returns
    -------
    int
        How many were removed.
    """
    removed = 0
    for path in sorted(Path(folder).rglob(f".*{TEMP_MARK}*"), key=lambda p: len(p.parts)):
        if not path.exists():  # inside a temporary folder removed just before
            continue
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
        removed += 1
    return removed
