"""Staged unit discovery: features -> k-means codebook -> units of every manifest.

Each stage writes one file named after the hash of everything it depends on
(feature settings, k-means settings, seed, the fitting manifest's content) and
is skipped when that file exists, so a re-run resumes where a killed run
stopped and a changed setting never reuses a stale file. Unit extraction can be
split over processes: each ``rank`` of ``world_size`` writes its shard as pieces
of at most ``piece_hours`` of audio (each a file of its own, so a killed process
resumes at its first missing piece and holds one piece in memory at a time).
Selectors whose result does not depend on the sharding read the pieces where they
are (:mod:`selection.sharded`); the others get them merged into one unit set
after a barrier (:meth:`UnitPipeline.merge_units`).

Beside each codebook and units file (or piece) it computes, the pipeline keeps the
seconds that took in ``<file stem>.seconds.json``, so that a run finding them cached
still reports the feature pass (:meth:`UnitPipeline.feature_seconds`).
"""

import json
import logging
import time
from pathlib import Path

from common.atomic import atomic_write_text
from common.hashing import file_sha256, files_state, settings_hash
from common.manifest import ManifestError
from selection.audio import AudioStream
from selection.features import iter_features
from selection.units import (
    KMeansCodebook,
    UnitSet,
    extract_units,
    merge_unit_shards,
    piece_bounds,
    piece_path,
    sample_frames,
    sample_utterances,
    shard_ids,
)

logger = logging.getLogger(__name__)


def audio_state(manifest):
    """:func:`common.hashing.files_state` of a manifest's audio files (part of every stage key)."""
    return files_state(manifest.wav_paths())


def pool_pipeline(extractor, unit_settings, folder, data_root, seed):
    """The pipeline selection runs on a pool under ``data_root``: its cached codebook and units are those
    of any other caller with the same extractor, settings, folder, root and seed (e.g. the distillation
    objective that predicts a teacher layer's units reuses selection's codebook).

    Parameters
    ----------
    extractor : callable
        With ``settings()`` (:mod:`selection.features`).
    unit_settings : dict
        The units file's ``unit_settings`` (keyword arguments of :class:`UnitPipeline`).
    folder, data_root : str or os.PathLike
        The cache folder; the manifests' ``$data_root``.
    seed : int
        The k-means seed.
    """
    features = {**extractor.settings(), "data_root": str(Path(data_root).resolve())}
    return UnitPipeline(extractor, features, folder=folder, seed=seed, **unit_settings)


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
    piece_hours : float
        Audio per piece of a process's shard when the units are extracted by several
        processes (memory of the units stage and of a sharded selection: at 100 frames per
        second, 100 h is 72 MB of ``int16`` units).
    """

    def __init__(self, extractor, feature_settings, n_clusters, folder, fit_hours=1.0, max_fit_frames=500_000,
                 frames_per_utterance=None, seed=0, dedup=False, batch_size=8, kmeans_settings=None,
                 piece_hours=100.0):
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
        self.piece_hours = float(piece_hours)
        self._audio_states = {}
        self.settings = {"features": dict(feature_settings), "n_clusters": self.n_clusters,
                         "fit_hours": self.fit_hours, "max_fit_frames": self.max_fit_frames,
                         "frames_per_utterance": frames_per_utterance, "seed": self.seed,
                         "kmeans": self.kmeans_settings}

    def codebook_path(self, fit_manifest):
        key = settings_hash({**self.settings, "fit_manifest": file_sha256(fit_manifest.path),
                             "fit_audio": audio_state(fit_manifest)}, 12)
        return self.folder / f"codebook-k{self.n_clusters}-{key}.joblib"

    def units_path(self, codebook_path, manifest, name):
        if manifest.path not in self._audio_states:  # one look at every audio file per run, not per call
            self._audio_states[manifest.path] = audio_state(manifest)
        key = settings_hash({"codebook": codebook_path.name, "dedup": self.dedup, "with_embeddings": True,
                             "manifest": file_sha256(manifest.path), "audio": self._audio_states[manifest.path]}, 12)
        return self.folder / f"units-{name}-{key}.npz"

    def shard_pieces(self, manifest, name, codebook_path, rank, world_size):
        """The piece files of process ``rank``'s shard of ``manifest``, with the IDs each holds.

        Returns
        -------
        list of (pathlib.Path, list of str)
            Consecutive runs of the shard's IDs (:func:`selection.units.shard_ids`) of at most
            ``piece_hours`` each (an utterance longer than that is a piece of its own).
        """
        out = self.units_path(codebook_path, manifest, name)
        out = out.with_name(f"{out.stem}-pieces{self.piece_hours:g}h{out.suffix}")  # another layout, other files
        ids = shard_ids(manifest.ids, rank, world_size)
        bounds = piece_bounds(manifest.durations_of(ids), self.piece_hours * 3600.0)
        return [(piece_path(out, rank, world_size, piece), ids[start:stop])
                for piece, (start, stop) in enumerate(bounds)]

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
        started = time.perf_counter()
        ids = sample_utterances(fit_manifest.ids, fit_manifest.durations, self.fit_hours, self.seed)
        logger.info("k-means stage: features of %d utterances (%.2f h) from %s",
                    len(ids), self.fit_hours, fit_manifest.path)
        stream = AudioStream(fit_manifest, ids, progress="k-means sample: features")
        features = iter_features(stream, self.extractor, self.batch_size)
        frames = sample_frames(features, self.max_fit_frames, self.seed, self.frames_per_utterance)
        codebook = KMeansCodebook(self.n_clusters, seed=self.seed, **self.kmeans_settings)
        codebook.fit(frames)
        self.folder.mkdir(parents=True, exist_ok=True)
        codebook.save(path)
        _save_seconds(path, time.perf_counter() - started)
        return codebook, path

    def extract(self, manifest, name, codebook, codebook_path, rank=0, world_size=1):
        """Units of this process's share of ``manifest`` (all of it when ``world_size`` is 1).

        Returns
        -------
        list of pathlib.Path
            The files that hold them: the whole manifest's units file when it exists
            (or when ``world_size`` is 1), else the pieces of this process's shard
            (:meth:`shard_pieces`). A file that exists is kept.

        Raises
        ------
        common.manifest.ManifestError
            When durations disagree with the audio (naming the manifest and the piece).
        """
        out = self.units_path(codebook_path, manifest, name)
        if out.exists():
            logger.info("units stage done for %s, keeping %s", name, out)
            return [out]
        if world_size == 1:
            self._extract_piece(manifest, name, codebook, manifest.ids, out, "")
            return [out]
        pieces = self.shard_pieces(manifest, name, codebook_path, rank, world_size)
        for number, (path, ids) in enumerate(pieces):
            if path.exists():
                logger.info("units stage done for %s, piece %d of %d of shard %d, keeping %s", name, number + 1,
                            len(pieces), rank, path)
                continue
            self._extract_piece(manifest, name, codebook, ids, path,
                                f" (shard {rank}, piece {number + 1} of {len(pieces)})")
        return [path for path, _ in pieces]

    def _extract_piece(self, manifest, name, codebook, ids, out, label):
        """Extract and save the units of ``ids`` of ``manifest`` to ``out``."""
        logger.info("units stage: %d utterances of %s -> %s", len(ids), name, out)
        started = time.perf_counter()
        stream = AudioStream(manifest, ids, progress=f"units of {name}{label}")
        units = extract_units(iter_features(stream, self.extractor, self.batch_size), codebook,
                              self.extractor.frame_rate, self.dedup)
        if stream.skipped:
            logger.warning("%s: %d utterances without units (unreadable audio): %s", name,
                           len(stream.skipped), stream.skipped[:5])
        if stream.wrong_durations:
            listed = "; ".join(f"{i}: manifest {m:.2f} s, audio {a:.2f} s" for i, m, a in stream.wrong_durations[:10])
            raise ManifestError(f"{manifest.path}: {len(stream.wrong_durations)} durations disagree with the audio "
                                f"(budgets and hours come from them; units file {out.name}): {listed}")
        self.folder.mkdir(parents=True, exist_ok=True)
        units.save(out)
        _save_seconds(out, time.perf_counter() - started)

    def merge_units(self, manifest, name, codebook_path, world_size):
        """Merge the pieces of every rank into one unit set (main process, after a barrier).

        The pieces are deleted once the merged file is in place; the merged
        file is the cache from then on, whatever the number of processes.
        """
        out = self.units_path(codebook_path, manifest, name)
        if world_size > 1 and not out.exists():
            pieces = [path for rank in range(world_size)
                      for path, _ in self.shard_pieces(manifest, name, codebook_path, rank, world_size)]
            seconds = [_load_seconds(piece) for piece in pieces]
            merge_unit_shards(pieces, out)
            if None not in seconds:
                _save_seconds(out, sum(seconds))
            for piece in pieces:
                _seconds_path(piece).unlink(missing_ok=True)
                piece.unlink()
        return UnitSet.load(out)

    @staticmethod
    def feature_seconds(paths):
        """Seconds the codebook and units files ``paths`` took to compute, summed (``None``: one is not recorded).

        The pieces of several processes add up to the work of the feature pass (on one
        process, its wall time); a merged units file holds the sum of its pieces.
        """
        seconds = [_load_seconds(path) for path in paths]
        return None if None in seconds else round(sum(seconds), 1)

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


def _seconds_path(path):
    path = Path(path)
    return path.with_name(f"{path.stem}.seconds.json")


def _save_seconds(path, seconds):
    """Keep beside ``path`` the seconds it took to compute."""
    atomic_write_text(_seconds_path(path), json.dumps({"seconds": seconds}) + "\n")


def _load_seconds(path):
    """The seconds kept beside ``path``, or ``None`` (computed before they were kept)."""
    record = _seconds_path(path)
    return json.loads(record.read_text(encoding="utf-8"))["seconds"] if record.exists() else None
