"""Synthetic unit corpora with known domains, for tests, benchmarks and smoke runs.

Each domain has its own unit distribution: a mixture of a distribution shared by
all domains and a domain-specific sparse one (Dirichlet draws). Sequences have
runs (a unit repeats with probability ``repeat_prob``), like units of real
speech at 50-100 frames per second.
"""

from dataclasses import dataclass

import numpy as np

from common.manifest import Manifest
from selection.selectors.cluster import unit_histograms
from selection.units import UnitSet


@dataclass
class SyntheticCorpus:
    """Unit sequences with their domain and duration.

    Attributes
    ----------
    units : selection.units.UnitSet
        IDs ``utt-0000000`` ... in generation order.
    domains : numpy.ndarray
        Domain name of each utterance.
    durations : numpy.ndarray
        Seconds per utterance (units / frame rate).
    """

    units: UnitSet
    domains: np.ndarray
    durations: np.ndarray

    def manifest(self, ids=None, name="<synthetic>"):
        """In-memory :class:`common.manifest.Manifest` (``ID,duration,wav,domain``)."""
        index = np.arange(len(self.units)) if ids is None else self.units.rows(ids)
        rows = [{"ID": self.units.ids[i], "duration": f"{self.durations[i]:.2f}",
                 "wav": f"$data_root/{self.units.ids[i]}.flac", "domain": str(self.domains[i])}
                for i in index]
        return Manifest(name, ["ID", "duration", "wav", "domain"], rows)


def with_onehot_embeddings(units):
    """``units`` with the embeddings its frames would give as one-hot features.

    The mean of one-hot frames is the utterance's unit distribution ``p``, their standard
    deviation ``sqrt(p (1 - p))`` (what :func:`selection.units.utterance_embedding` computes
    from real features), so embedding-based selectors can run on synthetic units.
    """
    hist = unit_histograms(units, np.arange(len(units))).astype(np.float64) ** 2  # back from Hellinger to p
    embeddings = np.concatenate([hist, np.sqrt(hist * (1.0 - hist))], axis=1)
    return UnitSet(units.ids, units.offsets, units.flat, units.frame_rate, units.n_clusters, units.dedup, embeddings)


def domain_distributions(n_domains, n_clusters, shared_weight=0.5, concentration=0.1, seed=0):
    """Unit distribution of each domain, ``[n_domains, n_clusters]`` (rows sum to 1)."""
    rng = np.random.default_rng(seed)
    shared = rng.dirichlet(np.ones(n_clusters))
    own = rng.dirichlet(np.full(n_clusters, concentration), size=n_domains)
    return shared_weight * shared[None, :] + (1.0 - shared_weight) * own


def synthetic_corpus(n_utterances, domains, domain_probs=None, n_clusters=500, mean_length=250,
                     repeat_prob=0.5, frame_rate=50.0, seed=0, distribution_seed=0,
                     chunk_utterances=100_000):
    """Generate a synthetic unit corpus.

    Parameters
    ----------
    n_utterances : int
        Utterances to generate.
    domains : sequence of str
        Domain names; domain ``i`` uses row ``i`` of :func:`domain_distributions`.
    domain_probs : sequence of float, optional
        Share of each domain (default uniform).
    n_clusters : int
        Codebook size.
    mean_length : int
        Mean units per utterance (lengths uniform in ``[mean/2, 3 mean/2]``).
    repeat_prob : float
        Probability that a unit repeats the previous one.
    frame_rate : float
        Units per second (gives the durations).
    seed : int
        Seed of the sequences.
    distribution_seed : int
        Seed of the domain distributions (share it between a pool and its target).
    chunk_utterances : int
        Utterances generated at once (memory bound).

    Returns
    -------
    SyntheticCorpus
    """
    rng = np.random.default_rng(seed)
    names = np.asarray(list(domains))
    cdf = np.cumsum(domain_distributions(len(names), n_clusters, seed=distribution_seed), axis=1)
    cdf[:, -1] = 1.0
    utt_domain = rng.choice(len(names), size=n_utterances, p=domain_probs)
    lengths = rng.integers(mean_length // 2, mean_length * 3 // 2 + 1, size=n_utterances)
    offsets = np.zeros(n_utterances + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.empty(offsets[-1], dtype=np.int16)
    for start in range(0, n_utterances, chunk_utterances):
        stop = min(start + chunk_utterances, n_utterances)
        lens = lengths[start:stop]
        token_domain = np.repeat(utt_domain[start:stop], lens)
        draws = rng.random(len(token_domain))
        units = np.empty(len(token_domain), dtype=np.int16)
        for d in range(len(names)):
            where = np.flatnonzero(token_domain == d)
            units[where] = np.searchsorted(cdf[d], draws[where], side="right")
        repeat = rng.random(len(units)) < repeat_prob
        local = np.concatenate([[0], np.cumsum(lens)[:-1]])
        repeat[local] = False
        source = np.where(repeat, 0, np.arange(len(units)))
        np.maximum.accumulate(source, out=source)
        flat[offsets[start] : offsets[stop]] = units[source]
    ids = [f"utt-{i:07d}" for i in range(n_utterances)]
    units = UnitSet(ids, offsets, flat, frame_rate, n_clusters)
    return SyntheticCorpus(units, names[utt_domain], lengths / frame_rate)
