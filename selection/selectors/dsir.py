"""Data selection with importance resampling (Xie et al. 2023) on unit n-grams."""

import numpy as np

from selection.ngrams import NgramHasher, iter_chunks, segment_sums
from selection.selectors.base import ShardableSelector, fill_budget


class DSIRSelector(ShardableSelector):
    """Importance weights from hashed unit n-gram bags, then resampling.

    Unit n-grams (``orders``, default uni- and bigrams) are mapped into buckets
    (:class:`selection.ngrams.NgramHasher`); add-one smoothed bucket distributions
    ``p_T`` (target) and ``p_pool`` (all pool units given) give
    ``log w(x) = sum_b count_x(b) * (log p_T(b) - log p_pool(b))``. With
    ``gumbel=True`` candidates are ordered by ``log w / temperature + Gumbel(0, 1)``
    (seeded), i.e. sampled without replacement with probability proportional to
    ``w ** (1 / temperature)``; with ``gumbel=False`` by ``log w`` (deterministic top-k).

    Length: the sum over n-grams grows with the utterance, so on utterances of
    unequal length (the DSIR paper's examples are of similar length) the summed
    weights are dominated by length and their spread (hundreds of nats) makes
    the Gumbel draw a top-k. ``length_normalization=True`` (the default) uses
    the mean log-ratio per n-gram instead, a per-unit rate; ``temperature``
    then sets how sharply it is resampled. After :meth:`rank`,
    :attr:`diagnostics` holds the share of the selected hours that top-k by the
    same score would also select (1.0: the noise changed nothing).

    Parameters
    ----------
    orders : sequence of int
        N-gram orders hashed together.
    hash_bits : int
        Buckets per hashed order ``2**hash_bits`` (orders with at most that many
        distinct n-grams are exact).
    gumbel : bool
        Resample with Gumbel noise (True) or take the top weights (False).
    length_normalization : bool
        Score by the mean log-ratio per n-gram (True) or the sum (False, the
        DSIR paper's form).
    temperature : float
        Divides the score before the Gumbel noise is added (> 0; lower: closer to top-k; 0.1 suits the
        per-n-gram score on MFCC units, see `recipes/selection/dsir.yaml`).
    seed : int
        Seed of the Gumbel noise.
    chunk_tokens : int
        Units per processing chunk.
    """

    needs_target = True

    def __init__(self, orders=(1, 2), hash_bits=15, gumbel=True, length_normalization=True, temperature=0.1, seed=0,
                 chunk_tokens=1 << 20):
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.orders = tuple(int(m) for m in orders)
        self.hash_bits = int(hash_bits)
        self.gumbel = bool(gumbel)
        self.length_normalization = bool(length_normalization)
        self.temperature = float(temperature)
        self.seed = int(seed)
        self.chunk_tokens = int(chunk_tokens)

    def count(self, pool_pieces, target_pieces, n_clusters):
        """Bucket counts of the target's n-grams, then of the pool's."""
        hasher = NgramHasher(self.orders, n_clusters, self.hash_bits)
        counts = np.zeros((2, hasher.n_features))
        for row, pieces in enumerate((target_pieces, pool_pieces)):
            for units in pieces:
                counts[row] += hasher.counts(units, self.chunk_tokens)
        return counts.ravel()

    def weigher(self, statistics, n_clusters):
        """A function ``units -> (log w, n-grams)`` per utterance, from the summed bucket counts."""
        hasher = NgramHasher(self.orders, n_clusters, self.hash_bits)
        target, pool = np.asarray(statistics, dtype=np.float64).reshape(2, hasher.n_features)
        n = hasher.n_features - 1  # slot 0 is "no n-gram"
        log_ratio = np.log((target + 1.0) / (target.sum() + n)) - np.log((pool + 1.0) / (pool.sum() + n))
        log_ratio[0] = 0.0

        def weigh(units):
            out = np.empty(len(units), dtype=np.float64)
            n_grams = np.empty(len(units), dtype=np.float64)
            for chunk in iter_chunks(units, self.chunk_tokens):
                feats = hasher(chunk)
                per_token = np.take(log_ratio, feats[0])
                for row in feats[1:]:
                    per_token += np.take(log_ratio, row)
                out[chunk.start : chunk.stop] = segment_sums(per_token, chunk.offsets)
                n_grams[chunk.start : chunk.stop] = segment_sums((feats != 0).sum(axis=0).astype(np.float64),
                                                                 chunk.offsets)
            return out, n_grams

        return weigh

    def scorer(self, statistics, n_clusters):
        """The score of every utterance of a unit set: ``log w``, per n-gram when ``length_normalization``."""
        weigh = self.weigher(statistics, n_clusters)

        def score(units):
            log_w, n_grams = weigh(units)
            return log_w / np.maximum(n_grams, 1.0) if self.length_normalization else log_w

        return score

    def log_weights(self, units, target_units):
        """``log w`` of every utterance of ``units`` (``ids`` order), and its number of n-grams."""
        return self.weigher(self.count([units], [target_units], units.n_clusters), units.n_clusters)(units)

    def scores(self, units, target_units):
        """The score of every utterance of ``units``: ``log w``, per n-gram when ``length_normalization``."""
        return self.scorer(self.count([units], [target_units], units.n_clusters), units.n_clusters)(units)

    def rank_scores(self, durations, score, budget_seconds):
        """Order by (noisy) log importance weight; scores are the (per-n-gram) ``log w``."""
        top_k = np.argsort(-score, kind="stable")
        order = top_k
        if self.gumbel:
            key = score / self.temperature + np.random.default_rng(self.seed).gumbel(size=len(score))
            order = np.argsort(-key, kind="stable")
        self.diagnostics = {"hours_shared_with_top_k": shared_share(durations, order, top_k, budget_seconds)}
        return order, score[order]

    def settings(self):
        """Constructor arguments."""
        return {"orders": list(self.orders), "hash_bits": self.hash_bits, "gumbel": self.gumbel,
                "length_normalization": self.length_normalization, "temperature": self.temperature,
                "seed": self.seed, "chunk_tokens": self.chunk_tokens}


def shared_share(durations, order, other_order, budget_seconds):
    """Share of the hours ``order`` fills a budget with that ``other_order`` also selects.

    Example
    -------
    >>> shared_share(np.array([1.0, 1.0, 2.0]), np.array([0, 1, 2]), np.array([2, 1, 0]), 2.0)
    0.0
    """
    picked = order[fill_budget(durations[order], budget_seconds)]
    in_other = np.zeros(len(durations), dtype=bool)
    in_other[other_order[fill_budget(durations[other_order], budget_seconds)]] = True
    total = durations[picked].sum()
    return float(durations[picked[in_other[picked]]].sum() / total) if total > 0 else 1.0
