"""The teacher a recipe names, on the device the run resolves, is what every stage uses."""

import json

import pytest
import speechbrain as sb
import torch
from hyperpyyaml import load_hyperpyyaml

import tasks.experiment
from common.manifest import load_dataset
from conftest import SYNTH_RECIPE
from selection.stages import load_selection as load_selection_result
from tasks.experiment import load_probe_encoder, with_device
from tasks.subset import load_selection, select_subset
from test_distillation import tiny_overrides

SELECTION_FOLDER = SYNTH_RECIPE.parent / "selection"
SELECT_HPARAMS = SYNTH_RECIPE / "selection" / "hparams" / "select.yaml"
TEACHER_SELECTIONS = ["contrastive_ssl", "kcenter", "difficulty"]
TINY_UNITS = {"n_clusters": 8, "fit_hours": 0.01}
TEACHER_UNITS = {**TINY_UNITS, "layer": 1}
STAND_IN = "cpu:0"  # what infer_device is made to return: an accelerator's name, placed on the CPU


def select_with(teacher, selection, corpus, tmp_path):
    """The subset IDs ``selection`` picks from the first 30 pool utterances with ``teacher``."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    pool = tmp_path / "pool.csv"
    pool.write_text("".join((corpus["save_folder"] / "pool.csv").read_text().splitlines(True)[:31]))
    overrides = {"data_folder": str(corpus["data_folder"]), "manifest_folder": str(corpus["save_folder"]),
                 "corpus_scale": corpus["scale"], "output_folder": str(tmp_path / "out"),
                 "units_folder": str(tmp_path / "units"), "selection": selection,
                 "units_overrides": TINY_UNITS if selection == "difficulty" else TEACHER_UNITS,
                 "pool_manifest": str(pool), "selection_folder": str(SELECTION_FOLDER), "budget_fraction": 0.3,
                 "teacher_source": str(teacher), "build_teacher": None,
                 "selector_overrides": {"difficulty": {"train_steps": 2, "sample_hours": 0.005, "clusters": 3}}}
    with open(SELECT_HPARAMS, encoding="utf-8") as handle:
        hparams = load_hyperpyyaml(handle, overrides)
    select_subset(hparams, hparams["output_folder"])
    record = json.loads((tmp_path / "out" / "selection.json").read_text())
    return load_selection_result(tmp_path / "out").ids, record


@pytest.mark.parametrize("selection", TEACHER_SELECTIONS)
def test_another_teacher_selects_another_subset(selection, tiny_corpus, tiny_hubert_dir, tiny_wavlm_dir, tmp_path):
    hubert, hubert_record = select_with(tiny_hubert_dir, selection, tiny_corpus, tmp_path / "hubert")
    wavlm, _ = select_with(tiny_wavlm_dir, selection, tiny_corpus, tmp_path / "wavlm")
    assert hubert and wavlm and set(hubert) != set(wavlm)
    recorded = json.dumps(hubert_record)
    assert str(tiny_hubert_dir) in recorded and str(tiny_wavlm_dir) not in recorded


def test_selection_files_take_the_teacher_and_device_from_the_recipe_only(tiny_hubert_dir):
    kcenter = load_selection(SELECTION_FOLDER, "kcenter", TEACHER_UNITS, {}, seed=1, teacher_source=tiny_hubert_dir,
                             device=STAND_IN)
    assert kcenter["units"]["extractor"].source == str(tiny_hubert_dir)
    assert str(kcenter["units"]["extractor"].device) == STAND_IN
    difficulty = load_selection(SELECTION_FOLDER, "difficulty", {}, {}, seed=1, teacher_source=tiny_hubert_dir,
                                device=STAND_IN)
    assert difficulty["selector"].scorer.teacher_source == str(tiny_hubert_dir)
    assert str(difficulty["selector"].scorer.device) == STAND_IN
    with pytest.raises(ValueError, match="come from the recipe"):
        load_selection(SELECTION_FOLDER, "kcenter", {**TEACHER_UNITS, "teacher_source": "x/y"}, {}, seed=1,
                       teacher_source=tiny_hubert_dir)
    with pytest.raises(ValueError, match="must set \\['teacher_source'\\]"):
        load_selection(SELECTION_FOLDER, "difficulty", {}, {}, seed=1)
    assert load_selection(SELECTION_FOLDER, "random", {}, {}, seed=1)["selector"] is not None  # no teacher needed


def test_the_device_is_resolved_once_as_the_brain_would(monkeypatch):
    given = sb.parse_arguments(["x.yaml", "--device=cpu"])[1]
    assert with_device(given).device == "cpu"
    monkeypatch.setattr(tasks.experiment, "infer_device", lambda: "cuda:3")
    resolved = with_device(sb.parse_arguments(["x.yaml"])[1])
    assert resolved.device == "cuda:3" and "device" in resolved.overridden_args  # the Brain takes it as given


@pytest.fixture
def placements(monkeypatch):
    """Every device a module is moved to (``Module.to`` with a device), as ``(class name, device)``."""
    moves = []
    original = torch.nn.Module.to

    def recording_to(module, *args, **kwargs):
        target = kwargs.get("device", args[0] if args else None)
        if target is None or isinstance(target, (str, torch.device)):
            moves.append((type(module).__name__, None if target is None else str(target)))
        return original(module, *args, **kwargs)

    monkeypatch.setattr(torch.nn.Module, "to", recording_to)
    monkeypatch.setattr(tasks.experiment, "infer_device", lambda: STAND_IN)
    return moves


def test_no_stage_of_a_run_places_a_model_elsewhere(placements, tiny_corpus, tiny_hubert_dir, tmp_path):
    """With an accelerator present (infer_device mocked), teacher units, caches, training and held-out loss follow it."""
    from tasks.distillation import main

    hparams_file = SYNTH_RECIPE / "distillation" / "hparams" / "distill_kmeans.yaml"
    argv = [str(hparams_file), *tiny_overrides(tiny_corpus, tiny_hubert_dir, tmp_path / "units", tmp_path / "run",
                                               hparams_file, "kcenter"),
            "--student_class=!name:lobes.student_for_teacher.distil_student", "--debug", "--debug_batches=1", "--debug_epochs=1"]
    main(argv)
    moved = {name for name, _ in placements}
    assert {"FrozenTeacher", "DistilHuBERT"} <= moved, moved
    assert {device for _, device in placements} == {STAND_IN}, placements
    assert json.loads((tmp_path / "run" / "distillation.json").read_text())["heldout_loss"]


def test_a_probe_encoder_runs_on_the_run_device(placements, tiny_hubert_dir):
    load_probe_encoder({"prepare_encoder": None, "encoder_source": str(tiny_hubert_dir)}, STAND_IN)
    assert placements and {device for _, device in placements} == {STAND_IN}


def test_the_teacher_runs_in_the_precision_asked_for_on_a_gpu_only(tiny_hubert_dir):
    from lobes.encoder import FrozenTeacher

    wavs, lens = torch.randn(2, 16000, generator=torch.Generator().manual_seed(0)), torch.tensor([1.0, 0.6])
    full, _ = FrozenTeacher(tiny_hubert_dir)(wavs, lens)
    half = FrozenTeacher(tiny_hubert_dir, precision="fp16")
    assert half.precision == "fp16" and torch.equal(half(wavs, lens)[0], full)  # on a CPU: fp32, unchanged
    with pytest.raises(ValueError, match="precision 'fp8'"):
        FrozenTeacher(tiny_hubert_dir, precision="fp8")


def test_a_teacher_retrained_in_place_gets_new_targets(tiny_corpus, tiny_hubert_dir, tmp_path):
    """The teacher-target cache is keyed by the teacher's weights, not by its folder's name."""
    import shutil

    from lobes.encoder import FrozenTeacher
    from tasks.teacher_targets import build_caches

    folder = tmp_path / "teacher_hf"
    shutil.copytree(tiny_hubert_dir, folder)
    dataset = load_dataset(tiny_corpus["save_folder"] / "asr_dev.csv", tiny_corpus["data_folder"])
    hparams = {"teacher_source": str(folder), "cache_folder": str(tmp_path / "cache"), "cache_batch_size": 4}
    first = build_caches(hparams, "valid", dataset, FrozenTeacher(folder), [1, 2])["targets"]
    teacher = FrozenTeacher(folder)
    with torch.no_grad():
        for parameter in teacher.model.parameters():
            parameter.mul_(1.5)
    teacher.model.save_pretrained(folder)  # retrained in place: same folder, other weights
    second = build_caches(hparams, "valid", dataset, FrozenTeacher(folder), [1, 2])["targets"]
    assert first.folder != second.folder
    utt = dataset.data_ids[0]
    assert not torch.equal(first.get(utt), second.get(utt))
