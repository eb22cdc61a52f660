"""Teacher targets computed once and stored in fp16, for distillation on a fixed subset.

On a CPU the teacher's forward pass costs more than the student's training
step, and a frozen teacher gives the same hidden states every epoch, so they
are computed once per (teacher, layers, subset) on whole utterances and read
back per training crop. Storage: one flat float16 memory-mapped array
``[total_frames, N, D]`` and a JSON index; the index is written last, so a
cache without one is incomplete and rebuilt.
"""

import json
import logging
import os
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

logger = logging.getLogger(__name__)

DATA_FILE = "targets.f16"
INDEX_FILE = "index.json"


def build_target_cache(teacher, batches, layers, folder, total=None):
    """Run the teacher over ``batches`` and store the chosen layers.

    Parameters
    ----------
    teacher : lobes.encoder.FrozenTeacher
        Any module returning ``(hidden [L+1, B, T, D], frame_lengths)``.
    batches : iterable of (list of str, torch.Tensor, torch.Tensor)
        ``(ids, wavs [B, S], wav_lens [B])`` with whole utterances.
    layers : sequence of int
        Hidden-state indices to keep.
    folder : str or os.PathLike
        Cache folder (created; an existing complete cache is kept).
    total : int, optional
        Number of batches, for the progress bar.

    Returns
    -------
    TargetCache
    """
    folder = Path(folder)
    if (folder / INDEX_FILE).exists():
        logger.info("teacher-target cache found in %s", folder)
        return TargetCache(folder)
    folder.mkdir(parents=True, exist_ok=True)
    layers = [int(layer) for layer in layers]
    tmp = folder / f".{DATA_FILE}.partial"
    ids, offsets, lengths, dim = [], [], [], None
    with open(tmp, "wb") as handle:
        for batch_ids, wavs, wav_lens in tqdm(batches, total=total, desc="teacher targets", unit="batch"):
            hidden, frame_lengths = teacher(wavs, wav_lens)
            chosen = hidden[layers].permute(1, 2, 0, 3).to(torch.float16).numpy()  # [B, T, N, D]
            dim = chosen.shape[-1]
            for i, utt_id in enumerate(batch_ids):
                n = int(frame_lengths[i])
                offsets.append(sum(lengths))
                lengths.append(n)
                ids.append(utt_id)
                handle.write(np.ascontiguousarray(chosen[i, :n]).tobytes())
    os.replace(tmp, folder / DATA_FILE)
    index = {"ids": ids, "offsets": offsets, "lengths": lengths, "layers": layers, "dim": dim}
    index_tmp = folder / f".{INDEX_FILE}.partial"
    index_tmp.write_text(json.dumps(index))
    os.replace(index_tmp, folder / INDEX_FILE)
    logger.info("teacher-target cache: %d utterances, %d frames in %s", len(ids), sum(lengths), folder)
    return TargetCache(folder)


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

    def get(self, utt_id, start=0, n_frames=None):
        """Targets ``[n_frames, N, D]`` (float32) from frame ``start``."""
        if self._array is None:
            self._array = np.memmap(self.folder / DATA_FILE, dtype=np.float16, mode="r",
                                    shape=(self._total, len(self.layers), self.dim))
        offset, length = self._rows[utt_id]
        n_frames = length - start if n_frames is None else min(n_frames, length - start)
        return torch.from_numpy(np.asarray(self._array[offset + start: offset + start + n_frames], dtype=np.float32))
