"""Selection with each process holding one piece of its shard of the units at a time.

For a :class:`~selection.selectors.base.ShardableSelector` (random, longest,
contrastive, DSIR), every process of a process group
(:mod:`selection.collectives`):

1. counts the statistics of its shard of the pool's and the target's units, piece
   by piece (:meth:`~selection.selectors.base.ShardableSelector.count`); the
   processes sum them (one all-reduce);
2. scores its own utterances from the summed statistics, piece by piece, and keeps
   ``(pool row, seconds, score)`` of each;
3. sends those three numbers per utterance to process 0, which ranks the whole
   pool and fills the budget (:meth:`~selection.selectors.base.ShardableSelector.rank_scores`,
   :meth:`~selection.selectors.base.Selector.fill`).

Memory per process is one piece of units, the statistics (fixed by the selector's
settings: ``2**hash_bits`` slots) and, on process 0, 24 bytes per pool utterance.
The sums are of integer counts, so the subset is the one a single process selects
from the whole unit set, on any number of processes.

Each process keeps its summed statistics and its scores in ``cache_folder`` under
the selection's key, so a re-run after a killed process resumes at the step each
process had reached. A process that fails (a piece that cannot be read) makes every
process stop with :class:`~selection.collectives.ShardFailure` naming it and its file.
"""

import logging
from pathlib import Path

import numpy as np

from common.atomic import atomic_path
from selection.units import UnitSet

logger = logging.getLogger(__name__)


class UnitShard:
    """The unit files of one process's shard, read one at a time.

    Parameters
    ----------
    paths : sequence of str or os.PathLike
        Unit sets (:meth:`selection.units.UnitSet.save`), in order.

    Attributes
    ----------
    reading : pathlib.Path or None
        The file being read (named when something fails).
    """

    def __init__(self, paths):
        self.paths = [Path(p) for p in paths]
        self.reading = None

    def pieces(self):
        """Each file's :class:`~selection.units.UnitSet`, loaded when reached."""
        for path in self.paths:
            self.reading = path
            yield UnitSet.load(path)
        self.reading = None

    def ids(self):
        """Each file's utterance IDs (without reading its units)."""
        for path in self.paths:
            self.reading = path
            with np.load(path, allow_pickle=False) as data:
                yield data["ids"].tolist()
        self.reading = None

    def describe(self):
        """The files, for messages."""
        return ", ".join(str(p) for p in self.paths) or "no files"


class ShardCache:
    """This process's summed statistics and scores of one selection, in files named after its key."""

    def __init__(self, folder, key, rank, world_size):
        self.folder = None if folder is None else Path(folder)
        self.stem = f"sharded-{key}.shard-{rank:02d}-of-{world_size:02d}"

    def _path(self, what):
        return self.folder / f"{self.stem}.{what}.npz"

    def load(self, what):
        """The arrays saved as ``what``, or ``None``."""
        if self.folder is None or not self._path(what).exists():
            return None
        with np.load(self._path(what), allow_pickle=False) as data:
            return {name: data[name] for name in data.files}

    def save(self, what, **arrays):
        """Save ``arrays`` as ``what`` (atomically)."""
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(self._path(what)) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, **arrays)


def collective_step(group, what, shard, work):
    """Run ``work()`` on every process; if any fails, all raise :class:`ShardFailure` naming who and which file."""
    error, value = None, None
    try:
        value = work()
    except Exception as err:  # noqa: BLE001 - reported to every process, then raised there
        error = (f"process {group.rank} of {group.world_size}, {what}, file {shard.reading or shard.describe()}: "
                 f"{type(err).__name__}: {err}")
        logger.error(error)
    group.check(error)
    return value


def sharded_scores(selector, pool_shard, target_shard, rows_of, n_clusters, group, cache=None):
    """Steps 1 and 2 (module notes) on this process: its candidates' pool rows and scores.

    Parameters
    ----------
    selector : selection.selectors.base.ShardableSelector
        The selector.
    pool_shard, target_shard : UnitShard
        This process's units of the pool and of the target (``target_shard`` may hold no file).
    rows_of : callable
        Pool row (``int64``, position in the pool manifest) of each of a list of IDs.
    n_clusters : int
        Codebook size.
    group : selection.collectives.SingleProcess
        The processes.
    cache : ShardCache, optional
        Where this process keeps its statistics and scores.

    Returns
    -------
    rows : numpy.ndarray
        ``int64`` pool rows of this process's candidates (those with units).
    scores : numpy.ndarray or None
        Their scores (``None``: the selector has no scorer).
    """
    cache = cache or ShardCache(None, "", group.rank, group.world_size)
    done = cache.load("scores")
    if all(group.all_gather_object(done is not None)):
        logger.info("sharded selection: the scores of every shard are done, keeping them")
        return done["rows"], (done["scores"] if done["has_scores"] else None)
    counted = cache.load("counts")
    if counted is None:
        counts = collective_step(group, "counting", pool_shard, lambda: selector.count(
            pool_shard.pieces(), target_shard.pieces() if selector.needs_target else [], n_clusters))
        cache.save("counts", counts=counts)
    else:
        logger.info("sharded selection: the counts of shard %d are done, keeping them", group.rank)
        counts = collective_step(group, "counting", pool_shard, lambda: counted["counts"])
    statistics = group.all_reduce_sum(counts)
    if done is not None:
        return done["rows"], (done["scores"] if done["has_scores"] else None)
    score = selector.scorer(statistics, n_clusters)

    def rows_and_scores():
        if score is None:
            return np.concatenate([rows_of(ids) for ids in pool_shard.ids()] or [np.zeros(0, np.int64)]), None
        rows, scores = [np.zeros(0, dtype=np.int64)], [np.zeros(0)]
        for units in pool_shard.pieces():
            rows.append(rows_of(units.ids))
            scores.append(score(units))
        return np.concatenate(rows), np.concatenate(scores)

    rows, scores = collective_step(group, "scoring", pool_shard, rows_and_scores)
    cache.save("scores", rows=rows, scores=np.zeros(0) if scores is None else scores,
               has_scores=np.array(scores is not None))
    return rows, scores


def sharded_selection(selector, pool_shard, target_shard, rows_of, durations_of_rows, n_clusters, budget_hours,
                      group, cache=None):
    """A :class:`~selection.selectors.base.ShardableSelector`'s choice, with units spread over processes.

    Parameters
    ----------
    durations_of_rows : callable
        Seconds (``float64``) of each of an array of pool rows.
    budget_hours : float
        Audio to select.
    selector, pool_shard, target_shard, rows_of, n_clusters, group, cache
        See :func:`sharded_scores`.

    Returns
    -------
    tuple of (numpy.ndarray, numpy.ndarray, numpy.ndarray or None, int) or None
        On process 0: the picked pool rows (best first), their seconds, their scores,
        and the number of candidates (pool utterances with units). ``None`` elsewhere.
    """
    rows, scores = sharded_scores(selector, pool_shard, target_shard, rows_of, n_clusters, group, cache)
    durations = durations_of_rows(rows)
    parts = (rows, durations) if scores is None else (rows, durations, scores)  # the same on every process
    gathered = [group.gather(part) for part in parts]
    if group.rank != 0:
        return None
    rows, durations, *scores = (np.concatenate(part) for part in gathered)
    pool_order = np.argsort(rows, kind="stable")
    rows, durations = rows[pool_order], durations[pool_order]
    scores = scores[0][pool_order] if scores else None
    if not len(rows):
        raise ValueError("no candidate utterances in the pool")
    order, ranked = selector.rank_scores(durations, scores, budget_hours * 3600.0)
    picked, ranked = selector.fill(durations, order, ranked, budget_hours)
    return rows[picked], durations[picked], ranked, len(rows)
