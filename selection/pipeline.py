"""Staged unit discovery: features -> k-means codebook -> units of every manifest.

Each stage writes one file named after the hash of everything it depends on
(feature settings, k-means settings, seed, the fitting manifest's content) and
is skipped when that file exists, so a re-run resumes where a killed run
stopped and a changed setting never reuses a stale file. Unit extraction can be
split over processes: each ``rank`` of ``world_size`` writes its shard and the
caller merges them after a barrier (see :func:`merge_units`).
"""

import logging
from pathlib import Path

from common.hashing import file_sha256, files_state, settings_hash
from common.manifest import ManifestError
from selection.audio import AudioStream
from selection.features import iter_features
from selection.units import (
    KMeansCodebook,
    UnitSet,
    extract_units,
    merge_unit_shards,
    sample_frames,
    sample_utterances,
    shard_ids,
    shard_path,
)

logger = logging.getLogger(__name__)


def audio_state(manifest):
    """:func:`common.hashing.files_state` of a manifest's audio files (part of every stage key)."""
    return files_state(manifest.wav_path(utt_id) for utt_id in manifest.ids)


class UnitPipeline:
    """Fit a codebook on one manifest and turn any manifest into units, with cached stages.

    Parameters
    ----------
    extractor : callable
        Feature extractor (:class:`selection.features.MFCCExtractor` or
        :class:`selection.features.SSLExtractor`).
    feature_settings : dict
        What identifies the features (e.g. ``{"kind": "mfcc", "n_mfcc": 13}``);
        part of every stage hash.
    n_clusters : int
        Codebook size ``k``.
    folder : str or os.PathLike
        Where the stage files go.
    fit_hours : float
        Audio drawn (seeded) from the fitting manifest for k-means.
    max_fit_frames : int
        Bound on the frames held in memory for fitting.
    frames_per_utterance : int, optional
        Frames drawn from each sampled utterance (spreads the sample).
    seed : int
        Seed of the utterance and frame sample and of k-means.
    dedup : bool
        Collapse repeated units.
    batch_size : int
        Utterances per feature-extraction batch.
    kmeans_settings : dict, optional
        Extra arguments of :class:`selection.units.KMeansCodebook`.
    """

    def __init__(self, extractor, feature_settings, n_clusters, folder, fit_hours=1.0, max_fit_frames=500_000,
                 frames_per_utterance=None, seed=0, dedup=False, batch_size=8, kmeans_settings=None):
        self.extractor = extractor
        self.folder = Path(folder)
        self.n_clusters = int(n_clusters)
        self.fit_hours = float(fit_hours)
        self.max_fit_frames = int(max_fit_frames)
        self.frames_per_utterance = frames_per_utterance
        self.seed = int(seed)
        self.dedup = bool(dedup)
        self.batch_size = int(batch_size)
        self.kmeans_settings = dict(kmeans_settings or {})
        self.settings = {"features": dict(feature_settings), "n_clusters": self.n_clusters,
                         "fit_hours": self.fit_hours, "max_fit_frames": self.max_fit_frames,
                         "frames_per_utterance": frames_per_utterance, "seed": self.seed,
                         "kmeans": self.kmeans_settings}

    def codebook_path(self, fit_manifest):
        key = settings_hash({**self.settings, "fit_manifest": file_sha256(fit_manifest.path),
                             "fit_audio": audio_state(fit_manifest)}, 12)
        return self.folder / f"codebook-k{self.n_clusters}-{key}.joblib"

    def units_path(self, codebook_path, manifest, name):
        key = settings_hash({"codebook": codebook_path.name, "dedup": self.dedup, "with_embeddings": True,
                             "manifest": file_sha256(manifest.path), "audio": audio_state(manifest)}, 12)
        return self.folder / f"units-{name}-{key}.npz"

    def fit_codebook(self, fit_manifest):
        """The codebook fitted on a seeded sample of ``fit_manifest`` (loaded when cached).

        Returns
        -------
        tuple of (KMeansCodebook, Path)
        """
        path = self.codebook_path(fit_manifest)
        if path.exists():
            logger.info("k-means stage done, loading %s", path)
            return KMeansCodebook.load(path), path
        ids = sample_utterances(fit_manifest.ids, fit_manifest.durations_of(fit_manifest.ids),
                                self.fit_hours, self.seed)
        logger.info("k-means stage: features of %d utterances (%.2f h) from %s",
                    len(ids), self.fit_hours, fit_manifest.path)
        stream = AudioStream(fit_manifest, ids, progress="k-means sample: features")
        features = iter_features(stream, self.extractor, self.batch_size)
        frames = sample_frames(features, self.max_fit_frames, self.seed, self.frames_per_utterance)
        codebook = KMeansCodebook(self.n_clusters, seed=self.seed, **self.kmeans_settings)
        codebook.fit(frames)
        self.folder.mkdir(parents=True, exist_ok=True)
        codebook.save(path)
        return codebook, path

    def extract(self, manifest, name, codebook, codebook_path, rank=0, world_size=1):
        """Units of this process's share of ``manifest`` (all of it when ``world_size`` is 1).

        Returns
        -------
        Path
            The file written (a shard when ``world_size > 1``). Skipped when it
            exists, or when the merged units of the whole manifest do.
        """
        out = self.units_path(codebook_path, manifest, name)
        if world_size > 1 and not out.exists():
            out = shard_path(out, rank, world_size)
        if out.exists():
            logger.info("units stage done for %s, keeping %s", name, out)
            return out
        ids = shard_ids(manifest.ids, rank, world_size)
        logger.info("units stage: %d utterances of %s -> %s", len(ids), name, out)
        stream = AudioStream(manifest, ids, progress=f"units of {name}" + (f" (shard {rank})" if world_size > 1 else ""))
        units = extract_units(iter_features(stream, self.extractor, self.batch_size), codebook,
                              self.extractor.frame_rate, self.dedup)
        if stream.skipped:
            logger.warning("%s: %d utterances without units (unreadable audio): %s", name,
                           len(stream.skipped), stream.skipped[:5])
        if stream.wrong_durations:
            listed = "; ".join(f"{i}: manifest {m:.2f} s, audio {a:.2f} s" for i, m, a in stream.wrong_durations[:10])
            raise ManifestError(f"{manifest.path}: {len(stream.wrong_durations)} durations disagree with the audio "
                                f"(budgets and hours come from them): {listed}")
        self.folder.mkdir(parents=True, exist_ok=True)
        units.save(out)
        return out

    def merge_units(self, manifest, name, codebook_path, world_size):
        """Merge the shards of every rank into one unit set (main process, after a barrier).

        The shards are deleted once the merged file is in place; the merged
        file is the cache from then on, whatever the number of processes.
        """
        out = self.units_path(codebook_path, manifest, name)
        if world_size > 1 and not out.exists():
            shards = [shard_path(out, r, world_size) for r in range(world_size)]
            merge_unit_shards(shards, out)
            for shard in shards:
                shard.unlink()
        return UnitSet.load(out)

    def run(self, fit_manifest, manifests):
        """Single-process shortcut: fit (or load) the codebook and return units of each manifest.

        Parameters
        ----------
        fit_manifest : common.manifest.Manifest
            Where the k-means sample is drawn from.
        manifests : dict
            Name -> :class:`common.manifest.Manifest` to turn into units.

        Returns
        -------
        tuple of (dict, KMeansCodebook)
            Name -> :class:`selection.units.UnitSet`, and the codebook.
        """
        codebook, path = self.fit_codebook(fit_manifest)
        units = {}
        for name, manifest in manifests.items():
            self.extract(manifest, name, codebook, path)
            units[name] = self.merge_units(manifest, name, path, world_size=1)
        return units, codebook
