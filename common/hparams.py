"""HyperPyYAML files that extend a base file: ``extends: <path>`` names the file whose keys they change.

A variant file holds only what differs from its base. Loading it reads the
base (itself possibly a variant: chains are followed), replaces each top-level
key the variant sets (the whole value: a variant that sets ``student_class``
gives the whole block), appends the keys the base lacks, then hands the merged
text to HyperPyYAML with the command line's overrides, as for any hparams file.
References (``!ref <key>``) resolve over the merged file, so a base key that
refers to ``<teacher_source>`` follows the variant's teacher.
"""

import io
from pathlib import Path

import ruamel.yaml
from hyperpyyaml import load_hyperpyyaml, resolve_references

EXTENDS = "extends"


def _round_trip():
    yaml = ruamel.yaml.YAML()  # round trip: the tags (!ref, !new:, ...) are kept as written
    yaml.width = 4096
    yaml.boolean_representation = ["False", "True"]  # as the recipes write them
    return yaml


def merged_tree(path, _seen=()):
    """The top-level mapping of ``path`` with its ``extends:`` chain applied (tags kept, not resolved).

    Parameters
    ----------
    path : str or os.PathLike
        A HyperPyYAML file; ``extends`` (optional) is a path relative to it.

    Returns
    -------
    ruamel.yaml.comments.CommentedMap

    Raises
    ------
    ValueError
        For a chain that comes back to a file already in it, or an
        ``extends`` that is not a path to a file.
    """
    path = Path(path).resolve()
    if path in _seen:
        raise ValueError(f"{path}: 'extends' comes back to a file of its own chain: "
                         f"{' -> '.join(str(p) for p in (*_seen, path))}")
    with open(path, encoding="utf-8") as handle:
        tree = _round_trip().load(handle)
    if tree is None or EXTENDS not in tree:
        return tree if tree is not None else ruamel.yaml.comments.CommentedMap()
    base_path = path.parent / str(tree.pop(EXTENDS))
    if not base_path.is_file():
        raise ValueError(f"{path}: extends: {base_path} is not a file (the path is relative to {path.parent})")
    return _merged(merged_tree(base_path, (*_seen, path)), tree)


def _merged(base, variant):
    """``base`` with ``variant``'s keys: a key of the base keeps its place, a new key goes just before
    the next key of the variant that the base has (last when none), so a new key is defined before
    the base's keys that the variant makes refer to it (HyperPyYAML resolves a chain of ``!ref`` in order).
    """
    merged = ruamel.yaml.comments.CommentedMap()
    pending = []  # new keys waiting for the next key the base has
    placed_before = {}
    for key, value in variant.items():
        if key in base:
            placed_before[key] = pending
            pending = []
        else:
            pending.append(key)
    for key, value in base.items():
        for new_key in placed_before.get(key, []):
            merged[new_key] = variant[new_key]
        merged[key] = variant[key] if key in variant else value
    for new_key in pending:
        merged[new_key] = variant[new_key]
    return merged


def merged_text(path):
    """``path`` as one HyperPyYAML document, its ``extends:`` chain applied (see :func:`merged_tree`).

    Example
    -------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "base.yaml").write_text("a: 1\\nb: !ref <a>\\n")
    >>> _ = (folder / "variant.yaml").write_text("extends: base.yaml\\na: 2\\nc: 3\\n")
    >>> print(merged_text(folder / "variant.yaml"), end="")
    a: 2
    b: !ref <a>
    c: 3
    """
    stream = io.StringIO()
    _round_trip().dump(merged_tree(path), stream)
    return stream.getvalue()


def load_hparams(path, overrides=None):
    """Load a HyperPyYAML file that may extend a base (``extends:``), with ``overrides`` applied last.

    Parameters
    ----------
    path : str or os.PathLike
        The hparams file.
    overrides : dict or str, optional
        As for :func:`hyperpyyaml.load_hyperpyyaml` (the command line's ``--key=value``).

    Returns
    -------
    dict
        The loaded hyperparameters (objects created).

    Example
    -------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "base.yaml").write_text("a: 1\\nb: !ref <a>\\n")
    >>> _ = (folder / "variant.yaml").write_text("extends: base.yaml\\na: 2\\n")
    >>> load_hparams(folder / "variant.yaml", {"a": 5})
    {'a': 5, 'b': 5}
    """
    return load_hyperpyyaml(merged_text(path), overrides)


def resolved_text(path, overrides=None):
    """The merged file with its references and ``overrides`` resolved, as a YAML string (to save with a run)."""
    return resolve_references(merged_text(path), overrides).getvalue()
