"""The benchmark's report: ``results.md``, ``results.json`` and ``results.png`` from the finished cells.

Works on whatever has finished: a missing value is ``None`` in the JSON and
``–`` in the table, and a curve or reference line without values is left out.
"""

import json
import statistics

import numpy as np
from matplotlib.figure import Figure

from common.atomic import atomic_path, atomic_write_text
from common.intervals import rate_interval
from tasks.benchmark.curves import CURVE_SPLITS, TARGET, load_curves, plot_curves, steps_markdown, steps_table
from tasks.benchmark.front import front_markdown, front_points, front_rows, plot_front
from tasks.benchmark.statistics import (
    ID_ERROR,
    LOSS,
    SCALES,
    SPEAKER_SPLIT,
    comparisons_markdown,
    difference_components,
    dominance_summary,
    mean_audio_hours,
    paired_comparisons,
    selector_intervals,
    stacked,
)

MISSING = "–"
UNSEEN_VOICE = "asr_test_target_unseen_voice"  # the target domain's held-out audio in voices the target set lacks
# (record key, header, format) of the table's columns, in order
COLUMNS = [
    ("name", "cell", "{}"), ("selector", "selector", "{}"), ("budget_pct", "budget %", "{:g}"),
    ("seed", "seed", "{}"), ("hours", "hours used", "{:.3f}"), ("epochs", "epochs", "{}"),
    ("steps", "steps", "{}"), ("audio_hours_seen", "audio h seen", "{:.3f}"),
    ("selector_minutes", "select min", "{:.1f}"), ("feature_minutes", "of it features", "{:.1f}"),
    ("distill_minutes", "distill min", "{:.1f}"),
    ("heldout_target", "held-out loss target", "{:.4f}"),
    ("heldout_target_unseen", "held-out loss target unseen voice", "{:.4f}"),
    ("heldout_in", "held-out loss in", "{:.4f}"),
    ("wer_in", "WER test_in", "{:.2f}"), ("cer_in", "CER test_in", "{:.2f}"),
    ("wer_target", "WER test_target", "{:.2f}"), ("cer_target", "CER test_target", "{:.2f}"),
    ("spk_accuracy", "spk accuracy", "{:.2f}"), ("eer", "EER", "{:.2f}"),
]
PANELS = [("heldout_target", "held-out distillation loss, asr_test_target"),
          ("heldout_target_unseen", f"held-out distillation loss, {UNSEEN_VOICE}"),
          ("heldout_in", "held-out distillation loss, asr_test_in"), ("wer_target", "WER on asr_test_target (%)"),
          ("cer_target", "CER on asr_test_target (%)"), ("wer_in", "WER on asr_test_in (%)"),
          ("spk_accuracy", "speaker accuracy on spk_test (%)")]
INTERVAL_OF_PANEL = {"wer_target": ("asr_test_target", "WER"), "cer_target": ("asr_test_target", "CER"),  # error bars
                     "wer_in": ("asr_test_in", "WER"), "heldout_target": ("heldout_asr_test_target", LOSS),
                     "heldout_target_unseen": (f"heldout_{UNSEEN_VOICE}", LOSS),
                     "heldout_in": ("heldout_asr_test_in", LOSS),
                     "spk_accuracy": (SPEAKER_SPLIT, ID_ERROR)}
ACCURACY_PANELS = {"spk_accuracy"}  # panels of 100 minus the error rate of their interval
# the held-out loss comparisons of the report: (split in the errors, title)
HELDOUT_COMPARED = [("heldout_asr_test_target", "the target domain's held-out audio in the target set's voices"),
                    (f"heldout_{UNSEEN_VOICE}", "the target domain's held-out audio in voices the target set lacks"),
                    ("heldout_asr_test_in", "the other domains' held-out audio")]
# the probe comparisons of the report: (ASR test split, title)
PROBE_COMPARED = [("asr_test_target", "the target domain (asr_test_target)"),
                  ("asr_test_in", "the other domains (asr_test_in)")]
SPEAKER_COMPARED = [(SPEAKER_SPLIT, f"the speakers ({SPEAKER_SPLIT}, identification error)")]
# the interval tables: (split in the errors, metric, column title)
HELDOUT_INTERVALS = [(split, LOSS, title) for split, title in
                     zip((split for split, _ in HELDOUT_COMPARED), ("target, same voice", "target, unseen voice",
                                                                    "other domains"))]
PROBE_INTERVALS = [(split, kind, f"{kind} {split}") for split, _ in PROBE_COMPARED for kind in ("WER", "CER")] + [
    (SPEAKER_SPLIT, ID_ERROR, f"speaker {ID_ERROR} {SPEAKER_SPLIT}")]
# the comparisons of target-aware selectors with the baseline: record key -> (title, split in the errors, metric);
# the held-out loss in the target's voices and in others, WER, and CER (a short probe can leave WER near 100 %)
COMPARED = {"heldout_target": ("held-out loss on asr_test_target", "heldout_asr_test_target", LOSS),
            "heldout_target_unseen": (f"held-out loss on {UNSEEN_VOICE}", f"heldout_{UNSEEN_VOICE}", LOSS),
            "wer_target": ("WER on asr_test_target", "asr_test_target", "WER"),
            "cer_target": ("CER on asr_test_target", "asr_test_target", "CER")}
REFERENCE_STYLES = ["--", ":", "-.", (0, (5, 1, 1, 1))]


def dig(data, *keys):
    """``data[k1][k2]...``, or ``None`` when ``data`` is None or a key is missing."""
    for key in keys:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def row_record(row, results):
    """The table row of one encoder.

    Parameters
    ----------
    row : cells.Row
        The encoder (name, group, selector, budget, seed, planned epochs).
    results : dict
        ``{"distill": ..., "asr": ..., "spk": ...}``: the parsed result file of
        each finished cell, ``None`` for a cell that has not finished; and
        ``selection``: the student's ``selection.json``, when there is one.

    Returns
    -------
    dict
        Flat record; values in percent for WER, CER, accuracy and EER.
    """
    distill, asr, spk = (results.get(kind) for kind in ("distill", "asr", "spk"))
    epochs = dig(distill, "epochs")
    selector, features = dig(distill, "selector_minutes"), dig(results.get("selection"), "feature_seconds")
    return {
        "name": row.name, "group": row.group, "selector": row.selector,
        "budget_pct": None if row.budget is None else round(100 * row.budget, 6), "seed": row.seed,
        "hours": dig(distill, "subset_hours"), "epochs": row.epochs if epochs is None else epochs,
        "steps": dig(distill, "optimizer_steps"), "audio_hours_seen": dig(distill, "train_audio_hours_seen"),
        "selector_minutes": None if selector is None else selector + (features or 0) / 60,
        "feature_minutes": None if features is None or selector is None else features / 60,
        "distill_minutes": dig(distill, "this_run_minutes"),
        "heldout_target": dig(distill, "heldout_loss", "asr_test_target", "all"),
        "heldout_target_unseen": dig(distill, "heldout_loss", UNSEEN_VOICE, "all"),
        "heldout_in": dig(distill, "heldout_loss", "asr_test_in", "all"),
        "heldout_domains": dig(distill, "heldout_loss"),
        "wer_in": dig(asr, "metrics", "asr_test_in", "WER"), "cer_in": dig(asr, "metrics", "asr_test_in", "CER"),
        "wer_target": dig(asr, "metrics", "asr_test_target", "WER"),
        "cer_target": dig(asr, "metrics", "asr_test_target", "CER"),
        "spk_accuracy": dig(spk, "metrics", "spk_test", "accuracy"), "eer": dig(spk, "metrics", "spk_test", "EER"),
        "curves": load_curves(dig(distill, "heldout_curve")),
    }


def fmt(value, pattern):
    """``pattern`` applied to ``value``, or the missing mark."""
    return MISSING if value is None else pattern.format(value)


def markdown_table(records):
    """The records as a Markdown table, one line each."""
    lines = ["| " + " | ".join(header for _, header, _ in COLUMNS) + " |",
             "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(fmt(r[key], pattern) for key, _, pattern in COLUMNS) + " |" for r in records]
    return "\n".join(lines)


def mean_or_none(values):
    """Mean of the values that are not None (None when there are none)."""
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


def selector_means(records, key):
    """``{selector: {budget %: mean of key over seeds}}`` of the subset students that have a value."""
    means = {}
    for r in records:
        if r["group"] == "subset":
            means.setdefault(r["selector"], {}).setdefault(r["budget_pct"], []).append(r[key])
    return {sel: {b: m for b, vals in per_budget.items() if (m := mean_or_none(vals)) is not None}
            for sel, per_budget in means.items()}


def compare_budget(budget, records, target_aware, baseline, key="wer_target", errors=None):
    """Target-aware selectors vs the baseline at one budget, on one measure of the target domain.

    Better or worse only from a 95 % interval (:func:`tasks.benchmark.statistics.difference_components`:
    the held-out or test utterances resampled together, each selector's seeds
    separately), and only when it excludes 0; without the per-utterance
    results there is no verdict.

    Parameters
    ----------
    budget : float
        Budget in percent of the pool's hours.
    records : list of dict
        :func:`row_record` of every row.
    target_aware : list of str
        Selectors averaged together (each first averaged over its seeds).
    baseline : str
        The selector they are compared with (averaged over its seeds).
    key : str
        A key of :data:`COMPARED`.
    errors : dict, optional
        ``{row name: {split: (ids, {metric: [N, 2]})}}`` of the finished cells.

    Returns
    -------
    dict
        ``budget_pct``, ``metric``, ``target_aware`` (``{selector: mean over
        its seeds}``), ``target_aware_mean``, ``baseline_mean``,
        ``baseline_seeds`` (how many seeds it averages), ``difference``
        (target-aware minus baseline: points, or loss), ``low``, ``high``,
        ``verdict``, ``dominant`` (``None`` without an interval) and ``text``,
        the sentence of the report.
    """
    metric, split, kind = COMPARED[key]
    at_budget = [r for r in records if r["group"] == "subset" and r["budget_pct"] == budget]
    aware = {sel: m for sel in target_aware
             if (m := mean_or_none(r[key] for r in at_budget if r["selector"] == sel)) is not None}
    base_rows = [r for r in at_budget if r["selector"] == baseline]
    base_values = [r[key] for r in base_rows if r[key] is not None]
    aware_mean, base_mean = mean_or_none(aware.values()), mean_or_none(base_values)
    out = {"budget_pct": budget, "metric": metric, "target_aware": aware, "target_aware_mean": aware_mean,
           "baseline_mean": base_mean, "baseline_seeds": len(base_values), "difference": None, "low": None,
           "high": None, "verdict": None, "dominant": None}
    if aware_mean is None or base_mean is None:
        out["text"] = (f"{budget:g} %, {metric}: not available yet (needs a value of at least one of "
                       f"{', '.join(target_aware)} and of {baseline}).")
        return out
    out["difference"] = aware_mean - base_mean
    unit, digits = ("", 4) if kind == LOSS else (" points", 2)
    missing = [sel for sel in target_aware if sel not in aware]
    each = ", ".join(f"{s} {m:.{digits}f}" for s, m in aware.items())
    seeds = f"{len(base_values)} seed{'s' if len(base_values) != 1 else ''}"
    head = (f"{budget:g} %, {metric}: target-aware selectors ({each}"
            f"{'; not finished: ' + ', '.join(missing) if missing else ''}) average {aware_mean:.{digits}f} vs "
            f"{base_mean:.{digits}f} for {baseline} (mean of {seeds})")
    stacks = [stacked([r for r in at_budget if r["selector"] == sel], errors or {}, split, kind) for sel in aware]
    base = stacked(base_rows, errors or {}, split, kind)
    if base[0] is None or any(values is None for values, _, _ in stacks) or \
            any(ids != base[1] for _, ids, _ in stacks):
        out["text"] = (f"{head}: {out['difference']:+.{digits}f}{unit}; no interval (per-utterance results missing), "
                       "no verdict.")
        return out
    result = difference_components([values for values, _, _ in stacks], [base[0]], scale=SCALES[kind])
    out.update({name: result[name] for name in ("difference", "low", "high", "verdict", "dominant")})
    relative = f", {100 * result['difference'] / base_mean:+.1f} % relative" if base_mean else ""
    out["text"] = (f"{head}: {result['difference']:+.{digits}f}{unit}{relative}, 95 % interval "
                   f"[{result['low']:+.{digits}f}, {result['high']:+.{digits}f}] ({result['dominant']} dominate its "
                   f"width): {result['verdict']}.")
    return out


def aggregate(records, target_aware, baseline, errors=None):
    """:func:`compare_budget` at every budget of the subset students (increasing), each measure of :data:`COMPARED`."""
    budgets = sorted({r["budget_pct"] for r in records if r["group"] == "subset"})
    return [compare_budget(b, records, target_aware, baseline, key, errors) for b in budgets for key in COMPARED]


def domain_table(records):
    """Mean held-out loss per domain (columns) of every selector and budget (rows, mean over seeds), Markdown."""
    students = [r for r in records if r["group"] != "reference" and r["heldout_domains"]]
    if not students:
        return "No finished distillation yet."
    columns = sorted({f"{split}/{domain}" for r in students for split, domains in r["heldout_domains"].items()
                      for domain in domains if domain != "all"})
    groups = {}
    for r in students:
        groups.setdefault((r["selector"], r["budget_pct"]), []).append(r)
    lines = ["| selector | budget % | seeds | audio h seen | " + " | ".join(columns) + " |",
             "|---|---|---|---|" + "---|" * len(columns)]
    for (selector, budget), rows in groups.items():
        means = [mean_or_none(dig(r["heldout_domains"], *column.split("/")) for r in rows) for column in columns]
        lines.append(f"| {selector} | {budget:g} | {len(rows)} | {fmt(mean_audio_hours(rows), '{:.3f}')} | "
                     + " | ".join(fmt(m, "{:.4f}") for m in means) + " |")
    return "\n".join(lines)


def interval_table(records, errors, columns=HELDOUT_INTERVALS, references=False):
    """Each selector and budget (and the full pool) over its seeds, with 95 % intervals, as Markdown.

    Parameters
    ----------
    records : list of dict
        :func:`row_record` of every row.
    errors : dict
        ``{row name: {split: (ids, {metric: [N, 2]})}}`` of the finished cells.
    columns : list of tuple
        ``(split, metric, title)`` of each column: the held-out loss
        (:data:`HELDOUT_INTERVALS`) or the probes' error rates (:data:`PROBE_INTERVALS`).
    references : bool
        Also a line per reference encoder (its probe seeds together).
    """
    groups = {}
    order = {"subset": 0, "full": 1, "reference": 2}  # subsets by budget, the full pool, then the references
    for r in sorted(records, key=lambda r: (order[r["group"]], r["budget_pct"] or 0)):
        if references or r["group"] != "reference":
            groups.setdefault((r["selector"], r["budget_pct"]), []).append(r)
    lines = ["| selector | budget % | seeds | audio h seen | " + " | ".join(title for _, _, title in columns) + " |",
             "|---|---|---|---|" + "---|" * len(columns)]
    for (selector, budget), rows in groups.items():
        cells, seeds = [], 0
        scored = [r for r in rows if any(split in errors.get(r["name"], {}) for split, _, _ in columns)]
        for split, kind, _ in columns:
            values, _, used = stacked(rows, errors, split, kind)
            seeds = max(seeds, len(used))
            cells.append(MISSING if values is None else
                         "{:.{d}f} [{:.{d}f}, {:.{d}f}]".format(*rate_interval(values, scale=SCALES[kind]),
                                                                 d=4 if kind == LOSS else 2))
        if seeds:  # rows with nothing finished are left out (the cell tables show them)
            lines.append(f"| {selector} | {fmt(budget, '{:g}')} | {seeds} | {fmt(mean_audio_hours(scored), '{:.3f}')} | "
                         + " | ".join(cells) + " |")
    return "\n".join(lines)


def best_selector_checks(records, paired, baseline, relative_gain=0.10, metric="WER", split="asr_test_target"):
    """Per budget: the selector with the lowest mean ``metric`` on ``split``, against the full pool and ``baseline``.

    The check of the question the benchmark is for: is the best selector no
    worse than the full-pool student (its paired interval against the full
    pool not above 0) and at least ``relative_gain`` better than
    ``baseline``, relative to the baseline's rate, with the interval of
    the difference excluding 0? The best selector is picked on these same
    test utterances, so a close pass is optimistic.

    Returns
    -------
    list of str
        One Markdown line per budget where the best selector has a paired
        comparison with the baseline.
    """
    column = {"WER": "wer", "CER": "cer"}[metric] + ("_target" if split == "asr_test_target" else "_in")
    means = selector_means(records, column)
    found = {(c["budget_pct"], c["selector"], c["baseline"]): c for c in paired
             if c["metric"] == metric and c["split"] == split}
    lines = []
    for budget in sorted({b for per_budget in means.values() for b in per_budget}):
        ranked = sorted((per_budget[budget], selector) for selector, per_budget in means.items()
                        if budget in per_budget and selector != baseline)
        if not ranked or (budget, ranked[0][1], baseline) not in found:
            continue
        rate, best = ranked[0]
        vs_base, vs_full = found[(budget, best, baseline)], found.get((budget, best, "full"))
        base_rate = means.get(baseline, {}).get(budget)
        relative = vs_base["difference"] / base_rate if base_rate else float("nan")
        gain_met = relative <= -relative_gain and vs_base["high"] < 0
        text = (f"- {budget:g} %: best selector {best} ({metric} {rate:.2f}); vs {baseline} "
                f"{vs_base['difference']:+.2f} [{vs_base['low']:+.2f}, {vs_base['high']:+.2f}] points, "
                f"{100 * relative:+.1f} % relative: {'meets' if gain_met else 'misses'} the "
                f"{100 * relative_gain:g} % target")
        if vs_full is None:
            text += "; vs the full pool: not available yet."
        else:
            no_worse = vs_full["verdict"] != "worse"
            text += (f"; vs the full pool {vs_full['difference']:+.2f} [{vs_full['low']:+.2f}, "
                     f"{vs_full['high']:+.2f}] ({vs_full['verdict']}): {'no worse' if no_worse else 'worse'}.")
        lines.append(text)
    return lines or [f"No selector and {baseline} have {metric} on {split} at the same budget yet."]


def probe_spread(records):
    """The probes' seed-to-seed spread on each reference encoder probed with several seeds (Markdown lines)."""
    lines = []
    for selector in dict.fromkeys(r["selector"] for r in records if r["group"] == "reference"):
        rows = [r for r in records if r["group"] == "reference" and r["selector"] == selector]
        for key, label in (("wer_target", "WER asr_test_target"), ("cer_target", "CER asr_test_target"),
                           ("wer_in", "WER asr_test_in"), ("spk_accuracy", "speaker accuracy")):
            values = [r[key] for r in rows if r[key] is not None]
            if len(values) > 1:
                lines.append(f"- {selector}, {label}: {len(values)} probe seeds, mean {statistics.fmean(values):.2f}, "
                             f"range {min(values):.2f}-{max(values):.2f}, standard deviation "
                             f"{statistics.stdev(values):.2f}")
    return lines or ["No reference encoder has been probed with several seeds (`seeds` of a reference)."]


def baselines_of(settings):
    """The rows every selector is paired with: ``baseline``, the ``more_baselines`` and the full pool."""
    return [settings["baseline"], *settings.get("more_baselines", ()), "full"]


def paired_sections(paired, baselines, compared, heading):
    """Markdown sections of the paired comparisons: one per baseline (``baselines`` in order) and split.

    ``compared`` lists ``(split, title)``; a split names its measure (``heldout_*``
    the held-out loss, the ASR test splits WER and CER), so each section holds that split's comparisons.
    """
    lines = []
    for against in baselines:
        for split, title in compared:
            chosen = [c for c in paired if c["baseline"] == against and c["split"] == split]
            lines += [f"### {heading} {title}, each selector vs {'the full pool' if against == 'full' else against}",
                      "", comparisons_markdown(chosen, against), ""]
    return lines


def markdown(records, comparisons, settings, paired=(), errors=None):
    """The whole ``results.md``."""
    subset = [r for r in records if r["group"] == "subset"]
    others = [r for r in records if r["group"] != "subset"]
    paired = list(paired)
    sections = paired_sections(paired, baselines_of(settings), HELDOUT_COMPARED, "Held-out loss on")
    probe_sections = paired_sections(paired, baselines_of(settings), PROBE_COMPARED + SPEAKER_COMPARED, "Probes on")
    return "\n".join([
        f"# Selection benchmark `{settings['benchmark_name']}`", "",
        f"Pool {settings['pool_hours']:.3f} h. Equal compute: every student, of a subset or of the full pool, "
        f"trains for {settings['number_of_epochs']} epochs x {settings['steps_per_epoch']} optimizer steps on fixed "
        f"segments of {settings['segment_seconds']:g} s, which the teacher saw alone, drawn from a seeded schedule "
        "in proportion to their seconds (the audio each saw is in every table: `audio h seen`). `select min`: the "
        "selector's minutes, with its features' pass over the pool where the selection records it (`of it "
        "features`). Intrinsic measure: the student's distillation loss (L1 + cosine, in each held-out split's own "
        "standardisation) on held-out audio of the target domain in the target set's voices (asr_test_target), "
        f"in voices the target set lacks ({UNSEEN_VOICE}: a gain there is not voice adaptation) and of the "
        "other domains (asr_test_in); lower is closer to the teacher. Probes, when "
        "run: CTC ASR (WER/CER %) and speaker identification / verification on spk_test (accuracy %, EER %). "
        f"{MISSING}: not finished (yet).", "",
        f"Finished cells: {settings['finished_cells']} of {settings['total_cells']}.", "",
        "## Subset students", "", markdown_table(subset), "",
        "## References: full pool, teacher, MFCC", "", markdown_table(others), "",
        "## Held-out distillation loss, mean over seeds with a 95 % bootstrap interval", "",
        "Utterances and seeds resampled (a ratio estimate: summed loss over summed frames).", "",
        interval_table(records, errors or {}), "",
        "## Held-out distillation loss per domain (mean over seeds)", "", domain_table(records), "",
        "## Paired comparisons of the held-out loss", "",
        "Difference of the held-out loss (selector minus baseline, each the mean over its seeds; negative: closer "
        "to the teacher) with a 95 % bootstrap interval (held-out utterances resampled together, each side's "
        "seeds separately); better / worse only when the interval excludes 0. The same difference with the seeds "
        "only resampled (the spread of training runs) and with the utterances only (the spread of the held-out "
        "audio); `wider`: the one with the larger standard deviation.", "",
        dominance_summary([c for c in paired if c["metric"] == LOSS]), "",
        *sections,
        f"## The front: the target domain against the other domains, each selector vs {settings['baseline']}", "",
        "The paired differences above side by side (a selector's mixes with random, `target_share`, are rows of "
        "their own); a row wins when it is better on the target domain in the target set's voices and not worse "
        "on the other domains, both from the 95 % interval. `results.png` draws the plane.", "",
        *front_markdown(front_rows(paired, settings["baseline"]), settings["baseline"]), "",
        "## The probes' own spread on a fixed encoder (seeds of the probe only)", "", *probe_spread(records), "",
        f"## Target-aware selectors ({', '.join(settings['target_aware'])}) vs {settings['baseline']}", "",
        "The selectors' mean over their seeds, then over the selectors, minus the baseline's; better / worse only "
        "when the 95 % interval (utterances resampled together, each selector's seeds separately) excludes 0.", "",
        *[f"- {c['text']}" for c in comparisons], "",
        "## Probe error rates, mean over seeds with a 95 % bootstrap interval", "",
        "Test utterances and seeds resampled (a reference's seeds are its probe's seeds). Speaker "
        f"{ID_ERROR}: 100 minus the identification accuracy on {SPEAKER_SPLIT}, the test crops of an utterance "
        "resampled together; EER has no interval (its trials pair the utterances).", "",
        interval_table(records, errors or {}, PROBE_INTERVALS, references=True), "",
        f"## The best selector vs {settings['baseline']} and the full pool (WER, then CER, on asr_test_target)", "",
        *best_selector_checks(records, paired, settings["baseline"]), "",
        *best_selector_checks(records, paired, settings["baseline"], metric="CER"), "",
        "## Paired comparisons of the probes", "",
        f"Difference of the error rates (WER, CER, and the speaker {ID_ERROR}: selector minus baseline, each the "
        "mean over its seeds; negative: fewer errors) with a 95 % bootstrap interval (test utterances resampled "
        "together, each side's seeds separately), and with the seeds only or the utterances only resampled; better / worse only when the "
        "interval excludes 0.", "",
        dominance_summary([c for c in paired if c["metric"] != LOSS]), "",
        *probe_sections,
        *(["## Learning curves: the compute a subset saves", "",
           *(line for split in CURVE_SPLITS if any(split in r.get("curves", {}) for r in records)
             for line in [*steps_markdown(steps_table(records, split), settings["baseline"], split), ""])]
          if any(r.get("curves") for r in records) else []),
    ])


def plot(records, path, errors=None):
    """``results.png``: each metric of :data:`PANELS` that has a value against the budget, one line per selector.

    Subset students are lines with markers (the mean over seeds), with 95 %
    bootstrap error bars on the probe and held-out loss panels when the cells' ``errors`` are
    given; the full pool and the reference encoders are horizontal lines. With
    held-out losses on the target and the other domains, a panel draws the one
    against the other (:func:`tasks.benchmark.front.plot_front`); with learning
    curves, a last panel draws them (:func:`tasks.benchmark.curves.plot_curves`).
    """
    panels = [(key, title) for key, title in PANELS if any(r[key] is not None for r in records)] or PANELS[:1]
    with_curves = any(r.get("curves", {}).get(TARGET) for r in records)
    plane = front_points(records, errors or {})
    extra = with_curves + bool(plane)
    figure = Figure(figsize=(6 * (len(panels) + extra), 4.8), layout="constrained")
    axes = np.atleast_1d(figure.subplots(1, len(panels) + extra))
    budgets = sorted({r["budget_pct"] for r in records if r["group"] == "subset"})
    colors = {sel: f"C{i % 10}" for i, sel in enumerate(dict.fromkeys(
        r["selector"] for r in records if r["group"] == "subset"))}  # same colour in every panel
    for ax, (key, title) in zip(axes, panels):
        intervals = selector_intervals(records, errors, *INTERVAL_OF_PANEL[key]) if (
            errors and key in INTERVAL_OF_PANEL) else {}
        if key in ACCURACY_PANELS:  # the interval of the error rate, turned into one of the accuracy
            intervals = {sel: {b: (100 - rate, 100 - high, 100 - low, seeds) for b, (rate, low, high, seeds)
                               in bars.items()} for sel, bars in intervals.items()}
        for selector, points in selector_means(records, key).items():
            if points:
                xs = sorted(points)
                ax.plot(xs, [points[x] for x in xs], marker="o", color=colors[selector], label=selector)
            bars = intervals.get(selector, {})
            if bars:
                xs = sorted(bars)
                ax.errorbar(xs, [bars[x][0] for x in xs], yerr=[[bars[x][0] - bars[x][1] for x in xs],
                                                               [bars[x][2] - bars[x][0] for x in xs]],
                            fmt="none", ecolor=colors[selector], capsize=3)
        references = {}  # the full pool's seeds as one line, each reference encoder as one
        for r in records:
            if r["group"] != "subset":
                references.setdefault("full pool" if r["group"] == "full" else r["name"], []).append(r[key])
        for i, (label, values) in enumerate(references.items()):  # same style in every panel
            value = mean_or_none(values)
            if value is not None:
                ax.axhline(value, color="0.25", linestyle=REFERENCE_STYLES[i % len(REFERENCE_STYLES)],
                           label=f"{label} ({value:.4g})")
        ax.set_title(title)
        ax.set_xlabel("budget (% of the pool's hours)")
        ax.set_xticks(budgets)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
        else:
            ax.text(0.5, 0.5, "no finished cell yet", ha="center", va="center", transform=ax.transAxes)
    if plane:
        plot_front(axes[len(panels)], plane, colors)
        axes[len(panels)].legend(fontsize="small")
    if with_curves:
        plot_curves(axes[-1], records, colors)
        axes[-1].legend(fontsize="small")
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=110)


def write_report(records, settings, folder, errors=None):
    """Write ``results.md``, ``results.json`` and ``results.png`` into ``folder`` (each atomically).

    Parameters
    ----------
    records : list of dict
        :func:`row_record` of every row, finished or not.
    settings : dict
        ``benchmark_name``, ``pool_hours``, ``segment_seconds``,
        ``steps_per_epoch``, ``number_of_epochs``, ``finished_cells``,
        ``total_cells``, ``target_aware`` (selector names), ``baseline``
        (the selector they are compared with) and ``more_baselines`` (other rows every
        selector is paired with, e.g. random with another objective).
    folder : pathlib.Path
        The benchmark's output folder.
    errors : dict, optional
        ``{row name: {split: ...}}``: :func:`tasks.benchmark.statistics.cell_errors`
        of the finished ASR cells, :func:`~tasks.benchmark.statistics.speaker_errors` of the
        speaker cells and :func:`~tasks.benchmark.statistics.heldout_errors`
        of the finished distillations: the intervals, paired comparisons and error bars.

    Returns
    -------
    list of dict
        The comparisons of :func:`aggregate`.
    """
    errors = errors or {}
    comparisons = aggregate(records, settings["target_aware"], settings["baseline"], errors)
    paired = []
    for baseline in baselines_of(settings):
        for split, _ in PROBE_COMPARED:
            paired += paired_comparisons(records, errors, baseline, split)
        paired += paired_comparisons(records, errors, baseline, SPEAKER_SPLIT, kinds=(ID_ERROR,))
        for split, _ in HELDOUT_COMPARED:
            paired += paired_comparisons(records, errors, baseline, split, kinds=(LOSS,))
    atomic_write_text(folder / "results.md", markdown(records, comparisons, settings, paired, errors))
    atomic_write_text(folder / "results.json", json.dumps(
        {"settings": settings, "rows": records, "aggregate": comparisons, "paired": paired}, indent=2))
    plot(records, folder / "results.png", errors)
    return comparisons
