"""k-center over shards: a composable core-set (per-shard farthest-first, then one pass over the union).

Farthest-first is sequential: each pick depends on every earlier one. Over processes
that each hold a shard of the utterance embeddings:

1. the standardisation and the projection are shared: every process sums the moments
   of its embeddings (count, sums, squares, then the products of the standardised
   vectors), the sums are all-reduced, and every process takes the same principal
   components of the summed covariance (the one-process selector fits them on a
   seeded sample instead, so the spaces differ slightly);
2. every process runs farthest-first over its own shard until its picks hold the
   whole budget: its core-set;
3. process 0 gathers the core-sets (row, seconds, projected point) and runs
   farthest-first over their union until the budget; the picks are broadcast and every
   process measures its points' distance to the nearest pick, which orders the rest
   and gives the covering radius of the whole pool.

Approximation: per-shard farthest-first with k centres, then farthest-first over the
union of the core-sets, covers the pool within 4 times the optimal k-center radius
(composable core-sets: Mirrokni & Zadimoghaddam 2015; Malkomes et al. 2015), against 2
times for farthest-first on one process. ``benchmarks/bench_kcenter_sharded.py`` measures
the covering radius and the hours shared with the one-process subset.
"""

import numpy as np

from selection.kcenter import farthest_first, nearest_squared_distance


def _stacked(pool_shard, rows_of):
    """This process's embeddings (``float16 [n, dim]``) and pool rows, piece after piece."""
    vectors, rows = [], []
    for units in pool_shard.pieces():
        if units.embeddings is None:
            raise ValueError("the units hold no utterance embeddings (extract them again)")
        vectors.append(units.embeddings)
        rows.append(rows_of(units.ids))
    if not vectors:
        return np.zeros((0, 0), dtype=np.float16), np.zeros(0, dtype=np.int64)
    return np.concatenate(vectors), np.concatenate(rows)


def shared_projection(vectors, n_components, group, chunk_rows=65_536):
    """Standardisation and principal components of the embeddings of every process.

    Parameters
    ----------
    vectors : numpy.ndarray
        This process's ``[n, dim]`` embeddings.
    n_components : int or None
        Components kept (``None``: every standardised dimension).
    group : selection.collectives.SingleProcess
        The processes (every one must call this, with the same ``dim``).

    Returns
    -------
    project : callable
        ``vectors -> float32 [n, n_components]`` points.
    explained_variance : float
        Share of the standardised variance kept.
    """
    dim = int(max(group.all_gather_object(vectors.shape[1] if len(vectors) else 0)))
    vectors = vectors if len(vectors) else np.zeros((0, dim), dtype=np.float16)
    moments = np.zeros(1 + 2 * dim)
    for start in range(0, len(vectors), chunk_rows):
        part = np.asarray(vectors[start : start + chunk_rows], dtype=np.float64)
        moments += np.concatenate([[len(part)], part.sum(axis=0), (part * part).sum(axis=0)])
    moments = group.all_reduce_sum(moments)
    n = max(moments[0], 1.0)
    mean = moments[1 : 1 + dim] / n
    std = np.sqrt(np.maximum(moments[1 + dim :] / n - mean * mean, 0.0))
    std[std < 1e-8] = 1.0

    def standardised(block):
        return (np.asarray(block, dtype=np.float64) - mean) / std

    if n_components is None or n_components >= dim:
        return lambda block: standardised(block).astype(np.float32), 1.0
    products = np.zeros((dim, dim))
    for start in range(0, len(vectors), chunk_rows):
        part = standardised(vectors[start : start + chunk_rows])
        products += part.T @ part
    products = group.all_reduce_sum(products.ravel()).reshape(dim, dim) / n
    values, vectors_ = np.linalg.eigh(products)
    top = np.argsort(-values, kind="stable")[: int(n_components)]
    components = vectors_[:, top]
    explained = float(values[top].sum() / max(values.sum(), 1e-12))
    return lambda block: (standardised(block) @ components).astype(np.float32), explained


def composable_kcenter(pool_shard, rows_of, durations_of_rows, budget_hours, n_components, seed, group):
    """The distributed form of :class:`~selection.selectors.KCenterSelector` (module notes).

    Parameters
    ----------
    pool_shard : selection.sharded.UnitShard
        This process's units (with embeddings).
    rows_of, durations_of_rows : callable
        Pool rows of IDs; seconds of pool rows.
    budget_hours : float
        Audio to pick.
    n_components : int or None
        Principal components kept.
    seed : int
        Seeds the first pick of every traversal.
    group : selection.collectives.SingleProcess
        The processes.

    Returns
    -------
    tuple or None
        On process 0: pool rows best first (the union's picks, then every other
        utterance by decreasing distance to them), their seconds, their scores (the
        radius at each pick, then the distance) and diagnostics. ``None`` elsewhere.
    """
    budget_seconds = budget_hours * 3600.0
    vectors, rows = _stacked(pool_shard, rows_of)
    project, explained = shared_projection(vectors, n_components, group)
    points = project(vectors)
    durations = durations_of_rows(rows)
    core = np.zeros(0, dtype=np.int64)
    if len(rows):
        first = int(np.random.default_rng([seed, group.rank]).integers(len(rows)))
        core = farthest_first(points, durations, budget_seconds, first)[0]
    width = points.shape[1]
    gathered = [group.gather(part) for part in (rows[core], durations[core], points[core].ravel())]
    picked_points = np.zeros(0, dtype=np.float32)
    if group.rank == 0:
        union_rows, union_seconds, union_points = (np.concatenate(part) for part in gathered)
        union_points = union_points.reshape(-1, width)
        by_row = np.argsort(union_rows, kind="stable")
        union_rows, union_seconds, union_points = union_rows[by_row], union_seconds[by_row], union_points[by_row]
        first = int(np.random.default_rng(seed).integers(len(union_rows)))
        picks, radii, _, rounds = farthest_first(union_points, union_seconds, budget_seconds, first)
        picked_points = union_points[picks].ravel()
    picked_points = group.broadcast(picked_points).reshape(-1, width)
    nearest = nearest_squared_distance(points, picked_points) if len(rows) else np.zeros(0, dtype=np.float32)
    everyone = [group.gather(part) for part in (rows, durations, nearest.astype(np.float64))]
    if group.rank != 0:
        return None
    all_rows, all_seconds, all_nearest = (np.concatenate(part) for part in everyone)
    pool_order = np.argsort(all_rows, kind="stable")
    all_rows, all_seconds, all_nearest = all_rows[pool_order], all_seconds[pool_order], all_nearest[pool_order]
    picked_rows = union_rows[picks]
    is_pick = np.zeros(len(all_rows), dtype=bool)
    is_pick[np.searchsorted(all_rows, picked_rows)] = True
    rest = np.flatnonzero(~is_pick)
    rest = rest[np.argsort(-all_nearest[rest], kind="stable")]
    order_rows = np.concatenate([picked_rows, all_rows[rest]])
    seconds = np.concatenate([union_seconds[picks], all_seconds[rest]])
    scores = np.concatenate([radii, np.sqrt(all_nearest[rest])])
    diagnostics = {"explained_variance": round(explained, 4), "core_set_utterances": len(union_rows),
                   "rounds": rounds, "picks": len(picks), "covering_radius": float(np.sqrt(all_nearest.max())),
                   "distributed_form": "composable core-set: per-shard farthest-first, then over the union"}
    return order_rows, seconds, scores, diagnostics
