"""Content hashes: of a file's bytes, and of settings (JSON), for cache keys and provenance."""

import hashlib
import json
import os


def file_sha256(path, block=1 << 20):
    """Hex SHA-256 of a file's bytes, read ``block`` bytes at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for piece in iter(lambda: handle.read(block), b""):
            digest.update(piece)
    return digest.hexdigest()


def files_state(paths):
    """Hex SHA-256 of each file's path, size and modification time (``missing`` for an absent file).

    The cache rule of every stage that reads audio: a file replaced, rewritten
    or restored changes its size or modification time, hence the key, so what
    was computed from the old file is not reused. Cheap (one ``stat`` per file).

    Example
    -------
    >>> files_state(["/no/such/file"]) == files_state(["/no/such/file"])
    True
    """
    digest = hashlib.sha256()
    for path in paths:
        try:
            stat = os.stat(path)
            digest.update(f"{path}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
        except FileNotFoundError:
            digest.update(f"{path}\tmissing\n".encode())
    return digest.hexdigest()


def settings_hash(settings, length=None):
    """Hex SHA-256 of ``settings`` as canonical JSON (sorted keys; other types by ``str``).

    Parameters
    ----------
    settings : object
        Anything JSON can hold (values it cannot are written with ``str``).
    length : int, optional
        Keep the first ``length`` hex digits.

    Example
    -------
    >>> settings_hash({"b": 1, "a": [2, 3]}, 12) == settings_hash({"a": [2, 3], "b": 1}, 12)
    True
    """
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()
    return digest if length is None else digest[:length]
