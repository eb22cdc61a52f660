"""Selector plug-in contract and the shared budget-filling rule.

Every selector subclasses :class:`Selector` and implements :meth:`Selector.rank`,
which orders candidate utterances (best first). :meth:`Selector.select` does the
common work: checks the inputs, keeps pool utterances that have units, calls
``rank`` and fills the budget with :func:`fill_budget`.
"""

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

from selection.sharded import sharded_selection

logger = logging.getLogger(__name__)


class TargetError(ValueError):
    """A target-aware selector got no (or empty) target units."""


@dataclass
class SelectionResult:
    """What a selector chose.

    Attributes
    ----------
    ids : list of str
        Selected utterance IDs, best first.
    hours : float
        Audio selected, in hours.
    budget_hours : float
        Budget asked for.
    scores : numpy.ndarray or None
        Score of each selected ID (same order), when the method has one.
    selector : str
        Selector class name.
    settings : dict
        Selector settings (constructor arguments).
    diagnostics : dict
        Figures the selector measured while ranking (``Selector.diagnostics``), recorded in ``selection.json``.
    """

    ids: list
    hours: float
    budget_hours: float
    scores: np.ndarray = None
    selector: str = ""
    settings: dict = field(default_factory=dict)
    diagnostics: dict = field(default_factory=dict)

    @property
    def n_utterances(self):
        """Number of selected utterances."""
        return len(self.ids)


def fill_budget(durations, budget_seconds):
    """Positions of ranked utterances that fill a budget.

    Utterances are taken in rank order; one that would overshoot the budget is
    passed over and the walk goes on with the next ones, until no remaining
    utterance fits. So the total never exceeds the budget and falls short of it
    by less than the shortest utterance left out ("met within one utterance").

    Parameters
    ----------
    durations : numpy.ndarray
        Seconds per utterance, in rank order.
    budget_seconds : float
        Budget.

    Returns
    -------
    numpy.ndarray
        ``int64`` positions into ``durations``, increasing (rank order kept).
    """
    durations = np.asarray(durations, dtype=np.float64)
    chosen = []
    gap = float(budget_seconds)
    start = 0
    while start < len(durations):
        fitting = np.flatnonzero(durations[start:] <= gap)
        if not len(fitting):
            break
        first = start + int(fitting[0])
        cum = np.cumsum(durations[first:])
        count = int(np.searchsorted(cum, gap, side="right"))
        chosen.append(np.arange(first, first + count))
        gap -= float(cum[count - 1])
        start = first + count
    return np.concatenate(chosen) if chosen else np.zeros(0, dtype=np.int64)


class Selector(ABC):
    """Abstract data selector.

    Subclasses set ``needs_target`` and implement :meth:`rank` and :meth:`settings`.
    """

    needs_target = False
    needs_units = True
    needs_embeddings = False  # True: ranks by the units' utterance embeddings (``UnitSet.embeddings``)
    distributed = None  # how select_shards runs over processes: "exact" (the one-process subset) or an approximation
    diagnostics = None  # a dict of figures :meth:`rank` may set (e.g. DSIR's overlap with top-k)

    def prepare(self, pool, ids, work_folder):
        """Compute what :meth:`rank` needs beyond the units (default: nothing).

        Called by :meth:`select` just before :meth:`rank`, with the pool manifest (audio paths),
        the candidate IDs and a folder for caches (``None``: no cache); e.g.
        :class:`selection.selectors.DifficultySelector` scores the candidates' audio here.
        """

    def select(self, pool, units, budget_hours, target_units=None, work_folder=None):
        """Choose pool utterances within a budget of audio hours.

        Parameters
        ----------
        pool : common.manifest.Manifest
            Candidate utterances (IDs and durations).
        units : selection.units.UnitSet or None
            Units keyed by ID, for the pool. Pool utterances without units (e.g.
            audio skipped as unreadable) are left out with a warning, by every
            selector. May be ``None`` for selectors with ``needs_units = False``.
        budget_hours : float
            Audio to select, in hours (> 0). A budget at least as large as the
            pool takes the whole pool (with a warning).
        target_units : selection.units.UnitSet, optional
            Units of target-domain utterances (required when ``needs_target``).
        work_folder : str or os.PathLike, optional
            Cache folder handed to :meth:`prepare`.

        Returns
        -------
        SelectionResult

        Raises
        ------
        ValueError
            For a non-positive budget, missing units, or mismatched codebooks.
        TargetError
            If the selector needs a target and ``target_units`` is missing or empty.
        """
        if not budget_hours > 0:
            raise ValueError(f"budget_hours must be > 0, got {budget_hours}")
        name = type(self).__name__
        if self.needs_target and (target_units is None or int(target_units.lengths.sum()) == 0):
            raise TargetError(f"{name} is target-aware and needs non-empty target units")
        if self.needs_units and units is None:
            raise ValueError(f"{name} needs pool units")
        if units is not None and target_units is not None and units.n_clusters != target_units.n_clusters:
            raise ValueError(
                f"pool units have {units.n_clusters} clusters, target units {target_units.n_clusters}")
        if self.needs_embeddings:
            for label, unit_set in (("pool", units), ("target", target_units if self.needs_target else None)):
                if unit_set is not None and unit_set.embeddings is None:
                    raise ValueError(f"{name} needs utterance embeddings, and the {label} units have none "
                                     "(a unit set built without them: extract the units again)")
        if units is not None:  # every selector, those that ignore units too: no units means unusable audio
            ids = [i for i in pool.ids if i in units]
            if len(ids) < len(pool):
                logger.warning("%d of %d pool utterances have no units (unreadable audio) and are left out",
                               len(pool) - len(ids), len(pool))
            rows = units.rows(ids)
        else:
            ids, rows = list(pool.ids), None
        if not ids:
            raise ValueError("no candidate utterances in the pool")
        durations = pool.durations_of(ids)
        self.prepare(pool, ids, work_folder)
        order, scores = self.rank(ids, durations, units, rows, target_units, budget_hours * 3600.0)
        picked, scores = self.fill(durations, order, scores, budget_hours)
        return self.result([ids[i] for i in picked], durations[picked], scores, budget_hours)

    @staticmethod
    def fill(durations, order, scores, budget_hours):
        """Positions of the ranked candidates that fill the budget (:func:`fill_budget`), and their scores.

        A budget at least the candidates' hours takes them all, with a warning.
        """
        budget_seconds = budget_hours * 3600.0
        if budget_seconds >= durations.sum():
            logger.warning("budget %.3f h >= pool %.3f h: taking the whole pool",
                           budget_hours, durations.sum() / 3600.0)
            keep = np.arange(len(order))
        else:
            keep = fill_budget(durations[order], budget_seconds)
        return order[keep], None if scores is None else np.asarray(scores)[keep]

    def result(self, ids, durations, scores, budget_hours):
        """The :class:`SelectionResult` of picked ``ids`` (best first) with their durations and scores."""
        return SelectionResult(
            ids=list(ids),
            hours=float(np.sum(durations) / 3600.0),
            budget_hours=float(budget_hours),
            scores=scores,
            selector=type(self).__name__,
            settings=self.settings(),
            diagnostics=dict(self.diagnostics or {}),
        )

    @abstractmethod
    def rank(self, ids, durations, units, rows, target_units, budget_seconds):
        """Order the candidates, best first.

        Parameters
        ----------
        ids : list of str
            Candidate IDs.
        durations : numpy.ndarray
            Seconds per candidate.
        units : selection.units.UnitSet or None
            Pool units (may hold more utterances than the candidates).
        rows : numpy.ndarray or None
            Row of each candidate in ``units``.
        target_units : selection.units.UnitSet or None
            Target units.
        budget_seconds : float
            Budget (for selectors whose ranking depends on it).

        Returns
        -------
        order : numpy.ndarray
            Permutation of ``range(len(ids))``.
        scores : numpy.ndarray or None
            Score of each ranked candidate, aligned with ``order``.
        """

    def select_shards(self, pool_shard, target_shard, rows_of, durations_of_rows, n_clusters, budget_hours, group,
                      cache=None):
        """The selection with each process holding its shard of the units (when :attr:`distributed` is set).

        Parameters
        ----------
        pool_shard, target_shard : selection.sharded.UnitShard
            This process's unit files of the pool and of the target.
        rows_of : callable
            Pool rows (``int64``) of a list of IDs.
        durations_of_rows : callable
            Seconds of an array of pool rows.
        n_clusters : int
            Codebook size.
        budget_hours : float
            Audio to select.
        group : selection.collectives.SingleProcess
            The processes.
        cache : selection.sharded.ShardCache, optional
            Where a process may keep what it computed.

        Returns
        -------
        tuple of (numpy.ndarray, numpy.ndarray, numpy.ndarray or None) or None
            On process 0: pool rows of the subset (best first, the budget filled: :meth:`fill`), their
            seconds and scores; ``None`` elsewhere.
        """
        raise NotImplementedError(f"{type(self).__name__} has no distributed form")

    @abstractmethod
    def settings(self):
        """Constructor arguments, for provenance (``selection.json``)."""


class ShardableSelector(Selector):
    """A selector whose subset does not depend on how the pool is split over processes.

    Its ranking splits in three steps, so that :mod:`selection.sharded` can run it with
    each process holding only its shard of the units:

    1. :meth:`count`: statistics of the pool's and the target's units (n-gram counts,
       histograms), one ``float64`` vector that adds over shards;
    2. :meth:`scorer`: from the summed statistics, a function giving every utterance
       of a unit set its score (scores depend on the utterance and the statistics only);
    3. :meth:`rank_scores`: the ranking of every candidate from its duration and score alone
       (on one process, over the whole pool's ``(ID, hours, score)``).

    Counts are integers held in ``float64`` (exact up to ``2**53``), so the sums do
    not depend on the order of the shards and the subset is the same on any number of
    processes. :meth:`rank` runs the three steps on one process.
    """

    distributed = "exact"

    def select_shards(self, pool_shard, target_shard, rows_of, durations_of_rows, n_clusters, budget_hours, group,
                      cache=None):
        """:func:`selection.sharded.sharded_selection`: the subset of one process, on any number of them."""
        chosen = sharded_selection(self, pool_shard, target_shard, rows_of, durations_of_rows, n_clusters,
                                   budget_hours, group, cache)
        return None if chosen is None else chosen[:3]

    def count(self, pool_pieces, target_pieces, n_clusters):
        """Statistics of the pool's and the target's unit sets (iterables of :class:`~selection.units.UnitSet`).

        Default: none (an empty vector).
        """
        return np.zeros(0)

    def scorer(self, statistics, n_clusters):
        """A function ``units -> scores`` (one per utterance of the unit set, ``ids`` order), or ``None``."""
        return None

    @abstractmethod
    def rank_scores(self, durations, scores, budget_seconds):
        """Order candidates (pool order) from their durations and scores (``None`` without a scorer).

        Returns
        -------
        order : numpy.ndarray
            Permutation of the candidates, best first.
        scores : numpy.ndarray or None
            Score of each ranked candidate, aligned with ``order``.
        """

    def rank(self, ids, durations, units, rows, target_units, budget_seconds):
        """The three steps on one process: :meth:`count`, :meth:`scorer`, :meth:`rank_scores`."""
        n_clusters = None if units is None else units.n_clusters
        statistics = self.count([] if units is None else [units], [] if target_units is None else [target_units],
                                n_clusters)
        score = self.scorer(statistics, n_clusters)
        return self.rank_scores(durations, None if score is None else score(units)[rows], budget_seconds)
