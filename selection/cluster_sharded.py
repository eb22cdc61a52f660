"""Cluster round robin over shards: the one-process subset, each process labelling its own utterances.

:class:`~selection.selectors.ClusterBalancedSelector` fits k-means on a seeded sample of
the candidates' unit histograms, labels every candidate and takes them round robin over
the clusters. Over processes that each hold a shard of the units:

1. every process sends the pool rows of its candidates (utterances with units) to
   process 0, which draws the fitting sample from the whole candidate list, in pool
   order, as one process does, and broadcasts the sample's rows;
2. every process sends the histograms of its sampled utterances (at most
   ``max_fit_utterances`` in all, ``4 * n_clusters`` bytes each) to process 0, which
   fits k-means on them in pool order and sends the fitted model to every process;
3. every process labels its own candidates, piece by piece, and sends ``(row, label)``
   to process 0, which orders them round robin (:meth:`~selection.selectors.ClusterBalancedSelector.round_robin`).

Histograms are per utterance, the sample and the fit see the same data in the same order,
and a label depends on its utterance and the model only: the subset is the one of a single
process. Memory per process is one piece of units; process 0 adds the sample's histograms
and 16 bytes per candidate.
"""

import numpy as np

from selection.sharded import collective_step


def _own_rows(pool_shard, rows_of):
    """Pool rows of this process's candidates, piece after piece."""
    return np.concatenate([rows_of(ids) for ids in pool_shard.ids()] or [np.zeros(0, dtype=np.int64)])


def sharded_clusters(selector, pool_shard, rows_of, group):
    """Steps 1-3 (module notes): every candidate's cluster, on process 0.

    Parameters
    ----------
    selector : selection.selectors.ClusterBalancedSelector
        The selector (its seed, sample size and clusters).
    pool_shard : selection.sharded.UnitShard
        This process's units of the pool.
    rows_of : callable
        Pool rows (``int64``) of a list of IDs.
    group : selection.collectives.SingleProcess
        The processes.

    Returns
    -------
    tuple of (numpy.ndarray, numpy.ndarray) or None
        On process 0: the candidates' pool rows (pool order) and their labels. ``None`` elsewhere.

    Raises
    ------
    ValueError
        On process 0, when no process has a candidate.
    """
    own = collective_step(group, "reading the IDs", pool_shard, lambda: _own_rows(pool_shard, rows_of))
    gathered = group.gather(own)
    sample, n_candidates = np.zeros(0, dtype=np.int64), 0
    if group.rank == 0:
        candidates = np.sort(np.concatenate(gathered))
        if not len(candidates):
            raise ValueError("no candidate utterances in the pool")
        n_candidates = len(candidates)
        sample = candidates[selector.fit_sample(n_candidates)]
    sample = group.broadcast(sample)

    def sampled_histograms():
        rows, histograms = [np.zeros(0, dtype=np.int64)], []
        for units in pool_shard.pieces():
            piece_rows = rows_of(units.ids)
            keep = np.flatnonzero(np.isin(piece_rows, sample))
            rows.append(piece_rows[keep])
            histograms.append(selector.embed(units, keep).ravel())
        return np.concatenate(rows), np.concatenate(histograms or [np.zeros(0, dtype=np.float32)])

    rows, histograms = collective_step(group, "the k-means sample", pool_shard, sampled_histograms)
    rows, histograms = group.gather(rows), group.gather(histograms)
    model = None
    if group.rank == 0:
        rows = np.concatenate(rows)
        histograms = np.concatenate(histograms).reshape(len(rows), -1)
        model = selector.fit(histograms[np.argsort(rows)], n_candidates)
    model = group.all_gather_object(model)[0]

    def labelled():
        rows, labels = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)]
        for units in pool_shard.pieces():
            rows.append(rows_of(units.ids))
            labels.append(selector.labels(model, units, np.arange(len(units.ids))))
        return np.concatenate(rows), np.concatenate(labels)

    rows, labels = collective_step(group, "labelling", pool_shard, labelled)
    rows, labels = group.gather(rows), group.gather(labels)
    if group.rank != 0:
        return None
    rows, labels = np.concatenate(rows), np.concatenate(labels)
    order = np.argsort(rows, kind="stable")
    return rows[order], labels[order]
