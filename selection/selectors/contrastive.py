"""Contrastive n-gram LM selection on units (Lu et al., Interspeech 2022)."""

import numpy as np

from selection.ngrams import NgramLM, iter_chunks, ngram_keys, segment_sums
from selection.selectors.base import ShardableSelector


class ContrastiveLMSelector(ShardableSelector):
    """Rank by ``(log P_T(x) - log P_pool(x)) / |x|`` with unit n-gram LMs.

    ``P_T`` is trained on the target units, ``P_pool`` on all pool units given
    (see :class:`selection.ngrams.NgramLM` for the smoothing); utterances whose
    units the target LM explains better than the pool LM, per unit, come first.
    An utterance without units scores ``-inf``.

    Parameters
    ----------
    order : int
        N-gram order of both LMs. Orders whose table fits in ``2**hash_bits``
        entries are exact (order 2 for k = 500 with the default); higher ones
        are hashed, and collisions blur the pool LM when ``2**hash_bits`` is not
        well above the number of distinct n-grams (order 3 on 1M utterances of
        k = 500 units needs ``hash_bits >= 24``).
    beta : float
        Smoothing prior strength.
    hash_bits : int
        LM tables up to ``2**hash_bits`` entries are exact, larger orders hashed.
    chunk_tokens : int
        Units per processing chunk (memory bound).
    """

    needs_target = True

    def __init__(self, order=2, beta=1.0, hash_bits=20, chunk_tokens=1 << 20):
        self.order = int(order)
        self.beta = float(beta)
        self.hash_bits = int(hash_bits)
        self.chunk_tokens = int(chunk_tokens)

    def _lm(self, n_symbols):
        return NgramLM(self.order, n_symbols, self.beta, self.hash_bits, self.chunk_tokens)

    def count(self, pool_pieces, target_pieces, n_clusters):
        """The n-gram counts of the target LM, then of the pool LM (:meth:`selection.ngrams.NgramLM.statistics`)."""
        target_lm, pool_lm = self._lm(n_clusters), self._lm(n_clusters)
        for units in target_pieces:
            target_lm.add(units)
        for units in pool_pieces:
            pool_lm.add(units)
        return np.concatenate([target_lm.statistics(), pool_lm.statistics()])

    def scorer(self, statistics, n_clusters):
        """Per-unit log-likelihood ratio of every utterance of a unit set, from the summed counts."""
        target_lm, pool_lm = self._lm(n_clusters), self._lm(n_clusters)
        half = len(statistics) // 2
        target_lm.load_statistics(statistics[:half])
        pool_lm.load_statistics(statistics[half:])

        def score(units):
            out = np.empty(len(units), dtype=np.float64)
            for chunk in iter_chunks(units, self.chunk_tokens):
                keys = ngram_keys(chunk.tokens, self.order, units.n_clusters)
                ratio = target_lm.token_log_probs(chunk, keys)
                ratio -= pool_lm.token_log_probs(chunk, keys)
                out[chunk.start : chunk.stop] = segment_sums(ratio, chunk.offsets)
            lengths = units.lengths
            with np.errstate(divide="ignore", invalid="ignore"):
                return np.where(lengths > 0, out / np.maximum(lengths, 1), -np.inf)

        return score

    def scores(self, units, target_units):
        """Per-unit log-likelihood ratio of every utterance of ``units`` (``ids`` order)."""
        return self.scorer(self.count([units], [target_units], units.n_clusters), units.n_clusters)(units)

    def rank_scores(self, durations, scores, budget_seconds):
        """Highest per-unit log-likelihood ratio first."""
        order = np.argsort(-scores, kind="stable")
        return order, scores[order]

    def settings(self):
        """Constructor arguments."""
        return {"order": self.order, "beta": self.beta, "hash_bits": self.hash_bits,
                "chunk_tokens": self.chunk_tokens}
