"""The selection benchmark: equal compute, the report and its intervals, the plan, and a tiny run that resumes."""

import importlib
import json
import re
import shlex

import pytest
import speechbrain as sb
from conftest import SYNTH_RECIPE

from common.hparams import load_hparams
from tasks.benchmark import cells, report
from tasks.objectives import chosen_objective
from tasks.subset import load_selection

BENCH = SYNTH_RECIPE / "benchmark"

TINY_DISTILL = ["--num_workers=0", "--valid_utterances=4", "--batch_size=4", "--crop_seconds=1.0",
                "--target_layers=[1,2]", "--student_layers=1", "--units_overrides={n_clusters: 20, fit_hours: 0.02}"]
TINY_ASR = ["--num_workers=0", "--number_of_epochs=1", "--lstm_units=16", "--lstm_layers=1", "--max_batch_seconds=30"]
TINY_SPEAKER = ["--num_workers=0", "--number_of_epochs=1", "--n_crops=2", "--embedding_size=16"]


EQUAL_COMPUTE = {"segment_seconds": 2.0, "steps_per_epoch": 100, "number_of_epochs": 4}


def load_runner():
    """The task module that ``recipes/SynthDomains/benchmark/run_benchmark.py`` runs."""
    return importlib.import_module("tasks.benchmark.run")


def write_yaml(path, config):
    """A benchmark YAML: one ``key: <JSON value>`` line per key (JSON values are YAML)."""
    path.write_text("".join(f"{key}: {json.dumps(value)}\n" for key, value in config.items()))
    return path


def tiny_config(corpus, teacher_dir, tmp_path):
    """Random and contrastive at one 10 % budget, the tiny teacher and MFCC, all tiny."""
    return {
        "benchmark_name": "tiny", "output_folder": str(tmp_path / "bench"), "dry_run": False,
        "delete_student_features": True, "data_folder": str(corpus["data_folder"]),
        "manifest_folder": str(corpus["save_folder"]), "corpus_scale": corpus["scale"],
        "pool_manifest": str(corpus["save_folder"] / "pool.csv"), "teacher_source": str(teacher_dir),
        "segment_seconds": 0.5, "steps_per_epoch": 2, "number_of_epochs": 1, "budgets": [0.1], "seeds": [1234],
        "probes": ["asr", "spk"],
        "distill_hparams": "recipes/SynthDomains/distillation/hparams/distill_kmeans_hubert.yaml",
        "selectors": {"random": {}, "contrastive": {}},
        "full_pool": None,
        "references": {"teacher": {"encoder_source": str(teacher_dir), "feature_folder": str(tmp_path / "f_teacher")},
                       "mfcc": {"encoder_source": "mfcc", "feature_folder": str(tmp_path / "f_mfcc")}},
        "target_aware": ["contrastive"], "baseline": "random",
        "asr_hparams": "recipes/SynthDomains/ASR/hparams/ctc_probe.yaml",
        "speaker_hparams": "recipes/SynthDomains/speaker/hparams/spk_probe.yaml",
        "distill_overrides": TINY_DISTILL + [f"--units_folder={tmp_path / 'units'}"],
        "asr_overrides": TINY_ASR, "speaker_overrides": TINY_SPEAKER,
    }


def table(markdown):
    """``{cell name: [column values]}`` of the lines of the cell tables (first header ``cell``) of a results.md."""
    rows, in_cell_table = {}, False
    for line in markdown.splitlines():
        if not line.startswith("|"):
            in_cell_table = False
            continue
        if line.startswith("|---"):  # the header's separator
            continue
        cols = [c.strip() for c in line.strip("|").split("|")]
        if cols[0] == "cell":
            in_cell_table = True
        elif in_cell_table:
            rows[cols[0]] = cols
    return rows


def test_budget_labels():
    assert [cells.budget_label(b) for b in (0.05, 0.1, 0.2, 0.025)] == ["5", "10", "20", "2.5"]


def fabricated_record(name, group, selector, budget, seed, wer_target, spk=None):
    row = cells.Row(name, group, selector, budget, seed, None if group == "reference" else 2, (), None)
    distill = None if group == "reference" else {"subset_hours": 0.683, "epochs": 2, "this_run_minutes": 3.2,
                                                 "train_audio_hours_seen": 0.8 + 0.01 * (seed or 0)}
    asr = None if wer_target is None else {"metrics": {"asr_test_in": {"WER": 30.0, "CER": 10.0},
                                                       "asr_test_target": {"WER": wer_target, "CER": 20.0}}}
    spk = None if spk is None else {"metrics": {"spk_test": {"accuracy": spk, "EER": None}}}
    return report.row_record(row, {"distill": distill, "asr": asr, "spk": spk})


def test_report_of_fabricated_results(tmp_path):
    records = [fabricated_record("random_10pct_s1", "subset", "random", 0.1, 1, 50.0, spk=80.0),
               fabricated_record("random_10pct_s2", "subset", "random", 0.1, 2, 46.0),
               fabricated_record("kmeans_10pct_s1", "subset", "kmeans", 0.1, 1, 40.0),
               fabricated_record("dsir_10pct_s1", "subset", "dsir", 0.1, 1, 44.0),
               fabricated_record("divergence_10pct_s1", "subset", "divergence", 0.1, 1, None),
               fabricated_record("kmeans_20pct_s1", "subset", "kmeans", 0.2, 1, 39.0),
               fabricated_record("full_s1", "full", "full", 1.0, 1, 41.0),
               fabricated_record("teacher", "reference", "teacher", None, None, 35.0, spk=90.0),
               fabricated_record("mfcc", "reference", "mfcc", None, None, None)]
    settings = {"benchmark_name": "fab", "pool_hours": 6.831, **EQUAL_COMPUTE, "finished_cells": 12,
                "total_cells": 20, "target_aware": ["kmeans", "dsir", "divergence"], "baseline": "random"}
    comparisons = report.write_report(records, settings, tmp_path)

    by_metric = {(c["budget_pct"], c["metric"]): c for c in comparisons}
    assert len(comparisons) == 2 * len(report.COMPARED)
    ten, ten_cer = by_metric[(10, "WER on asr_test_target")], by_metric[(10, "CER on asr_test_target")]
    twenty = by_metric[(20, "WER on asr_test_target")]
    assert ten["target_aware_mean"] == pytest.approx(42.0) and ten["baseline_mean"] == pytest.approx(48.0)
    assert ten["difference"] == pytest.approx(-6.0) and ten["baseline_seeds"] == 2
    assert ten["text"].startswith("10 %, WER on asr_test_target: target-aware selectors (kmeans 40.00, dsir 44.00")
    assert "not finished: divergence" in ten["text"]
    # no per-utterance results: a difference, but no better / worse without an interval
    assert ten["verdict"] is None and ten["text"].endswith("-6.00 points; no interval (per-utterance results "
                                                           "missing), no verdict.")
    assert ten_cer["metric"] == "CER on asr_test_target" and ten_cer["difference"] == pytest.approx(0.0)
    assert twenty["difference"] is None and "not available yet" in twenty["text"]

    md = (tmp_path / "results.md").read_text()
    rows = table(md)
    assert set(rows) == {r["name"] for r in records}
    header = [h for _, h, _ in report.COLUMNS]
    wer_target = header.index("WER test_target")
    assert rows["kmeans_10pct_s1"][wer_target] == "40.00" and rows["divergence_10pct_s1"][wer_target] == "–"
    assert rows["teacher"][header.index("budget %")] == "–" and rows["full_s1"][header.index("budget %")] == "100"
    assert rows["random_10pct_s1"][header.index("spk accuracy")] == "80.00"
    assert rows["random_10pct_s2"][header.index("audio h seen")] == "0.820"
    assert ten["text"] in md and "Finished cells: 12 of 20" in md
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["rows"] == records and saved["aggregate"] == json.loads(json.dumps(comparisons))
    assert (tmp_path / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    spread = [fabricated_record(f"teacher_s{seed}", "reference", "teacher", None, seed, wer) for seed, wer in
              ((1, 35.0), (2, 37.0), (3, 36.0))]
    assert report.probe_spread(spread)[0] == ("- teacher, WER asr_test_target: 3 probe seeds, mean 36.00, range "
                                              "35.00-37.00, standard deviation 1.00")
    report.write_report([r | {k: None for k in ("wer_target", "wer_in", "spk_accuracy")} for r in records],
                        settings, tmp_path / "empty")  # nothing finished: still a table and a figure
    assert (tmp_path / "empty" / "results.png").exists()


def test_paired_comparisons_from_the_cells_alignments(tmp_path):
    """Each selector vs random at a budget, from wer files: the difference is the probe's own rates' difference."""
    from fake_probe_runs import fake_references, write_run

    from tasks.benchmark import statistics

    references = fake_references(120)
    plan = {"random": (0.5, [1, 2]), "kmeans": (0.1, [1, 2]), "dsir": (0.5, [1])}
    records, errors, rates = [], {}, {}
    for selector, (rate, seeds) in plan.items():
        for seed in seeds:
            name = f"{selector}_10pct_s{seed}"
            folder = tmp_path / "asr" / name
            rates[name] = write_run(folder, references, rate, len(records), split="asr_test_target")
            records.append(fabricated_record(name, "subset", selector, 0.1, seed, rates[name]["WER"]))
            errors[name] = statistics.cell_errors(folder)
    records.append(fabricated_record("kmeans_20pct_s1", "subset", "kmeans", 0.2, 1, 40.0))  # no alignments
    paired = statistics.paired_comparisons(records, errors, "random")
    found = {(c["selector"], c["metric"]): c for c in paired}
    assert set(found) == {("kmeans", "WER"), ("kmeans", "CER"), ("dsir", "WER"), ("dsir", "CER")}
    for (selector, kind), c in found.items():
        mean = {s: sum(rates[f"{s}_10pct_s{k}"][kind] for k in plan[s][1]) / len(plan[s][1]) for s in plan}
        assert c["difference"] == pytest.approx(mean[selector] - mean["random"])
        assert c["low"] <= c["difference"] <= c["high"] and c["seeds"] == len(plan[selector][1])
    assert found[("kmeans", "WER")]["verdict"] == "better" and found[("kmeans", "CER")]["verdict"] == "better"
    assert found[("dsir", "WER")]["verdict"] == "indistinguishable"

    intervals = statistics.selector_intervals(records, errors)
    assert intervals["kmeans"][10][3] == 2 and intervals["kmeans"][10][1] < intervals["kmeans"][10][0]

    for seed in (1, 2):  # the full pool as good as kmeans: the best selector is no worse than it
        name = f"full_s{seed}"
        rates[name] = write_run(tmp_path / "asr" / name, references, 0.1, 10 + seed, split="asr_test_target")
        row = cells.Row(name, "full", "full", 1.0, seed, 2, (), None)
        records.insert(0, report.row_record(row, {"asr": {"metrics": {"asr_test_target": rates[name]}}}))
        errors[name] = statistics.cell_errors(tmp_path / "asr" / name)
    vs_full = {(c["selector"], c["metric"]): c for c in statistics.paired_comparisons(records, errors, "full")}
    assert set(vs_full) == {(s, k) for s in plan for k in ("WER", "CER")}
    assert vs_full[("random", "WER")]["verdict"] == "worse" and vs_full[("kmeans", "WER")]["verdict"] != "worse"
    everything = paired + list(vs_full.values())
    mean_wer = {s: sum(rates[f"{s}_10pct_s{k}"]["WER"] for k in plan[s][1]) / len(plan[s][1]) for s in plan}
    relative = 100 * (mean_wer["kmeans"] - mean_wer["random"]) / mean_wer["random"]
    check = report.best_selector_checks(records, everything, "random")
    assert len(check) == 1 and check[0].startswith(f"- 10 %: best selector kmeans (WER {mean_wer['kmeans']:.2f})")
    assert f"{relative:+.1f} % relative: meets the 10 % target" in check[0] and check[0].endswith("no worse.")
    assert f"{relative:+.1f} % relative: misses" in report.best_selector_checks(
        records, everything, "random", relative_gain=-relative / 100 + 0.01)[0]
    worse_full = [c | {"verdict": "worse"} if c["baseline"] == "full" else c for c in everything]
    assert report.best_selector_checks(records, worse_full, "random")[0].endswith(": worse.")

    settings = {"benchmark_name": "fab", "pool_hours": 6.831, **EQUAL_COMPUTE, "finished_cells": 7,
                "total_cells": 8, "target_aware": ["kmeans", "dsir"], "baseline": "random"}
    report.write_report(records, settings, tmp_path, errors)
    md = (tmp_path / "results.md").read_text()
    assert "| 10 | kmeans | WER asr_test_target | 2 (2) | 0.815 (0.815) |" in md and check[0] in md
    aware = {c["metric"]: c for c in report.aggregate(records, ["kmeans", "dsir"], "random", errors)
             if c["budget_pct"] == 10}
    for kind in ("WER", "CER"):  # the target-aware selectors together: an interval and its verdict
        c = aware[f"{kind} on asr_test_target"]
        selector_mean = {s: sum(rates[f"{s}_10pct_s{k}"][kind] for k in plan[s][1]) / len(plan[s][1]) for s in plan}
        assert c["difference"] == pytest.approx((selector_mean["kmeans"] + selector_mean["dsir"]) / 2
                                                - selector_mean["random"])
        assert c["low"] <= c["difference"] <= c["high"] and c["verdict"] == statistics.verdict(c["low"], c["high"])
        assert c["text"] in md and c["text"].endswith(f": {c['verdict']}.")
    saved = json.loads((tmp_path / "results.json").read_text())["paired"]
    assert saved == json.loads(json.dumps([c for c in everything]))
    wer_kmeans = statistics.selector_intervals(records, errors)["kmeans"][10]
    assert f"| kmeans | 10 | 2 | 0.815 | {wer_kmeans[0]:.2f} [{wer_kmeans[1]:.2f}, {wer_kmeans[2]:.2f}] |" in md
    probe_table = md.split("## Probe error rates")[1].split("## The best selector")[0]
    assert "| kmeans | 20 |" not in probe_table  # nothing finished: left out
    assert probe_table.index("| dsir | 10 |") < probe_table.index("| full | 100 | 2 |")  # subsets first


def write_identification(folder, wrong):
    """A speaker cell's ``identification.txt``: ``wrong[i]`` of utterance ``u<i>``'s 3 test crops misidentified."""
    folder.mkdir(parents=True)
    (folder / "identification.txt").write_text("".join(f"u{i:03d}#{k} {int(k >= n)}\n" for i, n in enumerate(wrong)
                                                       for k in range(3)))


def test_speaker_identification_intervals_and_paired_comparisons(tmp_path):
    """Each selector vs random on the speaker probe: per-utterance crop outcomes give the accuracies' difference."""
    import numpy as np

    from tasks.benchmark import statistics

    rng = np.random.default_rng(0)
    plan = {("random", 1): 0.4, ("random", 2): 0.35, ("kcenter", 1): 0.1, ("kcenter", 2): 0.15, ("dsir", 1): 0.38}
    records, errors, accuracy = [], {}, {}
    for (selector, seed), p_wrong in plan.items():
        name = f"{selector}_10pct_s{seed}"
        write_identification(tmp_path / name, rng.binomial(3, p_wrong, 90))
        lines = (tmp_path / name / "identification.txt").read_text().split()[1::2]
        accuracy[name] = 100 * lines.count("1") / len(lines)  # the oracle: right crops over crops
        row = cells.Row(name, "subset", selector, 0.1, seed, 4, (), None)
        records.append(report.row_record(row, {"spk": {"metrics": {"spk_test": {"accuracy": accuracy[name]}}}}))
        errors[name] = statistics.speaker_errors(tmp_path / name)
    ids, counts = errors["dsir_10pct_s1"]["spk_test"]
    assert ids == [f"u{i:03d}" for i in range(90)] and counts["ID error"][:, 1].tolist() == [3] * 90
    mean = {sel: np.mean([accuracy[f"{sel}_10pct_s{k}"] for s, k in plan if s == sel]) for sel in ("random",
                                                                                               "kcenter", "dsir")}
    found = {c["selector"]: c for c in statistics.paired_comparisons(records, errors, "random", "spk_test",
                                                                     kinds=("ID error",))}
    for selector in ("kcenter", "dsir"):
        assert found[selector]["difference"] == pytest.approx(mean["random"] - mean[selector])
    assert found["kcenter"]["verdict"] == "better" and found["dsir"]["verdict"] == "indistinguishable"

    report.write_report(records, {"benchmark_name": "fab", "pool_hours": 6.831, **EQUAL_COMPUTE,
                                  "finished_cells": 5, "total_cells": 5, "target_aware": ["kcenter"],
                                  "baseline": "random"}, tmp_path, errors)
    md = (tmp_path / "results.md").read_text()
    assert "### Probes on the speakers (spk_test, identification error), each selector vs random" in md
    assert f"| 10 | kcenter | ID error spk_test | 2 (2) | – (–) | {found['kcenter']['difference']:+.2f} |" in md
    rate, low, high, _ = statistics.selector_intervals(records, errors, "spk_test", "ID error")["kcenter"][10]
    assert rate == pytest.approx(100 - mean["kcenter"]) and low < rate < high
    assert f"| kcenter | 10 | 2 | – | – | – | – | – | {rate:.2f} [{low:.2f}, {high:.2f}] |" in md

    (tmp_path / "random_10pct_s1" / "identification.txt").write_text("u000#0 1\nu000#1 yes\n")
    with pytest.raises(ValueError, match=r"random_10pct_s1/identification.txt, line 2: expected .<crop ID> <1\|0>."):
        statistics.speaker_errors(tmp_path / "random_10pct_s1")
    (tmp_path / "random_10pct_s1" / "identification.txt").write_text("u000#0 1\nu000 0\n")
    with pytest.raises(ValueError, match=r"line 2: 'u000' is not a crop ID"):
        statistics.speaker_errors(tmp_path / "random_10pct_s1")
    assert statistics.speaker_errors(tmp_path / "no_speaker_cell") == {}


HELDOUT_SPLITS = ("asr_test_target", report.UNSEEN_VOICE, "asr_test_in")


def write_heldout(folder, losses, domains):
    """A distillation's ``heldout.json`` whose utterance ``u<i>`` has loss ``losses[i]`` over 50 frames, every split."""
    utterances = {f"u{i:03d}": [float(loss) * 50, 50, domain] for i, (loss, domain) in enumerate(zip(losses, domains))}
    folder.mkdir(parents=True)
    splits = {split: {"domains": {}, "utterances": utterances} for split in HELDOUT_SPLITS}
    (folder / "heldout.json").write_text(json.dumps({"segment_seconds": 2.0, "splits": splits}))


def test_heldout_loss_intervals_and_paired_comparisons(tmp_path):
    """Each selector vs random and vs the full pool on the held-out loss: the difference of the mean losses."""
    import numpy as np

    from tasks.benchmark import statistics

    rng = np.random.default_rng(0)
    base = rng.uniform(0.3, 0.5, 80)
    domains = ["neural"] * 40 + ["formant"] * 40
    plan = {("random", 1): base + 0.02, ("random", 2): base - 0.02, ("kcenter", 1): base - 0.06,
            ("kcenter", 2): base - 0.05, ("dsir", 1): base + rng.normal(0, 0.01, 80), ("full", 1): base - 0.1,
            ("full", 2): base - 0.12}
    records, errors = [], {}
    for (selector, seed), losses in plan.items():
        name = f"full_s{seed}" if selector == "full" else f"{selector}_10pct_s{seed}"
        write_heldout(tmp_path / name, losses, domains)
        errors[name] = statistics.heldout_errors(tmp_path / name)
        summary = {"all": float(losses.mean()), "neural": float(losses[:40].mean()),
                   "formant": float(losses[40:].mean())}
        row = cells.Row(name, "full" if selector == "full" else "subset", selector,
                        1.0 if selector == "full" else 0.1, seed, 4, (), None)
        distill = {"heldout_loss": {split: summary for split in HELDOUT_SPLITS},
                   "train_audio_hours_seen": 0.9 - seed / 10}
        records.append(report.row_record(row, {"distill": distill}))
    assert errors["dsir_10pct_s1"]["heldout_asr_test_target/neural"][0] == [f"u{i:03d}" for i in range(40)]
    # a third k-center student not scored yet: left out of the seeds and of the audio hours of its intervals
    records.append(report.row_record(cells.Row("kcenter_10pct_s3", "subset", "kcenter", 0.1, 3, 4, (), None),
                                     {"distill": {"train_audio_hours_seen": 0.6}}))
    write_heldout(tmp_path / "no_unseen", [], [])  # a split without utterances: no errors, no failure
    assert statistics.heldout_errors(tmp_path / "no_unseen") == {}
    mean = {sel: np.mean([plan[(s, k)].mean() for s, k in plan if s == sel]) for sel in ("random", "kcenter",
                                                                                         "dsir", "full")}
    for baseline in ("random", "full"):
        found = {c["selector"]: c for c in statistics.paired_comparisons(
            records, errors, baseline, "heldout_asr_test_target", kinds=("LOSS",))}
        assert set(found) == {"random", "kcenter", "dsir"} - {baseline}
        for selector, c in found.items():
            assert c["difference"] == pytest.approx(mean[selector] - mean[baseline])
            assert c["low"] <= c["difference"] <= c["high"] and c["metric"] == "LOSS"
        assert found["kcenter"]["verdict"] == ("better" if baseline == "random" else "worse")
    intervals = statistics.selector_intervals(records, errors, "heldout_asr_test_in", "LOSS")
    value, low, high, seeds = intervals["kcenter"][10]
    assert value == pytest.approx(mean["kcenter"]) and low < value < high and seeds == 2

    report.write_report(records, {"benchmark_name": "fab", "pool_hours": 6.831, **EQUAL_COMPUTE,
                                  "finished_cells": 7, "total_cells": 7, "target_aware": [], "baseline": "random"},
                        tmp_path, errors)
    md = (tmp_path / "results.md").read_text()
    assert f"| kcenter | 10 | 2 | 0.750 | {mean['kcenter']:.4f} [" in md  # audio hours seen, then same voice
    assert f"| full | 100 | 2 | 0.750 | {mean['full']:.4f} [" in md
    interval_line = next(line for line in md.splitlines() if line.startswith("| kcenter | 10 | 2 | 0.750 | "))
    assert interval_line.count(f"{mean['kcenter']:.4f} [") == 3  # same voice, unseen voice, other domains
    for split in ("heldout_asr_test_target", f"heldout_{report.UNSEEN_VOICE}"):
        assert f"| 10 | kcenter | LOSS {split} | 2 (2) | 0.750 (0.750) |" in md
    paired = json.loads((tmp_path / "results.json").read_text())["paired"]
    seeds_wider = sum(c["dominant"] == "seeds" for c in paired if c["metric"] == "LOSS")
    assert len(paired) == 15 and seeds_wider == 15  # losses shifted per seed: the seeds make the interval
    assert f"Of 15 comparisons, the seed-to-seed spread dominates the interval in {seeds_wider} and " in md
    domain_line = next(line for line in md.splitlines() if line.startswith("| kcenter | 10 | 2 | 0.750 | ")
                       and "[" not in line)
    assert f"{np.mean([plan[('kcenter', k)][40:].mean() for k in (1, 2)]):.4f}" in domain_line  # formant column
    assert (tmp_path / "results.png").exists()


def test_plan_and_dry_run(tiny_corpus, tiny_hubert_dir, tmp_path, capsys):
    config = tiny_config(tiny_corpus, tiny_hubert_dir, tmp_path)
    config["selectors"]["random"]["seeds"] = [1, 2]
    config["full_pool"] = {"selection": "full"}
    config["distill_overrides"] = ["--num_workers=0"]
    config["selectors"]["contrastive"]["overrides"] = ["--selector_overrides={contrastive: {order: 3}}"]
    config["selectors"]["random_again"] = {"selection": "random"}  # a row name other than its file
    config["references"]["mfcc"]["seeds"] = [7, 8]  # the probe's own spread: one row per probe seed
    hparams = write_yaml(tmp_path / "bench.yaml", config)
    runner = load_runner()
    assert runner.main([str(hparams), "--dry_run=True", "--budgets=[0.05,0.2]"]) == 0
    printed = capsys.readouterr().out
    assert not (tmp_path / "bench").exists()  # a dry run writes nothing

    rows, _ = cells.build_plan(runner.load_hparams([str(hparams), "--budgets=[0.05,0.2]"]))
    names = [row.name for row in rows]
    assert names == ["random_5pct_s1", "teacher", "mfcc_s7", "mfcc_s8", "random_5pct_s2", "contrastive_5pct_s1234",
                     "random_again_5pct_s1234", "random_20pct_s1", "random_20pct_s2", "contrastive_20pct_s1234",
                     "random_again_20pct_s1234", "full_s1234"]
    by_name = {row.name: row for row in rows}
    equal_compute = {"--segment_seconds=0.5", "--steps_per_epoch=2", "--number_of_epochs=1"}
    for row in rows:  # every student, the full pool's included, gets the same steps on the same segments
        if row.group != "reference":
            assert equal_compute <= set(row.cells[0].argv) and row.epochs == 1, row.name
    distill, asr, spk = by_name["contrastive_5pct_s1234"].cells
    out = tmp_path / "bench"
    assert {"--budget_fraction=0.05", "--seed=1234", "--selection=contrastive",
            "--experiment_name=contrastive_5pct_s1234", f"--output_folder={out}/distill/contrastive_5pct_s1234",
            f"--cache_folder={out}/teacher_targets", "--num_workers=0",
            "--selector_overrides={contrastive: {order: 3}}"} <= set(distill.argv)
    assert f"--encoder_source={out}/distill/contrastive_5pct_s1234/save/student" in asr.argv
    assert f"--feature_folder={out}/probe_features/contrastive_5pct_s1234" in spk.argv and "--n_crops=2" in spk.argv
    assert "--selection=random" in by_name["random_again_5pct_s1234"].cells[0].argv
    assert "--selection=full" in by_name["full_s1234"].cells[0].argv
    for seed in (7, 8):  # the same features, the probe's seed
        argv = set(by_name[f"mfcc_s{seed}"].cells[0].argv)
        assert {f"--feature_folder={tmp_path / 'f_mfcc'}", f"--seed={seed}"} <= argv
    assert not [a for a in by_name["teacher"].cells[0].argv if a.startswith("--seed=")]
    for cell in (distill, asr, spk):
        assert shlex.join(cell.argv[1:]) in printed

    # the held-out loss only: no references
    intrinsic, _ = cells.build_plan(config | {"probes": [], "budgets": [0.05, 0.2]})
    assert [row.name for row in intrinsic] == [n for n in names if n not in ("teacher", "mfcc_s7", "mfcc_s8")]
    assert all([cell.kind for cell in row.cells] == ["distill"] for row in intrinsic)
    as_dry_run = config | {"budgets": [0.05, 0.2]}
    by_selection_name, _ = cells.build_plan(as_dry_run | {"full_pool": "full"})  # --full_pool=full
    assert [row.name for row in by_selection_name] == names
    no_full = [row.name for row in cells.build_plan(as_dry_run | {"full_pool": None})[0]]
    assert no_full == [n for n in names if not n.startswith("full_")] != names
    with pytest.raises(ValueError, match="probes: .*'wer'.* unknown"):
        cells.build_plan(config | {"probes": ["asr", "wer"]})
    with pytest.raises(ValueError, match="sets a key the benchmark sets itself"):
        cells.build_plan(config | {"distill_overrides": ["--steps_per_epoch=5"]})
    alike = cells.build_plan(config | {"distill_overrides": ["--batch_size=4"]})[0]  # every student alike: allowed
    assert all("--batch_size=4" in row.cells[0].argv for row in alike if row.group != "reference")
    one_row = {**config["selectors"], "contrastive": {"overrides": ["--lr=0.001", "--batch_size=4"]}}
    with pytest.raises(ValueError, match="overrides of contrastive_5pct_s1234: --batch_size=4 would give this row"):
        cells.build_plan(config | {"selectors": one_row, "budgets": [0.05]})

    config["asr_overrides"] = ["--encoder_name=x"]
    with pytest.raises(ValueError, match="asr_overrides.*sets a key the benchmark sets itself"):
        cells.build_plan(config)
    config["asr_overrides"] = ["number_of_epochs=1"]
    with pytest.raises(ValueError, match="not of the form --key=value"):
        cells.build_plan(config)
    with pytest.raises(FileNotFoundError, match="'x': no file .*x.yaml"):
        cells.build_plan(config | {"asr_overrides": [], "selectors": {"x": None}})
    with pytest.raises(FileNotFoundError, match="pool manifest .* generate the corpus"):
        cells.build_plan(config | {"pool_manifest": str(tmp_path / "none.csv")})


@pytest.mark.parametrize("name, n_cells", [("benchmark.yaml", 287), ("benchmark_quick.yaml", 15),
                                           ("benchmark_objectives.yaml", 152), ("benchmark_front.yaml", 44),
                                           ("benchmark_curves.yaml", 21)])
def test_shipped_yamls_fit_the_recipes(name, n_cells, tiny_corpus, tiny_whisper_dir, tmp_path, monkeypatch):
    """Every cell of the shipped grids: its overrides exist in its recipe's hparams, and every class imports.

    Selection files that load the default teacher get the tiny one instead (no conversion of Whisper base here).
    """
    corpus = [f"--data_folder={tiny_corpus['data_folder']}", f"--manifest_folder={tiny_corpus['save_folder']}",
              f"--corpus_scale={tiny_corpus['scale']}", f"--output_folder={tmp_path}"]
    rows, _ = cells.build_plan(load_runner().load_hparams([str(BENCH / "hparams" / name), *corpus]))
    assert sum(len(row.cells) for row in rows) == n_cells
    checked, objectives = set(), set()
    for cell in (cell for row in rows for cell in row.cells):
        hparams_file, _, overrides = sb.parse_arguments(list(cell.argv[2:]))
        hparams = load_hparams(cells.resolve(hparams_file), overrides)  # refuses an override of a key the recipe lacks
        if cell.kind == "distill":  # and the selection file with its overrides
            folder, method = cells.resolve(hparams["selection_folder"]), hparams["selection"]
            units, selector = hparams["units_overrides"], hparams["selector_overrides"].get(method, {})
            text = (folder / f"{method}.yaml").read_text()
            if "units: teacher_layer" in text:
                units = {**units, "layer": 1}
            load_selection(folder, method, units, selector, hparams["seed"], teacher_source=tiny_whisper_dir)
            chosen_objective(hparams)  # a name of the recipe's objectives
            checked.add(hparams["selection"])
            objectives.add(hparams["objective"])
    expected = {"benchmark.yaml": {"random", "longest", "contrastive", "dsir", "divergence", "coverage", "cluster",
                                   "kcenter", "difficulty", "full"},
                "benchmark_quick.yaml": {"random", "contrastive", "dsir"},
                "benchmark_objectives.yaml": {"random", "contrastive"},
                "benchmark_front.yaml": {"random", "contrastive", "dsir", "full"},
                "benchmark_curves.yaml": {"random", "dsir", "full"}}
    assert checked == expected[name]
    assert objectives == ({"l1_cosine", "masked", "temporal_relation", "unit_prediction"}
                          if name == "benchmark_objectives.yaml" else {"l1_cosine"})


def test_tiny_benchmark_runs_and_resumes(tiny_corpus, tiny_hubert_dir, tmp_path, capsys):
    hparams = write_yaml(tmp_path / "bench.yaml", tiny_config(tiny_corpus, tiny_hubert_dir, tmp_path))
    runner = load_runner()
    out = tmp_path / "bench"
    assert runner.main([str(hparams)]) == 0
    capsys.readouterr()

    rows = table((out / "results.md").read_text())
    header = [h for _, h, _ in report.COLUMNS]
    assert set(rows) == {"random_10pct_s1234", "contrastive_10pct_s1234", "teacher", "mfcc"}
    # every figure of the table is the one its cell's recipe wrote
    sources = {"WER test_in": ("asr", "asr_test_in", "WER"), "CER test_in": ("asr", "asr_test_in", "CER"),
               "WER test_target": ("asr", "asr_test_target", "WER"),
               "CER test_target": ("asr", "asr_test_target", "CER"),
               "spk accuracy": ("spk", "spk_test", "accuracy"), "EER": ("spk", "spk_test", "EER")}
    for name, cols in rows.items():
        for column, (kind, split, metric) in sources.items():
            value = json.loads((out / kind / name / "results.json").read_text())["metrics"][split][metric]
            assert cols[header.index(column)] == ("–" if value is None else f"{value:.2f}"), (name, column)
    distilled = json.loads((out / "distill" / "contrastive_10pct_s1234" / "distillation.json").read_text())
    assert rows["contrastive_10pct_s1234"][header.index("hours used")] == f"{distilled['subset_hours']:.3f}"
    selected = json.loads((out / "distill" / "contrastive_10pct_s1234" / "selection" / "selection.json").read_text())
    assert distilled["selector_minutes"] == round(selected["selector_seconds"] / 60, 2)  # selection compute
    features = selected.get("feature_seconds")  # the units' feature pass, where the selection records it
    assert rows["contrastive_10pct_s1234"][header.index("select min")] == \
        f"{distilled['selector_minutes'] + (features or 0) / 60:.1f}"
    assert rows["contrastive_10pct_s1234"][header.index("of it features")] == ("–" if features is None else
                                                                                f"{features / 60:.1f}")
    assert distilled["subset_hours"] > 0 and rows["contrastive_10pct_s1234"][header.index("epochs")] == "1"
    for name in ("random_10pct_s1234", "contrastive_10pct_s1234"):  # equal compute, and its held-out loss
        distilled = json.loads((out / "distill" / name / "distillation.json").read_text())
        assert distilled["optimizer_steps"] == 2 and rows[name][header.index("steps")] == "2"
        assert rows[name][header.index("audio h seen")] == f"{distilled['train_audio_hours_seen']:.3f}"
        assert rows[name][header.index("held-out loss target")] == \
            f"{distilled['heldout_loss']['asr_test_target']['all']:.4f}"
    assert (out / "results.png").exists()
    results = json.loads((out / "results.json").read_text())
    assert results["settings"]["finished_cells"] == results["settings"]["total_cells"] == 10
    wer_target = {r["name"]: r["wer_target"] for r in results["rows"]}
    aggregate = {c["metric"]: c for c in results["aggregate"]}
    assert aggregate["WER on asr_test_target"]["difference"] == pytest.approx(
        wer_target["contrastive_10pct_s1234"] - wer_target["random_10pct_s1234"])  # target-aware minus random
    loss = {r["name"]: r["heldout_target"] for r in results["rows"]}
    held_out = aggregate["held-out loss on asr_test_target"]  # from the students' heldout.json, with its interval
    assert held_out["difference"] == pytest.approx(loss["contrastive_10pct_s1234"] - loss["random_10pct_s1234"],
                                                   abs=1e-4)
    assert held_out["verdict"] in ("better", "worse", "indistinguishable") and held_out["low"] <= held_out["high"]
    paired = {c["metric"]: c for c in results["paired"]  # contrastive vs random, from the cells' wer files
              if c["split"] == "asr_test_target" and c["baseline"] == "random"}
    assert paired["WER"]["selector"] == "contrastive" and paired["WER"]["difference"] == pytest.approx(
        wer_target["contrastive_10pct_s1234"] - wer_target["random_10pct_s1234"])
    accuracy = {r["name"]: r["spk_accuracy"] for r in results["rows"]}
    speakers = next(c for c in results["paired"] if c["split"] == "spk_test" and c["baseline"] == "random")
    assert speakers["metric"] == "ID error" and speakers["difference"] == pytest.approx(  # errors: minus accuracy
        accuracy["random_10pct_s1234"] - accuracy["contrastive_10pct_s1234"])
    assert not (out / "probe_features" / "contrastive_10pct_s1234").exists()  # deleted once both probes finished
    assert (tmp_path / "f_teacher").exists()  # a reference's features are kept

    logs = sorted((out / "logs").glob("*.log"))
    assert len(logs) == 10
    mtimes = {log.name: log.stat().st_mtime_ns for log in logs}

    assert runner.main([str(hparams)]) == 0  # everything finished: nothing runs
    assert capsys.readouterr().out.count("skipped: finished earlier") == 10
    assert {log.name: log.stat().st_mtime_ns for log in logs} == mtimes

    (out / "asr" / "random_10pct_s1234" / "results.json").unlink()
    assert runner.main([str(hparams)]) == 0  # only that cell runs again
    printed = capsys.readouterr().out
    assert printed.count("skipped: finished earlier") == 9 and re.search(r"asr +random_10pct_s1234 +done in", printed)
    changed = {log.name for log in logs if log.stat().st_mtime_ns != mtimes[log.name]}
    assert changed == {"asr-random_10pct_s1234.log"}
    assert (out / "asr" / "random_10pct_s1234" / "results.json").exists()


def test_difference_components_match_paired_difference_and_exact_enumeration():
    """The both-sources interval is paired_difference's; each one-source spread is the exact one by enumeration."""
    import itertools

    import numpy as np

    from common.intervals import paired_difference
    from tasks.benchmark import statistics

    rng = np.random.default_rng(3)
    a = np.stack([rng.integers(0, 6, (3, 1)).repeat(2, axis=1) * [1, 0] + [0, 10] for _ in range(2)])  # [2, 3, 2]
    b = np.stack([rng.integers(0, 6, (3, 1)).repeat(2, axis=1) * [1, 0] + [0, 10] for _ in range(2)])
    result = statistics.difference_components([a], [b], scale=100.0, n_draws=20000)
    reference = paired_difference(a, b, n_draws=20000)
    assert (result["difference"], result["low"], result["high"]) == pytest.approx(
        (reference["difference"], reference["low"], reference["high"]))

    def rate(errors, utterances, seeds):
        picked = [errors[s, list(utterances)].sum(axis=0) for s in seeds]
        return 100 * np.mean([edits / tokens for edits, tokens in picked])

    every_u, every_s = range(3), range(2)
    resampled_u = list(itertools.product(range(3), repeat=3))
    resampled_s = list(itertools.product(range(2), repeat=2))
    exact = {
        "seed_sd": np.std([rate(a, every_u, sa) - rate(b, every_u, sb) for sa in resampled_s for sb in resampled_s]),
        "utterance_sd": np.std([rate(a, u, every_s) - rate(b, u, every_s) for u in resampled_u]),
    }
    for name, value in exact.items():  # 20000 draws: the standard deviation within a few percent
        assert result[name] == pytest.approx(value, rel=0.05), name
    assert result["dominant"] == ("seeds" if exact["seed_sd"] > exact["utterance_sd"] else "utterances")
    one_seed = statistics.difference_components([a[:1]], [b[:1]], scale=100.0)
    assert one_seed["seed_sd"] is None and one_seed["dominant"] == "utterances"
    with pytest.raises(ValueError, match="same test set"):
        statistics.difference_components([a], [b[:, :2]])


def heldout_records(tmp_path, plan):
    """Records and errors of students whose held-out utterances have the losses of ``plan[(selector, seed)]``."""
    import numpy as np

    from tasks.benchmark import statistics

    records, errors = [], {}
    for (selector, seed), losses in plan.items():
        name = f"{selector}_1pct_s{seed}"
        write_heldout(tmp_path / name, losses, ["neural"] * len(losses))
        errors[name] = statistics.heldout_errors(tmp_path / name)
        row = cells.Row(name, "subset", selector, 0.01, seed, 4, (), None)
        summary = {"all": float(np.mean(losses))}
        records.append(report.row_record(row, {"distill": {"heldout_loss": {s: summary for s in HELDOUT_SPLITS}}}))
    return records, errors


@pytest.mark.parametrize("gap, expected", [(0.05, "better"), (0.002, "indistinguishable"), (-0.05, "worse")])
def test_target_aware_verdicts_come_from_intervals(tmp_path, gap, expected):
    """A lower mean loss is not enough: better only when the interval of the difference is below 0."""
    import numpy as np

    rng = np.random.default_rng(1)
    base = rng.uniform(0.3, 0.5, 60)
    plan = {}
    for seed in range(5):
        plan[("random", seed)] = base + rng.normal(0, 0.02) + rng.normal(0, 0.01, 60)
        plan[("dsir", seed)] = base - gap + rng.normal(0, 0.02) + rng.normal(0, 0.01, 60)
        plan[("contrastive", seed)] = base - gap + rng.normal(0, 0.02) + rng.normal(0, 0.01, 60)
    records, errors = heldout_records(tmp_path, plan)
    for key in ("heldout_target", "heldout_target_unseen"):
        c = report.compare_budget(1, records, ["dsir", "contrastive"], "random", key, errors)
        means = {s: np.mean([plan[(s, k)].mean() for k in range(5)]) for s in ("random", "dsir", "contrastive")}
        assert c["difference"] == pytest.approx((means["dsir"] + means["contrastive"]) / 2 - means["random"])
        assert c["verdict"] == expected and c["low"] <= c["difference"] <= c["high"]
        assert c["text"].endswith(f": {expected}.") and "95 % interval" in c["text"]


def test_a_row_may_change_what_it_learns_but_not_its_compute():
    allowed = ["--lr=0.001", "--objective=cosine", "--max_grad_norm=5", "--selector_overrides={dsir: {order: 2}}"]
    assert cells.check_row_overrides("dsir_1pct_s1", allowed) == allowed
    for key in sorted(cells.COMPUTE_KEYS - set(cells.TRAINING_KEYS)):
        with pytest.raises(ValueError, match=f"overrides of dsir_1pct_s1: --{key}=2 would give this row other compute"):
            cells.check_row_overrides("dsir_1pct_s1", [f"--{key}=2"])
    for key in cells.TRAINING_KEYS:  # set by the benchmark for every student
        with pytest.raises(ValueError, match="sets a key the benchmark sets itself"):
            cells.check_row_overrides("dsir_1pct_s1", [f"--{key}=2"])
    assert {"batch_size", "grad_accumulation_factor", "total_steps", "crop_seconds"} <= cells.COMPUTE_KEYS


def test_select_minutes_include_the_recorded_feature_pass():
    row = cells.Row("kcenter_1pct_s1", "subset", "kcenter", 0.01, 1, 4, (), None)
    with_features = report.row_record(row, {"distill": {"selector_minutes": 1.5}, "selection": {"feature_seconds": 90}})
    assert with_features["selector_minutes"] == pytest.approx(3.0) and with_features["feature_minutes"] == 1.5
    without = report.row_record(row, {"distill": {"selector_minutes": 1.5}, "selection": {"selector_seconds": 90}})
    assert without["selector_minutes"] == 1.5 and without["feature_minutes"] is None


def test_more_baselines_pair_every_selector_with_them_too(tmp_path):
    """E.g. contrastive with an objective against random with the same objective, beside random."""
    import numpy as np

    rng = np.random.default_rng(2)
    base = rng.uniform(0.3, 0.5, 40)
    plan = {(selector, seed): base + shift + rng.normal(0, 0.01, 40)
            for seed in range(3) for selector, shift in (("random", 0.0), ("random_masked", -0.03),
                                                          ("contrastive_masked", -0.08))}
    records, errors = heldout_records(tmp_path, plan)
    settings = {"benchmark_name": "b", "pool_hours": 1.0, "segment_seconds": 2.0, "steps_per_epoch": 100,
                "number_of_epochs": 4, "finished_cells": 9, "total_cells": 9, "target_aware": ["contrastive_masked"],
                "baseline": "random", "more_baselines": ["random_masked"]}
    report.write_report(records, settings, tmp_path, errors)
    paired = json.loads((tmp_path / "results.json").read_text())["paired"]
    against = {(c["selector"], c["baseline"]) for c in paired if c["split"] == "heldout_asr_test_target"}
    assert {("contrastive_masked", "random_masked"), ("random", "random_masked"),
            ("contrastive_masked", "random"), ("random_masked", "random")} <= against
    pair = next(c for c in paired if (c["selector"], c["baseline"]) == ("contrastive_masked", "random_masked")
                and c["split"] == "heldout_asr_test_target")
    means = {s: np.mean([plan[(s, k)].mean() for k in range(3)]) for s in ("random_masked", "contrastive_masked")}
    assert pair["difference"] == pytest.approx(means["contrastive_masked"] - means["random_masked"], abs=1e-3)
    assert "each selector vs random_masked" in (tmp_path / "results.md").read_text()
