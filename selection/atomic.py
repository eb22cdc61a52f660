"""Write files atomically: to a temporary file in the same folder, then ``os.replace``.

A run killed half-way never leaves a truncated artefact under the final name, so a
stage that checks "does the output exist?" can be resumed safely.
"""

import contextlib
import csv
import os
import tempfile
from pathlib import Path


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
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(handle)
    tmp = Path(tmp)
    try:
        yield tmp
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
