"""Target-free unit n-gram coverage (entropy) maximisation."""

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

    def target_weights(self, hasher, units, target_units):
        """Uniform weight on every bucket seen in the pool."""
        return (hasher.counts(units, self.chunk_tokens) > 0).astype(float)
