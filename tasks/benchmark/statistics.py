"""Intervals of the benchmark: each selector against the baseline at each budget, paired on the test utterances.

The ASR cells' alignment files (``wer_<split>.txt``) give the errors of every
test utterance, the speaker cells' ``identification.txt`` the misidentified
test crops of every test utterance (crops of one utterance are resampled
together), and the distillation cells' ``heldout.json`` the held-out
distillation loss of every held-out utterance (its loss summed over frames and
its frame count: the same ratio estimate as an error rate, ``scale`` 1). A
selector's seeds at one budget are one system, the baseline's seeds (random
selection, or the full pool) the other, and :func:`difference_components`
resamples the utterances (shared) and each system's seeds, as
:func:`common.intervals.paired_difference` does. A comparison says better /
worse only when its 95 % interval excludes zero.

The interval mixes two sources of variation, and the two are also bootstrapped
alone: the seeds only (every utterance kept, each side's seeds resampled: the
spread of training runs) and the utterances only (every seed kept: the spread of
the test set). Their standard deviations say which dominates the interval; more
seeds narrow the first, more held-out audio the second.
"""

import functools
import json

import numpy as np

from common.intervals import rate_interval, seed_mean_rates
from lobes.feature_cache import crop_of
from tasks.compare_probes import run_errors
from tasks.speaker_probe import IDENTIFICATION_FILE

SPLITS = ("asr_test_target", "asr_test_in")  # the ASR probe's test splits
SPEAKER_SPLIT = "spk_test"  # the speaker probe's test split
LOSS = "LOSS"  # the held-out distillation loss, in the errors of a row under "heldout_<split>"
ID_ERROR = "ID error"  # the speaker probe's identification error (%, 100 minus its accuracy) on SPEAKER_SPLIT
SCALES = {"WER": 100.0, "CER": 100.0, ID_ERROR: 100.0, LOSS: 1.0}  # error rates in %, the loss as it is


def cell_errors(asr_folder):
    """``{split: (utterance IDs, {"WER": [N, 2], "CER": [N, 2]})}`` of a finished ASR cell's alignment files.

    The report is rewritten after every cell: each file is aligned once
    (seconds for a test split), then reused while it is unchanged.
    """
    out = {}
    for split in SPLITS:
        path = asr_folder / f"wer_{split}.txt"
        if path.exists():
            state = path.stat()
            out[split] = _file_errors(str(path), state.st_size, state.st_mtime_ns)
    return out


def speaker_errors(spk_folder):
    """``{"spk_test": (utterance IDs, {"ID error": [N, 2]})}`` of a finished speaker cell's ``identification.txt``.

    Rows are ``(test crops of the utterance misidentified, its test crops)``,
    utterances sorted by ID; ``{}`` for a cell without the file.

    Example
    -------
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "identification.txt").write_text("b#0 1\\nb#1 0\\na#0 0\\na#1 0\\n")
    >>> ids, errors = speaker_errors(folder)["spk_test"]
    >>> ids, errors["ID error"].tolist()
    (['a', 'b'], [[2.0, 2.0], [1.0, 2.0]])
    """
    path = spk_folder / IDENTIFICATION_FILE
    if not path.exists():
        return {}
    counts = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.split()
        try:
            if len(fields) != 2 or fields[1] not in ("0", "1"):
                raise ValueError("expected '<crop ID> <1|0>'")
            utterance, _ = crop_of(fields[0])
        except ValueError as error:
            raise ValueError(f"{path}, line {number}: {error}, got {line!r}") from None
        wrong_and_crops = counts.setdefault(utterance, [0, 0])
        wrong_and_crops[0] += fields[1] == "0"
        wrong_and_crops[1] += 1
    ids = sorted(counts)
    return {SPEAKER_SPLIT: (ids, {ID_ERROR: np.array([counts[i] for i in ids], dtype=np.float64).reshape(-1, 2)})}


def heldout_errors(distill_folder):
    """``{"heldout_<split>": (utterance IDs, {"LOSS": [N, 2]})}`` of a finished distillation's ``heldout.json``.

    Rows are ``(loss summed over the utterance's frames, frames)``; the
    utterances are sorted by ID, so that every student's rows line up.
    Also ``"heldout_<split>/<domain>"`` for each domain of the split. A split
    without utterances (e.g. no unseen-voice audio in a tiny corpus) is left out.
    """
    path = distill_folder / "heldout.json"
    if not path.exists():
        return {}
    out = {}
    for split, entry in json.loads(path.read_text(encoding="utf-8"))["splits"].items():
        utterances = entry["utterances"]
        if not utterances:
            continue
        for domain in [None, *sorted({row[2] for row in utterances.values()})]:
            ids = sorted(i for i, row in utterances.items() if domain is None or row[2] == domain)
            key = f"heldout_{split}" + ("" if domain is None else f"/{domain}")
            out[key] = (ids, {LOSS: np.array([utterances[i][:2] for i in ids], dtype=np.float64)})
    return out


@functools.lru_cache(maxsize=None)
def _file_errors(path, size, mtime_ns):
    """:func:`tasks.compare_probes.run_errors` of ``path``, remembered for this size and modification time."""
    return run_errors(path)


def scored(rows, errors, split):
    """The rows that have errors on ``split`` (the seeds a comparison or an interval uses)."""
    return [row for row in rows if split in errors.get(row["name"], {})]


def stacked(rows, errors, split, kind):
    """``[S, N, 2]`` errors of the rows (one per seed) that have them, the test utterance IDs, and the seeds used."""
    have = scored(rows, errors, split)
    if not have:
        return None, None, []
    ids = errors[have[0]["name"]][split][0]
    for row in have[1:]:
        if errors[row["name"]][split][0] != ids:
            raise ValueError(f"{row['name']} was tested on other {split} utterances than {have[0]['name']}")
    return np.stack([errors[row["name"]][split][1][kind] for row in have]), ids, [row["seed"] for row in have]


def mean_audio_hours(rows):
    """Mean ``audio_hours_seen`` of the rows that have it (``None`` when none has)."""
    values = [row["audio_hours_seen"] for row in rows if row.get("audio_hours_seen") is not None]
    return float(np.mean(values)) if values else None


def selector_intervals(records, errors, split="asr_test_target", kind="WER"):
    """``{selector: {budget %: (rate, low, high, seeds)}}``: each selector's rate (or loss) over its seeds, with its interval."""
    out = {}
    groups = {}
    for record in records:
        if record["group"] == "subset":
            groups.setdefault((record["selector"], record["budget_pct"]), []).append(record)
    for (selector, budget), rows in groups.items():
        values, _, seeds = stacked(rows, errors, split, kind)
        if values is not None:
            out.setdefault(selector, {})[budget] = (*rate_interval(values, scale=SCALES[kind]), len(seeds))
    return out


def _check_groups(groups):
    groups = [np.asarray(g, dtype=np.float64) for g in groups]
    for g in groups:
        if g.ndim != 3 or g.shape[-1] != 2 or not g.shape[0] or not g.shape[1]:
            raise ValueError(f"errors must be [seeds, utterances, 2] with at least one of each, got {g.shape}")
    if len({g.shape[1] for g in groups}) != 1:
        raise ValueError(f"the systems were scored on {sorted({g.shape[1] for g in groups})} utterances: a paired "
                         "comparison needs the same test set")
    return groups


def difference_components(groups_a, groups_b, scale=100.0, n_draws=2000, level=0.95, seed=0):
    """Mean rate of the systems ``groups_a`` minus that of ``groups_b``, with three bootstrap intervals.

    Each system's rate is the mean over its seeds of the ratio estimate on
    the test utterances; a side's rate is the mean of its systems' rates. The
    draws resample (``both``) the utterances, once for every system, and each
    system's seeds separately, as :func:`common.intervals.paired_difference`
    does (the same draws for one system a side); (``seeds``) the seeds only,
    every utterance kept; (``utterances``) the utterances only, every seed kept.

    Parameters
    ----------
    groups_a, groups_b : list of array-like
        ``[S, N, 2]`` errors of each system (its seeds), the same ``N`` utterances in the same order.
    scale : float
        100 for error rates in %, 1 for a loss.
    n_draws, level, seed
        Bootstrap draws, coverage and seed.

    Returns
    -------
    dict
        ``difference``; ``low``, ``high`` and ``verdict`` (``better``: the
        interval below 0, ``worse``: above, else ``indistinguishable``) of the
        both-sources interval; ``seed_low``, ``seed_high``, ``seed_sd`` and
        ``utterance_low``, ``utterance_high``, ``utterance_sd`` of the two
        one-source bootstraps; ``dominant``: ``seeds`` or ``utterances``,
        whichever spread is larger (``utterances`` with one seed a side: the seed
        spread is then unmeasured, and ``seed_sd`` is ``None``).

    Example
    -------
    >>> a = [[[[1, 10]] * 30, [[2, 10]] * 30]]
    >>> b = [[[[3, 10]] * 15 + [[2, 10]] * 15] * 2]
    >>> result = difference_components(a, b)
    >>> round(result["difference"], 1), result["verdict"], result["dominant"]
    (-10.0, 'better', 'seeds')
    """
    groups = _check_groups(list(groups_a) + list(groups_b))
    n_a, n_utterances = len(groups_a), groups[0].shape[1]
    rng = np.random.default_rng(seed)
    utterances = rng.integers(0, n_utterances, (n_draws, n_utterances))
    seeds = [rng.integers(0, g.shape[0], (n_draws, g.shape[0])) for g in groups]
    every_utterance = np.arange(n_utterances)[None]
    every_seed = [np.arange(g.shape[0])[None] for g in groups]

    def difference(utterance_draws, seed_draws):
        rates = [seed_mean_rates(g, utterance_draws, s, scale) for g, s in zip(groups, seed_draws)]
        return np.mean(rates[:n_a], axis=0) - np.mean(rates[n_a:], axis=0)

    tail = 50 * (1 - level)
    out = {"difference": float(difference(every_utterance, every_seed)[0])}
    for name, draws in (("", difference(utterances, seeds)), ("seed_", difference(every_utterance, seeds)),
                        ("utterance_", difference(utterances, every_seed))):
        out[f"{name}low"] = float(np.percentile(draws, tail))
        out[f"{name}high"] = float(np.percentile(draws, 100 - tail))
        if name:
            out[f"{name}sd"] = float(np.std(draws))
    if all(g.shape[0] == 1 for g in groups):
        out["seed_sd"] = None
    out["verdict"] = verdict(out["low"], out["high"])
    out["dominant"] = "seeds" if out["seed_sd"] is not None and out["seed_sd"] > out["utterance_sd"] else "utterances"
    return out


def verdict(low, high):
    """``better`` (interval below 0: fewer errors, lower loss), ``worse`` (above 0) or ``indistinguishable``."""
    return "better" if high < 0 else "worse" if low > 0 else "indistinguishable"


def paired_comparisons(records, errors, baseline, split="asr_test_target", kinds=("WER", "CER")):
    """Every selector against ``baseline`` at every budget where both have finished cells.

    Parameters
    ----------
    records : list of dict
        The report's rows (:func:`tasks.benchmark.report.row_record`).
    errors : dict
        ``{row name: {split: (ids, {kind: [N, 2]})}}``: :func:`cell_errors` of
        the finished ASR cells and :func:`heldout_errors` of the finished
        distillations.
    baseline : str
        The selector the others are compared with at each budget, or ``full``:
        the full-pool students, against every budget.
    split : str
        The test split (``heldout_<split>`` for the held-out loss).
    kinds : tuple of str
        ``WER``, ``CER`` (ASR splits), ``ID error`` (the speaker split) or ``LOSS`` (held-out splits).

    Returns
    -------
    list of dict
        ``budget_pct``, ``selector``, ``baseline``, ``metric``, ``split``,
        ``seeds``, ``baseline_seeds``, and :func:`difference_components`'s
        ``difference`` (selector minus baseline: points, or loss), ``low``,
        ``high``, ``verdict``, the seed-only and utterance-only intervals and
        spreads and ``dominant``.
    """
    subset = [r for r in records if r["group"] == "subset"]
    budgets = sorted({r["budget_pct"] for r in subset})
    selectors = list(dict.fromkeys(r["selector"] for r in subset if r["selector"] != baseline))
    comparisons = []
    for budget in budgets:
        base_rows = [r for r in records if r["group"] == "full"] if baseline == "full" else \
            [r for r in subset if r["selector"] == baseline and r["budget_pct"] == budget]
        for selector in selectors:
            rows = [r for r in subset if r["selector"] == selector and r["budget_pct"] == budget]
            for kind in kinds:
                mine, ids, seeds = stacked(rows, errors, split, kind)
                theirs, base_ids, base_seeds = stacked(base_rows, errors, split, kind)
                if mine is None or theirs is None:
                    continue
                if ids != base_ids:
                    raise ValueError(f"{selector} and {baseline} at {budget:g} % were tested on other {split} "
                                     "utterances")
                result = difference_components([mine], [theirs], scale=SCALES[kind])
                comparisons.append({"budget_pct": budget, "selector": selector, "baseline": baseline,
                                    "metric": kind, "split": split,
                                    "seeds": len(seeds), "baseline_seeds": len(base_seeds),
                                    "audio_hours_seen": mean_audio_hours(scored(rows, errors, split)),
                                    "baseline_audio_hours_seen": mean_audio_hours(scored(base_rows, errors, split)),
                                    **result})
    return comparisons


def comparisons_markdown(comparisons, baseline):
    """The paired comparisons as a Markdown table (empty list: a sentence saying none is available)."""
    if not comparisons:
        return f"No selector and {baseline} have finished cells at the same budget yet."
    lines = [f"| budget % | selector | metric | seeds ({baseline}) | audio h seen ({baseline}) | difference to "
             f"{baseline} | 95 % interval | seeds only | utterances only | wider | verdict |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in comparisons:
        digits = 4 if c["metric"] == LOSS else 2  # a loss near 0.4 vs error rates in points

        def interval(prefix):
            low, high = c[f"{prefix}low"], c[f"{prefix}high"]
            return f"[{low:+.{digits}f}, {high:+.{digits}f}]"

        seeds_only = interval("seed_") if c["seed_sd"] is not None else "one seed a side"
        hours = f"{_fmt_hours(c.get('audio_hours_seen'))} ({_fmt_hours(c.get('baseline_audio_hours_seen'))})"
        lines.append(f"| {c['budget_pct']:g} | {c['selector']} | {c['metric']} {c['split']} | {c['seeds']} "
                     f"({c['baseline_seeds']}) | {hours} | {c['difference']:+.{digits}f} | {interval('')} | "
                     f"{seeds_only} | {interval('utterance_')} | {c['dominant']} | {c['verdict']} |")
    return "\n".join(lines)


def _fmt_hours(value):
    return "–" if value is None else f"{value:.3f}"


def dominance_summary(comparisons):
    """A sentence counting the comparisons whose interval is wider from the seeds and from the utterances."""
    if not comparisons:
        return "No paired comparison yet."
    seeds = sum(c["dominant"] == "seeds" for c in comparisons)
    unmeasured = sum(c["seed_sd"] is None for c in comparisons)
    return (f"Of {len(comparisons)} comparisons, the seed-to-seed spread dominates the interval in {seeds} and "
            f"the utterance resampling in {len(comparisons) - seeds}"
            + (f" ({unmeasured} with one seed a side, whose seed spread is unmeasured)" if unmeasured else "") + ".")
