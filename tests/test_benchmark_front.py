"""The front of the benchmark report: target-domain against other-domain held-out loss, and which rows win."""

import json

import numpy as np
import pytest

from tasks.benchmark import cells, front, report, statistics

SPLITS = ("asr_test_target", report.UNSEEN_VOICE, "asr_test_in")


def write_student(folder, losses):
    """A distillation's ``heldout.json``: ``losses[split][i]`` is utterance ``u<i>``'s loss over 50 frames."""
    splits = {split: {"domains": {}, "utterances": {f"u{i:03d}": [float(v) * 50, 50, "d"]
                                                    for i, v in enumerate(values)}}
              for split, values in losses.items()}
    folder.mkdir(parents=True)
    (folder / "heldout.json").write_text(json.dumps({"segment_seconds": 2.0, "splits": splits}))


def students(tmp_path, shifts, seeds=4, n=60):
    """Records and errors of students whose losses are a shared base plus ``shifts[selector][split]`` and noise."""
    rng = np.random.default_rng(3)
    base = {split: rng.uniform(0.8, 1.1, n) for split in SPLITS}
    records, errors, losses = [], {}, {}
    for selector, shift in shifts.items():
        full = selector == "full"
        for seed in range(seeds):
            name = f"full_s{seed}" if full else f"{selector}_1pct_s{seed}"
            values = {split: base[split] + shift[split] + rng.normal(0, 0.005, n) for split in SPLITS}
            write_student(tmp_path / name, values)
            errors[name] = statistics.heldout_errors(tmp_path / name)
            losses[name] = values
            row = cells.Row(name, "full" if full else "subset", selector, 1.0 if full else 0.01, seed, 4, (), None)
            summary = {split: {"all": float(values[split].mean())} for split in SPLITS}
            records.append(report.row_record(row, {"distill": {"heldout_loss": summary}}))
    return records, errors, losses


SHIFTS = {"random": {"asr_test_target": 0.0, report.UNSEEN_VOICE: 0.0, "asr_test_in": 0.0},
          "dsir_mix25": {"asr_test_target": -0.03, report.UNSEEN_VOICE: 0.0, "asr_test_in": 0.0},
          "dsir": {"asr_test_target": -0.09, report.UNSEEN_VOICE: 0.02, "asr_test_in": 0.09},
          "full": {"asr_test_target": -0.04, report.UNSEEN_VOICE: -0.04, "asr_test_in": -0.04}}


def test_front_says_which_rows_gain_on_the_target_without_paying_on_the_others(tmp_path):
    records, errors, losses = students(tmp_path, SHIFTS)
    paired = [c for split in ("heldout_asr_test_target", f"heldout_{report.UNSEEN_VOICE}", "heldout_asr_test_in")
              for c in statistics.paired_comparisons(records, errors, "random", split, kinds=("LOSS",))]
    rows = {r["selector"]: r for r in front.front_rows(paired, "random")}
    assert set(rows) == {"dsir_mix25", "dsir"}
    assert rows["dsir_mix25"]["wins"] and not rows["dsir"]["wins"]  # dsir pays on the other domains
    assert rows["dsir"]["others"]["verdict"] == "worse" and rows["dsir"]["target"]["verdict"] == "better"
    mean = {name: {split: v.mean() for split, v in values.items()} for name, values in losses.items()}
    for selector in rows:  # the differences are the seed means' differences
        for split, key in (("asr_test_target", "target"), ("asr_test_in", "others")):
            expected = np.mean([mean[f"{selector}_1pct_s{k}"][split] - mean[f"random_1pct_s{k}"][split]
                                for k in range(4)])
            assert rows[selector][key]["difference"] == pytest.approx(expected)
    lines = front.front_markdown(list(rows.values()), "random")
    assert lines[-1] == ("Better than random on the target domain (same voice) and no worse on the other domains: "
                         "dsir_mix25 at 1 %.")

    points = front.front_points(records, errors)
    assert set(points) == {("random", 1), ("dsir_mix25", 1), ("dsir", 1), ("full pool", None)}
    (x, x_low, x_high), (y, y_low, y_high) = points[("full pool", None)]
    assert x == pytest.approx(np.mean([mean[f"full_s{k}"]["asr_test_in"] for k in range(4)]))
    assert y == pytest.approx(np.mean([mean[f"full_s{k}"]["asr_test_target"] for k in range(4)]))
    assert x_low < x < x_high and y_low < y < y_high


def test_front_without_a_winner_says_none_and_the_report_draws_it(tmp_path):
    shifts = {name: shift for name, shift in SHIFTS.items() if name != "dsir_mix25"}
    records, errors, _ = students(tmp_path, shifts)
    settings = {"benchmark_name": "b", "pool_hours": 1.0, "segment_seconds": 2.0, "steps_per_epoch": 100,
                "number_of_epochs": 4, "finished_cells": 12, "total_cells": 12, "target_aware": ["dsir"],
                "baseline": "random"}
    report.write_report(records, settings, tmp_path, errors)
    md = (tmp_path / "results.md").read_text()
    assert "## The front: the target domain against the other domains, each selector vs random" in md
    assert ("Better than random on the target domain (same voice) and no worse on the other domains: none."
            in md)
    assert next(line for line in md.splitlines() if line.startswith("| dsir | 1 | 4 (4) |")).endswith("| no |")
    assert (tmp_path / "results.png").stat().st_size > 0
    assert front.front_markdown([], "random") == [
        "No selector and random have held-out losses on both the target and the other domains yet."]
