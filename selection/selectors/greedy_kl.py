"""Greedy growth of a subset that minimises KL(target || subset) over hashed unit n-grams.

Shared by :class:`~selection.selectors.divergence.DivergenceSelector` (target =
n-gram distribution of the target units) and
:class:`~selection.selectors.coverage.CoverageSelector` (target = uniform over
the n-grams seen in the pool).

The subset distribution is add-``eps`` smoothed,
``p_S(b) = (S_b + eps) / (|S| + F * eps)`` over ``F`` buckets, and adding an
utterance with bucket counts ``c`` lowers ``KL(q || p_S)`` by
``sum_b q_b [log(S_b + c_b + eps) - log(S_b + eps)] - log((|S| + |c| + F eps) / (|S| + F eps))``.

What is exact
-------------
The subset grows in rounds of ``block`` utterances (``block`` = expected
utterances in the budget / ``n_rounds``). Each round:

1. scores every remaining candidate by the first-order change of the KL (its
   gradient at the current subset, summed over the candidate's n-grams) per
   second of audio: one vectorised pass over all units;
2. computes the *exact* KL decrease of the ``shortlist_factor * block`` best
   of step 1;
3. adds the ``block`` best by exact decrease per second, without re-evaluating
   between them (interactions inside a block are ignored).

With ``n_rounds`` at least the number of utterances selected (block of one) and
``shortlist_factor=inf`` every step evaluates the exact decrease of every
candidate: the exact greedy of Gao et al. (2023), at a cost of one pass over
the pool per selected utterance. Candidates left when the budget is reached
follow in the order of their last first-order score (so the budget filler
can top up).
"""

import math

import numpy as np

from selection.ngrams import chunk_bounds, gather_ranges, iter_chunks, segment_sums


def hashed_features(units, hasher, chunk_tokens=1 << 20):
    """Bucket of every token's n-grams, ``[len(orders), total_units]`` (0 = none)."""
    feats = np.empty((len(hasher.orders), int(units.offsets[-1])), dtype=hasher.dtype)
    for chunk in iter_chunks(units, chunk_tokens):
        feats[:, units.offsets[chunk.start] : units.offsets[chunk.stop]] = hasher(chunk)
    return feats


def _exact_decrease(feats, offsets, rows, q, subset, total, eps, smooth_total):
    """Exact KL decrease of adding each of ``rows`` alone to the subset."""
    positions, local = gather_ranges(offsets, rows)
    n_features = len(q)
    dtype = np.uint32 if len(rows) * n_features < 2**32 else np.int64
    owner = np.repeat(np.arange(len(rows), dtype=dtype) * dtype(n_features), np.diff(local))
    buckets = feats[:, positions]
    keys = (owner[None, :] + buckets)[buckets != 0]
    keys.sort()
    starts = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]]))
    counts = np.diff(np.append(starts, len(keys))).astype(np.float64)
    owner, bucket = np.divmod(keys[starts].astype(np.int64), n_features)
    base = subset[bucket] + eps
    term = q[bucket] * (np.log(base + counts) - np.log(base))
    size = np.bincount(owner, weights=counts, minlength=len(rows))
    gain = np.bincount(owner, weights=term, minlength=len(rows))
    return gain - np.log((total + size + smooth_total) / (total + smooth_total))


def greedy_kl_order(units, rows, durations, target, hasher, budget_seconds, n_rounds=20,
                    shortlist_factor=4.0, eps=1.0, chunk_tokens=1 << 20):
    """Rank candidates by block-greedy KL(target || subset) minimisation.

    Parameters
    ----------
    units : selection.units.UnitSet
        Pool units.
    rows : numpy.ndarray
        Row in ``units`` of each candidate.
    durations : numpy.ndarray
        Seconds per candidate.
    target : numpy.ndarray
        Target weights per bucket (``hasher.n_features``; slot 0 ignored), any scale.
    hasher : selection.ngrams.NgramHasher
        N-gram to bucket mapping.
    budget_seconds : float
        Greedy growth stops once this much audio is picked.
    n_rounds : int
        Rounds to fill the budget (see module notes).
    shortlist_factor : float
        Exact evaluations per round, as a multiple of the block size (``inf``: all).
    eps : float
        Additive smoothing of the subset distribution.
    chunk_tokens : int
        Units per processing chunk.

    Returns
    -------
    order : numpy.ndarray
        Candidate indices, best first (picked ones in pick order, then the rest).
    scores : numpy.ndarray
        Exact KL decrease per second at pick time; NaN for candidates not picked.
    """
    offsets = units.offsets
    feats = hashed_features(units, hasher, chunk_tokens)
    q = np.asarray(target, dtype=np.float64).copy()
    q[0] = 0.0
    q /= q.sum()
    n_features = hasher.n_features
    smooth_total = (n_features - 1) * eps
    bounds = chunk_bounds(offsets, chunk_tokens)

    alive = np.zeros(len(units), dtype=bool)
    alive[rows] = True
    seconds = np.zeros(len(units))
    seconds[rows] = durations
    per_second = 1.0 / np.maximum(seconds, 1e-6)
    candidate_of_row = np.full(len(units), -1, dtype=np.int64)
    candidate_of_row[rows] = np.arange(len(rows))
    block = max(1, math.ceil(budget_seconds / max(float(np.mean(durations)), 1e-6) / n_rounds))

    subset = np.zeros(n_features)
    total, picked_seconds = 0.0, 0.0
    picked, picked_scores = [], []
    linear = np.zeros(len(units), dtype=np.float32)
    while picked_seconds < budget_seconds and alive.any():
        gradient = (q / (subset + eps) - 1.0 / (total + smooth_total)).astype(np.float32)
        gradient[0] = 0.0
        for start, stop in bounds:
            lo, hi = offsets[start], offsets[stop]
            values = np.take(gradient, feats[0, lo:hi])
            for row in feats[1:, lo:hi]:
                values += np.take(gradient, row)
            linear[start:stop] = segment_sums(values, offsets[start : stop + 1] - lo)
        ratio = np.where(alive, linear * per_second, -np.inf)
        n_alive = int(alive.sum())
        size = n_alive if math.isinf(shortlist_factor) else min(n_alive, math.ceil(shortlist_factor * block))
        shortlist = np.argpartition(-ratio, size - 1)[:size] if size < len(ratio) else np.flatnonzero(alive)
        exact = _exact_decrease(feats, offsets, shortlist, q, subset, total, eps, smooth_total)
        exact *= per_second[shortlist]
        best = np.argsort(-exact, kind="stable")[:block]
        chosen = shortlist[best]
        positions, _ = gather_ranges(offsets, chosen)
        subset += np.bincount(feats[:, positions].ravel(), minlength=n_features)
        subset[0] = 0.0
        total = float(subset.sum())
        alive[chosen] = False
        picked.append(chosen)
        picked_scores.append(exact[best])
        picked_seconds += float(seconds[chosen].sum())
    rest = np.flatnonzero(alive)
    rest = rest[np.argsort(-(linear[rest] * per_second[rest]), kind="stable")]
    order_rows = np.concatenate(picked + [rest])
    scores = np.concatenate(picked_scores + [np.full(len(rest), np.nan)])
    return candidate_of_row[order_rows], scores
