"""Bootstrap confidence intervals of error rates, for one system and for two compared on the same test set.

An error rate over a test set is ``sum(edits) / sum(reference tokens)`` (WER:
words, CER: characters). With several training seeds, the rate of a system is
the mean of its seeds' rates. Intervals are percentile bootstraps (Efron and
Tibshirani 1993) that resample both sources of variation: the test utterances
(one draw shared by every seed and, for a comparison, by both systems: a paired
comparison) and the seeds (drawn with replacement, separately for each system,
whose seeds are not paired). With one seed only the utterances vary, so the
interval ignores the training noise: say so when reporting it.
"""

import numpy as np


def utterance_errors(references, hypotheses):
    """``[N, 2]`` array of (edits, reference tokens) per utterance, from token lists (SpeechBrain's edit distance).

    Example
    -------
    >>> utterance_errors([["a", "b", "c"], ["x"]], [["a", "c"], ["y", "z"]]).tolist()
    [[1, 3], [2, 1]]
    """
    from speechbrain.utils.edit_distance import wer_details_for_batch

    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    details = wer_details_for_batch(list(range(len(references))), references, hypotheses)
    return np.array([[d["num_edits"], d["num_ref_tokens"]] for d in details], dtype=np.int64).reshape(-1, 2)


def seed_mean_rates(errors, utterances, seeds, scale=100.0):
    """Mean over ``seeds`` (rows of ``errors [S, N, 2]``) of the rate on ``utterances``; both index arrays ``[B, *]``.

    Returns one rate (``scale`` times the ratio: 100 for %) per bootstrap draw ``[B]``.
    """
    picked = errors[seeds[:, :, None], utterances[:, None, :]]  # [B, S', N', 2]
    sums = picked.sum(axis=2)
    return scale * (sums[..., 0] / np.where(sums[..., 1] > 0, sums[..., 1], 1)).mean(axis=1)


def _check(errors):
    errors = np.asarray(errors)
    if errors.ndim != 3 or errors.shape[-1] != 2 or errors.shape[0] == 0 or errors.shape[1] == 0:
        raise ValueError(f"errors must be [seeds, utterances, 2] with at least one of each, got {errors.shape}")
    return errors


def bootstrap_rates(errors, n_draws=2000, seed=0, scale=100.0):
    """``[n_draws]`` bootstrap rates of ``errors [S, N, 2]``: utterances and seeds resampled with replacement."""
    errors = _check(errors)
    rng = np.random.default_rng(seed)
    n_seeds, n_utterances = errors.shape[:2]
    return seed_mean_rates(errors, rng.integers(0, n_utterances, (n_draws, n_utterances)),
                           rng.integers(0, n_seeds, (n_draws, n_seeds)), scale)


def rate_interval(errors, n_draws=2000, level=0.95, seed=0, scale=100.0):
    """Error rate (%) of one system, mean over seeds, with its bootstrap interval.

    Parameters
    ----------
    errors : array-like
        ``[S, N, 2]``: (edits, reference tokens) of each seed's run on each
        test utterance, utterances in the same order for every seed.
    n_draws : int
        Bootstrap draws.
    level : float
        Coverage of the interval.
    seed : int
        Seed of the draws.
    scale : float
        The rate is ``scale`` times the ratio of the sums: 100 for an error
        rate in %, 1 for any other ratio estimate, e.g. a loss summed over
        frames and its frame count.

    Returns
    -------
    (float, float, float)
        The rate and the interval's low and high ends.

    Example
    -------
    >>> rate, low, high = rate_interval([[[1, 10]] * 20 + [[3, 10]] * 20])
    >>> round(rate, 1), low < rate < high
    (20.0, True)
    """
    errors = _check(errors)
    draws = bootstrap_rates(errors, n_draws, seed, scale)
    rate = float(seed_mean_rates(errors, np.arange(errors.shape[1])[None], np.arange(errors.shape[0])[None],
                                 scale)[0])
    tail = 50 * (1 - level)
    return rate, float(np.percentile(draws, tail)), float(np.percentile(draws, 100 - tail))


def paired_difference(errors_a, errors_b, n_draws=2000, level=0.95, seed=0, scale=100.0):
    """Rate of A minus rate of B (% points) on the same test utterances, with its bootstrap interval.

    Each draw resamples the utterances once for both systems (paired) and
    each system's seeds separately. Negative: A makes fewer errors.

    Parameters
    ----------
    errors_a, errors_b : array-like
        ``[S_a, N, 2]`` and ``[S_b, N, 2]``, the same ``N`` utterances in the same order.
    n_draws, level, seed, scale
        As in :func:`rate_interval`.

    Returns
    -------
    dict
        ``difference``, ``low``, ``high`` and ``verdict``: ``"A better"`` or
        ``"A worse"`` when the interval excludes 0, else ``"indistinguishable"``.

    Example
    -------
    >>> a = [[[1, 10]] * 30]
    >>> b = [[[3, 10]] * 15 + [[2, 10]] * 15]
    >>> result = paired_difference(a, b)
    >>> round(result["difference"], 1), result["verdict"]
    (-15.0, 'A better')
    """
    errors_a, errors_b = _check(errors_a), _check(errors_b)
    if errors_a.shape[1] != errors_b.shape[1]:
        raise ValueError(f"A was scored on {errors_a.shape[1]} utterances, B on {errors_b.shape[1]}: "
                         "a paired comparison needs the same test set")
    rng = np.random.default_rng(seed)
    n_utterances = errors_a.shape[1]
    utterances = rng.integers(0, n_utterances, (n_draws, n_utterances))
    seeds_a = rng.integers(0, errors_a.shape[0], (n_draws, errors_a.shape[0]))
    seeds_b = rng.integers(0, errors_b.shape[0], (n_draws, errors_b.shape[0]))
    draws = (seed_mean_rates(errors_a, utterances, seeds_a, scale)
             - seed_mean_rates(errors_b, utterances, seeds_b, scale))
    everything = np.arange(n_utterances)[None]
    difference = float(seed_mean_rates(errors_a, everything, np.arange(errors_a.shape[0])[None], scale)[0]
                       - seed_mean_rates(errors_b, everything, np.arange(errors_b.shape[0])[None], scale)[0])
    tail = 50 * (1 - level)
    low, high = float(np.percentile(draws, tail)), float(np.percentile(draws, 100 - tail))
    verdict = "A better" if high < 0 else "A worse" if low > 0 else "indistinguishable"
    return {"difference": difference, "low": low, "high": high, "verdict": verdict}
