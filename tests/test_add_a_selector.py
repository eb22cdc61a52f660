"""Adding a selector takes one class and one selection file: this test does it, as the selection README says."""

import json
import shutil

import numpy as np

from common.manifest import read_manifest
from conftest import ROOT, SYNTH_RECIPE
from selection.selectors.base import Selector
from tasks import distillation, select_subset


class ShortestFirstSelector(Selector):
    """The shortest utterances first (a selector that exists only in this test)."""

    def rank(self, ids, durations, units, rows, target_units, budget_seconds):
        return np.argsort(durations, kind="stable"), None

    def settings(self):
        return {}


SELECTION_FILE = """seed: !PLACEHOLDER
units: mfcc
selector: !new:test_add_a_selector.ShortestFirstSelector
"""


def test_a_new_selection_file_runs_in_selection_and_distillation(tiny_corpus, tiny_whisper_dir, tmp_path):
    folder = tmp_path / "selection"  # the shipped files' folder, plus the new file
    shutil.copytree(ROOT / "recipes" / "selection", folder)
    (folder / "shortest.yaml").write_text(SELECTION_FILE)
    corpus = [f"--data_folder={tiny_corpus['data_folder']}", f"--manifest_folder={tiny_corpus['save_folder']}",
              f"--corpus_scale={tiny_corpus['scale']}", f"--selection_folder={folder}", "--selection=shortest",
              f"--units_folder={tmp_path / 'units'}", "--units_overrides={n_clusters: 16, fit_hours: 0.02}"]

    select_subset.main([str(SYNTH_RECIPE / "selection" / "hparams" / "select.yaml"), *corpus,
                        f"--output_folder={tmp_path / 'select'}"])
    pool = read_manifest(tiny_corpus["save_folder"] / "pool.csv")
    subset = read_manifest(tmp_path / "select" / "subset.csv")
    shortest = sorted(pool.ids, key=pool.duration)
    assert subset.ids == shortest[:len(subset.ids)]  # a prefix of the pool by duration...
    budget = 0.1 * pool.total_hours * 3600
    assert subset.durations.sum() <= budget < subset.durations.sum() + pool.duration(shortest[len(subset.ids)])
    assert json.loads((tmp_path / "select" / "selection.json").read_text())["selector"] == "ShortestFirstSelector"

    distillation.main([str(SYNTH_RECIPE / "distillation" / "hparams" / "distill_kmeans.yaml"), *corpus,
                       f"--teacher_source={tiny_whisper_dir}", f"--output_folder={tmp_path / 'distill'}",
                       "--target_layers=[1,2]", "--student_layers=1", "--num_workers=0", "--valid_utterances=4",
                       "--batch_size=4", "--crop_seconds=1.0", "--debug", "--debug_batches=1", "--debug_epochs=1"])
    distilled = read_manifest(json.loads((tmp_path / "distill" / "distillation.json").read_text())["subset"])
    assert distilled.ids == subset.ids  # the same subset, from the same file and units
