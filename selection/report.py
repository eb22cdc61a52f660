"""Report of a selection: composition plots and unit-distribution divergence to the target."""

from collections import defaultdict

import numpy as np
from matplotlib.figure import Figure

from common.atomic import atomic_path
from selection.ngrams import NgramHasher


def unit_kl(target_units, units, orders=(1,), hash_bits=15, eps=1.0):
    """``KL(target || units)`` of hashed unit n-gram distributions (nats).

    The target distribution is the plain relative frequency; the other is
    add-``eps`` smoothed so the divergence stays finite.

    Parameters
    ----------
    target_units, units : selection.units.UnitSet
        Reference and compared sequences (same codebook).
    orders : sequence of int
        N-gram orders pooled together.
    hash_bits : int
        Buckets per hashed order.
    eps : float
        Smoothing of ``units``.

    Returns
    -------
    float
    """
    hasher = NgramHasher(orders, units.n_clusters, hash_bits)
    return kl_of_counts(hasher.counts(target_units), hasher.counts(units), eps)


def kl_of_counts(target_counts, counts, eps=1.0):
    """:func:`unit_kl` from the bucket counts of both sides (slot 0, "no n-gram", is left out).

    Example
    -------
    >>> round(kl_of_counts(np.array([0.0, 1.0, 1.0]), np.array([0.0, 1.0, 3.0])), 4)
    0.0589
    """
    p = np.asarray(target_counts, dtype=np.float64)[1:].copy()
    c = np.asarray(counts, dtype=np.float64)[1:] + eps
    p /= p.sum()
    c /= c.sum()
    nz = p > 0
    return float(np.sum(p[nz] * np.log(p[nz] / c[nz])))


REPORT_ORDERS = (1, 2)


def report_counts(units_pieces, n_clusters, hash_bits=15):
    """The bucket counts the report's divergence panel needs, per order, summed over unit sets.

    Returns
    -------
    numpy.ndarray
        ``float64`` vector: the counts of each of :data:`REPORT_ORDERS` in turn (they add over shards).
    """
    hashers = [NgramHasher((m,), n_clusters, hash_bits) for m in REPORT_ORDERS]
    total = np.zeros(sum(h.n_features for h in hashers))
    for units in units_pieces:
        total += np.concatenate([h.counts(units) for h in hashers])
    return total


def shard_report_counts(pool_shard, target_shard, rows_of, picked, n_rows, n_clusters):
    """:func:`report_counts` of one process's shard: its pool, its part of the subset, its target, end to end.

    Parameters
    ----------
    pool_shard, target_shard : selection.sharded.UnitShard
        This process's unit files.
    rows_of : callable
        Pool rows of a list of IDs.
    picked : numpy.ndarray
        Pool rows of the whole subset.
    n_rows : int
        Rows of the pool manifest.
    n_clusters : int
        Codebook size.

    Returns
    -------
    numpy.ndarray
        The three :func:`report_counts` vectors, concatenated (they add over processes).
    """
    chosen = np.zeros(n_rows, dtype=bool)
    chosen[picked] = True
    pool = report_counts([], n_clusters)
    subset = pool.copy()
    for units in pool_shard.pieces():
        inside = chosen[rows_of(units.ids)]
        pool += report_counts([units], n_clusters)
        subset += report_counts([units.subset([i for i, keep in zip(units.ids, inside) if keep])], n_clusters)
    return np.concatenate([pool, subset, report_counts(target_shard.pieces(), n_clusters)])


def split_report_counts(counts, n_clusters, hash_bits=15):
    """``{order: counts}`` of a :func:`report_counts` vector."""
    sizes = [NgramHasher((m,), n_clusters, hash_bits).n_features for m in REPORT_ORDERS]
    bounds = np.cumsum([0, *sizes])
    return {m: counts[a:b] for m, a, b in zip(REPORT_ORDERS, bounds[:-1], bounds[1:])}


def domain_hours(manifest, ids=None):
    """Hours per value of the ``domain`` column (``{}`` if the column is absent), of ``ids`` (default: every row)."""
    if "domain" not in manifest.fieldnames:
        return {}
    if ids is None:
        domains, durations = manifest.column("domain"), manifest.durations
    else:
        domains, durations = (row["domain"] for row in manifest.rows_of(ids)), manifest.durations_of(ids)
    hours = defaultdict(float)
    for domain, seconds in zip(domains, durations.tolist()):
        hours[domain] += seconds / 3600.0
    return dict(hours)


def write_report(path, pool, subset_ids, target=None, pool_units=None, target_units=None, unit_counts=None):
    """Plot subset vs pool vs target composition to a PNG, return the figures.

    Panels: share of hours per domain (if manifests have a ``domain`` column),
    duration distributions, and ``KL(target || X)`` of unit uni- and bigram
    distributions for X = pool and X = subset (when units are given).

    Parameters
    ----------
    path : str or os.PathLike
        Destination ``.png`` (written atomically).
    pool : common.manifest.Manifest or common.manifest_columns.ColumnarManifest
        Pool manifest.
    subset_ids : sequence of str
        Selected IDs.
    target : common.manifest.Manifest, optional
        Target manifest.
    pool_units, target_units : selection.units.UnitSet, optional
        Units for the divergence panel.
    unit_counts : dict, optional
        Instead of the units: ``{"pool" | "subset" | "target": {order: counts}}`` for
        orders 1 and 2 (:func:`report_counts`, summed over shards).

    Returns
    -------
    dict
        ``domain_hours`` per set and, with units, ``unit_kl_to_target`` per set
        and order (for ``selection.json``).
    """
    sets = {"pool": (pool, None), "subset": (pool, list(subset_ids))}  # None: every row of the manifest
    if target is not None:
        sets["target"] = (target, None)
    figures = {"domain_hours": {name: domain_hours(m, ids) for name, (m, ids) in sets.items()}}
    fig = Figure(figsize=(15, 4.5))
    ax_domain, ax_duration, ax_kl = fig.subplots(1, 3)

    domains = sorted({d for hours in figures["domain_hours"].values() for d in hours})
    width = 0.8 / len(sets)
    for k, (name, hours) in enumerate(figures["domain_hours"].items()):
        total = max(sum(hours.values()), 1e-12)
        ax_domain.bar(np.arange(len(domains)) + k * width, [hours.get(d, 0) / total for d in domains],
                      width, label=name)
    ax_domain.set_xticks(np.arange(len(domains)) + width * (len(sets) - 1) / 2, domains, rotation=30)
    ax_domain.set_ylabel("share of hours")
    ax_domain.set_title("domain composition" if domains else "no domain column")
    ax_domain.legend()

    for name, (manifest, ids) in sets.items():
        seconds = manifest.durations if ids is None else manifest.durations_of(ids)
        ax_duration.hist(seconds, bins=40, density=True, histtype="step", label=name)
    ax_duration.set_xlabel("duration (s)")
    ax_duration.set_ylabel("density")
    ax_duration.set_title("durations")
    ax_duration.legend()

    if unit_counts is None and pool_units is not None and target_units is not None:
        subset_units = pool_units.subset([i for i in subset_ids if i in pool_units])
        unit_counts = {name: split_report_counts(report_counts([units], units.n_clusters), units.n_clusters)
                       for name, units in (("pool", pool_units), ("subset", subset_units), ("target", target_units))}
    if unit_counts is not None and "target" in unit_counts:
        kl = {name: {f"order_{m}": kl_of_counts(unit_counts["target"][m], unit_counts[name][m]) for m in (1, 2)}
              for name in ("pool", "subset")}
        figures["unit_kl_to_target"] = kl
        for k, name in enumerate(kl):
            ax_kl.bar(np.arange(2) + k * 0.4, [kl[name]["order_1"], kl[name]["order_2"]], 0.4, label=name)
        ax_kl.set_xticks(np.arange(2) + 0.2, ["unigram", "bigram"])
        ax_kl.set_ylabel("KL(target || X) (nats)")
        ax_kl.legend()
    ax_kl.set_title("unit divergence to target" if "unit_kl_to_target" in figures
                    else "unit divergence: no target units")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return figures
