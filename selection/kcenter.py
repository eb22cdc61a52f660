"""Greedy k-center (farthest-first traversal) on utterance embeddings, at the scale of a million utterances.

Farthest-first traversal (Gonzalez 1985; the "coreset" selection of Sener & Savarese 2018) picks a
first point, then again and again the point farthest from every point picked so far: a
2-approximation of the k-center problem (the smallest radius that covers every point with k balls).
Picking one point at a time over the whole set costs a pass over all points per pick, too slow for
100 000 picks out of 1 000 000. :func:`farthest_first` gives the same sequence of picks in rounds:
the ``block`` farthest points are copied out, picks are made among them while the best of them is
still at least as far as the farthest point left outside the block (an outside point only comes
nearer as points are picked), and only then are the other points' distances updated, in matrix
products, and only for the points that can have come nearer: a point at distance r from the pick
that covers it is nearer to a new pick s only if s is within 2 r of that pick (triangle
inequality), so each pick keeps the largest distance of the points it covers and the points of
picks far from every new one are not measured. :func:`reduce_embeddings` standardises and
projects the embeddings (PCA) first, so that the products are small.
"""

import math

import numpy as np
import torch
from sklearn.decomposition import PCA


def _chunks(n_rows, chunk_rows):
    """``slice`` objects that cover ``range(n_rows)`` in chunks."""
    return (slice(start, min(start + chunk_rows, n_rows)) for start in range(0, n_rows, chunk_rows))


def reduce_embeddings(vectors, n_components=64, seed=0, max_fit_rows=100_000, chunk_rows=65_536, extra=None):
    """Standardise every dimension (statistics of ``vectors``), then project on the first principal components.

    Parameters
    ----------
    vectors : numpy.ndarray
        ``[n, dim]`` embeddings (any float dtype; read in chunks, never copied whole in float64).
    n_components : int or None
        Principal components kept (fitted on a seeded sample of ``max_fit_rows`` rows);
        ``None`` or at least ``dim`` keeps every standardised dimension.
    seed : int
        Seed of the sample and of the randomised SVD.
    max_fit_rows : int
        Rows the PCA is fitted on.
    chunk_rows : int
        Rows converted at a time.
    extra : numpy.ndarray, optional
        Other vectors (e.g. the target's) mapped by the same standardisation and projection.

    Returns
    -------
    points : numpy.ndarray
        ``float32 [n, n_components]``.
    extra_points : numpy.ndarray or None
        ``extra`` mapped the same way.
    explained_variance : float
        Share of the standardised variance the kept components hold (1.0 without projection).
    """
    n, dim = vectors.shape
    total = np.zeros(dim)
    total_sq = np.zeros(dim)
    for rows in _chunks(n, chunk_rows):
        part = np.asarray(vectors[rows], dtype=np.float64)
        total += part.sum(axis=0)
        total_sq += (part * part).sum(axis=0)
    mean = total / max(n, 1)
    std = np.sqrt(np.maximum(total_sq / max(n, 1) - mean * mean, 0.0))
    std[std < 1e-8] = 1.0  # a constant dimension carries no distance

    def standardised(block):
        return ((np.asarray(block, dtype=np.float64) - mean) / std).astype(np.float32)

    if n_components is None or n_components >= dim:
        points = np.empty((n, dim), dtype=np.float32)
        for rows in _chunks(n, chunk_rows):
            points[rows] = standardised(vectors[rows])
        return points, None if extra is None else standardised(extra), 1.0
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(n, min(n, max_fit_rows), replace=False))
    pca = PCA(n_components=int(n_components), svd_solver="randomized", random_state=seed)
    pca.fit(standardised(vectors[sample]))
    points = np.empty((n, int(n_components)), dtype=np.float32)
    for rows in _chunks(n, chunk_rows):
        points[rows] = pca.transform(standardised(vectors[rows]))
    mapped = None if extra is None else pca.transform(standardised(extra)).astype(np.float32)
    return points, mapped, float(pca.explained_variance_ratio_.sum())


def _squared_distances(points, norms, centers, center_norms):
    """``[len(points), len(centers)]`` squared Euclidean distances (clamped at 0)."""
    distances = torch.addmm(norms[:, None] + center_norms[None, :], points, centers.T, alpha=-2.0)
    return distances.clamp_(min=0.0)


def nearest_squared_distance(points, others, chunk_rows=65_536):
    """Squared distance from each of ``points`` to the nearest of ``others`` (``float32 [n]``).

    Example
    -------
    >>> nearest_squared_distance(np.array([[0.0, 0.0], [3.0, 4.0]]), np.array([[0.0, 0.0]])).tolist()
    [0.0, 25.0]
    """
    points = torch.as_tensor(np.asarray(points, dtype=np.float32))
    others = torch.as_tensor(np.asarray(others, dtype=np.float32))
    other_norms = (others * others).sum(1)
    result = torch.empty(len(points))
    for rows in _chunks(len(points), chunk_rows):
        part = points[rows]
        result[rows] = _squared_distances(part, (part * part).sum(1), others, other_norms).min(dim=1).values
    return result.numpy()


def farthest_first(points, durations, budget_seconds, first, eligible=None, block=4096, max_round=1024,
                   chunk_rows=8192):
    """Farthest-first traversal until the picked utterances hold ``budget_seconds`` of audio.

    The picks are those of the one-at-a-time greedy (up to ties between equal distances);
    see the module notes for how rounds make that cheap.

    Parameters
    ----------
    points : numpy.ndarray
        ``float32 [n, d]``.
    durations : numpy.ndarray
        Seconds of each point's utterance.
    budget_seconds : float
        Picking stops once the picks hold at least this much audio (the last pick may overshoot).
    first : int
        The first pick.
    eligible : numpy.ndarray, optional
        Bool ``[n]``: only these points are picked (distances still count every pick); when they run out
        before the budget, the traversal goes on over every point. ``None``: all points.
    block : int
        Farthest points copied out per round.
    max_round : int
        Most picks per round (bounds the memory of the round's distance update).
    chunk_rows : int
        Rows per matrix product in the distance updates (bounds their memory: ``chunk_rows x max_round``).

    Returns
    -------
    picks : numpy.ndarray
        ``int64`` positions, in the order picked.
    radii : numpy.ndarray
        Distance of each pick to the nearest earlier pick at the time it was picked (``inf`` for the first).
    nearest : numpy.ndarray
        Squared distance of every point to its nearest pick at the end (``0`` for the picks).
    rounds : int
        Update rounds run.
    """
    points = torch.as_tensor(np.ascontiguousarray(points, dtype=np.float32))
    durations = np.asarray(durations, dtype=np.float64)
    n = len(points)
    norms = (points * points).sum(1)
    nearest = torch.full((n,), math.inf)  # squared distance to the nearest pick
    owner = torch.zeros(n, dtype=torch.long)  # which pick (its position in ``picks``) that is
    reach = torch.zeros(n)  # per pick (position in ``picks``): the largest squared distance of a point it owns
    open_points = torch.ones(n, dtype=torch.bool)
    if eligible is not None:
        open_points = torch.tensor(np.asarray(eligible, dtype=bool))
    picked = torch.zeros(n, dtype=torch.bool)

    def update(new):
        """Distances to this round's picks, only for points a triangle inequality cannot rule out.

        A point at distance r from its pick c is nearer to a new pick s only if d(s, c) < 2 r;
        so only the points of picks whose reach is more than half their distance to some new pick
        are measured.
        """
        first_new = len(picks) - len(new)
        new = torch.as_tensor(new, dtype=torch.long)
        centers, center_norms = points[new], norms[new]
        old = torch.as_tensor(picks[:first_new], dtype=torch.long)
        touched = torch.zeros(max(first_new, 1), dtype=torch.bool)
        for rows in _chunks(first_new, chunk_rows):
            gap = _squared_distances(points[old[rows]], norms[old[rows]], centers, center_norms).min(dim=1).values
            touched[rows] = gap < 4.0 * reach[rows] * (1.0 + 1e-4) + 1e-6  # slack for float32 rounding
        affected = torch.nonzero(touched[owner]).flatten() if first_new else torch.arange(n)
        for rows in _chunks(len(affected), chunk_rows):
            index = affected[rows]
            distances = _squared_distances(points[index], norms[index], centers, center_norms)
            closest, which = distances.min(dim=1)
            nearer = closest < nearest[index]
            nearest[index[nearer]] = closest[nearer]
            owner[index[nearer]] = which[nearer] + first_new
        nearest[new] = 0.0
        owner[new] = torch.arange(first_new, len(picks))
        picked[new] = True
        reach[first_new:len(picks)] = 0.0
        reach[torch.nonzero(touched).flatten()] = 0.0
        reach.scatter_reduce_(0, owner[affected], nearest[affected], reduce="amax")

    picks, radii = [int(first)], [math.inf]
    spent = float(durations[first])
    update([int(first)])
    rounds = 1
    while spent < budget_seconds:
        open_points &= ~picked
        n_open = int(open_points.sum())
        if n_open == 0:
            if bool((~picked).any()):  # the eligible points ran out: go on over every point
                open_points = ~picked
                continue
            break
        score = torch.where(open_points, nearest, torch.tensor(-1.0))
        size = min(block, n_open)
        values, index = torch.topk(score, min(size + 1, n))
        bound = float(values[size]) if len(values) > size else -1.0
        candidates = index[:size]
        candidate_far = values[:size].clone()
        candidate_points, candidate_norms = points[candidates], norms[candidates]
        new = []
        while len(new) < max_round and spent < budget_seconds:
            best = int(torch.argmax(candidate_far))
            far = float(candidate_far[best])
            if far < 0.0 or far < bound:  # block used up, or a point outside it may now be farther
                break
            pick = int(candidates[best])
            new.append(pick)
            radii.append(math.sqrt(far))
            spent += float(durations[pick])
            distances = _squared_distances(candidate_points, candidate_norms, candidate_points[best:best + 1],
                                           candidate_norms[best:best + 1])[:, 0]
            torch.minimum(candidate_far, distances, out=candidate_far)
            candidate_far[best] = -1.0
        picks.extend(new)
        update(new)
        rounds += 1
    return np.asarray(picks, dtype=np.int64), np.asarray(radii), nearest.numpy(), rounds
