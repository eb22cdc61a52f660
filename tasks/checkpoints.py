"""Checkpoints that a killed run cannot leave half-written for the next run to resume from.

SpeechBrain's Checkpointer writes a checkpoint's ``CKPT.yaml`` first and its
parameter files after it, so a process killed while saving leaves a folder
that looks like a checkpoint and is not one. A run that marks its checkpoints
(:func:`mark_checkpoints`) saves, after every other part, a completion mark
(``complete.ckpt``); the next run discards that folder's checkpoints without one
(:func:`discard_incomplete_checkpoints`) and resumes from the last complete one.
Folders of runs that never marked their checkpoints are left as they are.
"""

import logging
import shutil
from pathlib import Path

from speechbrain.utils.checkpoints import mark_as_loader, mark_as_saver, register_checkpoint_hooks
from speechbrain.utils.distributed import ddp_barrier, if_main_process

logger = logging.getLogger(__name__)

MARK = "complete"  # the recoverable's name: its file is complete.ckpt
MARKED_FLAG = "checkpoints_marked"  # in the checkpoint folder: this run's checkpoints carry the mark


@register_checkpoint_hooks
class CompletionMark:
    """A recoverable with nothing to restore; its file, saved last, says the checkpoint is whole."""

    @mark_as_saver
    def _save(self, path):
        """Write the mark, then flag the folder: from now on its unmarked checkpoints are interrupted saves."""
        if if_main_process():
            Path(path).write_text("complete\n", encoding="utf-8")
            (Path(path).parents[1] / MARKED_FLAG).touch()

    @mark_as_loader
    def _recover(self, path, end_of_epoch=True):
        """Nothing to restore."""


def mark_checkpoints(checkpointer):
    """Make every checkpoint ``checkpointer`` saves from now on end with a completion mark.

    Call it once every other recoverable is registered (after the Brain's
    ``on_fit_start``), so that the mark is saved last. The folder is flagged
    as marking (``checkpoints_marked``) by its first marked save only: the
    checkpoints an older run left unmarked are not taken for interrupted saves.

    Parameters
    ----------
    checkpointer : speechbrain.utils.checkpoints.Checkpointer
        The run's checkpointer.
    """
    checkpointer.add_recoverable(MARK, CompletionMark())


def discard_incomplete_checkpoints(save_folder):
    """Remove the checkpoints of a marking run that lack the mark (a save a kill interrupted).

    Returns
    -------
    int
        Checkpoints removed.

    Example
    -------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> (folder / MARKED_FLAG).touch(); (folder / "CKPT+1").mkdir(); (folder / "CKPT+2").mkdir()
    >>> _ = (folder / "CKPT+1" / f"{MARK}.ckpt").write_text("complete")
    >>> discard_incomplete_checkpoints(folder), sorted(p.name for p in folder.glob("CKPT+*"))
    (1, ['CKPT+1'])
    """
    folder = Path(save_folder)
    if not (folder / MARKED_FLAG).exists():
        return 0
    incomplete = [path for path in folder.glob("CKPT+*") if not (path / f"{MARK}.ckpt").exists()]
    ddp_barrier()  # every process has listed the folder before it changes
    if if_main_process():
        for path in incomplete:
            logger.warning("removing %s: a checkpoint whose save was interrupted", path)
            shutil.rmtree(path)
    ddp_barrier()
    return len(incomplete)
