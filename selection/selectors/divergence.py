"""Speech corpora divergence selection (Gao et al. 2023) on hashed unit n-grams."""

import math

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
    """

    needs_target = True

    def __init__(self, orders=(1, 2), hash_bits=15, n_rounds=20, shortlist_factor=4.0, eps=1.0,
                 chunk_tokens=1 << 20):
        self.orders = tuple(int(m) for m in orders)
        self.hash_bits = int(hash_bits)
        self.n_rounds = int(n_rounds)
        self.shortlist_factor = float(shortlist_factor)
        self.eps = float(eps)
        self.chunk_tokens = int(chunk_tokens)

    def target_weights(self, hasher, units, target_units):
        """Bucket distribution to approach: the target units' n-gram counts."""
        return hasher.counts(target_units, self.chunk_tokens)

    def rank(self, ids, durations, units, rows, target_units, budget_seconds):
        """Block-greedy order; scores are exact KL decreases per second at pick time."""
        hasher = NgramHasher(self.orders, units.n_clusters, self.hash_bits)
        target = self.target_weights(hasher, units, target_units)
        return greedy_kl_order(units, rows, durations, target, hasher, budget_seconds,
                               self.n_rounds, self.shortlist_factor, self.eps, self.chunk_tokens)

    def settings(self):
        """Constructor arguments."""
        factor = self.shortlist_factor
        return {"orders": list(self.orders), "hash_bits": self.hash_bits, "n_rounds": self.n_rounds,
                "shortlist_factor": "inf" if math.isinf(factor) else factor, "eps": self.eps,
                "chunk_tokens": self.chunk_tokens}
