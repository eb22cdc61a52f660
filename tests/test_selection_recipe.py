"""The selection recipe: every selection file, select_subset.py end to end, cached stages, sharding, bad input."""

import csv
import json
import logging
import subprocess
import sys
import time

import pytest
from hyperpyyaml import load_hyperpyyaml

from common.manifest import ManifestError, read_manifest
from conftest import ROOT, SYNTH_RECIPE
from ranks import run_in_threads
from selection.features import MFCCExtractor
from selection.selectors import (ClusterBalancedSelector, ContrastiveLMSelector, CoverageSelector, DifficultySelector,
                                 DivergenceSelector, DSIRSelector, KCenterSelector, LongestFirstSelector,
                                 RandomSelector, TargetError)
from selection.stages import load_selection as load_selection_result
from selection.stages import run_selection
from selection.units import UnitError, UnitSet
from tasks.subset import load_selection, select_subset

RECIPE = SYNTH_RECIPE / "selection"
HPARAMS = RECIPE / "hparams" / "select.yaml"
SELECTION_FOLDER = ROOT / "recipes" / "selection"
SELECTION_FILES = sorted(SELECTION_FOLDER.glob("*.yaml"))
TINY_UNITS = {"n_clusters": 16, "fit_hours": 0.02, "kmeans_epochs": 3}
UNIT_SETTINGS = {"n_clusters": 16, "fit_hours": 0.02, "kmeans_settings": {"n_epochs": 3}}
SELECTORS = {"contrastive": ContrastiveLMSelector, "contrastive_ssl": ContrastiveLMSelector,
             "random": RandomSelector, "longest": LongestFirstSelector, "dsir": DSIRSelector,
             "divergence": DivergenceSelector, "coverage": CoverageSelector, "cluster": ClusterBalancedSelector,
             "kcenter": KCenterSelector, "difficulty": DifficultySelector, "full": type(None)}


def corpus_overrides(corpus, output_folder, units_folder, selection="contrastive"):
    return {"data_folder": str(corpus["data_folder"]), "manifest_folder": str(corpus["save_folder"]),
            "corpus_scale": corpus["scale"], "output_folder": str(output_folder),
            "units_folder": str(units_folder), "units_overrides": TINY_UNITS, "selection": selection}


def load_hparams(path, overrides):
    with open(path, encoding="utf-8") as handle:
        return load_hyperpyyaml(handle, overrides)


def cli(overrides):
    """``--key=value`` arguments (mappings as JSON, which YAML reads)."""
    return [f"--{key}={json.dumps(value) if isinstance(value, dict) else value}" for key, value in overrides.items()]


def run_script(overrides, check=True, launcher=()):
    command = [sys.executable, *launcher, str(RECIPE / "select_subset.py"), str(HPARAMS), *cli(overrides)]
    return subprocess.run(command, cwd=ROOT, check=check, capture_output=True, text=True, timeout=300)


def run_in_process(corpus, output_folder, units_folder, selector=None, **kwargs):
    args = {"pool_manifest": corpus["save_folder"] / "pool.csv",
            "target_manifest": corpus["save_folder"] / "target.csv", "data_root": corpus["data_folder"],
            "extractor": MFCCExtractor(), "unit_settings": UNIT_SETTINGS,
            "selector": selector or ContrastiveLMSelector(), "output_folder": output_folder,
            "units_folder": units_folder, "seed": 3, **kwargs}
    return run_selection(**args)


def comparable(record):
    """selection.json without what legitimately changes between runs (time, folders, wall times)."""
    drop = {"created", "inputs", "outputs", "unit_settings", "selector_seconds", "feature_seconds"}
    return {key: value for key, value in record.items() if key not in drop}


def test_every_selection_file_is_known_here():
    assert {p.stem for p in SELECTION_FILES} == set(SELECTORS)


@pytest.mark.parametrize("path", SELECTION_FILES, ids=lambda p: p.stem)
def test_selection_file_builds_its_selector_and_units(path, tiny_hubert_dir):
    text = path.read_text()
    teacher_layer = "units: teacher_layer" in text
    units = {**TINY_UNITS, **({"layer": 1} if teacher_layer else {})}
    config = load_selection(SELECTION_FOLDER, path.stem, units, {}, seed=7, teacher_source=tiny_hubert_dir)
    assert type(config["selector"]) is SELECTORS[path.stem]
    assert config["units"]["unit_settings"]["n_clusters"] == 16 and config["seed"] == 7
    assert config["units"]["extractor"].settings()["kind"] == ("ssl" if teacher_layer else "mfcc")
    if "seed" in getattr(config["selector"], "settings", dict)():
        assert config["selector"].settings()["seed"] == 7  # the recipe's seed reaches seeded selectors


def test_difficulty_proxy_seed_follows_the_seed_or_is_shared(tiny_hubert_dir):
    own = load_selection(SELECTION_FOLDER, "difficulty", TINY_UNITS, {}, seed=7, teacher_source=tiny_hubert_dir)
    shared = load_selection(SELECTION_FOLDER, "difficulty", TINY_UNITS, {"proxy_seed": 0}, seed=7,
                            teacher_source=tiny_hubert_dir)
    assert own["selector"].scorer.seed == 7 and own["selector"].seed == 7
    assert shared["selector"].scorer.seed == 0 and shared["selector"].seed == 7  # one proxy, the guard still seeded


def test_units_seed_shares_one_codebook_and_pass_between_seeds(tiny_corpus, tmp_path):
    for seed in (3, 4):
        for mode, fixed in (("own", {}), ("fixed", {"units_seed": 0})):
            run_in_process(tiny_corpus, tmp_path / f"{mode}{seed}", tmp_path / f"{mode}_units",
                           selector=RandomSelector(seed=seed), seed=seed, **fixed)
    for mode, files in (("own", 2), ("fixed", 1)):  # a codebook and pool units per k-means seed
        assert len(list((tmp_path / f"{mode}_units").glob("codebook-*.joblib"))) == files
        assert len(list((tmp_path / f"{mode}_units").glob("units-pool-*.npz"))) == files
    records = {seed: json.loads((tmp_path / f"fixed{seed}" / "selection.json").read_text()) for seed in (3, 4)}
    assert [records[s]["seed"] for s in (3, 4)] == [3, 4]
    assert [records[s]["unit_settings"]["seed"] for s in (3, 4)] == [0, 0]
    subsets = [load_selection_result(tmp_path / f"fixed{seed}").ids for seed in (3, 4)]
    assert subsets[0] != subsets[1]  # the selector still follows the selection's seed


@pytest.mark.parametrize("name", ["kcenter", "difficulty"])
def test_selectors_that_ignore_the_units_fix_their_seed(name, tiny_hubert_dir):
    units = {**TINY_UNITS, "layer": 1} if name == "kcenter" else TINY_UNITS
    config = load_selection(SELECTION_FOLDER, name, units, {}, seed=7, teacher_source=tiny_hubert_dir)
    assert config["units_seed"] == 0 and config["selector"].seed == 7


def test_selection_files_refuse_unknown_names_and_keys():
    with pytest.raises(FileNotFoundError, match=r"'nope': no file .*nope.yaml; choose from \['cluster'"):
        load_selection(SELECTION_FOLDER, "nope", {}, {}, seed=0)
    with pytest.raises(KeyError, match="order"):  # a contrastive knob given to another method
        load_selection(SELECTION_FOLDER, "random", {}, {"order": 3}, seed=0)
    with pytest.raises(KeyError, match="n_cluster"):  # a mistyped units key
        load_selection(SELECTION_FOLDER, "random", {"n_cluster": 3}, {}, seed=0)


@pytest.fixture(scope="module")
def script_runs(tiny_corpus, tmp_path_factory):
    """select_subset.py with the contrastive and the random selection files, one shared units cache."""
    root = tmp_path_factory.mktemp("select")
    runs = {}
    for name in ("contrastive", "random"):
        output = root / name
        run_script(corpus_overrides(tiny_corpus, output, root / "units", selection=name))
        runs[name] = output
    return root, runs


@pytest.mark.parametrize("name", ["contrastive", "random"])
def test_script_end_to_end(script_runs, tiny_corpus, name):
    output = script_runs[1][name]
    pool = read_manifest(tiny_corpus["save_folder"] / "pool.csv")
    record = json.loads((output / "selection.json").read_text())
    result = load_selection_result(output)
    assert record["selector"] == {"contrastive": "ContrastiveLMSelector", "random": "RandomSelector"}[name]
    assert result.ids and set(result.ids) <= set(pool.ids) and len(set(result.ids)) == len(result.ids)
    budget = 0.1 * pool.total_hours  # budget_fraction default
    assert record["budget_hours"] == pytest.approx(budget)
    left_out = [pool.duration(i) for i in pool.ids if i not in set(result.ids)]
    assert result.hours <= budget + 1e-9
    assert (budget - result.hours) * 3600 < min(left_out)  # met within one utterance
    with open(output / "subset.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["ID"] for r in rows] == result.ids and rows[0] == pool.row(rows[0]["ID"])
    tsv = (output / "fairseq" / "train.tsv").read_text().splitlines()
    assert tsv[0] == str(tiny_corpus["data_folder"]) and len(tsv) == len(result.ids) + 1
    with open(output / "len_for_bucket" / "subset.csv", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == len(result.ids)
    assert (output / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert record["unit_quality"]["pool"]["clusters_used"] > 8
    assert set(record["unit_kl_to_target"]) == {"pool", "subset"}
    assert (output / "log.txt").exists() and (output / "hyperparams.yaml").exists()
    assert (output / "scores.csv").exists() == (name == "contrastive")


def test_script_runs_share_the_units_cache(script_runs):
    root, runs = script_runs
    assert len(list((root / "units").glob("codebook-*.joblib"))) == 1
    records = [json.loads((runs[n] / "selection.json").read_text()) for n in runs]
    assert records[0]["inputs"]["pool_units"] == records[1]["inputs"]["pool_units"]


def test_same_seed_same_output(script_runs, tiny_corpus, tmp_path):
    """The recipe's hparams run again in-process, with a fresh units cache: k-means and selection repeat exactly."""
    hparams = load_hparams(HPARAMS, {**corpus_overrides(tiny_corpus, tmp_path / "out", tmp_path / "units"),
                                     "selection_folder": str(SELECTION_FOLDER)})
    subset, _ = select_subset(hparams, hparams["output_folder"])
    first = script_runs[1]["contrastive"]
    assert subset.read_bytes() == (first / "subset.csv").read_bytes()
    assert (tmp_path / "out" / "scores.csv").read_bytes() == (first / "scores.csv").read_bytes()
    records = [json.loads((f / "selection.json").read_text()) for f in (first, tmp_path / "out")]
    assert comparable(records[0]) == comparable(records[1])


def test_killed_stages_resume(tiny_corpus, tmp_path, caplog):
    out, units = tmp_path / "out", tmp_path / "units"
    run_in_process(tiny_corpus, out, units)
    codebook = next(units.glob("codebook-*.joblib"))
    pool_units = next(units.glob("units-pool-*.npz"))
    stamps = {p: p.stat().st_mtime_ns for p in (codebook, pool_units, out / "subset.csv")}

    pool_units.unlink()  # killed during the units stage
    caplog.clear()
    with caplog.at_level(logging.INFO):
        run_in_process(tiny_corpus, out, units)
    assert "k-means stage done" in caplog.text and "units stage: " in caplog.text
    assert "selection stage done" in caplog.text  # same units file, same key
    assert codebook.stat().st_mtime_ns == stamps[codebook]
    assert (out / "subset.csv").stat().st_mtime_ns == stamps[out / "subset.csv"]

    (out / "subset.csv").unlink()  # killed while writing the outputs
    caplog.clear()
    with caplog.at_level(logging.INFO):
        _, result = run_in_process(tiny_corpus, out, units)
    assert "units stage done" in caplog.text and "selection stage (" in caplog.text
    assert codebook.stat().st_mtime_ns == stamps[codebook]
    assert load_selection_result(out).ids == result.ids

    caplog.clear()
    with caplog.at_level(logging.INFO):  # another budget: only the selection stage runs again
        _, smaller = run_in_process(tiny_corpus, out, units, budget_hours=result.hours / 2)
    assert "units stage done" in caplog.text and "selection stage (" in caplog.text
    assert smaller.hours < result.hours
    assert json.loads((out / "selection.json").read_text())["budget_hours"] == pytest.approx(result.hours / 2)


def test_sharded_units_equal_single_process(tiny_corpus, tmp_path):
    """Two ranks in two threads with a real barrier: same codebook, units and subset as one process."""
    _, single = run_in_process(tiny_corpus, tmp_path / "single", tmp_path / "units1")
    results = run_in_threads(2, lambda r, shared: run_in_process(
        tiny_corpus, tmp_path / "sharded", tmp_path / "units2", rank=r, world_size=2,
        barrier=shared["barrier"].wait)[1])
    assert results[0].ids == results[1].ids == single.ids
    for name in ("pool", "target"):
        merged = UnitSet.load(next((tmp_path / "units2").glob(f"units-{name}-*.npz")))
        alone = UnitSet.load(next((tmp_path / "units1").glob(f"units-{name}-*.npz")))
        assert merged.to_dict().keys() == alone.to_dict().keys()
        assert all((merged[i] == alone[i]).all() for i in alone.ids)
    assert not list((tmp_path / "units2").glob("*.shard-*"))  # shards removed once merged
    with pytest.raises(ValueError, match="needs a barrier"):
        run_in_process(tiny_corpus, tmp_path / "x", tmp_path / "units2", rank=0, world_size=2)


def test_budget_above_pool_takes_everything(tiny_corpus, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        _, result = run_in_process(tiny_corpus, tmp_path / "out", tmp_path / "units",
                                   selector=RandomSelector(), budget_hours=1000.0)
    assert "taking the whole pool" in caplog.text
    assert len(result.ids) == len(read_manifest(tiny_corpus["save_folder"] / "pool.csv"))


def test_target_problems_are_clear(tiny_corpus, tmp_path, caplog):
    empty = tmp_path / "empty_target.csv"
    empty.write_text("ID,duration,wav\n")
    with pytest.raises(TargetError, match=r"ContrastiveLMSelector is target-aware.*empty_target.csv.* empty"):
        run_in_process(tiny_corpus, tmp_path / "a", tmp_path / "units", target_manifest=empty)
    with pytest.raises(TargetError, match="missing"):
        run_in_process(tiny_corpus, tmp_path / "a", tmp_path / "units", target_manifest=None)
    assert not (tmp_path / "units").exists()  # refused before any work
    with caplog.at_level(logging.WARNING):  # a target-free selector goes on without a target
        _, result = run_in_process(tiny_corpus, tmp_path / "b", tmp_path / "units", target_manifest=empty,
                                   selector=ClusterBalancedSelector(n_clusters=4))
    assert "selecting without a target" in caplog.text and result.ids
    assert "unit_kl_to_target" not in json.loads((tmp_path / "b" / "selection.json").read_text())


def test_more_clusters_than_frames_is_clear(tiny_corpus, tmp_path):
    with pytest.raises(UnitError, match="k=500 clusters but only 300 frames"):
        run_in_process(tiny_corpus, tmp_path / "out", tmp_path / "units",
                       unit_settings={"n_clusters": 500, "fit_hours": 0.01, "max_fit_frames": 300})


@pytest.mark.parametrize("content, message", [
    ("ID,wav\na,x.flac\n", r"pool.csv: missing required column\(s\) \['duration'\]"),
    ("ID,duration,wav\na,1.0,x.flac\nb,1.0,y.flac\na,2.0,z.flac\n", r"pool.csv, line 4: duplicate ID 'a'"),
])
def test_bad_pool_manifest_is_named(content, message, tiny_corpus, tmp_path):
    pool = tmp_path / "pool.csv"
    pool.write_text(content)
    with pytest.raises(ManifestError, match=message):
        run_in_process(tiny_corpus, tmp_path / "out", tmp_path / "units", pool_manifest=pool)


def test_script_reports_bad_manifest(tiny_corpus, tmp_path):
    pool = tmp_path / "pool.csv"
    pool.write_text("ID,duration,wav\na,1.0,x.flac\na,2.0,z.flac\n")
    overrides = {**corpus_overrides(tiny_corpus, tmp_path / "out", tmp_path / "units", selection="random"),
                 "pool_manifest": pool}
    done = run_script(overrides, check=False)
    assert done.returncode != 0
    assert f"ManifestError: {pool}, line 3: duplicate ID 'a'" in done.stdout + done.stderr


def test_torchrun_two_processes_on_cpu(script_runs, tiny_corpus, tmp_path):
    """torchrun with 2 CPU processes (gloo): units in 2 shards, never merged, same subset as one process."""
    overrides = corpus_overrides(tiny_corpus, tmp_path / "out", tmp_path / "units")
    done = run_script(overrides, check=False,
                      launcher=("-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert ".shard-00-of-02.part-0000.npz" in (tmp_path / "out" / "log.txt").read_text()  # rank 0's piece
    assert len(list((tmp_path / "units").glob("units-pool-*.shard-01-of-02.part-*.npz"))) == 1
    assert not [p for p in (tmp_path / "units").glob("units-pool-*.npz") if ".shard-" not in p.name]  # not merged
    single = script_runs[1]["contrastive"]
    for name in ("subset.csv", "scores.csv"):
        assert (tmp_path / "out" / name).read_bytes() == (single / name).read_bytes()
    records = [json.loads((folder / "selection.json").read_text()) for folder in (tmp_path / "out", single)]
    assert records[0]["world_size"] == 2 and records[0]["sharded"]["processes"] == 2
    kept = [json.loads(p.read_text())["seconds"] for p in (tmp_path / "units").glob("*.seconds.json")]
    assert len(kept) == 5  # the codebook and each process's piece of the pool and of the target
    assert records[0]["feature_seconds"] == pytest.approx(sum(kept), abs=0.051)
    for key in ("unit_quality", "unit_kl_to_target", "pool_utterances_without_units", "diagnostics", "hours"):
        assert records[0][key] == records[1][key], key  # the report's figures too, from counts summed over shards


def test_ssl_teacher_layer_features(tiny_corpus, tiny_hubert_dir, tmp_path):
    """The contrastive_ssl selection file on the tiny HuBERT (20 pool utterances): units of a teacher layer."""
    pool = tmp_path / "pool.csv"
    pool.write_text("".join((tiny_corpus["save_folder"] / "pool.csv").read_text().splitlines(True)[:21]))
    overrides = {**corpus_overrides(tiny_corpus, tmp_path / "out", tmp_path / "units", selection="contrastive_ssl"),
                 "pool_manifest": str(pool), "selection_folder": str(SELECTION_FOLDER)}
    overrides["units_overrides"] = {**TINY_UNITS, "layer": 1}
    overrides["teacher_source"] = str(tiny_hubert_dir)
    overrides["build_teacher"] = None
    hparams = load_hparams(HPARAMS, overrides)
    _, result = select_subset(hparams, hparams["output_folder"])
    record = json.loads((tmp_path / "out" / "selection.json").read_text())
    features = record["unit_settings"]["features"]
    assert features["kind"] == "ssl" and features["layer"] == 1 and len(features["files_sha256"]) == 64
    assert result.ids and record["unit_quality"]["pool"]["clusters_used"] > 8 and record["pool_utterances"] == 20


def test_a_replaced_audio_file_is_not_served_from_the_cache(tiny_corpus, tmp_path):
    """Units are keyed by each audio file's size and modification time: a repaired file gets its units."""
    import shutil

    rows = (tiny_corpus["save_folder"] / "pool.csv").read_text().splitlines(True)
    header, first = rows[0], rows[1]
    fixed_source = first.split(",")[2].replace("$data_root", str(tiny_corpus["data_folder"]))
    broken = tmp_path / "repaired.flac"
    broken.write_bytes(b"not audio" * 100)
    pool = tmp_path / "pool.csv"
    pool.write_text(header + "".join(rows[2:31]) + first.replace(first.split(",")[2], str(broken), 1))
    repaired_id = first.split(",")[0]

    def without_units():
        run_in_process(tiny_corpus, tmp_path / "out", tmp_path / "units", pool_manifest=pool,
                       selector=RandomSelector(), budget_hours=1000.0)
        return json.loads((tmp_path / "out" / "selection.json").read_text())["pool_utterances_without_units"]

    assert without_units() == 1
    shutil.copyfile(fixed_source, broken)  # the same path, now good audio
    assert without_units() == 0
    assert repaired_id in load_selection_result(tmp_path / "out").ids


def test_a_rerun_removes_what_a_killed_run_left(tiny_corpus, tmp_path):
    run_in_process(tiny_corpus, tmp_path / "out", tmp_path / "units")
    left = [tmp_path / "out" / ".subset.csv.x1y2.partial.csv", tmp_path / "units" / ".units-pool-1.npz.z3.partial.npz"]
    for path in left:
        path.write_bytes(b"half")
    run_in_process(tiny_corpus, tmp_path / "out", tmp_path / "units")
    assert not any(path.exists() for path in left)
    assert (tmp_path / "out" / "selection.json").exists()


def test_durations_that_disagree_with_the_audio_stop_the_run(tiny_corpus, tmp_path):
    rows = (tiny_corpus["save_folder"] / "pool.csv").read_text().splitlines(True)
    wrong = [row.split(",")[0] for row in rows[1:4]]
    zeroed = [",".join([row.split(",")[0], "0.0", *row.split(",")[2:]]) for row in rows[1:4]]
    pool = tmp_path / "pool.csv"
    pool.write_text(rows[0] + "".join(zeroed) + "".join(rows[4:]))
    message = rf"pool.csv: 3 durations disagree with the audio .*{wrong[0]}: manifest 0.00 s"
    with pytest.raises(ManifestError, match=message):
        run_in_process(tiny_corpus, tmp_path / "out", tmp_path / "units", pool_manifest=pool)


class SlowMFCC(MFCCExtractor):
    """MFCC that sleeps ``DELAY`` seconds per batch of waveforms, counting its batches."""

    DELAY = 0.2

    def __init__(self):
        super().__init__()
        self.batches = []

    def __call__(self, *args, **kwargs):
        self.batches.append(None)
        time.sleep(self.DELAY)
        return super().__call__(*args, **kwargs)


def test_feature_seconds_are_recorded_and_kept_with_the_units(tiny_corpus, tmp_path):
    """``feature_seconds``: the codebook's and units' pass, timed when computed and reported again from the cache."""
    units = tmp_path / "units"
    extractor = SlowMFCC()
    started = time.perf_counter()
    run_in_process(tiny_corpus, tmp_path / "first", units, extractor=extractor)
    wall = time.perf_counter() - started
    first = json.loads((tmp_path / "first" / "selection.json").read_text())["feature_seconds"]
    assert len(extractor.batches) * SlowMFCC.DELAY - 0.05 <= first <= wall  # the sleeps are inside it
    kept = {p.name.split("-")[1]: json.loads(p.read_text())["seconds"] for p in units.glob("*.seconds.json")}
    assert set(kept) == {"k16", "pool", "target"}  # beside the codebook, the pool's units and the target's
    assert first == pytest.approx(sum(kept.values()), abs=0.051)

    cached = SlowMFCC()
    run_in_process(tiny_corpus, tmp_path / "second", units, selector=RandomSelector(), extractor=cached)
    assert not cached.batches  # nothing extracted again, the same pass reported
    assert json.loads((tmp_path / "second" / "selection.json").read_text())["feature_seconds"] == first

    next(units.glob("units-pool-*.seconds.json")).unlink()  # units computed before the seconds were kept
    run_in_process(tiny_corpus, tmp_path / "third", units, selector=RandomSelector(seed=1))
    assert json.loads((tmp_path / "third" / "selection.json").read_text())["feature_seconds"] is None


def test_feature_seconds_of_merged_shards_add_up(tiny_corpus, tmp_path):
    """Two ranks (threads): the merged units keep the sum of their pieces' seconds."""
    extractor = SlowMFCC()
    run_in_threads(2, lambda r, shared: run_in_process(tiny_corpus, tmp_path / "out", tmp_path / "units",
                                                       extractor=extractor, rank=r, world_size=2,
                                                       barrier=shared["barrier"].wait))
    recorded = json.loads((tmp_path / "out" / "selection.json").read_text())["feature_seconds"]
    assert recorded >= len(extractor.batches) * SlowMFCC.DELAY - 0.05
    assert not list((tmp_path / "units").glob("*.shard-*"))  # the pieces' seconds went with the pieces
