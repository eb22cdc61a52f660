"""Intervals of the benchmark: each selector against the baseline at each budget, paired on the test utterances.

The ASR cells' alignment files (``wer_<split>.txt``) give the errors of every
test utterance, and the distillation cells' ``heldout.json`` the held-out
distillation loss of every held-out utterance (its loss summed over frames and
its frame count: the same ratio estimate as an error rate, ``scale`` 1). A
selector's seeds at one budget are one system, the baseline's seeds (random
selection, or the full pool) the other, and :func:`common.intervals.paired_difference`
resamples the utterances (shared) and each system's seeds. A comparison says
better / worse only when its 95 % interval excludes zero.
"""

import functools
import json

import numpy as np

from common.intervals import paired_difference, rate_interval
from tasks.compare_probes import run_errors

SPLITS = ("asr_test_target", "asr_test_in")
LOSS = "LOSS"  # the held-out distillation loss, in the errors of a row under "heldout_<split>"
SCALES = {"WER": 100.0, "CER": 100.0, LOSS: 1.0}  # error rates in %, the loss as it is


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


def heldout_errors(distill_folder):
    """``{"heldout_<split>": (utterance IDs, {"LOSS": [N, 2]})}`` of a finished distillation's ``heldout.json``.

    Rows are ``(loss summed over the utterance's frames, frames)``; the
    utterances are sorted by ID, so that every student's rows line up.
    Also ``"heldout_<split>/<domain>"`` for each domain of the split.
    """
    path = distill_folder / "heldout.json"
    if not path.exists():
        return {}
    out = {}
    for split, entry in json.loads(path.read_text(encoding="utf-8"))["splits"].items():
        utterances = entry["utterances"]
        for domain in [None, *sorted({row[2] for row in utterances.values()})]:
            ids = sorted(i for i, row in utterances.items() if domain is None or row[2] == domain)
            key = f"heldout_{split}" + ("" if domain is None else f"/{domain}")
            out[key] = (ids, {LOSS: np.array([utterances[i][:2] for i in ids], dtype=np.float64)})
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
        ``WER``, ``CER`` (ASR splits) or ``LOSS`` (held-out splits).

    Returns
    -------
    list of dict
        ``budget_pct``, ``selector``, ``baseline``, ``metric``, ``split``,
        ``seeds``, ``baseline_seeds``, ``difference`` (selector minus baseline:
        points, or loss), ``low``, ``high`` and ``verdict`` (``better``,
        ``worse`` or ``indistinguishable``).
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
                result = paired_difference(mine, theirs, scale=SCALES[kind])
                verdict = {"A better": "better", "A worse": "worse"}.get(result["verdict"], result["verdict"])
                comparisons.append({"budget_pct": budget, "selector": selector, "baseline": baseline,
                                    "metric": kind, "split": split,
                                    "seeds": len(seeds), "baseline_seeds": len(base_seeds),
                                    "difference": result["difference"], "low": result["low"],
                                    "high": result["high"], "verdict": verdict})
    return comparisons


def comparisons_markdown(comparisons, baseline):
    """The paired comparisons as a Markdown table (empty list: a sentence saying none is available)."""
    if not comparisons:
        return f"No selector and {baseline} have finished cells at the same budget yet."
    lines = [f"| budget % | selector | metric | seeds ({baseline}) | difference to {baseline} | "
             "95 % interval | verdict |", "|---|---|---|---|---|---|---|"]
    for c in comparisons:
        digits = 4 if c["metric"] == LOSS else 2  # a loss near 0.4 vs error rates in points
        lines.append(f"| {c['budget_pct']:g} | {c['selector']} | {c['metric']} {c['split']} | {c['seeds']} "
                     f"({c['baseline_seeds']}) | {c['difference']:+.{digits}f} | [{c['low']:+.{digits}f}, "
                     f"{c['high']:+.{digits}f}] | {c['verdict']} |")
    return "\n".join(lines)
