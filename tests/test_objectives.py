"""Distillation objectives: each loss against a hand-computed case, input masking, units as targets, and training."""

import importlib
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import SYNTH_RECIPE
from lobes.encoder import FrozenTeacher
from lobes.losses import (
    hint_mse_loss,
    l1_cosine_loss,
    masked_l1_cosine_loss,
    needs,
    temporal_relation_loss,
    unit_prediction_loss,
)
from lobes.students import DistilHuBERT
from lobes.target_cache import TargetCache
from lobes.unit_prediction import UnitPredictionHead, frame_units
from lobes.whisper_student import DistilWhisper
from tasks.objectives import draw_masked_frames
from test_distillation import tiny_overrides

FLAGSHIP = SYNTH_RECIPE / "distillation" / "hparams" / "distill_kmeans.yaml"
OBJECTIVES = ["l1_cosine", "masked", "temporal_relation", "unit_prediction"]


def per_frame_l1_cosine(prediction, target):
    """One frame's DistilHuBERT loss written out (the oracle)."""
    l1 = sum(abs(p - t) for p, t in zip(prediction, target)) / len(prediction)
    dot = sum(p * t for p, t in zip(prediction, target))
    cos = dot / (math.sqrt(sum(p * p for p in prediction)) * math.sqrt(sum(t * t for t in target)))
    return l1 - math.log(1 / (1 + math.exp(-cos)))


def test_masked_loss_weighs_the_masked_and_unmasked_frames_as_two_terms():
    predictions = torch.tensor([[[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [7.0, 7.0]]]])  # one layer, one item
    targets = torch.tensor([[[[1.0, 1.0], [0.0, 2.0], [2.0, 1.0], [1.0, 3.0]]]])
    real = torch.tensor([[True, True, True, False]])
    masked = torch.tensor([[True, False, False, True]])  # the padded 4th frame counts nowhere
    frames = [per_frame_l1_cosine(p, t) for p, t in zip(predictions[0, 0].tolist(), targets[0, 0].tolist())]
    expected = 2.0 * frames[0] + 0.5 * (frames[1] + frames[2]) / 2
    loss, per_layer = masked_l1_cosine_loss(predictions, targets, real, masked, masked_weight=2.0,
                                            unmasked_weight=0.5)
    assert loss.item() == pytest.approx(expected, rel=1e-6) and per_layer.shape == (1,)
    assert needs(masked_l1_cosine_loss) == {"masks_input": True, "targets": "hidden_states"}


def test_temporal_relation_adds_the_gram_matrices_mean_squared_difference():
    predictions = torch.tensor([[[[1.0, 0.0], [0.0, 2.0], [9.0, 9.0]]]])
    targets = torch.tensor([[[[1.0, 1.0], [0.0, 1.0], [0.0, 0.0]]]])
    real = torch.tensor([[True, True, False]])
    p, t = predictions[0, 0, :2].tolist(), targets[0, 0, :2].tolist()
    gram = lambda h: [[sum(a * b for a, b in zip(h[i], h[j])) / 2 for j in range(2)] for i in range(2)]  # noqa: E731
    gp, gt = gram(p), gram(t)
    relation = sum((gp[i][j] - gt[i][j]) ** 2 for i in range(2) for j in range(2)) / 4
    base = (per_frame_l1_cosine(p[0], t[0]) + per_frame_l1_cosine(p[1], t[1])) / 2
    loss, _ = temporal_relation_loss(predictions, targets, real, relation_weight=3.0)
    assert loss.item() == pytest.approx(base + 3.0 * relation, rel=1e-6)
    same, _ = temporal_relation_loss(targets, targets, real, relation_weight=3.0)
    l1_only, _ = l1_cosine_loss(targets, targets, real)
    assert same.item() == pytest.approx(l1_only.item())  # equal sequences: no relation term


def test_unit_prediction_is_the_cross_entropy_of_the_masked_real_frames():
    logits = torch.tensor([[[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 3.0], [5.0, 0.0, 0.0]]])
    units = torch.tensor([[0, 2, 2, 1]])
    real = torch.tensor([[True, True, True, False]])
    masked = torch.tensor([[True, True, False, True]])

    def cross_entropy(row, unit):
        return -math.log(math.exp(row[unit]) / sum(math.exp(v) for v in row))

    rows = logits[0].tolist()
    masked_ce = (cross_entropy(rows[0], 0) + cross_entropy(rows[1], 2)) / 2
    loss, _ = unit_prediction_loss(logits, units, real, masked)
    assert loss.item() == pytest.approx(masked_ce, rel=1e-6)
    both, _ = unit_prediction_loss(logits, units, real, masked, unmasked_weight=0.5)
    assert both.item() == pytest.approx(masked_ce + 0.5 * cross_entropy(rows[2], 2), rel=1e-6)
    assert needs(unit_prediction_loss) == {"masks_input": True, "targets": "units"}


def test_hints_default_to_fithuberts_weights():
    predictions, targets = torch.zeros(3, 1, 2, 4), torch.ones(3, 1, 2, 4)
    targets[2] *= 2.0  # MSE 1, 1 and 4
    loss, _ = hint_mse_loss(predictions, targets, torch.ones(1, 2, dtype=torch.bool))
    assert loss.item() == pytest.approx(0.1 * 1 + 0.1 * 1 + 1.0 * 4)


def test_spans_are_drawn_on_real_frames_only_and_reproducibly():
    lengths = torch.tensor([200, 120, 5])
    np.random.seed(3)
    first = draw_masked_frames(lengths, 200, 0.8, 10)
    np.random.seed(3)
    assert torch.equal(first, draw_masked_frames(lengths, 200, 0.8, 10))
    assert not first[1, 120:].any() and not first[2].any()  # past the real frames; shorter than a span
    share = first[0].float().mean().item()
    assert 0.3 < share < 0.9  # HuBERT's setting masks about half of the frames


def test_units_are_the_nearest_centroid_of_each_real_frame():
    class Codebook:
        n_clusters = 3
        centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])

        def predict(self, frames):
            return ((frames[:, None] - self.centres[None]) ** 2).sum(-1).argmin(1)

    hidden = torch.tensor([[[9.0, 1.0], [1.0, 8.0], [0.5, 0.5]], [[0.0, 11.0], [50.0, 50.0], [50.0, 50.0]]])
    assert frame_units(hidden, torch.tensor([3, 1]), Codebook()).tolist() == [[1, 2, 0], [2, -1, -1]]


def test_the_unit_head_gives_cosine_logits_over_the_temperature():
    head = UnitPredictionHead(4, n_units=3, projection_dim=2, temperature=0.5)
    frames = torch.randn(1, 2, 4)
    projected = F.normalize(head.projection(frames), dim=-1)
    expected = projected @ F.normalize(head.unit_embeddings, dim=-1).T / 0.5
    assert torch.allclose(head(frames), expected) and head(frames).abs().max() <= 2.0 + 1e-6


@pytest.mark.parametrize("family", ["whisper", "hubert"])
def test_masked_frames_get_the_learnt_embedding(family, tiny_whisper_dir, tiny_hubert_dir):
    teacher = FrozenTeacher(tiny_whisper_dir if family == "whisper" else tiny_hubert_dir)
    student = (DistilWhisper if family == "whisper" else DistilHuBERT)(teacher, n_layers=1, target_layers=[1, 2])
    wavs, lens = torch.randn(2, 16000), torch.tensor([1.0, 0.7])
    with pytest.raises(ValueError, match="enable_input_masking"):
        student(wavs, lens, masked_frames=torch.zeros(2, 50, dtype=torch.bool))
    student.enable_input_masking()
    student.eval()
    real, n_frames = student.front_end_frames(wavs, lens)
    plain, lengths = student(wavs, lens)
    assert torch.equal(real, lengths) and n_frames >= int(real.max())
    none_masked, _ = student(wavs, lens, masked_frames=torch.zeros(2, n_frames, dtype=torch.bool))
    assert torch.allclose(plain, none_masked)
    masked = torch.zeros(2, n_frames, dtype=torch.bool)
    masked[:, 3:8] = True
    out, _ = student(wavs, lens, masked_frames=masked)
    assert not torch.allclose(out, plain)
    out.sum().backward()
    assert student.mask_embedding.grad is not None and student.mask_embedding.grad.abs().sum() > 0


def run_objective(objective, corpus, teacher, tmp_path, *extra, output=None, selection="random", epochs=3):
    """The flagship on the tiny corpus with ``objective``: ``epochs`` epochs of 6 steps on fixed segments.

    Unit targets: the tiny selection units' settings (tests/test_distillation.py), of teacher layer 1.
    """
    output = output or tmp_path / objective
    argv = [str(FLAGSHIP), *tiny_overrides(corpus, teacher, tmp_path / "units", output, FLAGSHIP, selection),
            f"--objective={objective}", "--segment_seconds=1.0", "--steps_per_epoch=6", f"--number_of_epochs={epochs}",
            "--lr=0.003", "--heldout_splits=[asr_test_target]", "--unit_overrides={n_clusters: 20, fit_hours: 0.02, layer: 1}",
            *extra]
    importlib.import_module("tasks.distillation").main(argv)
    return json.loads((output / "distillation.json").read_text())


def epoch_losses(output_folder):
    """Train losses per epoch from the run's train log."""
    text = (Path(output_folder) / "train_log.txt").read_text()
    return [float(v) for v in re.findall(r"train loss: ([0-9.e+-]+)", text)]


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_a_student_learns_with_every_objective(objective, tiny_corpus, tiny_whisper_dir, tmp_path):
    summary = run_objective(objective, tiny_corpus, tiny_whisper_dir, tmp_path)
    losses = epoch_losses(tmp_path / objective)
    assert len(losses) == 3 and losses[-1] < losses[0], losses
    assert summary["objective"]["name"] == objective
    assert summary["target_statistics"]["source"] == "pool"
    assert summary["heldout_loss"]["asr_test_target"]  # the L1 + cosine held-out loss, whatever the objective
    caches = [TargetCache(folder) for folder in (tmp_path / objective / "save" / "teacher_targets").glob("train-*")
              if (folder / "index.json").exists() and "cnn" not in folder.name]
    assert len(caches) == 1
    if objective == "unit_prediction":  # 2 bytes a frame: one float16 unit per frame
        assert (caches[0].dim, caches[0].layers) == (1, [0])
        assert summary["objective"]["unit_layer"] == 1  # the units file's layer (unit_overrides: layer 1)
    else:
        assert caches[0].dim == 32 and caches[0].layers == [1, 2]


def test_unit_prediction_reuses_the_codebook_selection_fitted(tiny_corpus, tiny_whisper_dir, tmp_path):
    units = tmp_path / "units"
    run_objective("unit_prediction", tiny_corpus, tiny_whisper_dir, tmp_path, selection="kcenter")
    codebooks = sorted(units.glob("codebook-*.joblib"))
    summary = json.loads((tmp_path / "unit_prediction" / "distillation.json").read_text())
    assert len(codebooks) == 1 and summary["objective"]["codebook"] == str(codebooks[0])


def test_the_pool_statistics_are_the_same_for_every_subset(tiny_corpus, tiny_whisper_dir, tmp_path):
    first = run_objective("l1_cosine", tiny_corpus, tiny_whisper_dir, tmp_path, output=tmp_path / "random", epochs=1)
    second = run_objective("l1_cosine", tiny_corpus, tiny_whisper_dir, tmp_path, output=tmp_path / "longest",
                           selection="longest", epochs=1)
    assert first["subset"] != second["subset"]
    assert first["target_statistics"] == second["target_statistics"]  # one file, computed once
    stats = torch.load(first["target_statistics"]["file"])
    assert stats["mean"].shape == (2, 32) and (stats["std"] > 0).all()


def test_an_unknown_objective_stops_before_anything_is_written(tiny_corpus, tiny_whisper_dir, tmp_path):
    with pytest.raises(ValueError, match="not one of objectives"):
        run_objective("contrastive_kd", tiny_corpus, tiny_whisper_dir, tmp_path)
    assert not (tmp_path / "contrastive_kd" / "selection").exists()


def test_a_learning_curve_leaves_training_unchanged(tiny_corpus, tiny_whisper_dir, tmp_path):
    plain = run_objective("l1_cosine", tiny_corpus, tiny_whisper_dir, tmp_path, output=tmp_path / "plain", epochs=2)
    curved = run_objective("l1_cosine", tiny_corpus, tiny_whisper_dir, tmp_path, output=tmp_path / "curve", epochs=2,
                           *["--heldout_curve_splits=[asr_test_target]"])
    assert epoch_losses(tmp_path / "plain") == epoch_losses(tmp_path / "curve")
    assert plain["heldout_loss"] == curved["heldout_loss"] and plain["heldout_curve"] is None
    points = json.loads(Path(curved["heldout_curve"]).read_text())["points"]
    assert [p["epoch"] for p in points] == [1, 2] and [p["optimizer_steps"] for p in points] == [6, 12]
    assert points[-1]["heldout_loss"]["asr_test_target"] == curved["heldout_loss"]["asr_test_target"]
    assert points[0]["heldout_loss"]["asr_test_target"]["all"] != points[1]["heldout_loss"]["asr_test_target"]["all"]
