"""What the student still has to learn: highest proxy-student loss first, with a diversity guard."""

import numpy as np
from sklearn.cluster import MiniBatchKMeans

from selection.kcenter import reduce_embeddings
from selection.selectors.base import Selector, fill_budget


def guarded_order(losses, durations, labels, cap_seconds):
    """Highest loss first, but no cluster past ``cap_seconds`` until every cluster is at its cap or out.

    Utterances that would take their cluster past the cap are put back, in loss order, after
    all the others (so the budget is still filled when the capped clusters cannot fill it).

    Parameters
    ----------
    losses, durations : numpy.ndarray
        Per candidate.
    labels : numpy.ndarray
        Cluster of each candidate.
    cap_seconds : float
        Audio one cluster may put before the put-back ones.

    Returns
    -------
    numpy.ndarray
        Permutation of the candidates.

    Example
    -------
    >>> guarded_order(np.array([9.0, 8.0, 7.0, 1.0]), np.ones(4), np.array([0, 0, 0, 1]), 2.0).tolist()
    [0, 1, 3, 2]
    """
    by_loss = np.argsort(-losses, kind="stable")
    used = np.zeros(int(labels.max()) + 1 if len(labels) else 0)
    taken = np.zeros(len(losses), dtype=bool)
    for position in by_loss:
        cluster = labels[position]
        if used[cluster] + durations[position] <= cap_seconds:
            used[cluster] += durations[position]
            taken[position] = True
    return np.concatenate([by_loss[taken[by_loss]], by_loss[~taken[by_loss]]])


class DifficultySelector(Selector):
    """Utterances where a briefly distilled proxy student is furthest from the teacher.

    A scorer (by default :class:`lobes.proxy_difficulty.ProxyDifficultyScorer`: a one-layer
    student distilled for a few minutes on a random sample of the pool) gives every candidate a
    length-normalised distillation loss; candidates are taken highest loss first. So that the
    budget is not filled with one kind of audio the proxy cannot fit (noise, another
    language), a guard caps each k-means cluster of the utterance embeddings at
    ``max_cluster_share`` of the budget; what the caps hold back comes after, in loss order.
    The embeddings are the scorer's (the default scorer's: a teacher layer's, from the pass
    that scores, so the teacher runs over the pool once), standardised and projected as in
    :class:`selection.selectors.KCenterSelector`; a scorer that gives none falls back on the
    units' (:attr:`selection.units.UnitSet.embeddings`).

    Parameters
    ----------
    scorer : callable
        ``scorer(pool, ids, work_folder) -> (losses, cost, embeddings or None)`` with
        ``settings()``; ``cost`` (a dict) goes into the diagnostics as ``selection_compute``;
        ``embeddings`` ``[len(ids), E]``.
    n_clusters : int
        Clusters of the guard.
    max_cluster_share : float
        Share of the budget one cluster may fill before the held-back utterances (1: no guard).
    n_components : int or None
        Principal components of the embeddings clustered.
    seed : int
        Seed of the clustering.
    """

    def __init__(self, scorer, n_clusters=20, max_cluster_share=0.2, n_components=64, seed=0):
        if not 0 < max_cluster_share <= 1:
            raise ValueError(f"max_cluster_share must be in (0, 1], got {max_cluster_share}")
        self.scorer = scorer
        self.n_clusters = int(n_clusters)
        self.max_cluster_share = float(max_cluster_share)
        self.n_components = None if n_components is None else int(n_components)
        self.seed = int(seed)
        self.losses = self.embeddings = None

    def prepare(self, pool, ids, work_folder):
        """Score the candidates with the scorer (cached by it in ``work_folder``)."""
        losses, cost, embeddings = self.scorer(pool, ids, work_folder)
        self.losses = np.asarray(losses, dtype=np.float64)
        if self.losses.shape != (len(ids),) or not np.isfinite(self.losses).all():
            raise ValueError(f"the scorer gave {self.losses.shape} losses for {len(ids)} candidates "
                             f"({int((~np.isfinite(self.losses)).sum())} not finite)")
        self.embeddings = None if embeddings is None else np.asarray(embeddings)
        if self.embeddings is not None and (self.embeddings.ndim != 2 or len(self.embeddings) != len(ids)):
            raise ValueError(f"the scorer gave embeddings of shape {self.embeddings.shape} for {len(ids)} candidates")
        self.diagnostics = {"selection_compute": dict(cost)}

    def clusters(self, units, rows):
        """k-means label of every candidate's embedding (the scorer's, else the units')."""
        if self.embeddings is not None:
            vectors = self.embeddings
        elif units is not None and units.embeddings is not None:
            vectors = units.embeddings[rows]
        else:
            raise ValueError("DifficultySelector's guard needs utterance embeddings: the scorer gave none and the "
                             "units have none (extract the units again)")
        points, _, _ = reduce_embeddings(vectors, self.n_components, self.seed)
        n_clusters = min(self.n_clusters, len(rows))
        kmeans = MiniBatchKMeans(n_clusters=n_clusters, random_state=self.seed, n_init=3,
                                 batch_size=max(1024, n_clusters))
        return kmeans.fit_predict(points)

    def rank(self, ids, durations, units, rows, target_units, budget_seconds):
        """:func:`guarded_order` of the losses; scores are the losses.

        Diagnostics: the share of the selected hours that the unguarded order (loss alone) would
        also have selected, and the largest share of the selection one cluster holds.
        """
        if self.losses is None or len(self.losses) != len(ids):
            raise RuntimeError("rank() needs prepare() first (Selector.select calls both)")
        labels = self.clusters(units, rows)
        order = guarded_order(self.losses, durations, labels, self.max_cluster_share * budget_seconds)
        chosen = order[fill_budget(durations[order], budget_seconds)]
        unguarded = np.argsort(-self.losses, kind="stable")
        unguarded = unguarded[fill_budget(durations[unguarded], budget_seconds)]
        hours = durations[chosen].sum()
        if hours == 0:  # nothing fits the budget
            return order, self.losses[order]
        per_cluster = np.bincount(labels[chosen], weights=durations[chosen], minlength=int(labels.max()) + 1)
        self.diagnostics.update(
            hours_shared_with_unguarded=round(float(durations[np.intersect1d(chosen, unguarded)].sum() / hours), 4),
            largest_cluster_share=round(float(per_cluster.max() / hours), 4))
        return order, self.losses[order]

    def settings(self):
        """Constructor arguments, the scorer's settings included."""
        return {"scorer": {"class": type(self.scorer).__name__, **self.scorer.settings()},
                "n_clusters": self.n_clusters, "max_cluster_share": self.max_cluster_share,
                "n_components": self.n_components, "seed": self.seed}
