"""Target-free cluster-balanced selection: k-means on utterance unit histograms."""

import numpy as np
from sklearn.cluster import MiniBatchKMeans

from selection.cluster_sharded import sharded_clusters
from selection.ngrams import gather_ranges
from selection.selectors.base import Selector


def unit_histograms(units, rows):
    """Hellinger embeddings (square root of the unit distribution) of ``rows``.

    Returns
    -------
    numpy.ndarray
        ``float32`` ``[len(rows), n_clusters]``; an utterance without units is all zeros.
    """
    positions, local = gather_ranges(units.offsets, rows)
    owner = np.repeat(np.arange(len(rows)), np.diff(local))
    k = units.n_clusters
    hist = np.bincount(owner * k + units.flat[positions], minlength=len(rows) * k)
    hist = hist.reshape(len(rows), k).astype(np.float32)
    hist /= np.maximum(hist.sum(axis=1, keepdims=True), 1.0)
    return np.sqrt(hist)


class ClusterBalancedSelector(Selector):
    """Round-robin over k-means clusters of utterance embeddings.

    Each utterance is embedded by the square root of its unit histogram (so
    Euclidean k-means approximates Hellinger distance between unit
    distributions). Mini-batch k-means is fitted on a seeded sample of at most
    ``max_fit_utterances`` embeddings and applied to all candidates in chunks
    (memory stays bounded). Candidates are shuffled (seeded) inside their
    cluster and taken one per cluster in turn, clusters in a seeded random
    order, so every cluster gets the same number of utterances until it runs out.

    Parameters
    ----------
    n_clusters : int
        Clusters (capped at the number of candidates).
    seed : int
        Seed for sampling, k-means and shuffles.
    max_fit_utterances : int
        Embeddings used to fit k-means.
    chunk_utterances : int
        Candidates embedded and assigned at once.

    Notes
    -----
    Under ``torchrun`` it selects with each process labelling its own shard of the units
    (:mod:`selection.cluster_sharded`): the one-process subset on any number of processes.
    """

    distributed = "exact"

    def __init__(self, n_clusters=50, seed=0, max_fit_utterances=20000, chunk_utterances=20000):
        self.n_clusters = int(n_clusters)
        self.seed = int(seed)
        self.max_fit_utterances = int(max_fit_utterances)
        self.chunk_utterances = int(chunk_utterances)

    def fit_sample(self, n_candidates):
        """Positions (increasing) of the candidates whose histograms fit k-means."""
        rng = np.random.default_rng(self.seed)
        return np.sort(rng.choice(n_candidates, min(n_candidates, self.max_fit_utterances), replace=False))

    @staticmethod
    def embed(units, rows):
        """The embeddings k-means clusters: :func:`unit_histograms` of ``rows`` of ``units``."""
        return unit_histograms(units, rows)

    def fit(self, histograms, n_candidates):
        """Mini-batch k-means fitted on the sample's ``histograms`` (:func:`unit_histograms`)."""
        n_clusters = min(self.n_clusters, n_candidates)
        kmeans = MiniBatchKMeans(n_clusters=n_clusters, random_state=self.seed, n_init=3,
                                 batch_size=max(1024, n_clusters))
        return kmeans.fit(histograms)

    def labels(self, kmeans, units, rows):
        """Cluster of each of ``rows`` of ``units``, ``chunk_utterances`` at a time."""
        labels = np.empty(len(rows), dtype=np.int64)
        for start in range(0, len(rows), self.chunk_utterances):
            stop = start + self.chunk_utterances
            labels[start:stop] = kmeans.predict(unit_histograms(units, rows[start:stop]))
        return labels

    def clusters(self, units, rows):
        """Cluster label of every candidate row."""
        kmeans = self.fit(unit_histograms(units, rows[self.fit_sample(len(rows))]), len(rows))
        return self.labels(kmeans, units, rows)

    def round_robin(self, labels):
        """The order of the candidates (pool order) from their cluster labels (see the class notes)."""
        rng = np.random.default_rng(self.seed + 1)
        shuffle = rng.permutation(len(labels))
        by_cluster = shuffle[np.argsort(labels[shuffle], kind="stable")]
        sorted_labels = labels[by_cluster]
        first = np.searchsorted(sorted_labels, sorted_labels, side="left")
        turn = np.empty(len(labels), dtype=np.int64)
        turn[by_cluster] = np.arange(len(labels)) - first
        cluster_rank = rng.permutation(int(labels.max()) + 1)
        return np.lexsort((cluster_rank[labels], turn))

    def rank(self, ids, durations, units, rows, target_units, budget_seconds):
        """Round-robin order over clusters; no scores (see :meth:`clusters` for the labels)."""
        return self.round_robin(self.clusters(units, rows)), None

    def select_shards(self, pool_shard, target_shard, rows_of, durations_of_rows, n_clusters, budget_hours, group,
                      cache=None):
        """:func:`selection.cluster_sharded.sharded_clusters`, then the round robin and the fill on process 0."""
        gathered = sharded_clusters(self, pool_shard, rows_of, group)
        if gathered is None:
            return None
        rows, labels = gathered
        seconds = durations_of_rows(rows)
        picked, _ = self.fill(seconds, self.round_robin(labels), None, budget_hours)
        return rows[picked], seconds[picked], None

    def settings(self):
        """Constructor arguments."""
        return {"n_clusters": self.n_clusters, "seed": self.seed,
                "max_fit_utterances": self.max_fit_utterances,
                "chunk_utterances": self.chunk_utterances}
