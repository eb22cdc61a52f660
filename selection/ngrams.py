"""Unit n-gram statistics, vectorised with NumPy over concatenated sequences.

Everything works on a :class:`selection.units.UnitSet` (flat ``int16`` units plus
offsets) processed in chunks of whole utterances (about ``chunk_tokens`` units),
so memory stays bounded for millions of utterances and there is no Python loop
per token or per utterance. N-grams never cross utterance boundaries.

N-gram codes
------------
The m-gram ending at token ``i`` gets the ``int64`` code
``sum_j t[i-m+1+j] * V**(m-1-j)`` (``V`` = codebook size), exact while
``V**m < 2**63`` and a polynomial hash beyond. Tables are indexed by the code
itself when ``V**m`` is at most ``2**hash_bits`` (exact counts), else by a
multiplicative (Fibonacci) hash of the code into ``2**hash_bits`` slots
(collisions merge counts).
"""

from dataclasses import dataclass

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_SALTS = [np.uint64(s) for s in (0, 0x51ED27, 0xA24BAED4, 0x3C6EF372, 0x1B873593, 0x85EBCA6B)]


@dataclass
class Chunk:
    """Consecutive utterances ``[start, stop)`` of a unit set, flattened.

    Attributes
    ----------
    start, stop : int
        Utterance index range.
    tokens : numpy.ndarray
        Their units, concatenated (``int64``).
    pos : numpy.ndarray
        Position of each token inside its utterance.
    offsets : numpy.ndarray
        ``stop - start + 1`` offsets into ``tokens``.
    """

    start: int
    stop: int
    tokens: np.ndarray
    pos: np.ndarray
    offsets: np.ndarray


def chunk_bounds(offsets, chunk_tokens=1 << 20):
    """Utterance ranges ``[start, stop)`` holding about ``chunk_tokens`` units each.

    Parameters
    ----------
    offsets : numpy.ndarray
        ``n + 1`` offsets of a :class:`selection.units.UnitSet`.
    chunk_tokens : int
        Approximate units per range (an utterance is never split; an utterance
        longer than ``chunk_tokens`` gets a range of its own).

    Returns
    -------
    list of (int, int)
    """
    n = len(offsets) - 1
    bounds, start = [], 0
    while start < n:
        stop = int(np.searchsorted(offsets, offsets[start] + chunk_tokens, side="right")) - 1
        stop = min(max(stop, start + 1), n)
        bounds.append((start, stop))
        start = stop
    return bounds


def iter_chunks(units, chunk_tokens=1 << 20):
    """Split a unit set into chunks of whole utterances.

    Parameters
    ----------
    units : selection.units.UnitSet
        Sequences to walk.
    chunk_tokens : int
        Approximate units per chunk (see :func:`chunk_bounds`). About 1M keeps
        the working arrays in cache-friendly sizes.

    Yields
    ------
    Chunk

    Raises
    ------
    ValueError
        If a unit lies outside ``[0, units.n_clusters)``.
    """
    offsets = units.offsets
    for start, stop in chunk_bounds(offsets, chunk_tokens):
        local = offsets[start : stop + 1] - offsets[start]
        tokens = units.flat[offsets[start] : offsets[stop]].astype(np.int64)
        if len(tokens) and (tokens.min() < 0 or tokens.max() >= units.n_clusters):
            raise ValueError(f"units outside [0, {units.n_clusters}) in utterances {start}..{stop}")
        pos = np.arange(len(tokens), dtype=np.int64) - np.repeat(local[:-1], np.diff(local))
        yield Chunk(start, stop, tokens, pos, local)


def gather_ranges(offsets, rows):
    """Flat positions of the tokens of utterances ``rows``, and their local offsets.

    Parameters
    ----------
    offsets : numpy.ndarray
        Offsets of a unit set.
    rows : numpy.ndarray
        Utterance rows, any order.

    Returns
    -------
    positions : numpy.ndarray
        ``int64`` indices into the flat units, row after row.
    local_offsets : numpy.ndarray
        ``len(rows) + 1`` offsets into ``positions``.
    """
    starts = offsets[rows]
    lengths = offsets[rows + 1] - starts
    local = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=local[1:])
    positions = np.repeat(starts - local[:-1], lengths) + np.arange(local[-1], dtype=np.int64)
    return positions, local


def segment_sums(values, offsets):
    """Sum ``values`` over segments ``[offsets[i], offsets[i+1])`` (empty segments give 0).

    ``offsets`` must start at 0 and end at ``len(values)``.
    """
    out = np.zeros(len(offsets) - 1, dtype=np.float64)
    nonempty = offsets[1:] > offsets[:-1]
    if nonempty.any():
        out[nonempty] = np.add.reduceat(values, offsets[:-1][nonempty])
    return out


def ngram_keys(tokens, order, n_symbols):
    """Codes of the m-grams ending at each token, for ``m = 1 .. order``.

    Parameters
    ----------
    tokens : numpy.ndarray
        Concatenated units (``int64``).
    order : int
        Highest n-gram order.
    n_symbols : int
        Codebook size ``V``.

    Returns
    -------
    list of numpy.ndarray
        ``int64`` arrays (wrapping silently beyond ``2**63``, then read as a hash);
        entry ``m - 1`` is meaningful where ``pos >= m - 1`` (elsewhere it codes an
        n-gram crossing an utterance start, or 0 at the chunk start, and must be
        masked or overwritten by the caller).
    """
    keys = [tokens]
    for _ in range(1, order):
        previous = keys[-1]
        nxt = np.empty_like(tokens)
        nxt[:1] = 0  # a chunk may hold no token (only empty utterances)
        np.multiply(previous[:-1], n_symbols, out=nxt[1:])
        nxt[1:] += tokens[1:]
        keys.append(nxt)
    return keys


class SlotIndex:
    """Table slot of an m-gram code: the code itself (dense) or its hash.

    Parameters
    ----------
    m : int
        N-gram order.
    n_symbols : int
        Codebook size ``V``.
    hash_bits : int
        Slots ``2**hash_bits`` when hashed.
    max_dense : int
        Largest dense table (default ``2**hash_bits``: a dense table is used
        whenever it is no larger than the hashed one). Unigrams are always dense.
    """

    def __init__(self, m, n_symbols, hash_bits, max_dense=None):
        max_dense = 1 << hash_bits if max_dense is None else max_dense
        self.exact = m == 1 or n_symbols**m <= max_dense
        self.size = n_symbols**m if self.exact else 1 << hash_bits
        self._shift = np.uint64(64 - hash_bits)
        self._salt = _SALTS[m % len(_SALTS)]

    def __call__(self, keys):
        """Slots (``int64``) of ``int64`` codes."""
        if self.exact:
            return keys
        hashed = (keys.view(np.uint64) ^ self._salt) * _GOLDEN
        return (hashed >> self._shift).view(np.int64)


class NgramHasher:
    """Map every token's m-grams (several orders) into one feature space.

    Order ``m`` gets its own segment of slots: exact codes when ``V**m`` fits in
    ``2**hash_bits`` (e.g. unigrams), else a hash into ``2**hash_bits`` slots (e.g.
    bigrams of a 500-unit codebook). Slot 0 means "no m-gram ends here" (the first
    ``m - 1`` tokens of an utterance) and is never counted.

    Parameters
    ----------
    orders : sequence of int
        N-gram orders, e.g. ``(1, 2)``.
    n_symbols : int
        Codebook size.
    hash_bits : int
        Hashed segment size ``2**hash_bits``.

    Attributes
    ----------
    n_features : int
        Total slots including slot 0.
    dtype : numpy.dtype
        ``uint16`` when ``n_features <= 65536``, else ``uint32``.
    """

    def __init__(self, orders, n_symbols, hash_bits=15):
        self.orders = tuple(int(m) for m in orders)
        self.n_symbols = int(n_symbols)
        self.hash_bits = int(hash_bits)
        self.slots = [SlotIndex(m, self.n_symbols, self.hash_bits) for m in self.orders]
        sizes = [s.size for s in self.slots]
        self.starts = np.concatenate([[1], 1 + np.cumsum(sizes)[:-1]]).astype(np.int64)
        self.n_features = 1 + int(sum(sizes))
        self.dtype = np.dtype(np.uint16 if self.n_features <= (1 << 16) else np.uint32)

    def __call__(self, chunk):
        """Feature slots ``[len(orders), tokens]`` of a :class:`Chunk`."""
        keys = ngram_keys(chunk.tokens, max(self.orders), self.n_symbols)
        out = np.empty((len(self.orders), len(chunk.tokens)), dtype=self.dtype)
        for row, (m, slot) in enumerate(zip(self.orders, self.slots)):
            index = slot(keys[m - 1]) + self.starts[row]
            index[chunk.pos < m - 1] = 0
            out[row] = index
        return out

    def counts(self, units, chunk_tokens=1 << 20):
        """Feature counts of a whole unit set (``float64``, slot 0 left at 0)."""
        counts = np.zeros(self.n_features, dtype=np.float64)
        for chunk in iter_chunks(units, chunk_tokens):
            counts += np.bincount(self(chunk).ravel(), minlength=self.n_features)
        counts[0] = 0.0
        return counts


class NgramLM:
    """Interpolated unit n-gram LM with Dirichlet-prior (additive-to-lower-order) smoothing.

    ``P_1(w) = (c(w) + 1) / (N + V)`` (add-one unigram) and, for ``m >= 2``,
    ``P_m(w | h) = (c(h w) + beta * P_{m-1}(w | h')) / (c(h .) + beta)`` where ``h'``
    drops the oldest unit of ``h`` and ``c(h .)`` counts ``h`` followed by any unit.
    Unseen histories fall back smoothly to lower orders; every probability is
    positive and they sum to one over ``w`` (exactly for dense orders). Chosen over
    Kneser-Ney because it needs only plain counts, which NumPy gets with
    ``bincount``. The first tokens of an utterance use the orders their history
    allows (no sentence-start symbol).

    Orders whose table has at most ``2**hash_bits`` entries are exact and their
    probabilities are tabulated once after fitting (one lookup per token); higher
    orders are hashed (collisions merge counts).

    Parameters
    ----------
    order : int
        N-gram order.
    n_symbols : int
        Codebook size ``V``.
    beta : float
        Prior strength (pseudo-counts given to the lower order).
    hash_bits : int
        Table size ``2**hash_bits`` (dense up to this size, hashed beyond).
    chunk_tokens : int
        Units per processing chunk (memory bound).
    """

    def __init__(self, order, n_symbols, beta=1.0, hash_bits=20, chunk_tokens=1 << 20):
        if order < 1:
            raise ValueError(f"order must be >= 1, got {order}")
        self.order = int(order)
        self.n_symbols = int(n_symbols)
        self.beta = float(beta)
        self.chunk_tokens = int(chunk_tokens)
        self.slots = [SlotIndex(m, self.n_symbols, hash_bits) for m in range(1, self.order + 1)]
        self.n_dense = sum(s.exact for s in self.slots)  # orders 1..n_dense are exact
        self.counts = [np.zeros(s.size) for s in self.slots]
        # contexts[m - 1]: (m-1)-grams followed by a unit, indexed like order m - 1
        self.contexts = [None] + [np.zeros(s.size) for s in self.slots[:-1]]
        self.n_tokens = 0
        self.prob_tables = None
        self.log_tables = None

    def fit(self, units):
        """Count the n-grams of a unit set and tabulate the dense orders.

        Parameters
        ----------
        units : selection.units.UnitSet
            Training sequences (codebook size must match ``n_symbols``).

        Returns
        -------
        NgramLM
            ``self``.
        """
        return self.add(units).finish()

    def add(self, units):
        """Add the n-gram counts of a unit set (one shard of the training set); :meth:`finish` when all are in.

        Returns
        -------
        NgramLM
            ``self``.
        """
        if units.n_clusters != self.n_symbols:
            raise ValueError(f"unit set has {units.n_clusters} clusters, LM expects {self.n_symbols}")
        for chunk in iter_chunks(units, self.chunk_tokens):
            keys = ngram_keys(chunk.tokens, self.order, self.n_symbols)
            self.n_tokens += len(chunk.tokens)
            for m in range(1, self.order + 1):
                slot = self.slots[m - 1]
                index = slot(keys[m - 1])
                if m >= 2:
                    index = index.copy() if slot.exact else index
                    index[chunk.pos < m - 1] = slot.size  # overflow bin, dropped below
                self.counts[m - 1] += np.bincount(index, minlength=slot.size + 1)[: slot.size]
                if m >= 2 and not slot.exact:
                    valid = np.flatnonzero(chunk.pos >= m - 1)
                    history = self.slots[m - 2](keys[m - 2][valid - 1])
                    self.contexts[m - 1] += np.bincount(history, minlength=self.slots[m - 2].size)
        return self

    def finish(self):
        """Tabulate the dense orders once every count is in (:meth:`add`, :meth:`load_statistics`)."""
        self._tabulate()
        return self

    def statistics(self):
        """Everything counted, as one ``float64`` vector that adds over shards (integers, so sums are exact).

        Example
        -------
        >>> from selection.units import UnitSet
        >>> halves = [UnitSet([i], [0, 3], [0, 1, 1], 100.0, 2) for i in "ab"]
        >>> both = UnitSet(["a", "b"], [0, 3, 6], [0, 1, 1] * 2, 100.0, 2)
        >>> summed = sum(NgramLM(2, 2).add(h).statistics() for h in halves)
        >>> bool((summed == NgramLM(2, 2).add(both).statistics()).all())
        True
        """
        hashed = self.contexts[self.n_dense :]
        return np.concatenate([[float(self.n_tokens)], *self.counts, *hashed])

    def load_statistics(self, statistics):
        """Take counts summed over shards (a vector of :meth:`statistics`' layout) and :meth:`finish`."""
        statistics = np.asarray(statistics, dtype=np.float64)
        self.n_tokens = int(statistics[0])
        start = 1
        for m in range(1, self.order + 1):
            size = self.slots[m - 1].size
            self.counts[m - 1] = statistics[start : start + size].copy()
            start += size
        for m in range(self.n_dense + 1, self.order + 1):
            size = self.slots[m - 2].size
            self.contexts[m - 1] = statistics[start : start + size].copy()
            start += size
        if start != len(statistics):
            raise ValueError(f"statistics of {len(statistics)} values, this LM has {start}")
        return self.finish()

    def _tabulate(self):
        """Log-probability tables of the dense orders (contexts derived from counts)."""
        prob = (self.counts[0] + 1.0) / (self.n_tokens + self.n_symbols)
        tables = [prob]
        for m in range(2, self.n_dense + 1):
            counts = self.counts[m - 1]
            self.contexts[m - 1] = counts.reshape(-1, self.n_symbols).sum(axis=1)
            prob = (counts + self.beta * np.tile(prob, self.n_symbols)) / np.repeat(
                self.contexts[m - 1] + self.beta, self.n_symbols)
            tables.append(prob)
        self.prob_tables = tables
        self.log_tables = [np.log(t) for t in tables]

    def token_log_probs(self, chunk, keys=None):
        """Natural-log probability of every token of a chunk given its history.

        Parameters
        ----------
        chunk : Chunk
            Tokens and positions.
        keys : list of numpy.ndarray, optional
            :func:`ngram_keys` of the chunk up to at least ``order`` (pass them
            to share the work between several LMs).

        Returns
        -------
        numpy.ndarray
            ``float64`` per token.
        """
        if self.log_tables is None:
            raise RuntimeError("fit the LM before scoring")
        if keys is None:
            keys = ngram_keys(chunk.tokens, self.order, self.n_symbols)
        top = self.n_dense
        tables = self.log_tables if top == self.order else self.prob_tables
        values = np.take(tables[top - 1], keys[top - 1])
        for m in range(1, top):  # utterance starts: shorter histories
            first = np.flatnonzero(chunk.pos == m - 1)
            values[first] = np.take(tables[m - 1], keys[m - 1][first])
        if top == self.order:
            return values
        prob = values
        for m in range(top + 1, self.order + 1):
            history = np.empty_like(keys[m - 2])
            history[0] = 0
            history[1:] = keys[m - 2][:-1]
            numerator = np.take(self.counts[m - 1], self.slots[m - 1](keys[m - 1]))
            numerator += self.beta * prob
            denominator = np.take(self.contexts[m - 1], self.slots[m - 2](history))
            denominator += self.beta
            prob = np.where(chunk.pos >= m - 1, numerator / denominator, prob)
        return np.log(prob)

    def utterance_log_probs(self, units):
        """Sum of token log-probabilities per utterance (``float64``, ``ids`` order)."""
        out = np.empty(len(units), dtype=np.float64)
        for chunk in iter_chunks(units, self.chunk_tokens):
            out[chunk.start : chunk.stop] = segment_sums(self.token_log_probs(chunk), chunk.offsets)
        return out
