"""Learning curves of the benchmark's students: how many steps a subset needs to reach the full pool's quality.

A student run with ``heldout_curve_splits`` keeps its held-out loss after every
epoch (``heldout_curve.json``, :class:`tasks.heldout.LearningCurve`). The number a
user of selection wants is the compute a subset saves: the optimizer steps a
student on that subset needs to reach the full-pool students' final loss on the
target domain (their mean over seeds), per selector and budget, or "not reached";
in the target set's voices and in voices it lacks (:data:`CURVE_SPLITS`).
"""

import json
from pathlib import Path

import numpy as np

TARGET = "asr_test_target"
CURVE_SPLITS = (TARGET, "asr_test_target_unseen_voice")


def load_curve(path, split=TARGET):
    """``[(optimizer_steps, loss on split)]`` of a ``heldout_curve.json`` (``[]`` when missing or without the split)."""
    if path is None or not Path(path).exists():
        return []
    points = json.loads(Path(path).read_text())["points"]
    return [(p["optimizer_steps"], p["heldout_loss"][split]["all"]) for p in points
            if p["heldout_loss"].get(split, {}).get("all") is not None]


def load_curves(path):
    """``{split: load_curve(path, split)}`` for each of :data:`CURVE_SPLITS` the file holds."""
    curves = {split: load_curve(path, split) for split in CURVE_SPLITS}
    return {split: points for split, points in curves.items() if points}


def steps_to_reach(points, threshold):
    """The first step count at which the loss is at most ``threshold``; ``None`` if never.

    Example
    -------
    >>> steps_to_reach([(100, 0.9), (200, 0.8), (300, 0.7)], 0.8)
    200
    >>> steps_to_reach([(100, 0.9)], 0.8) is None
    True
    """
    return next((steps for steps, loss in points if loss <= threshold), None)


def final_loss(record, split):
    """A student's held-out loss on ``split`` at the end of its training (``None`` when not measured)."""
    return ((record.get("heldout_domains") or {}).get(split) or {}).get("all")


def full_pool_threshold(records, split=TARGET):
    """The full-pool students' mean final loss on ``split`` (``None`` without any)."""
    finals = [final_loss(r, split) for r in records if r["group"] == "full"]
    finals = [value for value in finals if value is not None]
    return float(np.mean(finals)) if finals else None


def steps_table(records, split=TARGET):
    """Per budget and selector: the steps each seed needs to reach the full pool's final loss on ``split``.

    Parameters
    ----------
    records : list of dict
        :func:`tasks.benchmark.report.row_record` of every row, each with ``curves``
        (:func:`load_curves`).
    split : str
        The held-out split whose curves and final losses are compared.

    Returns
    -------
    list of dict
        ``budget_pct``, ``selector``, ``threshold``, ``steps`` (one entry per seed with a
        curve: a step count or ``None``), ``reached`` (how many seeds), ``median_steps``
        (over the seeds, an unreached seed counting as more than any step; ``None`` when
        half or more did not reach it), ``last_steps`` (the curve's length),
        ``lowest_steps`` (per seed, the step count of the curve's lowest loss) and
        ``rise`` (the mean over seeds of the last loss minus the lowest: above 0 when a
        longer run overfits the subset).
    """
    threshold = full_pool_threshold(records, split)
    groups = {}
    for r in records:
        if r["group"] == "subset" and r.get("curves", {}).get(split):
            groups.setdefault((r["budget_pct"], r["selector"]), []).append(r["curves"][split])
    rows = []
    for (budget, selector), curves in sorted(groups.items()):
        steps = [None if threshold is None else steps_to_reach(curve, threshold) for curve in curves]
        ordered = sorted(steps, key=lambda s: float("inf") if s is None else s)
        median = ordered[(len(ordered) - 1) // 2]
        lowest = [min(curve, key=lambda point: point[1]) for curve in curves]
        rows.append({"budget_pct": budget, "selector": selector, "threshold": threshold, "steps": steps,
                     "reached": sum(s is not None for s in steps), "median_steps": median,
                     "last_steps": max(curve[-1][0] for curve in curves),
                     "lowest_steps": [point[0] for point in lowest],
                     "rise": float(np.mean([curve[-1][1] - point[1] for curve, point in zip(curves, lowest)]))})
    return rows


def ratio_to_baseline(row, base):
    """A row's median steps over its baseline's, as text: a bound when one of the two never reached the loss.

    Example
    -------
    >>> ratio_to_baseline({"median_steps": 500, "last_steps": 1200}, {"median_steps": None, "last_steps": 1200})
    '< 0.42'
    """
    if base is None or (row["median_steps"] is None and base["median_steps"] is None):
        return "–"
    if base["median_steps"] is None:
        return f"< {row['median_steps'] / base['last_steps']:.2f}"
    if row["median_steps"] is None:
        return f"> {row['last_steps'] / base['median_steps']:.2f}"
    return f"{row['median_steps'] / base['median_steps']:.2f}"


def steps_markdown(rows, baseline, split=TARGET):
    """The markdown lines of :func:`steps_table`, with each selector's median against the baseline's."""
    if not rows:
        return [f"No student with a learning curve on {split} (`heldout_curve_splits`)."]
    if rows[0]["threshold"] is None:
        return [f"No full-pool student finished with a loss on {split}: nothing to reach yet."]
    lines = [f"Steps to reach the full-pool students' final loss on {split} "
             f"({rows[0]['threshold']:.4f}, their mean), per seed; the median over the seeds (an unreached seed "
             "counts as more than any step count) and its ratio to the baseline's median at the same budget "
             "(a bound when one of them was not reached: the curve's length stands in for it). `lowest at`: "
             "the step of each seed's lowest loss there; `rise`: the last loss minus the lowest, mean over "
             "the seeds (above 0: a longer run overfits the subset).", "",
             "| budget % | selector | steps per seed | reached | median | / baseline | lowest at | rise |",
             "|---|---|---|---|---|---|---|---|"]
    by_key = {(r["budget_pct"], r["selector"]): r for r in rows}
    for r in rows:
        per_seed = ", ".join("not reached" if s is None else str(s) for s in r["steps"])
        ratio = ratio_to_baseline(r, by_key.get((r["budget_pct"], baseline)))
        median = f"not reached in {r['last_steps']}" if r["median_steps"] is None else str(r["median_steps"])
        lowest = ", ".join(str(s) for s in r["lowest_steps"])
        lines.append(f"| {r['budget_pct']:g} | {r['selector']} | {per_seed} | {r['reached']} of {len(r['steps'])} "
                     f"| {median} | {ratio} | {lowest} | {r['rise']:+.4f} |")
    return lines


def plot_curves(ax, records, colors):
    """The target-domain curves on ``ax``: the mean over seeds per selector and budget, the seeds' range as a band."""
    groups = {}
    for r in records:
        if r.get("curves", {}).get(TARGET):
            label = "full pool" if r["group"] == "full" else f"{r['selector']} {r['budget_pct']:g} %"
            groups.setdefault((label, r["selector"]), []).append(dict(r["curves"][TARGET]))
    for (label, selector), curves in groups.items():
        steps = sorted(set.intersection(*(set(c) for c in curves)))
        values = np.array([[c[s] for s in steps] for c in curves])
        color = colors.get(selector, "0.25")
        ax.plot(steps, values.mean(0), color=color, label=label, linestyle="--" if selector == "full" else "-")
        ax.fill_between(steps, values.min(0), values.max(0), color=color, alpha=0.15)
    threshold = full_pool_threshold(records)
    if threshold is not None:
        ax.axhline(threshold, color="0.25", linestyle=":", label=f"full pool's final ({threshold:.4g})")
    ax.set_title(f"held-out loss on {TARGET} during training")
    ax.set_xlabel("optimizer steps")
