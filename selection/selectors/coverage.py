"""Target-free unit n-gram coverage (entropy) maximisation."""

import numpy as np

from selection.selectors.divergence import DivergenceSelector


class CoverageSelector(DivergenceSelector):
    """Grow the subset whose unit n-gram distribution is as flat as possible.

    The greedy of :class:`~selection.selectors.divergence.DivergenceSelector`
    with a uniform target over the n-gram buckets seen in the pool:
    minimising ``KL(uniform || subset)`` maximises ``sum_b log p_S(b)``, which
    rewards covering unseen n-grams and penalises piling up frequent ones
    (diminishing returns, as an entropy or coverage objective). Needs no target;
    ``target_units`` is ignored. Same parameters as ``DivergenceSelector``.
    """

    needs_target = False

    def target_counts(self, hasher, pool_pieces, target_pieces):
        """Counts the target is made of (they add over pieces): the pool units' hashed n-grams."""
        return sum((hasher.counts(units, self.chunk_tokens) for units in pool_pieces), np.zeros(hasher.n_features))

    def target_of_counts(self, counts):
        """Uniform weight on every bucket seen in the pool."""
        return (counts > 0).astype(float)
