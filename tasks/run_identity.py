"""Tie a run's checkpoints to what produced them, so that a resumed run never mixes two experiments.

A recipe describes its run by an *identity* (for distillation: the subset's
utterance IDs and the teacher; for a probe: the encoder and its training
split). The first run writes it to ``<save_folder>/run_identity.json``; a later
run with checkpoints in that folder must present the same identity, or stops
with both, before anything is trained or exported.
"""

import json
from pathlib import Path

from speechbrain.utils.distributed import ddp_barrier, if_main_process

from common.atomic import atomic_write_text
from common.hashing import settings_hash

IDENTITY_FILE = "run_identity.json"


class RunMismatchError(RuntimeError):
    """The checkpoints in a folder belong to another run (another subset, teacher or encoder)."""


def ids_hash(ids):
    """SHA-256 (16 hex digits) of a set of utterance IDs, whatever their order."""
    return settings_hash(sorted(ids), 16)


def check_run_identity(save_folder, identity, record=True):
    """Record ``identity`` with the run's checkpoints, or refuse checkpoints made for another.

    Parameters
    ----------
    save_folder : str or os.PathLike
        The checkpointer's folder.
    identity : dict
        JSON-serialisable description of what the checkpoints are trained on.
    record : bool
        ``False``: an early check of part of the identity (e.g. the selection
        asked for, before it runs and rewrites its outputs): only the keys
        given are compared, and nothing is written.

    Raises
    ------
    RunMismatchError
        When the folder's recorded identity differs, or when it holds
        checkpoints but no identity (a run started before identities were
        recorded): the message names the folder and both identities.

    Notes
    -----
    A recorded identity without checkpoints beside it (a run that stopped
    before its first epoch ended) binds nothing: it is replaced. Keys that an
    older run did not record are not compared, and are added to its record.
    """
    folder = Path(save_folder)
    path = folder / IDENTITY_FILE
    identity = json.loads(json.dumps(identity))  # as it will read back
    recorded = json.loads(path.read_text()) if path.exists() else None
    has_checkpoints = any(folder.glob("CKPT+*"))
    ddp_barrier()  # every process has read the folder before the main process writes to it: all decide alike
    if recorded is not None and has_checkpoints:
        # keys an older run did not record are not compared (it recorded what identified it then)
        compared = {key: recorded[key] for key in identity if key in recorded}
        if compared != {key: identity[key] for key in compared}:
            raise RunMismatchError(
                f"{folder} holds checkpoints of another run:\n  recorded: {json.dumps(compared, sort_keys=True)}\n"
                f"  this run: {json.dumps(identity, sort_keys=True)}\n"
                "use another output_folder (or experiment_name), or delete that folder to start again")
        if record and set(identity) - set(recorded):
            _write(path, {**recorded, **identity})
        return
    if has_checkpoints:
        raise RunMismatchError(f"{folder} holds checkpoints of a run that recorded no identity (started before "
                               "run identities were recorded): use another output_folder, or delete that folder")
    if record:  # a first run, or one that stopped before its first checkpoint: this run's identity from now on
        _write(path, identity)


def _write(path, identity):
    """Write ``identity`` to ``path`` on the main process; every process waits for it."""
    if if_main_process():
        atomic_write_text(path, json.dumps(identity, indent=2, sort_keys=True))
    ddp_barrier()
