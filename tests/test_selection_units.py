"""K-means units: quality checks, storage keyed by ID, sharding."""

import logging

import numpy as np
import pytest
import soundfile as sf

from selection.audio import AudioStream
from selection.features import MFCCExtractor, iter_features
from selection.pipeline import UnitPipeline
from common.manifest import read_manifest
from selection.units import (
    DegenerateUnitsError, KMeansCodebook, UnitError, UnitSet, dedup_runs, extract_units,
    merge_unit_shards, sample_frames, sample_utterances, piece_path, shard_ids, unit_quality,
)


def _blobs(n, k, dim=8, seed=0):
    rng = np.random.default_rng(seed)
    centres = 10 * rng.normal(size=(k, dim))
    return (centres[rng.integers(0, k, n)] + rng.normal(size=(n, dim))).astype(np.float32)


def test_fit_reports_quality():
    codebook = KMeansCodebook(8, seed=0, batch_size=500, n_epochs=3)
    quality = codebook.fit(_blobs(2000, 8))
    assert quality.clusters_used == 8 and quality.n_frames == 2000
    assert quality.normalized_entropy > 0.9 and quality.max_cluster_share < 0.3
    assert quality.inertia is not None and quality.inertia > 0
    units = codebook.predict(_blobs(10, 8))
    assert units.dtype == np.int16 and units.shape == (10,)
    assert codebook.predict(np.zeros((0, 8))).shape == (0,)


def test_more_clusters_than_frames():
    with pytest.raises(UnitError, match="k=50 clusters but only 20 frames"):
        KMeansCodebook(50).fit(_blobs(20, 4))


def test_one_cluster_holding_most_frames_is_degenerate():
    frames = np.zeros((1000, 8), dtype=np.float32)
    frames[:50] = _blobs(50, 5)
    with pytest.raises(DegenerateUnitsError, match="one cluster holds"):
        KMeansCodebook(10, batch_size=200, n_epochs=2).fit(frames)


def test_most_clusters_empty_is_degenerate():
    frames = np.repeat(_blobs(5, 5), 100, axis=0)  # only 5 distinct points for 40 clusters
    with pytest.raises(DegenerateUnitsError, match="clusters are used"):
        KMeansCodebook(40, batch_size=200, n_epochs=2).fit(frames)


def test_unit_quality_figures():
    quality = unit_quality(np.array([0, 0, 1, 1]), 4)
    assert quality.clusters_used == 2 and quality.entropy_bits == pytest.approx(1.0)
    assert quality.normalized_entropy == pytest.approx(0.5) and quality.max_cluster_share == 0.5


def test_unit_set_storage_round_trip(tmp_path):
    units = UnitSet.from_sequences([("b", [3, 3, 1]), ("a", []), ("c/x", [2])], 50.0, 4)
    units.save(tmp_path / "u.npz")
    loaded = UnitSet.load(tmp_path / "u.npz")
    assert loaded.ids == ["b", "a", "c/x"] and loaded.frame_rate == 50.0 and loaded.n_clusters == 4
    assert loaded["b"].dtype == np.int16 and loaded["b"].tolist() == [3, 3, 1]
    assert loaded["a"].tolist() == [] and loaded.lengths.tolist() == [3, 0, 1]
    sub = loaded.subset(["c/x", "b"])
    assert sub.ids == ["c/x", "b"] and sub["b"].tolist() == [3, 3, 1]
    assert not list(tmp_path.glob(".u.npz*"))  # no temporary left behind
    with pytest.raises(UnitError, match="duplicate"):
        UnitSet.from_sequences([("a", [1]), ("a", [2])], 50.0, 4)


def test_dedup_runs():
    assert dedup_runs(np.array([3, 3, 5, 5, 5, 3])).tolist() == [3, 5, 3]
    assert dedup_runs(np.array([], dtype=np.int16)).tolist() == []


def test_sample_utterances_is_seeded():
    ids = [f"u{i}" for i in range(100)]
    first = sample_utterances(ids, np.full(100, 36.0), hours=0.1, seed=3)
    assert first == sample_utterances(ids, np.full(100, 36.0), hours=0.1, seed=3)
    assert len(first) == 10 and first != sample_utterances(ids, np.full(100, 36.0), 0.1, seed=4)


def test_sample_frames_is_bounded_and_seeded():
    features = [(f"u{i}", _blobs(100, 3, seed=i)) for i in range(10)]
    frames = sample_frames(features, max_frames=250, seed=0, frames_per_utterance=40)
    assert frames.shape == (250, 8)
    assert np.array_equal(frames, sample_frames(features, 250, seed=0, frames_per_utterance=40))
    with pytest.raises(UnitError, match="no frames"):
        sample_frames([], 10, seed=0)


@pytest.fixture(scope="module")
def audio_manifest(tmp_path_factory):
    folder = tmp_path_factory.mktemp("audio")
    rng = np.random.default_rng(0)
    lines = ["ID,duration,wav"]
    t = np.arange(8000) / 16000
    for i in range(12):
        wav = np.sin(2 * np.pi * (200 + 300 * (i % 4)) * t) + 0.1 * rng.normal(size=len(t))
        sf.write(folder / f"{i:02d}.flac", (0.3 * wav).astype(np.float32), 16000)
        lines.append(f"utt{i:02d},0.5,$data_root/{i:02d}.flac")
    (folder / "m.csv").write_text("\n".join(lines) + "\n")
    return read_manifest(folder / "m.csv", data_root=folder)


def test_sharded_units_equal_single_process(audio_manifest, tmp_path):
    extractor = MFCCExtractor()
    frames = sample_frames(iter_features(AudioStream(audio_manifest), extractor), 5000, seed=0)
    codebook = KMeansCodebook(8, seed=0, batch_size=500, n_epochs=2)
    codebook.fit(frames)
    codebook.save(tmp_path / "km.joblib")
    codebook = KMeansCodebook.load(tmp_path / "km.joblib")
    single = extract_units(iter_features(AudioStream(audio_manifest), extractor), codebook, 100.0)
    single.save(tmp_path / "units.npz")
    world = 3
    paths = []
    for rank in range(world):
        ids = shard_ids(audio_manifest.ids, rank, world)
        shard = extract_units(iter_features(AudioStream(audio_manifest, ids), extractor), codebook, 100.0)
        paths.append(piece_path(tmp_path / "units.npz", rank, world, 0))
        shard.save(paths[-1])
    assert paths[1].name == "units.shard-01-of-03.part-0000.npz"
    merged = merge_unit_shards(paths, tmp_path / "merged.npz")
    reference = UnitSet.load(tmp_path / "units.npz").to_dict()
    loaded = UnitSet.load(tmp_path / "merged.npz").to_dict()
    assert reference.keys() == loaded.keys() == set(audio_manifest.ids)
    assert all(np.array_equal(reference[i], loaded[i]) for i in reference)
    assert merged.frame_rate == 100.0 and merged.n_clusters == 8
    with pytest.raises(UnitError, match="more than one shard"):
        merge_unit_shards([paths[0], paths[0]])
    deduped = extract_units(iter_features(AudioStream(audio_manifest), extractor), codebook, 100.0,
                            dedup=True)
    assert deduped.dedup and np.all(deduped.lengths <= single.lengths)
    assert all(np.all(np.diff(deduped[i]) != 0) for i in deduped.ids)


def test_shard_ids_partition():
    ids = [f"u{i}" for i in range(10)][::-1]
    shards = [shard_ids(ids, r, 3) for r in range(3)]
    assert sorted(sum(shards, [])) == sorted(ids)
    assert shards == [shard_ids(sorted(ids), r, 3) for r in range(3)]
    with pytest.raises(ValueError):
        shard_ids(ids, 3, 3)


def test_units_stage_resumes_per_piece(audio_manifest, tmp_path, caplog):
    """Each process's shard is written in pieces; a killed process redoes only its missing pieces."""
    pipeline = UnitPipeline(MFCCExtractor(), {"kind": "mfcc"}, n_clusters=4, folder=tmp_path, fit_hours=0.01,
                            kmeans_settings={"n_epochs": 2}, piece_hours=1.2 / 3600)  # two 0.5 s utterances a piece
    codebook, codebook_path = pipeline.fit_codebook(audio_manifest)
    pieces = [pipeline.extract(audio_manifest, "pool", codebook, codebook_path, rank, 2) for rank in range(2)]
    assert [len(p) for p in pieces] == [3, 3]
    stamps = {p: p.stat().st_mtime_ns for p in pieces[0]}
    pieces[0][1].unlink()  # killed while writing its second piece
    caplog.clear()  # only what the re-run logs (an earlier test may have left INFO records captured)
    with caplog.at_level(logging.INFO):
        again = pipeline.extract(audio_manifest, "pool", codebook, codebook_path, 0, 2)
    assert again == pieces[0]
    assert caplog.text.count("units stage: ") == 1
    assert f"units stage: 2 utterances of pool -> {pieces[0][1]}" in caplog.text
    assert [p.stat().st_mtime_ns == stamps[p] for p in pieces[0]] == [True, False, True]
    merged = pipeline.merge_units(audio_manifest, "pool", codebook_path, 2)
    single = UnitPipeline(MFCCExtractor(), {"kind": "mfcc"}, n_clusters=4, folder=tmp_path / "one", fit_hours=0.01,
                          kmeans_settings={"n_epochs": 2})
    single.extract(audio_manifest, "pool", codebook, codebook_path)
    alone = UnitSet.load(single.units_path(codebook_path, audio_manifest, "pool"))
    assert merged.ids == alone.ids and np.array_equal(merged.flat, alone.flat)
    assert not [p for p in tmp_path.glob("*.part-*")]  # merged, so the pieces are gone
