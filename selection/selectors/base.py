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
        budget_seconds = budget_hours * 3600.0
        self.prepare(pool, ids, work_folder)
        order, scores = self.rank(ids, durations, units, rows, target_units, budget_seconds)
        if budget_seconds >= durations.sum():
            logger.warning("budget %.3f h >= pool %.3f h: taking the whole pool",
                           budget_hours, durations.sum() / 3600.0)
            keep = np.arange(len(order))
        else:
            keep = fill_budget(durations[order], budget_seconds)
        picked = order[keep]
        return SelectionResult(
            ids=[ids[i] for i in picked],
            hours=float(durations[picked].sum() / 3600.0),
            budget_hours=float(budget_hours),
            scores=None if scores is None else np.asarray(scores)[keep],
            selector=name,
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

    @abstractmethod
    def settings(self):
        """Constructor arguments, for provenance (``selection.json``)."""
