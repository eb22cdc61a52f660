"""Selection maths against brute-force oracles written out with loops, dicts and ``math.log``.

What is tested
--------------
* :class:`selection.ngrams.NgramLM`: per-token and per-utterance log-probabilities
  of the interpolated add-``beta`` LM, orders 1-3 with exact (dense) tables, and
  orders 3-4 with hashed tables whose hash is collision-free on the data.
* :class:`selection.selectors.ContrastiveLMSelector`: per-unit log-likelihood ratio.
* :class:`selection.selectors.DSIRSelector`: log importance weights, top-k budget
  filling, Gumbel resampling (budget, and first pick drawn proportionally to ``w``),
  and rank agreement with the authors' ``data_selection`` package (when installed).
* :mod:`selection.selectors.greedy_kl`: one exact greedy step from a given subset,
  and a whole exact greedy run (divergence and coverage targets).

The oracles follow the definitions in the docstrings, not the vectorised code:
n-grams are tuples counted in ``collections.Counter`` and nothing is hashed.
Data are small random unit sequences (first-order Markov chains, 3-6 symbols).
"""

import itertools
import json
import math
from collections import Counter

import numpy as np
import pytest

from common.manifest import Manifest
from selection.ngrams import NgramHasher, NgramLM, SlotIndex, iter_chunks
from selection.selectors import ContrastiveLMSelector, CoverageSelector, DivergenceSelector, DSIRSelector
from selection.selectors.greedy_kl import _exact_decrease, hashed_features
from selection.units import UnitSet

SEEDS = [0, 1, 2, 3]
TOL = {"rel": 1e-9, "abs": 1e-12}  # everything under test is float64


def random_sequences(rng, n_utts, n_symbols, max_len=30, symbols=None):
    """``n_utts`` Markov-chain sequences of 1..``max_len`` units drawn from ``symbols``."""
    symbols = list(range(n_symbols)) if symbols is None else symbols
    trans = rng.dirichlet(np.full(len(symbols), 0.5), size=len(symbols))
    seqs = []
    for length in rng.integers(1, max_len + 1, size=n_utts):
        state = [int(rng.integers(len(symbols)))]
        while len(state) < length:
            state.append(int(rng.choice(len(symbols), p=trans[state[-1]])))
        seqs.append([symbols[s] for s in state])
    return seqs


def unit_set(seqs, n_symbols, prefix="u"):
    return UnitSet.from_sequences(((f"{prefix}{i}", s) for i, s in enumerate(seqs)), 50.0, n_symbols)


def manifest(units, durations):
    rows = [{"ID": i, "duration": repr(float(d)), "wav": f"{i}.flac"} for i, d in zip(units.ids, durations)]
    return Manifest("<oracle>", ["ID", "duration", "wav"], rows)


def ngrams(seq, orders):
    """All m-grams (tuples) inside ``seq``, for every m in ``orders``."""
    return [tuple(seq[i - m + 1 : i + 1]) for m in orders for i in range(m - 1, len(seq))]


# ----------------------------------------------------------------------------- n-gram LM
def oracle_lm(train, order, n_symbols, beta):
    """``logp(seq)`` -> per-token natural-log probabilities, by the NgramLM docstring."""
    counts = Counter(g for seq in train for g in ngrams(seq, range(1, order + 1)))
    history = Counter(g[:-1] for g in counts.elements() if len(g) >= 2)  # c(h .)
    n_tokens = sum(len(seq) for seq in train)

    def prob(h, w):
        if not h:
            return (counts[(w,)] + 1.0) / (n_tokens + n_symbols)
        return (counts[h + (w,)] + beta * prob(h[1:], w)) / (history[h] + beta)

    def logp(seq):  # the first tokens use the history they have (no start symbol)
        return [math.log(prob(tuple(seq[max(0, i - order + 1) : i]), w)) for i, w in enumerate(seq)]

    return logp


def check_lm(lm, train, test, order, n_symbols, beta):
    logp = oracle_lm(train, order, n_symbols, beta)
    units = unit_set(test, n_symbols)
    tokens = np.concatenate([lm.token_log_probs(c) for c in iter_chunks(units, lm.chunk_tokens)])
    assert tokens == pytest.approx([v for seq in test for v in logp(seq)], **TOL)
    assert lm.utterance_log_probs(units) == pytest.approx([math.fsum(logp(s)) for s in test], **TOL)


@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("chunk_tokens", [1 << 20, 7])
def test_lm_dense_matches_oracle(order, seed, chunk_tokens):
    rng = np.random.default_rng(seed)
    n_symbols, beta = int(rng.integers(3, 7)), [0.5, 1.0, 2.5, 0.1][seed]
    train = random_sequences(rng, int(rng.integers(5, 21)), n_symbols)
    # unseen, empty (in a chunk with tokens; chunks of empty utterances alone: next test), seen
    test = random_sequences(rng, 8, n_symbols) + [[0, 1], []] + train[:3]
    lm = NgramLM(order, n_symbols, beta, chunk_tokens=chunk_tokens).fit(unit_set(train, n_symbols))
    assert lm.n_dense == order
    check_lm(lm, train, test, order, n_symbols, beta)


@pytest.mark.parametrize("chunk_tokens, seqs", [
    (7, [[0, 1, 2, 0, 1, 2, 0, 1], [], [1, 2, 0, 1, 2, 0, 1, 2]]),  # each utterance its own chunk
    (1 << 20, [[], []]),  # default chunks, no units at all
])
def test_lm_chunk_of_empty_utterances(chunk_tokens, seqs):
    lm = NgramLM(2, 3, chunk_tokens=chunk_tokens).fit(unit_set([[0, 1, 2, 1]], 3))
    assert lm.utterance_log_probs(unit_set(seqs, 3))[1] == 0.0


@pytest.mark.parametrize("order", [3, 4])
@pytest.mark.parametrize("seed", SEEDS)
def test_lm_hashed_without_collisions_matches_oracle(order, seed):
    # codebook of 41 with 2**16 slots: orders >= 3 are hashed; on the 4 symbols
    # used the hash happens to be injective (checked), so the LM must be exact.
    n_symbols, bits, used = 41, 16, [0, 13, 27, 40]
    for m in range(3, order + 1):
        slot = SlotIndex(m, n_symbols, bits)
        codes = [sum(t * n_symbols ** (m - 1 - j) for j, t in enumerate(g))
                 for g in itertools.product(used, repeat=m)]
        assert not slot.exact and len(set(slot(np.array(codes)).tolist())) == len(codes)
    rng = np.random.default_rng(seed)
    train = random_sequences(rng, 15, n_symbols, symbols=used)
    test = random_sequences(rng, 8, n_symbols, symbols=used) + train[:3]
    lm = NgramLM(order, n_symbols, 1.5, hash_bits=bits, chunk_tokens=11).fit(unit_set(train, n_symbols))
    assert lm.n_dense == 2
    check_lm(lm, train, test, order, n_symbols, 1.5)


# ----------------------------------------------------------------------------- contrastive
@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("seed", SEEDS)
def test_contrastive_scores_match_oracle(order, seed):
    rng = np.random.default_rng(100 + seed)
    n_symbols = int(rng.integers(3, 7))
    pool = random_sequences(rng, int(rng.integers(5, 21)), n_symbols) + [[]]
    target = random_sequences(rng, 6, n_symbols)
    selector = ContrastiveLMSelector(order=order, beta=0.7)
    log_t = oracle_lm(target, order, n_symbols, 0.7)
    log_p = oracle_lm(pool, order, n_symbols, 0.7)
    expected = [(math.fsum(log_t(s)) - math.fsum(log_p(s))) / len(s) if s else -math.inf for s in pool]
    units, target_units = unit_set(pool, n_symbols), unit_set(target, n_symbols, "t")
    assert selector.scores(units, target_units) == pytest.approx(expected, **TOL)
    result = selector.select(manifest(units, np.ones(len(pool))), units, 1e3, target_units)
    assert result.scores == pytest.approx(sorted(expected, reverse=True), **TOL)
    assert [expected[units.rows([i])[0]] for i in result.ids] == pytest.approx(result.scores, **TOL)


# ----------------------------------------------------------------------------- DSIR
def oracle_dsir(pool, target, orders, n_symbols):
    """``sum_b count_x(b) * (log p_T(b) - log p_pool(b))``, add-one over all possible n-grams."""
    n_buckets = sum(n_symbols**m for m in orders)
    c_t = Counter(g for s in target for g in ngrams(s, orders))
    c_p = Counter(g for s in pool for g in ngrams(s, orders))
    t_total, p_total = sum(c_t.values()), sum(c_p.values())

    def log_ratio(g):
        return math.log((c_t[g] + 1) / (t_total + n_buckets)) - math.log((c_p[g] + 1) / (p_total + n_buckets))

    return [math.fsum(log_ratio(g) for g in ngrams(s, orders)) for s in pool]


def dsir_data(seed, n_pool=20, n_target=10):
    """Pool (target-like half + other source; no two equal n-gram bags), target, durations."""
    rng = np.random.default_rng(200 + seed)
    n_symbols = int(rng.integers(3, 7))
    near = random_sequences(rng, n_target + n_pool, n_symbols)
    target, candidates = near[:n_target], near[n_target:] + random_sequences(rng, n_pool, n_symbols)
    bags, pool = set(), []
    for seq in candidates:
        bag = frozenset(Counter(ngrams(seq, (1, 2, 3))).items())
        if bag not in bags:
            bags.add(bag)
            pool.append(seq)
    durations = rng.integers(1, 30, size=len(pool)).astype(float)  # whole seconds: exact sums
    return n_symbols, pool, target, durations


@pytest.mark.parametrize("orders", [(1,), (1, 2), (1, 2, 3)])
@pytest.mark.parametrize("seed", SEEDS)
def test_dsir_log_weights_match_oracle(orders, seed):
    n_symbols, pool, target, _ = dsir_data(seed)
    selector = DSIRSelector(orders=orders)
    units, target_units = unit_set(pool, n_symbols), unit_set(target, n_symbols, "t")
    got, n_grams = selector.log_weights(units, target_units)
    expected = oracle_dsir(pool, target, orders, n_symbols)
    assert got == pytest.approx(expected, **TOL)
    counts = [len(list(ngrams(s, orders))) for s in pool]
    assert n_grams.tolist() == counts
    assert selector.scores(units, target_units) == pytest.approx([w / n for w, n in zip(expected, counts)], **TOL)


def oracle_fill(order, durations, budget):
    """Walk the ranking; take every utterance that still fits."""
    taken, gap = [], budget
    for i in order:
        if durations[i] <= gap:
            taken.append(i)
            gap -= durations[i]
    return taken


@pytest.mark.parametrize("length_normalization", [False, True])
@pytest.mark.parametrize("gumbel", [False, True])
@pytest.mark.parametrize("seed", SEEDS)
def test_dsir_selection_fills_budget(gumbel, length_normalization, seed):
    n_symbols, pool, target, durations = dsir_data(seed)
    units, target_units = unit_set(pool, n_symbols), unit_set(target, n_symbols, "t")
    log_w = oracle_dsir(pool, target, (1, 2), n_symbols)
    if length_normalization:
        log_w = [w / len(list(ngrams(s, (1, 2)))) for w, s in zip(log_w, pool)]
    budget = 0.4 * durations.sum()
    selector = DSIRSelector(gumbel=gumbel, length_normalization=length_normalization, seed=seed)
    result = selector.select(manifest(units, durations), units, budget / 3600, target_units)
    picked = units.rows(result.ids).tolist()
    gap = budget - durations[picked].sum()
    assert gap >= 0 and all(durations[j] > gap for j in set(range(len(pool))) - set(picked))
    assert result.scores == pytest.approx([log_w[i] for i in picked], **TOL)
    top_k = oracle_fill(sorted(range(len(pool)), key=lambda i: -log_w[i]), durations, budget)
    if not gumbel:  # top-k: the budget filled in decreasing log w
        assert picked == top_k
    shared = durations[[i for i in picked if i in top_k]].sum() / durations[picked].sum()
    assert selector.diagnostics["hours_shared_with_top_k"] == pytest.approx(shared)


def test_dsir_gumbel_first_pick_is_proportional_to_weight():
    seqs = random_sequences(np.random.default_rng(1), 25, 3, max_len=4)  # shares 0.11 .. 0.28
    target, pool = seqs[:20], seqs[20:]
    units, target_units, rows = unit_set(pool, 3), unit_set(target, 3, "t"), np.arange(len(pool))
    log_w = np.array(oracle_dsir(pool, target, (1, 2), 3))
    n_draws = 2000
    first = Counter(int(DSIRSelector(length_normalization=False, temperature=1.0, seed=s).rank(
        units.ids, np.ones(5), units, rows, target_units, 1.0)[0][0]) for s in range(n_draws))
    share = np.exp(log_w) / np.exp(log_w).sum()
    # binomial standard deviation <= sqrt(0.25 / 2000) = 0.011; the seeds are fixed
    assert [first[i] / n_draws for i in rows] == pytest.approx(share.tolist(), abs=0.035)


def test_dsir_temperature_resamples_per_ngram_scores_in_proportion():
    """Length-normalised: the first pick has probability proportional to exp(mean log-ratio / temperature)."""
    seqs = random_sequences(np.random.default_rng(1), 25, 3, max_len=4)
    target, pool = seqs[:20], seqs[20:]
    units, target_units, rows = unit_set(pool, 3), unit_set(target, 3, "t"), np.arange(len(pool))
    mean_log_w = np.array([w / len(list(ngrams(s, (1, 2)))) for w, s in zip(oracle_dsir(pool, target, (1, 2), 3),
                                                                            pool)])
    n_draws, temperature = 2000, 0.5
    first = Counter(int(DSIRSelector(temperature=temperature, seed=s).rank(
        units.ids, np.ones(5), units, rows, target_units, 1.0)[0][0]) for s in range(n_draws))
    share = np.exp(mean_log_w / temperature) / np.exp(mean_log_w / temperature).sum()
    assert [first[i] / n_draws for i in rows] == pytest.approx(share.tolist(), abs=0.035)
    with pytest.raises(ValueError, match="temperature"):
        DSIRSelector(temperature=0)


def test_dsir_rank_agrees_with_reference_package(tmp_path):
    """Same uni+bigram features as ``data_selection`` (p-lambda/dsir), hashed differently.

    The reference smooths with ``1e-8`` where we add one, so a pool n-gram the target
    never shows costs it about ``log 1e-8`` per occurrence: ranks are compared on the
    utterances whose n-grams the target all has (Spearman >= 0.995 over 40 seeds),
    and more loosely on the whole pool (>= 0.947 over the same seeds).
    """
    data_selection = pytest.importorskip("data_selection")
    spearmanr = pytest.importorskip("scipy.stats").spearmanr
    for seed in SEEDS:
        n_symbols, pool, target, _ = dsir_data(seed, n_pool=150, n_target=40)
        paths = {}
        for name, seqs in (("raw", pool), ("target", target)):
            paths[name] = tmp_path / f"{name}{seed}.jsonl"
            paths[name].write_text("".join(json.dumps({"text": " ".join(f"u{t}" for t in s)}) + "\n"
                                           for s in seqs))
        ref = data_selection.HashedNgramDSIR([str(paths["raw"])], [str(paths["target"])],
                                             str(tmp_path / f"cache{seed}"), num_proc=1, ngrams=2,
                                             min_example_length=0)
        ref.fit_importance_estimator(num_tokens_to_fit="all")
        ref.compute_importance_weights()
        theirs = np.load(ref.log_importance_weights_dir / "0.npy")
        ours, _ = DSIRSelector().log_weights(unit_set(pool, n_symbols), unit_set(target, n_symbols, "t"))
        in_target = set(g for s in target for g in ngrams(s, (1, 2)))
        covered = np.array([set(ngrams(s, (1, 2))) <= in_target for s in pool])
        assert spearmanr(ours[covered], theirs[covered]).statistic > 0.99, seed
        assert spearmanr(ours, theirs).statistic > 0.9, seed


# ----------------------------------------------------------------------------- greedy KL
def oracle_kl(q, subset, n_buckets, eps):
    """``KL(q || p_S)`` with ``p_S(b) = (S_b + eps) / (|S| + n_buckets * eps)``; ``subset`` is a Counter."""
    norm = sum(subset.values()) + n_buckets * eps
    return math.fsum(qb * math.log(qb * norm / (subset[b] + eps)) for b, qb in q.items() if qb > 0)


def oracle_target(pool, target, orders, coverage):
    """``q``: target n-gram frequencies, or uniform over the pool's n-grams (coverage)."""
    counts = Counter(g for s in (pool if coverage else target) for g in ngrams(s, orders))
    weights = {g: 1.0 if coverage else c for g, c in counts.items()}
    return {g: w / sum(weights.values()) for g, w in weights.items()}


def oracle_gain(q, bag, seq, n_buckets, eps, orders=(1, 2)):
    """KL decrease from adding ``seq`` to the subset ``bag``, both KLs computed from scratch."""
    after = bag + Counter(ngrams(seq, orders))
    return oracle_kl(q, bag, n_buckets, eps) - oracle_kl(q, after, n_buckets, eps)


@pytest.mark.parametrize("eps", [1.0, 0.3])
@pytest.mark.parametrize("seed", SEEDS)
def test_greedy_kl_step_matches_brute_force(eps, seed):
    n_symbols, pool, target, durations = dsir_data(seed)
    n_buckets = n_symbols + n_symbols**2
    units, target_units = unit_set(pool, n_symbols), unit_set(target, n_symbols, "t")
    current = sorted(np.random.default_rng(seed).choice(len(pool), len(pool) // 3, replace=False).tolist())
    rest = [i for i in range(len(pool)) if i not in current]
    hasher = NgramHasher((1, 2), n_symbols)
    q = hasher.counts(target_units) / hasher.counts(target_units).sum()
    subset = hasher.counts(units.subset([units.ids[i] for i in current]))
    got = _exact_decrease(hashed_features(units, hasher), units.offsets, np.array(rest), q, subset,
                          subset.sum(), eps, n_buckets * eps)
    q_oracle = oracle_target(pool, target, (1, 2), coverage=False)
    bag = Counter(g for i in current for g in ngrams(pool[i], (1, 2)))
    expected = [oracle_gain(q_oracle, bag, pool[i], n_buckets, eps) for i in rest]
    assert got == pytest.approx(expected, **TOL)
    per_second = dict(zip(rest, np.array(expected) / durations[rest]))  # the greedy's criterion
    assert rest[int(np.argmax(got / durations[rest]))] == max(rest, key=per_second.get)


@pytest.mark.parametrize("coverage", [False, True])
@pytest.mark.parametrize("seed", SEEDS)
def test_greedy_kl_run_matches_brute_force(coverage, seed):
    n_symbols, pool, target, durations = dsir_data(seed, n_pool=8)
    n_buckets, eps, budget = n_symbols + n_symbols**2, 0.5, 0.5 * durations.sum()
    units, target_units = unit_set(pool, n_symbols), unit_set(target, n_symbols, "t")
    kind = CoverageSelector if coverage else DivergenceSelector
    selector = kind(orders=(1, 2), n_rounds=10**6, shortlist_factor=math.inf, eps=eps)  # exact greedy
    order, scores = selector.rank(units.ids, durations, units, np.arange(len(pool)), target_units, budget)
    q = oracle_target(pool, target, (1, 2), coverage)
    bag, picked, gains = Counter(), [], []
    while durations[picked].sum() < budget and len(picked) < len(pool):
        rest = [i for i in range(len(pool)) if i not in picked]
        gain = {i: oracle_gain(q, bag, pool[i], n_buckets, eps) / durations[i] for i in rest}
        picked.append(max(rest, key=gain.get))  # first best, as the stable sort
        gains.append(gain[picked[-1]])
        bag += Counter(ngrams(pool[picked[-1]], (1, 2)))
    assert order[: len(picked)].tolist() == picked
    assert scores[: len(picked)] == pytest.approx(gains, **TOL)
    assert np.isnan(scores[len(picked) :]).all() and sorted(order.tolist()) == list(range(len(pool)))
