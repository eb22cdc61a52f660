"""Intervals of the benchmark: each selector against the baseline at each budget, paired on the test utterances.

The ASR cells' alignment files (``wer_<split>.txt``) give the errors of every
test utterance; a selector's seeds at one budget are one system, the baseline's
seeds (random selection) the other, and :func:`common.intervals.paired_difference`
resamples the utterances (shared) and each system's seeds. A comparison says
better / worse only when its 95 % interval excludes zero.
"""

import functools

import numpy as np

from common.intervals import paired_difference, rate_interval
from tasks.compare_probes import run_errors

SPLITS = ("asr_test_target", "asr_test_in")


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


@functools.lru_cache(maxsize=None)
def _file_errors(path, size, mtime_ns):
    """:func:`tasks.compare_probes.run_errors` of ``path``, remembered for this size and modification time."""
    return run_errors(path)


def stacked(rows, errors, split, kind):
    """``[S, N, 2]`` errors of the rows (one per seed) that have them, the test utterance IDs, and the seeds used."""
    have = [row for row in rows if split in errors.get(row["name"], {})]
    if not have:
        return None, None, []
    ids = errors[have[0]["name"]][split][0]
    for row in have[1:]:
        if errors[row["name"]][split][0] != ids:
            raise ValueError(f"{row['name']} was tested on other {split} utterances than {have[0]['name']}")
    return np.stack([errors[row["name"]][split][1][kind] for row in have]), ids, [row["seed"] for row in have]


def selector_intervals(records, errors, split="asr_test_target", kind="WER"):
    """``{selector: {budget %: (rate, low, high, seeds)}}``: each selector's rate over its seeds with its interval."""
    out = {}
    groups = {}
    for record in records:
        if record["group"] == "subset":
            groups.setdefault((record["selector"], record["budget_pct"]), []).append(record)
    for (selector, budget), rows in groups.items():
        values, _, seeds = stacked(rows, errors, split, kind)
        if values is not None:
            out.setdefault(selector, {})[budget] = (*rate_interval(values), len(seeds))
    return out


def paired_comparisons(records, errors, baseline, split="asr_test_target"):
    """Every selector against ``baseline`` at every budget where both have finished ASR cells, WER and CER.

    Parameters
    ----------
    records : list of dict
        The report's rows (:func:`tasks.benchmark.report.row_record`).
    errors : dict
        ``{row name: cell_errors(...)}`` of the rows whose ASR cell finished.
    baseline : str
        The selector the others are compared with.
    split : str
        The test split.

    Returns
    -------
    list of dict
        ``budget_pct``, ``selector``, ``metric`` (``WER``/``CER``), ``seeds``,
        ``baseline_seeds``, ``difference`` (selector minus baseline, points),
        ``low``, ``high`` and ``verdict`` (``better``, ``worse`` or ``indistinguishable``).
    """
    subset = [r for r in records if r["group"] == "subset"]
    budgets = sorted({r["budget_pct"] for r in subset})
    selectors = list(dict.fromkeys(r["selector"] for r in subset if r["selector"] != baseline))
    comparisons = []
    for budget in budgets:
        base_rows = [r for r in subset if r["selector"] == baseline and r["budget_pct"] == budget]
        for selector in selectors:
            rows = [r for r in subset if r["selector"] == selector and r["budget_pct"] == budget]
            for kind in ("WER", "CER"):
                mine, ids, seeds = stacked(rows, errors, split, kind)
                theirs, base_ids, base_seeds = stacked(base_rows, errors, split, kind)
                if mine is None or theirs is None:
                    continue
                if ids != base_ids:
                    raise ValueError(f"{selector} and {baseline} at {budget:g} % were tested on other {split} "
                                     "utterances")
                result = paired_difference(mine, theirs)
                verdict = {"A better": "better", "A worse": "worse"}.get(result["verdict"], result["verdict"])
                comparisons.append({"budget_pct": budget, "selector": selector, "metric": kind, "split": split,
                                    "seeds": len(seeds), "baseline_seeds": len(base_seeds),
                                    "difference": result["difference"], "low": result["low"],
                                    "high": result["high"], "verdict": verdict})
    return comparisons


def comparisons_markdown(comparisons, baseline):
    """The paired comparisons as a Markdown table (empty list: a sentence saying none is available)."""
    if not comparisons:
        return f"No selector and {baseline} have finished ASR cells at the same budget yet."
    lines = [f"| budget % | selector | metric | seeds ({baseline}) | difference to {baseline} (points) | "
             "95 % interval | verdict |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {c['budget_pct']:g} | {c['selector']} | {c['metric']} {c['split']} | {c['seeds']} "
              f"({c['baseline_seeds']}) | {c['difference']:+.2f} | [{c['low']:+.2f}, {c['high']:+.2f}] | "
              f"{c['verdict']} |" for c in comparisons]
    return "\n".join(lines)
