"""A selector's ranking for a share of the budget, random utterances for the rest.

:func:`mix_with_random` is what the selection files call: it wraps a selector in
:class:`MixedSelector` (or :class:`ShardableMixedSelector` when the selector has an
exact distributed form), and returns the selector itself at ``target_share`` 1.0,
so a file left at its default keeps its selector, settings and subset.
"""

import numpy as np

from selection.selectors.base import Selector, ShardableSelector


def checked_share(target_share):
    """``target_share`` as a float in ``[0, 1]``.

    Raises
    ------
    ValueError
        For anything else (the message names ``target_share``).

    Example
    -------
    >>> checked_share(0.25)
    0.25
    """
    try:
        share = float(target_share)
    except (TypeError, ValueError):
        share = float("nan")
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"target_share must be a number in [0, 1] (the share of the budget the selector fills, "
                         f"the rest random), got {target_share!r}")
    return share


class MixedSelector(Selector):
    """``inner`` fills ``target_share`` of the budget by its own ranking, a seeded random draw the rest.

    The inner selector ranks the candidates for a budget of ``target_share`` of
    the hours and fills it (its :meth:`~selection.selectors.base.Selector.fill`);
    the utterances it did not pick follow in the order in which
    :class:`~selection.selectors.simple.RandomSelector` with the same ``seed``
    draws them (``numpy.random.default_rng(seed).permutation`` over all
    candidates, the picked ones left out), and the whole ranking fills the budget
    (:func:`~selection.selectors.base.fill_budget`). So ``target_share`` 1.0 gives
    the inner selector's subset and 0.0 the random selector's (the inner selector
    is then not run and there are no scores); in between, the budget is met
    within one utterance as for any selector. Scores are the inner selector's,
    for the random part too.

    After a selection, :attr:`diagnostics` holds the inner selector's own plus
    ``hours_by_selector``, ``hours_at_random``, ``utterances_by_selector`` and
    ``utterances_at_random``: the subset's split between the two parts.

    This class runs on one process (under ``torchrun``, process 0 merges the units,
    as for divergence); :class:`ShardableMixedSelector` is the same mix in the
    exact distributed form, for a :class:`~selection.selectors.base.ShardableSelector`.

    Parameters
    ----------
    inner : selection.selectors.base.Selector
        The selector whose ranking fills its share (target-aware, or any other).
    target_share : float
        Share of the hours budget the inner selector fills, in ``[0, 1]``.
    seed : int
        Seed of the random part (that of :class:`~selection.selectors.simple.RandomSelector`).

    Example
    -------
    >>> from selection.selectors import LongestFirstSelector, RandomSelector
    >>> from selection.synthetic import synthetic_corpus
    >>> corpus = synthetic_corpus(40, ["a", "b"], [0.5, 0.5], n_clusters=8, mean_length=50, seed=0)
    >>> pool, budget = corpus.manifest(), 0.3 * corpus.durations.sum() / 3600
    >>> mixed = MixedSelector(LongestFirstSelector(), target_share=0.5, seed=1).select(pool, corpus.units, budget)
    >>> bool(mixed.hours <= budget and mixed.diagnostics["hours_by_selector"] <= 0.5 * budget)
    True
    >>> MixedSelector(LongestFirstSelector(), 0.0, seed=1).select(pool, corpus.units, budget).ids == (
    ...     RandomSelector(seed=1).select(pool, corpus.units, budget).ids)
    True
    """

    def __init__(self, inner, target_share=1.0, seed=0):
        self.inner = inner
        self.target_share = checked_share(target_share)
        self.seed = int(seed)
        self.needs_target = inner.needs_target
        self.needs_units = inner.needs_units
        self.needs_embeddings = inner.needs_embeddings
        self.from_inner = None  # bool per candidate: picked by the inner selector (set when ranking)

    def prepare(self, pool, ids, work_folder):
        """The inner selector's preparation (none when it fills nothing)."""
        if self.target_share > 0:
            self.inner.prepare(pool, ids, work_folder)

    def rank(self, ids, durations, units, rows, target_units, budget_seconds):
        """The inner selector's picks for its share (its order), then the others in random order."""
        if self.target_share == 0:
            return self.mix(durations, None, None, budget_seconds)
        order, scores = self.inner.rank(ids, durations, units, rows, target_units,
                                        self.target_share * budget_seconds)
        return self.mix(durations, order, scores, budget_seconds)

    def mix(self, durations, inner_order, inner_scores, budget_seconds):
        """The mixed ranking from the inner selector's ranking of every candidate (``None``: share 0).

        Returns
        -------
        order : numpy.ndarray
            The inner selector's picks for ``target_share`` of ``budget_seconds``, then the
            other candidates in :class:`~selection.selectors.simple.RandomSelector`'s order.
        scores : numpy.ndarray or None
            The inner selector's score of each, aligned with ``order``.
        """
        random_order = np.random.default_rng(self.seed).permutation(len(durations))
        self.from_inner = np.zeros(len(durations), dtype=bool)
        if inner_order is None:
            self.diagnostics = {}
            return random_order, None
        picked, _ = self.inner.fill(durations, inner_order, inner_scores, self.target_share * budget_seconds / 3600)
        self.from_inner[picked] = True
        self.diagnostics = dict(self.inner.diagnostics or {})
        order = np.concatenate([picked, random_order[~self.from_inner[random_order]]])
        if inner_scores is None:
            return order, None
        per_candidate = np.empty(len(durations), dtype=np.float64)
        per_candidate[inner_order] = inner_scores
        return order, per_candidate[order]

    def fill(self, durations, order, scores, budget_hours):
        """:meth:`~selection.selectors.base.Selector.fill`, recording the split in :attr:`diagnostics`."""
        picked, scores = Selector.fill(durations, order, scores, budget_hours)
        by_inner = self.from_inner[picked]
        self.diagnostics = {**(self.diagnostics or {}),
                            "hours_by_selector": float(durations[picked[by_inner]].sum() / 3600),
                            "hours_at_random": float(durations[picked[~by_inner]].sum() / 3600),
                            "utterances_by_selector": int(by_inner.sum()),
                            "utterances_at_random": int((~by_inner).sum())}
        return picked, scores

    def settings(self):
        """The share, the seed, and the inner selector's class and settings."""
        return {"target_share": self.target_share, "seed": self.seed,
                "inner": {"selector": type(self.inner).__name__, "settings": self.inner.settings()}}


class ShardableMixedSelector(MixedSelector, ShardableSelector):
    """:class:`MixedSelector` over a :class:`~selection.selectors.base.ShardableSelector`, exact on any processes.

    The inner selector's statistics and scores are computed shard by shard
    (:mod:`selection.sharded`); process 0 ranks the mix from every candidate's
    seconds and score (:meth:`rank_scores`) over the candidates in pool order, as
    :class:`~selection.selectors.simple.RandomSelector` does, so the subset is the one-process subset on any
    number of processes.

    Parameters
    ----------
    inner : selection.selectors.base.ShardableSelector
        The selector whose ranking fills its share.
    target_share, seed
        See :class:`MixedSelector`.

    Raises
    ------
    TypeError
        If ``inner`` is not a :class:`~selection.selectors.base.ShardableSelector`.
    """

    distributed = "exact"

    def __init__(self, inner, target_share=1.0, seed=0):
        if not isinstance(inner, ShardableSelector):
            raise TypeError(f"{type(inner).__name__} has no exact distributed form: use MixedSelector")
        super().__init__(inner, target_share, seed)

    def count(self, pool_pieces, target_pieces, n_clusters):
        """The inner selector's statistics (none when it fills nothing)."""
        if self.target_share == 0:
            return np.zeros(0)
        return self.inner.count(pool_pieces, target_pieces, n_clusters)

    def scorer(self, statistics, n_clusters):
        """The inner selector's scorer (none when it fills nothing)."""
        return self.inner.scorer(statistics, n_clusters) if self.target_share > 0 else None

    def rank_scores(self, durations, scores, budget_seconds):
        """The inner selector's ranking for its share, mixed (:meth:`MixedSelector.mix`)."""
        if self.target_share == 0:
            return self.mix(durations, None, None, budget_seconds)
        order, ranked = self.inner.rank_scores(durations, scores, self.target_share * budget_seconds)
        return self.mix(durations, order, ranked, budget_seconds)


def mix_with_random(inner, target_share=1.0, seed=0):
    """``inner`` filling ``target_share`` of the budget, the rest random: the mix the selection files build.

    Parameters
    ----------
    inner : selection.selectors.base.Selector
        The selection file's selector.
    target_share : float
        Share of the hours budget ``inner`` fills, in ``[0, 1]``.
    seed : int
        Seed of the random part.

    Returns
    -------
    selection.selectors.base.Selector
        ``inner`` itself at 1.0 (the same subset, settings and cache key as without the
        mix); otherwise a :class:`ShardableMixedSelector` when ``inner`` is a
        :class:`~selection.selectors.base.ShardableSelector`, else a :class:`MixedSelector`.

    Raises
    ------
    ValueError
        For a ``target_share`` outside ``[0, 1]``.

    Example
    -------
    >>> from selection.selectors import ContrastiveLMSelector, DivergenceSelector
    >>> contrastive = ContrastiveLMSelector()
    >>> mix_with_random(contrastive, 1.0) is contrastive
    True
    >>> type(mix_with_random(contrastive, 0.5)).__name__, type(mix_with_random(DivergenceSelector(), 0.5)).__name__
    ('ShardableMixedSelector', 'MixedSelector')
    """
    if checked_share(target_share) == 1.0:
        return inner
    kind = ShardableMixedSelector if isinstance(inner, ShardableSelector) else MixedSelector
    return kind(inner, target_share, seed)
