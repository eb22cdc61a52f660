"""Baselines that ignore the units: random and longest-first."""

import numpy as np

from selection.selectors.base import ShardableSelector


class RandomSelector(ShardableSelector):
    """Uniformly random utterances (seeded).

    Parameters
    ----------
    seed : int
        Random seed; the same seed and pool give the same subset.
    """

    needs_units = False

    def __init__(self, seed=0):
        self.seed = int(seed)

    def rank_scores(self, durations, scores, budget_seconds):
        """Seeded random permutation of the candidates; no scores."""
        return np.random.default_rng(self.seed).permutation(len(durations)), None

    def settings(self):
        """Constructor arguments."""
        return {"seed": self.seed}


class LongestFirstSelector(ShardableSelector):
    """Longest utterances first (ties broken by pool order); scores are durations."""

    needs_units = False

    def rank_scores(self, durations, scores, budget_seconds):
        """Stable sort by decreasing duration."""
        order = np.argsort(-durations, kind="stable")
        return order, durations[order]

    def settings(self):
        """No settings."""
        return {}
