"""Discrete units: k-means on a seeded sample of frames, unit sets keyed by utterance ID.

Stages (each is a function, so a recipe can cache each output):

1. :func:`sample_utterances` picks utterances for fitting (seeded, by hours);
2. :func:`sample_frames` draws a bounded, seeded sample of their frames;
3. :class:`KMeansCodebook` fits k-means with ``partial_fit`` (SpeechBrain's
   :class:`~speechbrain.integrations.audio_tokenizers.kmeans.MiniBatchKMeansSklearn`)
   and checks the result (:class:`UnitQuality`);
4. :func:`extract_units` maps every utterance to ``int16`` units, giving a
   :class:`UnitSet` saved as one ``.npz`` (IDs, offsets, flat units, frame rate,
   and each utterance's embedding: the mean and standard deviation of its feature
   frames, from the same feature pass);
   :func:`shard_ids`, :func:`piece_bounds` / :func:`merge_unit_shards` split this stage over processes.
"""

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import joblib
import numpy as np
import torch

from common.atomic import atomic_path
from common.manifest_columns import IdColumn
from selection.ngrams import gather_ranges

logger = logging.getLogger(__name__)


class UnitError(ValueError):
    """Units cannot be fitted or are unusable (too few frames, degenerate clustering)."""


class DegenerateUnitsError(UnitError):
    """One cluster holds most frames, or most clusters are empty."""


class UnitSet:
    """Unit sequences keyed by utterance ID, stored flat with offsets.

    Parameters
    ----------
    ids : sequence of str
        Utterance IDs (unique).
    offsets : numpy.ndarray
        ``int64`` array of ``len(ids) + 1`` start positions into ``flat``.
    flat : numpy.ndarray
        All sequences concatenated, ``int16``.
    frame_rate : float
        Units per second of audio (before any run-length dedup).
    n_clusters : int
        Codebook size; every unit is in ``[0, n_clusters)``.
    dedup : bool
        Whether consecutive repeats were collapsed.
    embeddings : numpy.ndarray, optional
        One vector per utterance (``[len(ids), dim]``, stored ``float16``): the
        mean and standard deviation over the utterance's feature frames
        (:func:`utterance_embedding`), for selectors that compare utterances as
        wholes (:class:`selection.selectors.KCenterSelector`).
    """

    def __init__(self, ids, offsets, flat, frame_rate, n_clusters, dedup=False, embeddings=None):
        self.ids = [str(i) for i in ids]
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.flat = np.asarray(flat, dtype=np.int16)
        self.frame_rate = float(frame_rate)
        self.n_clusters = int(n_clusters)
        self.dedup = bool(dedup)
        if len(self.offsets) != len(self.ids) + 1 or self.offsets[-1] != len(self.flat):
            raise UnitError("offsets do not match ids and flat units")
        self.embeddings = None if embeddings is None else np.asarray(embeddings, dtype=np.float16)
        if self.embeddings is not None and (self.embeddings.ndim != 2 or len(self.embeddings) != len(self.ids)):
            raise UnitError(f"embeddings of shape {self.embeddings.shape} for {len(self.ids)} utterances")
        self._index = {utt_id: i for i, utt_id in enumerate(self.ids)}
        if len(self._index) != len(self.ids):
            raise UnitError("duplicate utterance IDs in unit set")

    @classmethod
    def from_sequences(cls, sequences, frame_rate, n_clusters, dedup=False, embeddings=None):
        """Build from ``(utt_id, units)`` pairs (any iterable), with embeddings in the same order when given."""
        ids, parts = [], []
        for utt_id, seq in sequences:
            ids.append(utt_id)
            parts.append(np.asarray(seq, dtype=np.int16))
        offsets = np.zeros(len(parts) + 1, dtype=np.int64)
        np.cumsum([len(p) for p in parts], out=offsets[1:])
        flat = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)
        if embeddings is not None:
            embeddings = np.stack(embeddings) if len(embeddings) else np.zeros((0, 0), dtype=np.float16)
        return cls(ids, offsets, flat, frame_rate, n_clusters, dedup, embeddings)

    def __len__(self):
        return len(self.ids)

    def __contains__(self, utt_id):
        return utt_id in self._index

    def __getitem__(self, utt_id):
        i = self._index[utt_id]
        return self.flat[self.offsets[i] : self.offsets[i + 1]]

    @property
    def lengths(self):
        """Number of units per utterance (``int64``), in ``ids`` order."""
        return np.diff(self.offsets)

    def rows(self, ids):
        """Row positions (``int64``) of ``ids``; raises ``KeyError`` for an unknown ID."""
        return np.fromiter((self._index[i] for i in ids), dtype=np.int64, count=len(ids))

    def to_dict(self):
        """``{utt_id: units}`` (views into ``flat``)."""
        return {utt_id: self[utt_id] for utt_id in self.ids}

    def subset(self, ids):
        """A new unit set with ``ids`` (all must be present), in the given order."""
        rows = self.rows(ids)
        positions, offsets = gather_ranges(self.offsets, rows)
        return UnitSet(list(ids), offsets, self.flat[positions], self.frame_rate,
                       self.n_clusters, self.dedup, None if self.embeddings is None else self.embeddings[rows])

    def save(self, path):
        """Write to ``path`` (``.npz``, uncompressed) atomically."""
        extra = {} if self.embeddings is None else {"embeddings": self.embeddings}
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.savez(
                handle, ids=np.array(self.ids, dtype=str), offsets=self.offsets, flat=self.flat,
                frame_rate=self.frame_rate, n_clusters=self.n_clusters, dedup=self.dedup, **extra,
            )

    @classmethod
    def load(cls, path):
        """Read a unit set written by :meth:`save`."""
        with np.load(path, allow_pickle=False) as data:
            return cls(data["ids"].tolist(), data["offsets"], data["flat"],
                       float(data["frame_rate"]), int(data["n_clusters"]), bool(data["dedup"]),
                       data["embeddings"] if "embeddings" in data.files else None)


@dataclass
class UnitQuality:
    """Health figures of a unit inventory.

    Attributes
    ----------
    n_frames : int
        Frames (units) counted.
    n_clusters : int
        Codebook size.
    clusters_used : int
        Clusters holding at least one frame.
    entropy_bits : float
        Entropy of the unit distribution (bits).
    normalized_entropy : float
        ``entropy_bits / log2(n_clusters)`` (1 = uniform usage).
    max_cluster_share : float
        Fraction of frames in the most used cluster.
    inertia : float or None
        Mean squared distance of a frame to its centre (when frames were given).
    """

    n_frames: int
    n_clusters: int
    clusters_used: int
    entropy_bits: float
    normalized_entropy: float
    max_cluster_share: float
    inertia: float = None

    def as_dict(self):
        """Plain dict (for JSON)."""
        return asdict(self)

    def check(self, max_cluster_share=0.5, min_used_fraction=0.5):
        """Raise if the inventory is degenerate.

        Parameters
        ----------
        max_cluster_share : float
            Largest fraction of frames one cluster may hold.
        min_used_fraction : float
            Smallest fraction of clusters that must be used.

        Raises
        ------
        DegenerateUnitsError
            With the figures that failed.
        """
        if self.max_cluster_share > max_cluster_share:
            raise DegenerateUnitsError(
                f"degenerate units: one cluster holds {self.max_cluster_share:.1%} of "
                f"{self.n_frames} frames (limit {max_cluster_share:.0%}); check the features "
                "(silence, constant or normalised input) and the layer"
            )
        if self.clusters_used < min_used_fraction * self.n_clusters:
            raise DegenerateUnitsError(
                f"degenerate units: only {self.clusters_used} of {self.n_clusters} clusters "
                f"are used (limit {min_used_fraction:.0%}); lower k or fit on more varied frames"
            )


def unit_quality(units, n_clusters, inertia=None):
    """Usage figures of a flat array of units.

    Parameters
    ----------
    units : numpy.ndarray
        Integer units in ``[0, n_clusters)``.
    n_clusters : int
        Codebook size.
    inertia : float, optional
        Passed through to the result.

    Returns
    -------
    UnitQuality
    """
    return quality_of_counts(np.bincount(np.asarray(units, dtype=np.int64), minlength=n_clusters), inertia)


def quality_of_counts(counts, inertia=None):
    """:func:`unit_quality` from the count of each unit (``n_clusters`` values; they add over shards).

    Example
    -------
    >>> quality_of_counts(np.array([2, 2, 0, 0])).clusters_used
    2
    """
    counts = np.asarray(counts)
    n_clusters = len(counts)
    total = int(counts.sum())
    p = counts[counts > 0] / max(total, 1)
    entropy = float(-(p * np.log2(p)).sum()) + 0.0  # + 0.0 turns -0.0 into 0.0
    return UnitQuality(
        n_frames=total, n_clusters=int(n_clusters), clusters_used=int((counts > 0).sum()),
        entropy_bits=entropy,
        normalized_entropy=float(entropy / np.log2(n_clusters)) if n_clusters > 1 else 0.0,
        max_cluster_share=float(counts.max() / total) if total else 1.0,
        inertia=None if inertia is None else float(inertia),
    )


def sample_utterances(ids, durations, hours, seed):
    """Seeded random utterances totalling at most ``hours`` (at least one).

    Parameters
    ----------
    ids : sequence of str
        Candidate IDs.
    durations : array-like
        Seconds per ID.
    hours : float
        Audio to draw.
    seed : int
        Random seed.

    Returns
    -------
    list of str
        Chosen IDs in draw order.
    """
    order = np.random.default_rng(seed).permutation(len(ids))
    cum = np.cumsum(np.asarray(durations, dtype=np.float64)[order])
    n = max(1, int(np.searchsorted(cum, hours * 3600.0, side="right")))
    return [ids[i] for i in order[:n]]


def sample_frames(features, max_frames, seed, frames_per_utterance=None):
    """Seeded, bounded sample of frames from a feature stream.

    Parameters
    ----------
    features : iterable of (str, numpy.ndarray)
        ``(utt_id, feats[T, D])`` pairs, e.g. from :func:`selection.features.iter_features`.
    max_frames : int
        Stop once this many frames are drawn (memory bound).
    seed : int
        Seed for the choice of frames inside each utterance.
    frames_per_utterance : int, optional
        Frames drawn at random from each utterance (default: all of them).

    Returns
    -------
    numpy.ndarray
        ``float32`` frames ``[n, D]`` with ``n <= max_frames``.
    """
    rng = np.random.default_rng(seed)
    parts, total = [], 0
    for _, feats in features:
        if frames_per_utterance is not None and len(feats) > frames_per_utterance:
            feats = feats[np.sort(rng.choice(len(feats), frames_per_utterance, replace=False))]
        feats = feats[: max_frames - total]
        parts.append(np.asarray(feats, dtype=np.float32))
        total += len(feats)
        if total >= max_frames:
            break
    if not parts:
        raise UnitError("no frames to sample (empty feature stream)")
    return np.concatenate(parts)


class KMeansCodebook:
    """Mini-batch k-means codebook fitted with ``partial_fit``.

    Parameters
    ----------
    n_clusters : int
        Number of units ``k`` (at most 32767, units are stored as ``int16``).
    seed : int
        Seed for initialisation and mini-batch order.
    batch_size : int
        Mini-batch size; raised to ``n_clusters`` if smaller (each batch must be
        able to seed every centre).
    n_epochs : int
        Passes over the frame sample.
    max_cluster_share, min_used_fraction : float
        Degeneracy limits checked after fitting (see :meth:`UnitQuality.check`).

    Attributes
    ----------
    quality : UnitQuality or None
        Figures measured on the fitting sample by :meth:`fit`.
    """

    def __init__(self, n_clusters, seed=0, batch_size=10000, n_epochs=10,
                 max_cluster_share=0.5, min_used_fraction=0.5):
        from speechbrain.integrations.audio_tokenizers.kmeans import MiniBatchKMeansSklearn

        if not 2 <= n_clusters <= np.iinfo(np.int16).max:
            raise UnitError(f"n_clusters must be in [2, 32767], got {n_clusters}")
        self.n_clusters = int(n_clusters)
        self.seed = int(seed)
        self.batch_size = max(int(batch_size), self.n_clusters)
        self.n_epochs = int(n_epochs)
        self.max_cluster_share = max_cluster_share
        self.min_used_fraction = min_used_fraction
        self.kmeans = MiniBatchKMeansSklearn(
            n_clusters=self.n_clusters, random_state=self.seed, batch_size=self.batch_size,
            n_init=1, compute_labels=False,
        )
        self.quality = None

    def fit(self, frames):
        """Fit on a frame sample and check the clustering.

        Parameters
        ----------
        frames : numpy.ndarray
            ``[n, D]`` frames (e.g. from :func:`sample_frames`).

        Returns
        -------
        UnitQuality
            Inertia, cluster usage and unit entropy on ``frames`` (also logged).

        Raises
        ------
        UnitError
            If there are fewer frames than clusters, or non-finite frames.
        DegenerateUnitsError
            If the clustering is degenerate.
        """
        frames = np.ascontiguousarray(frames, dtype=np.float32)
        if frames.ndim != 2:
            raise UnitError(f"frames must be 2-D [n, dim], got shape {frames.shape}")
        if len(frames) < self.n_clusters:
            raise UnitError(
                f"k={self.n_clusters} clusters but only {len(frames)} frames to fit them: "
                "lower k or sample more audio"
            )
        if not np.isfinite(frames).all():
            raise UnitError("non-finite values in the frames to cluster")
        rng = np.random.default_rng(self.seed)
        for _ in range(self.n_epochs):
            order = rng.permutation(len(frames))
            for start in range(0, len(frames) - self.n_clusters + 1, self.batch_size):
                batch = frames[order[start : start + self.batch_size]]
                self.kmeans.partial_fit(torch.from_numpy(batch))
        labels = self.predict(frames)
        inertia = float(self.kmeans.inertia(torch.from_numpy(frames))) / len(frames)
        self.quality = unit_quality(labels, self.n_clusters, inertia=inertia)
        logger.info("k-means fitted: %s", self.quality)
        self.quality.check(self.max_cluster_share, self.min_used_fraction)
        return self.quality

    def predict(self, feats):
        """Units (``int16``) of frames ``[T, D]``; an empty input gives an empty output."""
        feats = np.asarray(feats, dtype=np.float32)
        if len(feats) == 0:
            return np.zeros(0, dtype=np.int16)
        return self.kmeans.kmeans.predict(feats).astype(np.int16)

    def save(self, path):
        """Write the fitted model (joblib) atomically."""
        with atomic_path(path) as tmp:
            joblib.dump({"kmeans": self.kmeans.kmeans, "quality": self.quality,
                         "settings": self.settings()}, tmp)

    def settings(self):
        """Constructor arguments (for provenance)."""
        return {"n_clusters": self.n_clusters, "seed": self.seed, "batch_size": self.batch_size,
                "n_epochs": self.n_epochs, "max_cluster_share": self.max_cluster_share,
                "min_used_fraction": self.min_used_fraction}

    @classmethod
    def load(cls, path):
        """Read a codebook written by :meth:`save`."""
        state = joblib.load(path)
        codebook = cls(**state["settings"])
        codebook.kmeans.kmeans = state["kmeans"]
        codebook.quality = state["quality"]
        return codebook


def dedup_runs(units):
    """Collapse runs of repeated units (``[3, 3, 5, 5, 5, 3] -> [3, 5, 3]``)."""
    units = np.asarray(units)
    if len(units) == 0:
        return units
    keep = np.empty(len(units), dtype=bool)
    keep[0] = True
    np.not_equal(units[1:], units[:-1], out=keep[1:])
    return units[keep]


def utterance_embedding(feats):
    """Mean and standard deviation over an utterance's frames, concatenated (``float32 [2 dim]``).

    Example
    -------
    >>> utterance_embedding(np.array([[1.0, 0.0], [3.0, 0.0]]))
    array([2., 0., 1., 0.], dtype=float32)
    """
    feats = np.asarray(feats, dtype=np.float64)
    if len(feats) == 0:
        return np.zeros(2 * feats.shape[-1], dtype=np.float32)
    return np.concatenate([feats.mean(axis=0), feats.std(axis=0)]).astype(np.float32)


def extract_units(features, codebook, frame_rate, dedup=False):
    """Units and embeddings (:func:`utterance_embedding`) of every utterance in a feature stream.

    Parameters
    ----------
    features : iterable of (str, numpy.ndarray)
        ``(utt_id, feats[T, D])`` pairs.
    codebook : KMeansCodebook
        Fitted codebook.
    frame_rate : float
        Feature frames per second (recorded in the result).
    dedup : bool
        Collapse consecutive repeats.

    Returns
    -------
    UnitSet
    """
    sequences, embeddings = [], []
    for utt_id, feats in features:
        units = codebook.predict(feats)
        sequences.append((utt_id, dedup_runs(units) if dedup else units))
        embeddings.append(utterance_embedding(feats))
    return UnitSet.from_sequences(sequences, frame_rate, codebook.n_clusters, dedup, embeddings)


def shard_ids(ids, rank, world_size):
    """Deterministic slice of ``ids`` for process ``rank`` of ``world_size``.

    IDs are sorted first, so the slice does not depend on the input order;
    shards are disjoint and together hold every ID. A manifest's
    :class:`~common.manifest_columns.IdColumn` decodes only the slice.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside [0, {world_size})")
    if isinstance(ids, IdColumn):
        return ids.sorted_slice(rank, world_size)
    return sorted(ids)[rank::world_size]


def piece_path(path, rank, world_size, piece):
    """Piece file name: ``units.npz`` -> ``units.shard-01-of-04.part-0002.npz``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.shard-{rank:02d}-of-{world_size:02d}.part-{piece:04d}{path.suffix}")


def piece_bounds(durations, piece_seconds):
    """Consecutive ranges ``[start, stop)`` of utterances holding at most ``piece_seconds`` each.

    An utterance longer than ``piece_seconds`` gets a range of its own; no utterances, no range.

    Example
    -------
    >>> piece_bounds([1.0, 1.0, 1.0, 5.0, 1.0], 2.0)
    [(0, 2), (2, 3), (3, 4), (4, 5)]
    """
    durations = np.asarray(durations, dtype=np.float64)
    bounds, start = [], 0
    ends = np.cumsum(durations)
    while start < len(durations):
        before = ends[start - 1] if start else 0.0
        stop = max(int(np.searchsorted(ends, before + piece_seconds, side="right")), start + 1)
        bounds.append((start, stop))
        start = stop
    return bounds


def merge_unit_shards(paths, out_path=None):
    """Combine unit-set shards into one (IDs sorted).

    Parameters
    ----------
    paths : sequence of str or os.PathLike
        Shard files written by :meth:`UnitSet.save`.
    out_path : str or os.PathLike, optional
        Where to save the merged set (atomically).

    Returns
    -------
    UnitSet

    Raises
    ------
    UnitError
        If shards disagree on frame rate, codebook size or dedup, or share IDs.
    """
    shards = [UnitSet.load(p) for p in paths]
    if not shards:
        raise UnitError("no shards to merge")
    meta = {(s.frame_rate, s.n_clusters, s.dedup, s.embeddings is None) for s in shards}
    if len(meta) != 1:
        raise UnitError(f"shards disagree on (frame_rate, n_clusters, dedup, no embeddings): {sorted(meta)}")
    merged, embeddings = {}, {}
    for shard, path in zip(shards, paths):
        for row, (utt_id, units) in enumerate(shard.to_dict().items()):
            if utt_id in merged:
                raise UnitError(f"ID {utt_id!r} appears in more than one shard ({path})")
            merged[utt_id] = units
            if shard.embeddings is not None:
                embeddings[utt_id] = shard.embeddings[row]
    first = shards[0]
    ids = sorted(merged)
    result = UnitSet.from_sequences(((i, merged[i]) for i in ids), first.frame_rate, first.n_clusters, first.dedup,
                                    None if first.embeddings is None else [embeddings[i] for i in ids])
    if out_path is not None:
        result.save(out_path)
    return result
