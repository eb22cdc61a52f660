"""Coverage of the teacher's embedding space: greedy k-center on utterance embeddings."""

import time

import numpy as np

from selection.kcenter import farthest_first, nearest_squared_distance, reduce_embeddings
from selection.kcenter_sharded import composable_kcenter
from selection.selectors.base import Selector


class KCenterSelector(Selector):
    """Greedy k-center (farthest-first) on utterance embeddings, until the budget is filled.

    Each utterance is one vector: the mean and standard deviation over its frames of the
    features its units came from (:func:`selection.units.utterance_embedding`; with the
    ``teacher_layer`` units, a hidden layer of the teacher). The vectors are standardised
    per dimension and projected on their first ``n_components`` principal components
    (:func:`selection.kcenter.reduce_embeddings`), then the traversal starts from a seeded
    random utterance and takes, again and again, the utterance farthest from all taken so
    far, so the subset spreads over everything the teacher tells apart instead of piling
    up where the pool is dense (Sener & Savarese 2018, "Active learning for convolutional
    neural networks: a core-set approach").

    Parameters
    ----------
    n_components : int or None
        Principal components kept (``None``: every standardised dimension).
    target_fraction : float or None
        ``None``: target-free. Else the traversal first stays within this share of the pool's
        hours that lies nearest the target (distance to the nearest target utterance in the
        same projected space), and goes on over the rest of the pool only if that share holds
        less than the budget. A target is then required.
    seed : int
        Seed of the first pick and of the PCA sample.
    block : int
        Candidates per round of :func:`selection.kcenter.farthest_first` (speed only; the
        picks do not depend on it).

    Notes
    -----
    Scores are each pick's distance to the nearest earlier pick when it was picked (the
    covering radius at that point; ``inf`` for the first). Diagnostics: the variance the
    projection keeps, the rounds, the final covering radius of the pool, the seconds of the
    projection and of the traversal, and with a target the share of the subset's hours from the
    target neighbourhood.
    """

    needs_embeddings = True

    def __init__(self, n_components=64, target_fraction=None, seed=0, block=4096):
        if target_fraction is not None and not 0 < target_fraction <= 1:
            raise ValueError(f"target_fraction must be in (0, 1] or None, got {target_fraction}")
        self.n_components = None if n_components is None else int(n_components)
        self.target_fraction = None if target_fraction is None else float(target_fraction)
        self.needs_target = self.target_fraction is not None
        self.seed = int(seed)
        self.block = int(block)

    def target_neighbourhood(self, points, target_points, durations):
        """Bool mask of the pool utterances nearest the target, holding ``target_fraction`` of the hours."""
        distance = nearest_squared_distance(points, target_points)
        order = np.argsort(distance, kind="stable")
        held = np.cumsum(durations[order])
        count = max(1, int(np.searchsorted(held, self.target_fraction * held[-1], side="right")))
        mask = np.zeros(len(points), dtype=bool)
        mask[order[:count]] = True
        return mask

    def rank(self, ids, durations, units, rows, target_units, budget_seconds):
        """Picks in traversal order, then the others by decreasing distance to the picks."""
        started = time.perf_counter()
        target_vectors = target_units.embeddings if self.needs_target else None
        points, target_points, kept = reduce_embeddings(units.embeddings[rows], self.n_components, self.seed,
                                                        extra=target_vectors)
        projected = time.perf_counter()
        eligible = None
        if self.needs_target:
            eligible = self.target_neighbourhood(points, target_points, durations)
        rng = np.random.default_rng(self.seed)
        first = int(rng.choice(np.flatnonzero(eligible) if eligible is not None else len(ids)))
        picks, radii, nearest, rounds = farthest_first(points, durations, budget_seconds, first, eligible,
                                                       block=self.block)
        rest = np.setdiff1d(np.arange(len(ids)), picks)
        rest = rest[np.argsort(-nearest[rest], kind="stable")]
        order = np.concatenate([picks, rest])
        scores = np.concatenate([radii, np.sqrt(nearest[rest])])
        self.diagnostics = {"explained_variance": round(kept, 4), "rounds": rounds, "picks": len(picks),
                            "covering_radius": float(np.sqrt(nearest.max())),
                            "projection_seconds": round(projected - started, 1),
                            "traversal_seconds": round(time.perf_counter() - projected, 1)}
        if eligible is not None:
            picked_hours = durations[picks].sum()
            self.diagnostics["hours_share_from_target_neighbourhood"] = round(
                float(durations[picks][eligible[picks]].sum() / picked_hours), 4)
        return order, scores

    @property
    def distributed(self):
        """Target-free: a composable core-set over the processes (:mod:`selection.kcenter_sharded`)."""
        return None if self.needs_target else "composable core-set"

    def select_shards(self, pool_shard, target_shard, rows_of, durations_of_rows, n_clusters, budget_hours, group,
                      cache=None):
        """:func:`selection.kcenter_sharded.composable_kcenter`, then the budget filled on process 0."""
        chosen = composable_kcenter(pool_shard, rows_of, durations_of_rows, budget_hours, self.n_components,
                                    self.seed, group)
        if chosen is None:
            return None
        rows, seconds, scores, self.diagnostics = chosen
        picked, scores = self.fill(seconds, np.arange(len(rows)), scores, budget_hours)
        return rows[picked], seconds[picked], scores

    def settings(self):
        """Constructor arguments."""
        return {"n_components": self.n_components, "target_fraction": self.target_fraction, "seed": self.seed,
                "block": self.block}
