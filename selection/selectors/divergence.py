"""Speech corpora divergence selection (Gao et al. 2023) on hashed unit n-grams."""

import math

import numpy as np

from selection import divergence_sharded
from selection.ngrams import NgramHasher
from selection.selectors.base import Selector
from selection.selectors.greedy_kl import greedy_kl_order


class DivergenceSelector(Selector):
    """Grow the subset whose unit n-gram distribution is closest to the target's.

    Minimises ``KL(target || subset)`` greedily over hashed unit n-grams; see
    :mod:`selection.selectors.greedy_kl` for what is exact and what is
    approximated (block greedy with a first-order pre-screen).

    Parameters
    ----------
    orders : sequence of int
        N-gram orders of the distributions.
    hash_bits : int
        Buckets per hashed order ``2**hash_bits``.
    n_rounds : int
        Rounds used to fill the budget.
    shortlist_factor : float
        Exact evaluations per round as a multiple of the block (``math.inf``: all).
    eps : float
        Additive smoothing of the subset distribution.
    chunk_tokens : int
        Units per processing chunk.
    shard_candidates : float
        Over several processes (:mod:`selection.divergence_sharded`): each shard's
        greedy picks this many times its share of the budget (budget / processes) as
        candidates for the greedy over their union.
    """

    needs_target = True
    distributed = "composable core-set"

    def __init__(self, orders=(1, 2), hash_bits=15, n_rounds=20, shortlist_factor=4.0, eps=1.0,
                 chunk_tokens=1 << 20, shard_candidates=2.0):
        self.orders = tuple(int(m) for m in orders)
        self.hash_bits = int(hash_bits)
        self.n_rounds = int(n_rounds)
        self.shortlist_factor = float(shortlist_factor)
        self.eps = float(eps)
        self.chunk_tokens = int(chunk_tokens)
        self.shard_candidates = float(shard_candidates)

    def target_counts(self, hasher, pool_pieces, target_pieces):
        """Counts the target is made of (they add over pieces): the target units' hashed n-grams."""
        return sum((hasher.counts(units, self.chunk_tokens) for units in target_pieces), np.zeros(hasher.n_features))

    def target_of_counts(self, counts):
        """Bucket weights to approach, from the summed :meth:`target_counts`: the counts themselves."""
        return counts

    def rank(self, ids, durations, units, rows, target_units, budget_seconds):
        """Block-greedy order; scores are exact KL decreases per second at pick time."""
        hasher = NgramHasher(self.orders, units.n_clusters, self.hash_bits)
        target = self.target_of_counts(self.target_counts(hasher, [units], [target_units]))
        return greedy_kl_order(units, rows, durations, target, hasher, budget_seconds,
                               self.n_rounds, self.shortlist_factor, self.eps, self.chunk_tokens)

    def select_shards(self, pool_shard, target_shard, rows_of, durations_of_rows, n_clusters, budget_hours, group,
                      cache=None):
        """:func:`selection.divergence_sharded.composable_greedy_kl`, then the budget filled on process 0."""
        chosen = divergence_sharded.composable_greedy_kl(self, pool_shard, target_shard, rows_of, durations_of_rows,
                                                         n_clusters, budget_hours, group, self.shard_candidates)
        if chosen is None:
            return None
        rows, seconds, scores, self.diagnostics = chosen
        picked, scores = self.fill(seconds, np.arange(len(rows)), scores, budget_hours)
        return rows[picked], seconds[picked], scores

    def settings(self):
        """Constructor arguments."""
        factor = self.shortlist_factor
        return {"orders": list(self.orders), "hash_bits": self.hash_bits, "n_rounds": self.n_rounds,
                "shortlist_factor": "inf" if math.isinf(factor) else factor, "eps": self.eps,
                "chunk_tokens": self.chunk_tokens, "shard_candidates": self.shard_candidates}
