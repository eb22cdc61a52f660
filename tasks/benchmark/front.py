"""The front of target-domain against other-domain held-out loss, and the rows that lie on the good side of it.

A target-aware selector gains on the target domain and pays on the others; its
mixes with random (``target_share`` of the selection files) lie between it and
random. :func:`front_rows` puts each row's paired differences to the baseline
on the target domain (same and unseen voices) and on the other domains side by
side, :func:`front_markdown` says which rows are better on the target and no
worse on the other domains (both from intervals), and :func:`plot_front` draws
the plane, the baseline and the full pool among the points.
"""

from common.intervals import rate_interval
from tasks.benchmark.statistics import LOSS, SCALES, stacked

TARGET = "heldout_asr_test_target"
UNSEEN = "heldout_asr_test_target_unseen_voice"
OTHERS = "heldout_asr_test_in"


def front_rows(paired, baseline):
    """Each selector and budget with its held-out loss differences to ``baseline`` on the target and the others.

    Parameters
    ----------
    paired : list of dict
        :func:`tasks.benchmark.statistics.paired_comparisons` of the held-out
        splits (other comparisons are ignored).
    baseline : str
        The row the differences are to (e.g. ``random``).

    Returns
    -------
    list of dict
        ``selector``, ``budget_pct``, ``target``, ``unseen`` and ``others`` (the
        comparison dicts, ``unseen`` ``None`` without unseen-voice audio) and
        ``wins``: better on the target (interval below 0) and not worse on the
        other domains (interval not above 0). Rows without both the target and
        the other domains are left out.

    Example
    -------
    >>> target = {"baseline": "random", "metric": "LOSS", "selector": "dsir", "budget_pct": 1, "split": TARGET,
    ...           "verdict": "better"}
    >>> others = {**target, "split": OTHERS, "verdict": "indistinguishable"}
    >>> [(r["selector"], r["wins"]) for r in front_rows([target, others], "random")]
    [('dsir', True)]
    """
    found = {(c["selector"], c["budget_pct"], c["split"]): c for c in paired
             if c["baseline"] == baseline and c["metric"] == LOSS}
    rows = []
    for (selector, budget, split), target in found.items():
        others = found.get((selector, budget, OTHERS))
        if split != TARGET or others is None:
            continue
        rows.append({"selector": selector, "budget_pct": budget, "target": target,
                     "unseen": found.get((selector, budget, UNSEEN)), "others": others,
                     "wins": target["verdict"] == "better" and others["verdict"] != "worse"})
    return rows


def _difference(comparison):
    if comparison is None:
        return "–"
    return f"{comparison['difference']:+.4f} [{comparison['low']:+.4f}, {comparison['high']:+.4f}] {comparison['verdict']}"


def front_markdown(rows, baseline):
    """The front as Markdown lines: a table of :func:`front_rows` and the answer (which rows win, or none)."""
    if not rows:
        return [f"No selector and {baseline} have held-out losses on both the target and the other domains yet."]
    lines = [f"| selector | budget % | seeds ({baseline}) | target, same voice | target, unseen voice | "
             "other domains | better on the target, no worse on the others |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['selector']} | {r['budget_pct']:g} | {r['target']['seeds']} "
                     f"({r['target']['baseline_seeds']}) | {_difference(r['target'])} | {_difference(r['unseen'])} | "
                     f"{_difference(r['others'])} | {'yes' if r['wins'] else 'no'} |")
    winners = [f"{r['selector']} at {r['budget_pct']:g} %" for r in rows if r["wins"]]
    answer = (f"Better than {baseline} on the target domain (same voice) and no worse on the other domains: "
              + (", ".join(winners) if winners else "none") + ".")
    return [*lines, "", answer]


def front_points(records, errors):
    """``{(label, budget %): ((other-domain loss, low, high), (target loss, low, high))}`` of every row group.

    Subset rows are grouped by selector and budget, the full-pool students into
    one point (budget ``None``); each loss is the mean over the group's seeds
    with its 95 % interval (utterances and seeds resampled).
    """
    groups = {}
    for record in records:
        if record["group"] == "subset":
            groups.setdefault((record["selector"], record["budget_pct"]), []).append(record)
        elif record["group"] == "full":
            groups.setdefault(("full pool", None), []).append(record)
    points = {}
    for key, rows in groups.items():
        others, _, _ = stacked(rows, errors, OTHERS, LOSS)
        target, _, _ = stacked(rows, errors, TARGET, LOSS)
        if others is not None and target is not None:
            points[key] = (rate_interval(others, scale=SCALES[LOSS]), rate_interval(target, scale=SCALES[LOSS]))
    return points


def plot_front(ax, points, colors):
    """Draw :func:`front_points` on ``ax``: other-domain loss across, target loss up, 95 % bars both ways.

    Subset points take their selector's colour in ``colors`` (the full pool is
    black) and are labelled with their budget when there are several.
    """
    several_budgets = len({budget for _, budget in points if budget is not None}) > 1
    labelled = set()
    for (label, budget), ((x, x_low, x_high), (y, y_low, y_high)) in points.items():
        color = colors.get(label, "black")
        ax.errorbar([x], [y], xerr=[[x - x_low], [x_high - x]], yerr=[[y - y_low], [y_high - y]], fmt="o",
                    color=color, capsize=3, label=None if label in labelled else label)
        labelled.add(label)
        if several_budgets and budget is not None:
            ax.annotate(f"{budget:g} %", (x, y), textcoords="offset points", xytext=(4, 4), fontsize="small")
    ax.set_xlabel("held-out loss, other domains (asr_test_in)")
    ax.set_ylabel("held-out loss, target domain (asr_test_target)")
    ax.set_title("target against the other domains (lower left is better)")
