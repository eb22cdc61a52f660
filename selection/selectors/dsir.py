"""Data selection with importance resampling (Xie et al. 2023) on unit n-grams."""

import numpy as np

from selection.ngrams import NgramHasher, iter_chunks, segment_sums
from selection.selectors.base import Selector


class DSIRSelector(Selector):
    """Importance weights from hashed unit n-gram bags, then resampling.

    Unit n-grams (``orders``, default uni- and bigrams) are mapped into buckets
    (:class:`selection.ngrams.NgramHasher`); add-one smoothed bucket distributions
    ``p_T`` (target) and ``p_pool`` (all pool units given) give
    ``log w(x) = sum_b count_x(b) * (log p_T(b) - log p_pool(b))``. With
    ``gumbel=True`` candidates are ordered by ``log w + Gumbel(0, 1)`` (seeded),
    i.e. sampled without replacement with probability proportional to ``w``;
    with ``gumbel=False`` by ``log w`` (deterministic top-k).

    Parameters
    ----------
    orders : sequence of int
        N-gram orders hashed together.
    hash_bits : int
        Buckets per hashed order ``2**hash_bits`` (orders with at most that many
        distinct n-grams are exact).
    gumbel : bool
        Resample with Gumbel noise (True) or take the top weights (False).
    seed : int
        Seed of the Gumbel noise.
    chunk_tokens : int
        Units per processing chunk.
    """

    needs_target = True

    def __init__(self, orders=(1, 2), hash_bits=15, gumbel=True, seed=0, chunk_tokens=1 << 20):
        self.orders = tuple(int(m) for m in orders)
        self.hash_bits = int(hash_bits)
        self.gumbel = bool(gumbel)
        self.seed = int(seed)
        self.chunk_tokens = int(chunk_tokens)

    def log_weights(self, units, target_units):
        """``log w`` of every utterance of ``units`` (``ids`` order)."""
        hasher = NgramHasher(self.orders, units.n_clusters, self.hash_bits)
        target = hasher.counts(target_units, self.chunk_tokens)
        pool = hasher.counts(units, self.chunk_tokens)
        n = hasher.n_features - 1  # slot 0 is "no n-gram"
        log_ratio = np.log((target + 1.0) / (target.sum() + n)) - np.log((pool + 1.0) / (pool.sum() + n))
        log_ratio[0] = 0.0
        out = np.empty(len(units), dtype=np.float64)
        for chunk in iter_chunks(units, self.chunk_tokens):
            feats = hasher(chunk)
            per_token = np.take(log_ratio, feats[0])
            for row in feats[1:]:
                per_token += np.take(log_ratio, row)
            out[chunk.start : chunk.stop] = segment_sums(per_token, chunk.offsets)
        return out

    def rank(self, ids, durations, units, rows, target_units, budget_seconds):
        """Order by (noisy) log importance weight; scores are ``log w``."""
        log_w = self.log_weights(units, target_units)[rows]
        key = log_w
        if self.gumbel:
            key = log_w + np.random.default_rng(self.seed).gumbel(size=len(log_w))
        order = np.argsort(-key, kind="stable")
        return order, log_w[order]

    def settings(self):
        """Constructor arguments."""
        return {"orders": list(self.orders), "hash_bits": self.hash_bits, "gumbel": self.gumbel,
                "seed": self.seed, "chunk_tokens": self.chunk_tokens}
