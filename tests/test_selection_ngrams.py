"""Unit n-gram statistics."""

import itertools

import numpy as np
import pytest

from selection.ngrams import (
    NgramHasher, NgramLM, gather_ranges, iter_chunks, ngram_keys, segment_sums,
)
from selection.units import UnitSet


@pytest.fixture(scope="module")
def units():
    rng = np.random.default_rng(0)
    return UnitSet.from_sequences(
        [(f"u{i}", rng.integers(0, 5, rng.integers(0, 30))) for i in range(300)], 50.0, 5)


def test_segment_sums_handles_empty_segments():
    values = np.arange(6, dtype=float)
    assert segment_sums(values, np.array([0, 0, 2, 2, 6, 6])).tolist() == [0, 1, 0, 14, 0]


def test_ngram_keys():
    keys = ngram_keys(np.array([1, 2, 3], dtype=np.int64), 3, 10)
    assert keys[1][1:].tolist() == [12, 23] and keys[2][2] == 123


def test_chunks_cover_everything(units):
    chunks = list(iter_chunks(units, chunk_tokens=50))
    assert len(chunks) > 1 and chunks[0].start == 0 and chunks[-1].stop == len(units)
    assert np.array_equal(np.concatenate([c.tokens for c in chunks]), units.flat)
    assert all(np.all(c.pos < np.repeat(np.diff(c.offsets), np.diff(c.offsets))) for c in chunks)
    positions, local = gather_ranges(units.offsets, np.array([2, 0]))
    assert np.array_equal(units.flat[positions], np.concatenate([units["u2"], units["u0"]]))


def test_out_of_range_units_are_refused():
    bad = UnitSet.from_sequences([("a", [0, 9])], 50.0, 5)
    with pytest.raises(ValueError, match="outside"):
        list(iter_chunks(bad))


@pytest.mark.parametrize("hash_bits", [20, 5])
def test_lm_is_normalised_and_chunk_invariant(units, hash_bits):
    lm = NgramLM(3, 5, beta=2.0, hash_bits=hash_bits).fit(units)
    every = UnitSet.from_sequences(
        [(str(i), s) for i, s in enumerate(itertools.product(range(5), repeat=3))], 50.0, 5)
    total = np.exp(lm.utterance_log_probs(every)).sum()
    if hash_bits == 20:
        assert total == pytest.approx(1.0)  # exact tables: a proper distribution
    small = NgramLM(3, 5, beta=2.0, hash_bits=hash_bits, chunk_tokens=40).fit(units)
    assert np.allclose(small.utterance_log_probs(units), lm.utterance_log_probs(units))
    assert lm.utterance_log_probs(units)[units.lengths == 0].tolist() == [0.0] * int(
        (units.lengths == 0).sum())


def test_hasher_counts_do_not_cross_utterances(units):
    hasher = NgramHasher((1, 2), 5, hash_bits=4)  # unigrams exact, bigrams (25) hashed into 16
    counts = hasher.counts(units)
    lengths = units.lengths
    assert counts[0] == 0
    assert counts.sum() == lengths.sum() + np.maximum(lengths - 1, 0).sum()
    assert np.array_equal(counts[1:6], np.bincount(units.flat, minlength=5))
    assert hasher.n_features == 1 + 5 + 16 and hasher.dtype == np.uint16
