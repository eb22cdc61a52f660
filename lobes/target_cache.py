"""Hidden states of a frozen encoder computed once and stored in fp16.

On a CPU a frozen encoder's forward pass costs more than the training step
that uses it, and it gives the same hidden states every epoch, so they are
computed once and read back per item: teacher targets for distillation (a few
layers of whole utterances, read per training crop) and probe features
(every layer, see :mod:`lobes.feature_cache`). Storage: one flat float16
memory-mapped array ``[total_frames, N, D]`` and a JSON index; the index is
written last, so a cache without one is incomplete and rebuilt.
"""

import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from common.atomic import TEMP_MARK, atomic_write_text

logger = logging.getLogger(__name__)

DATA_FILE = "targets.f16"
INDEX_FILE = "index.json"


def module_device(module):
    """The device of a module's first parameter or buffer (``cpu`` for a module with neither).

    Example
    -------
    >>> module_device(torch.nn.Linear(2, 2)), module_device(torch.nn.Identity())
    (device(type='cpu'), device(type='cpu'))
    """
    for tensor in (*module.parameters(), *module.buffers()):
        return tensor.device
    return torch.device("cpu")


def build_target_cache(teacher, batches, layers, folder, total=None, desc="teacher targets"):
    """Run the teacher over ``batches`` and store the chosen layers.

    Parameters
    ----------
    teacher : lobes.encoder.FrozenTeacher
        Any module returning ``(hidden [L+1, B, T, D], frame_lengths)``; it
        runs where it is (the batches are moved to its device).
    batches : iterable of (list of str, torch.Tensor, torch.Tensor)
        ``(ids, wavs [B, S], wav_lens [B])``: the items to store, by ID
        (whole utterances, or crops with IDs of their own).
    layers : sequence of int or None
        Hidden-state indices to keep; ``None`` keeps them all.
    folder : str or os.PathLike
        Cache folder (created; an existing complete cache is kept).
    total : int, optional
        Number of batches, for the progress bar.
    desc : str
        Progress-bar label.

    Returns
    -------
    TargetCache
    """

    device = module_device(teacher)

    def named(wavs, wav_lens):
        hidden, frame_lengths = teacher(wavs.to(device), wav_lens.to(device))
        return {"hidden": hidden}, frame_lengths.cpu()

    return build_target_caches(named, batches, {"hidden": (layers, folder)}, total, desc)["hidden"]


def build_target_caches(encoder, batches, outputs, total=None, desc="teacher targets"):
    """Run ``encoder`` once per batch and store several of its outputs, each in a cache of its own.

    Parameters
    ----------
    encoder : callable
        ``encoder(wavs, wav_lens) -> ({name: hidden [L, B, T, D]}, frame_lengths)``;
        every output has the same frames (e.g. a teacher's hidden states and
        its CNN's output, :meth:`lobes.encoder.FrozenTeacher.forward_with_cnn`).
    batches : iterable of (list of str, torch.Tensor, torch.Tensor)
        As in :func:`build_target_cache`.
    outputs : dict
        ``{name: (layers, folder)}``: which layers of which output go to which
        cache folder (``layers`` ``None``: all). Complete caches are kept; the
        encoder runs only when one is missing.
    total, desc
        As in :func:`build_target_cache`.

    Returns
    -------
    dict
        ``{name: TargetCache}``.
    """
    folders = {name: Path(folder) for name, (_, folder) in outputs.items()}
    missing = [name for name, folder in folders.items() if not (folder / INDEX_FILE).exists()]
    if missing:
        for parent in {folders[name].parent for name in missing}:  # this process writes there now
            clear_incomplete(parent)
        writers = {name: _CacheWriter(folders[name], outputs[name][0]) for name in missing}
        try:
            for batch_ids, wavs, wav_lens in tqdm(batches, total=total, desc=desc, unit="batch"):
                hidden, frame_lengths = encoder(wavs, wav_lens)
                for name, writer in writers.items():
                    writer.add(batch_ids, hidden[name], frame_lengths)
        finally:
            for writer in writers.values():
                writer.handle.close()
        for name, writer in writers.items():
            writer.finish()
            logger.info("%s cache (%s): %d items, %d frames in %s", desc, name, len(writer.ids), writer.stored,
                        folders[name])
    for name in set(folders) - set(missing):
        logger.info("%s cache (%s) found in %s", desc, name, folders[name])
    return {name: TargetCache(folder) for name, folder in folders.items()}


def clear_incomplete(parent, idle_seconds=600):
    """Remove what interrupted cache builds left in ``parent``, whatever their keys.

    A temporary data file (:data:`common.atomic.TEMP_MARK`) that nothing has
    written to for ``idle_seconds`` is removed, then the folders left empty: a
    build under way appends to its file all the time, so caches that other
    runs are writing into the same folder (shared probe features) are kept.

    Parameters
    ----------
    parent : str or os.PathLike
        The folder holding cache folders.
    idle_seconds : float
        How long a temporary file must have been left alone.

    Returns
    -------
    int
        Files and folders removed.

    Example
    -------
    >>> import tempfile
    >>> parent = Path(tempfile.mkdtemp())
    >>> (parent / "old-key").mkdir(); left = parent / "old-key" / f".{DATA_FILE}{TEMP_MARK}"
    >>> _ = left.write_bytes(b"0"); os.utime(left, (0, 0))
    >>> clear_incomplete(parent), list(parent.iterdir())
    (2, [])
    """
    parent = Path(parent)
    if not parent.is_dir():
        return 0
    now = time.time()
    stale = [path for path in parent.glob(f"*/.*{TEMP_MARK}*")
             if path.is_file() and now - path.stat().st_mtime > idle_seconds]
    for path in stale:
        path.unlink()
    emptied = [folder for folder in parent.iterdir() if folder.is_dir() and not any(folder.iterdir())]
    for folder in emptied:
        folder.rmdir()
    if stale or emptied:
        logger.info("removed %d files of interrupted cache builds from %s", len(stale), parent)
    return len(stale) + len(emptied)


class _CacheWriter:
    """Appends chosen layers of hidden states to a hidden temporary file; ``finish`` publishes them (renames)."""

    def __init__(self, folder, layers):
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.layers = None if layers is None else [int(layer) for layer in layers]
        self.tmp = folder / f".{DATA_FILE}{TEMP_MARK}"  # streamed, then renamed (see common.atomic)
        self.handle = open(self.tmp, "wb")
        self.ids, self.offsets, self.lengths, self.dim, self.stored = [], [], [], None, 0

    def add(self, batch_ids, hidden, frame_lengths):
        if self.layers is None:
            self.layers = list(range(hidden.shape[0]))
        chosen = hidden[self.layers].permute(1, 2, 0, 3).to(torch.float16).cpu().numpy()  # [B, T, N, D]
        self.dim = chosen.shape[-1]
        for i, utt_id in enumerate(batch_ids):
            n = int(frame_lengths[i])
            self.offsets.append(self.stored)
            self.lengths.append(n)
            self.ids.append(utt_id)
            self.stored += n
            self.handle.write(np.ascontiguousarray(chosen[i, :n]).tobytes())

    def finish(self):
        """Data file first, index last: a folder without an index is incomplete and rebuilt."""
        os.replace(self.tmp, self.folder / DATA_FILE)
        index = {"ids": self.ids, "offsets": self.offsets, "lengths": self.lengths, "layers": self.layers,
                 "dim": self.dim}
        atomic_write_text(self.folder / INDEX_FILE, json.dumps(index))


class TargetCache:
    """Read access to a cache written by :func:`build_target_cache`.

    The memory map is opened lazily in each process (DataLoader workers included).
    """

    def __init__(self, folder):
        self.folder = Path(folder)
        index = json.loads((self.folder / INDEX_FILE).read_text())
        self.layers = index["layers"]
        self.dim = index["dim"]
        self._rows = {utt_id: (o, n) for utt_id, o, n in zip(index["ids"], index["offsets"], index["lengths"])}
        self._total = sum(index["lengths"])
        self._array = None

    def __contains__(self, utt_id):
        return utt_id in self._rows

    def __len__(self):
        return len(self._rows)

    def __getstate__(self):
        return {**self.__dict__, "_array": None}

    def frames(self, utt_id):
        """Number of teacher frames stored for ``utt_id``."""
        return self._rows[utt_id][1]

    def layer_statistics(self, chunk_frames=1 << 16):
        """Mean and standard deviation of every stored layer, per dimension, over all frames.

        Computed in float64, ``chunk_frames`` frames at a time.

        Returns
        -------
        (torch.Tensor, torch.Tensor)
            ``[N, D]`` float32 each.
        """
        total = np.zeros((len(self.layers), self.dim))
        squares = np.zeros_like(total)
        data = np.memmap(self.folder / DATA_FILE, dtype=np.float16, mode="r",
                         shape=(self._total, len(self.layers), self.dim))
        for first in range(0, self._total, chunk_frames):
            chunk = np.asarray(data[first: first + chunk_frames], dtype=np.float64)
            total += chunk.sum(0)
            squares += (chunk ** 2).sum(0)
        mean = total / max(self._total, 1)
        std = np.sqrt(np.maximum(squares / max(self._total, 1) - mean ** 2, 0.0))
        return torch.from_numpy(mean).float(), torch.from_numpy(std).float()

    def get(self, utt_id, start=0, n_frames=None):
        """Targets ``[n_frames, N, D]`` (float32) from frame ``start``."""
        if self._array is None:
            self._array = np.memmap(self.folder / DATA_FILE, dtype=np.float16, mode="r",
                                    shape=(self._total, len(self.layers), self.dim))
        offset, length = self._rows[utt_id]
        n_frames = length - start if n_frames is None else min(n_frames, length - start)
        return torch.from_numpy(np.asarray(self._array[offset + start: offset + start + n_frames], dtype=np.float32))
