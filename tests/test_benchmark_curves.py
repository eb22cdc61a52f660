"""Learning curves in the benchmark report: steps to reach the full pool's final loss on the target domain."""

import json
import random

import pytest

from tasks.benchmark import curves, report


def record(group, selector, budget, seed, final=None, curve=(), split=curves.TARGET):
    return {"name": f"{selector}_{budget}_{seed}", "group": group, "selector": selector, "budget_pct": budget,
            "seed": seed, "heldout_domains": {split: {"all": final}} if final is not None else None,
            "curves": {split: [tuple(p) for p in curve]} if curve else {}}


def test_steps_to_reach_is_the_first_step_at_or_under_the_threshold():
    rng = random.Random(0)
    for _ in range(200):
        points = [(100 * (i + 1), rng.uniform(0.5, 1.0)) for i in range(rng.randint(1, 8))]
        threshold = rng.uniform(0.5, 1.0)
        brute = None
        for steps, loss in points:  # walk the curve
            if loss <= threshold:
                brute = steps
                break
        assert curves.steps_to_reach(points, threshold) == brute


def test_the_table_counts_seeds_and_takes_the_median_with_unreached_seeds_last():
    records = [record("full", "full", 100.0, s, final=f) for s, f in ((1, 0.80), (2, 0.84))]  # threshold 0.82
    slow = [(100, 0.95), (200, 0.90), (300, 0.83)]  # never reaches 0.82
    records += [record("subset", "random", 1.0, 1, curve=[(100, 0.9), (200, 0.81), (300, 0.8)]),
                record("subset", "random", 1.0, 2, curve=slow),
                record("subset", "random", 1.0, 3, curve=slow),
                record("subset", "dsir", 1.0, 1, curve=[(100, 0.82), (200, 0.7), (300, 0.7)]),
                record("subset", "dsir", 1.0, 2, curve=[(100, 0.9), (200, 0.8), (300, 0.7)])]
    rows = {r["selector"]: r for r in curves.steps_table(records)}
    assert rows["random"]["threshold"] == pytest.approx(0.82) and rows["random"]["steps"] == [200, None, None]
    assert rows["random"]["reached"] == 1 and rows["random"]["median_steps"] is None  # most seeds never got there
    assert rows["dsir"]["steps"] == [100, 200] and rows["dsir"]["median_steps"] == 100
    text = "\n".join(curves.steps_markdown(curves.steps_table(records), "random"))
    assert "| 1 | random | 200, not reached, not reached | 1 of 3 | not reached in 300 | – | 300, 300, 300 |" in text
    assert "| 1 | dsir | 100, 200 | 2 of 2 | 100 | < 0.33 | 200, 300 | +0.0000 |" in text  # random: > 300 steps


def test_the_lowest_point_and_the_rise_show_a_run_that_overfits():
    rng = random.Random(1)
    for _ in range(50):
        curve = [(100 * (i + 1), rng.uniform(0.5, 1.0)) for i in range(rng.randint(2, 8))]
        row, = curves.steps_table([record("full", "full", 100.0, 1, final=0.7),
                                   record("subset", "dsir", 1.0, 1, curve=curve)])
        best = min(loss for _, loss in curve)
        assert row["lowest_steps"] == [next(steps for steps, loss in curve if loss == best)]
        assert row["rise"] == pytest.approx(curve[-1][1] - best) and row["rise"] >= 0


def test_the_ratio_is_against_the_baselines_median_at_the_same_budget():
    records = [record("full", "full", 100.0, 1, final=0.8),
               record("subset", "random", 5.0, 1, curve=[(100, 0.9), (200, 0.9), (300, 0.9), (400, 0.79)]),
               record("subset", "dsir", 5.0, 1, curve=[(100, 0.9), (200, 0.8)])]
    text = "\n".join(curves.steps_markdown(curves.steps_table(records), "random"))
    assert "| 5 | dsir | 200 | 1 of 1 | 200 | 0.50 |" in text and "| 5 | random | 400 | 1 of 1 | 400 | 1.00 |" in text


def test_an_unreached_side_gives_a_bound_on_the_ratio():
    reached, unreached = {"median_steps": 300, "last_steps": 600}, {"median_steps": None, "last_steps": 1200}
    assert curves.ratio_to_baseline(reached, unreached) == "< 0.25"  # 300 of more than 1200
    assert curves.ratio_to_baseline(unreached, reached) == "> 4.00"  # more than 1200 of 300
    assert curves.ratio_to_baseline(unreached, unreached) == "–" and curves.ratio_to_baseline(reached, None) == "–"


def test_curves_load_from_the_students_file_and_reach_the_report(tmp_path):
    path = tmp_path / "heldout_curve.json"
    path.write_text(json.dumps({"splits": ["asr_test_target"], "points": [
        {"epoch": e, "optimizer_steps": 100 * e, "heldout_loss": {"asr_test_target": {"all": 1.0 - 0.1 * e}}}
        for e in (1, 2, 3)]}))
    assert curves.load_curve(path) == [(100, 0.9), (200, 0.8), (300, 0.7)]
    assert curves.load_curve(tmp_path / "missing.json") == [] and curves.load_curve(None) == []
    assert curves.load_curve(path, "asr_test_in") == []
    assert curves.load_curves(path) == {"asr_test_target": [(100, 0.9), (200, 0.8), (300, 0.7)]}
    records = [{**record("full", "full", 100.0, 1, final=0.75), "curves": curves.load_curves(path)},
               {**record("subset", "random", 1.0, 1), "curves": curves.load_curves(path)}]
    for r in records:
        r.update({key: None for key, _, _ in report.COLUMNS if key not in r})
    report.plot(records, tmp_path / "results.png")
    assert (tmp_path / "results.png").stat().st_size > 0


def test_each_split_is_reached_against_its_own_full_pool_loss():
    unseen = "asr_test_target_unseen_voice"
    records = [{**record("full", "full", 100.0, 1), "heldout_domains": {"asr_test_target": {"all": 0.80},
                                                                       unseen: {"all": 0.90}}},
               {**record("subset", "dsir", 5.0, 1), "curves": {"asr_test_target": [(100, 0.85), (200, 0.79)],
                                                              unseen: [(100, 0.95), (200, 0.92)]}}]
    same, = curves.steps_table(records)
    other, = curves.steps_table(records, unseen)
    assert same["threshold"] == 0.80 and same["steps"] == [200]
    assert other["threshold"] == 0.90 and other["steps"] == [None]  # the gain stays in the target's voices
    assert "final loss on asr_test_target_unseen_voice (0.9000" in "\n".join(curves.steps_markdown([other], "dsir",
                                                                                                     unseen))
