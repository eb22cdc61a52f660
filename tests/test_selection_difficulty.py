"""Proxy-student difficulty: the guard against hand-set losses, and the proxy scorer on a tiny teacher."""

import zlib

import numpy as np
import pytest
import soundfile as sf
import torch

from common.audio import load_audio
from common.manifest import read_manifest
from lobes.encoder import FrozenTeacher
from lobes.proxy_difficulty import ProxyDifficultyScorer
from selection.selectors import DifficultySelector, fill_budget
from selection.selectors.difficulty import guarded_order
from selection.synthetic import synthetic_corpus, with_onehot_embeddings
from selection.units import UnitSet


class HandSetScorer:
    """Losses fixed by the test (a function of the candidate's ID); embeddings too when given (``ids -> [N, E]``)."""

    def __init__(self, loss_of, embeddings_of=None):
        self.loss_of, self.embeddings_of = loss_of, embeddings_of

    def __call__(self, pool, ids, work_folder):
        embeddings = None if self.embeddings_of is None else self.embeddings_of(ids)
        return np.array([self.loss_of(i) for i in ids]), {"scored_hours": 0.0}, embeddings

    def settings(self):
        return {}


def guard_oracle(losses, durations, labels, cap):
    """The guard's definition, one candidate at a time."""
    used, first, later = {}, [], []
    for position in sorted(range(len(losses)), key=lambda i: (-losses[i], i)):
        if used.get(labels[position], 0.0) + durations[position] <= cap:
            used[labels[position]] = used.get(labels[position], 0.0) + durations[position]
            first.append(position)
        else:
            later.append(position)
    return first + later


def test_guarded_order_matches_its_definition():
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(1, 40))
        losses, durations = rng.normal(size=n), rng.uniform(1, 5, size=n)
        labels, cap = rng.integers(0, 4, size=n), float(rng.uniform(0, 20))
        assert guarded_order(losses, durations, labels, cap).tolist() == guard_oracle(losses, durations, labels, cap)
    losses = rng.normal(size=30)
    assert guarded_order(losses, np.ones(30), np.zeros(30, int), np.inf).tolist() == np.argsort(-losses).tolist()


DOMAINS = ["a", "b", "c", "noise"]


@pytest.fixture(scope="module")
def corpus():
    pool = synthetic_corpus(800, DOMAINS, [0.35, 0.35, 0.2, 0.1], n_clusters=40, mean_length=100, seed=3)
    return pool, with_onehot_embeddings(pool.units), pool.manifest()


def loss_by_domain(pool, units):
    """The 'noise' domain is hardest, then 'c'; within a domain, a checksum of the ID orders (fixed across runs)."""
    level = {"a": 0.0, "b": 0.0, "c": 1.0, "noise": 2.0}
    return lambda utt_id: level[pool.domains[units.rows([utt_id])[0]]] + (zlib.crc32(utt_id.encode()) % 1000) / 10_000


def test_without_guard_it_is_top_loss(corpus):
    pool, units, manifest = corpus
    loss_of = loss_by_domain(pool, units)
    budget = 0.08 * manifest.total_hours
    picked = DifficultySelector(HandSetScorer(loss_of), max_cluster_share=1.0).select(manifest, units, budget)
    losses = np.array([loss_of(i) for i in manifest.ids])
    order = np.argsort(-losses, kind="stable")
    expected = [manifest.ids[i] for i in order[fill_budget(manifest.durations[order], budget * 3600)]]
    assert picked.ids == expected
    noise = pool.domains[units.rows(picked.ids)] == "noise"  # only the last gap may go to shorter, easier audio
    assert manifest.durations_of(picked.ids)[noise].sum() > budget * 3600 - manifest.durations.max()
    assert picked.diagnostics["hours_shared_with_unguarded"] == 1.0
    assert picked.diagnostics["selection_compute"] == {"scored_hours": 0.0}


def test_guard_caps_the_hardest_cluster(corpus):
    pool, units, manifest = corpus
    budget = 0.2 * manifest.total_hours  # twice the 'noise' domain: unguarded, half of it would be noise
    selector = DifficultySelector(HandSetScorer(loss_by_domain(pool, units)), n_clusters=4, max_cluster_share=0.25,
                                  n_components=16)
    picked = selector.select(manifest, units, budget)
    labels = selector.clusters(units, units.rows(manifest.ids))[units.rows(picked.ids)]  # rows = pool order
    per_cluster = np.bincount(labels, weights=manifest.durations_of(picked.ids))
    # four clusters at a quarter each nearly fill the budget; held-back utterances close the last gap
    assert per_cluster.max() <= 0.25 * budget * 3600 + manifest.durations.max()
    assert picked.diagnostics["largest_cluster_share"] == pytest.approx(per_cluster.max() / per_cluster.sum(), abs=1e-4)
    domains = pool.domains[units.rows(picked.ids)]
    hours = manifest.durations_of(picked.ids)
    assert hours[domains == "noise"].sum() / hours.sum() < 0.35
    assert picked.diagnostics["hours_shared_with_unguarded"] < 0.7
    assert {"a", "b", "c", "noise"} <= set(domains)


def test_the_scorers_embeddings_guard_when_given(corpus):
    """Embeddings from the scorer (its own teacher pass) replace the units': units without any select the same."""
    pool, units, manifest = corpus
    bare = UnitSet(units.ids, units.offsets, units.flat, units.frame_rate, units.n_clusters, units.dedup)
    budget = 0.2 * manifest.total_hours
    settings = {"n_clusters": 4, "max_cluster_share": 0.25, "n_components": 16}
    loss_of = loss_by_domain(pool, units)
    with_units = DifficultySelector(HandSetScorer(loss_of), **settings).select(manifest, units, budget)
    from_scorer = DifficultySelector(HandSetScorer(loss_of, lambda ids: units.embeddings[units.rows(ids)]),
                                     **settings).select(manifest, bare, budget)
    assert from_scorer.ids == with_units.ids
    with pytest.raises(ValueError, match="needs utterance embeddings: the scorer gave none and the units have none"):
        DifficultySelector(HandSetScorer(loss_of), **settings).select(manifest, bare, budget)


def test_a_scorer_with_the_wrong_number_of_losses_or_embeddings_is_refused(corpus):
    _, units, manifest = corpus
    with pytest.raises(ValueError, match=r"\(3,\) losses for 800 candidates"):
        DifficultySelector(lambda pool, ids, folder: (np.zeros(3), {}, None)).select(manifest, units, 0.01)
    with pytest.raises(ValueError, match=r"embeddings of shape \(5, 2\) for 800 candidates"):
        DifficultySelector(lambda pool, ids, folder: (np.zeros(len(ids)), {}, np.zeros((5, 2)))).select(
            manifest, units, 0.01)


@pytest.fixture(scope="module")
def audio_pool(tmp_path_factory):
    """16 short utterances: tones, chirps and noise, 0.6-1.5 s."""
    folder = tmp_path_factory.mktemp("difficulty_audio")
    rng = np.random.default_rng(0)
    lines = ["ID,duration,wav"]
    for i in range(16):
        seconds = 0.6 + 0.06 * i
        t = np.arange(int(seconds * 16000)) / 16000
        wav = np.sin(2 * np.pi * (150 + 40 * i) * t * (1 + (i % 3) * t)) if i % 4 else rng.normal(size=len(t))
        sf.write(folder / f"{i:02d}.flac", (0.3 * wav).astype(np.float32), 16000)
        lines.append(f"u{i:02d},{len(t) / 16000:.4f},$data_root/{i:02d}.flac")
    (folder / "pool.csv").write_text("\n".join(lines) + "\n")
    return read_manifest(folder / "pool.csv", data_root=folder)


def test_proxy_scores_fall_with_training_and_are_cached(audio_pool, tiny_whisper_dir, tmp_path):
    ids = list(audio_pool.ids)
    common = {"teacher_source": tiny_whisper_dir, "sample_hours": 0.002, "batch_size": 4, "crop_seconds": 0.5,
              "lr": 3e-3, "stat_batches": 2, "score_batch_size": 5, "seed": 3}
    state = torch.random.get_rng_state()
    untrained, _, _ = ProxyDifficultyScorer(train_steps=0, **common)(audio_pool, ids)
    trained, cost, embeddings = ProxyDifficultyScorer(train_steps=40, **common)(audio_pool, ids, tmp_path)
    assert torch.equal(state, torch.random.get_rng_state())  # the caller's random state is left alone
    assert trained.shape == (16,) and np.isfinite(trained).all()
    assert trained.mean() < 0.9 * untrained.mean()  # the proxy learned something from the teacher
    # the embeddings: mean and std over frames of the tiny teacher's middle target layer (thirds(2)[1] = 2),
    # each utterance alone, from the scoring pass
    teacher = FrozenTeacher(tiny_whisper_dir)
    for position in (0, 7):
        hidden, frames = teacher(load_audio(audio_pool.wav_path(ids[position]))[None], torch.ones(1))
        layer = hidden[2, 0, : int(frames[0])]
        expected = torch.cat([layer.mean(0), layer.std(0, unbiased=False)])
        assert embeddings.dtype == np.float16 and embeddings.shape == (16, 64)
        np.testing.assert_allclose(embeddings[position].astype(np.float32), expected.numpy(), rtol=2e-3, atol=2e-3)
    assert cost["proxy_train_steps"] == 40 and cost["scored_hours"] == pytest.approx(audio_pool.total_hours, abs=1e-4)
    files = list(tmp_path.glob("difficulty-*.npz"))
    assert len(files) == 1
    again, again_cost, again_embeddings = ProxyDifficultyScorer(train_steps=40, **common)(audio_pool, ids, tmp_path)
    np.testing.assert_array_equal(again, trained)
    np.testing.assert_array_equal(again_embeddings, embeddings)
    assert again_cost == cost and list(tmp_path.glob("difficulty-*.npz")) == files
