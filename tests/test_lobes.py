"""Teacher wrapper, students, losses and the teacher-target cache."""

import pytest
import torch

from lobes.encoder import FrozenTeacher, frame_mask, model_input
from lobes.losses import hint_mse_loss, l1_cosine_loss
from lobes.students import DistilHuBERT, FitHuBERT
from lobes.target_cache import build_target_cache, build_target_caches


@pytest.fixture(params=["tiny_hubert_dir", "tiny_wavlm_dir"])
def teacher(request):
    return FrozenTeacher(request.getfixturevalue(request.param))


def test_teacher_is_frozen_and_deterministic(teacher):
    wavs, lens = torch.randn(2, 8000), torch.tensor([1.0, 0.7])
    teacher.train()  # what Brain does every epoch: must not switch dropout on
    first, frames = teacher(wavs, lens)
    second, _ = teacher(wavs, lens)
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    assert torch.equal(first, second)
    assert first.shape[:2] == (teacher.num_layers + 1, 2) and first.dtype == torch.float32
    assert frames.tolist() == [24, 17]


def test_padding_does_not_change_the_loss(teacher):
    torch.manual_seed(0)
    student = DistilHuBERT(teacher, n_layers=1, target_layers=[1, 2]).eval()
    short = torch.randn(1, 6000)
    padded = torch.cat([short, torch.zeros(1, 4000)], dim=1)
    batch = torch.cat([padded, torch.randn(1, 10000)])

    def loss_of(wavs, lens):
        predictions, frames = student(wavs, lens)
        hidden, _ = teacher(wavs, lens)
        targets = hidden[student.target_layers]
        # the first utterance only: mask out the second one
        mask = frame_mask(frames, predictions.shape[2]) & (torch.arange(len(wavs)) == 0)[:, None]
        return l1_cosine_loss(predictions, targets, mask)[0]

    alone = loss_of(short, torch.tensor([1.0]))
    in_batch = loss_of(batch, torch.tensor([0.6, 1.0]))
    assert torch.allclose(alone, in_batch, atol=1e-5)


def test_distilhubert_starts_from_the_teacher(teacher):
    student = DistilHuBERT(teacher, n_layers=1, target_layers=[1, 2])
    for name in ("feature_extractor.conv_layers.0.conv.weight", "encoder.layers.0.attention.q_proj.weight"):
        assert torch.equal(student.encoder.state_dict()[name], teacher.model.state_dict()[name])
    predictions, _ = student(torch.randn(2, 8000), torch.tensor([1.0, 1.0]))
    assert predictions.shape == (2, 2, 24, teacher.hidden_size)


def test_distilhubert_head_i_reads_slice_i_of_the_expanded_last_layer(teacher):
    torch.manual_seed(0)
    student = DistilHuBERT(teacher, n_layers=1, target_layers=[1, 2])
    hidden = torch.randn(2, 3, 5, student.encoder.config.hidden_size)
    expanded = student.expand(hidden[-1]).unflatten(-1, (2, hidden.shape[-1]))
    expected = torch.stack([student.heads[i](expanded[..., i, :]) for i in range(2)])
    assert torch.allclose(student.predict(hidden), expected, atol=1e-5)
    assert not torch.allclose(expected[0], expected[1], atol=1e-3)


def test_fithubert_is_thin_with_a_hint_per_layer(teacher):
    student = FitHuBERT(teacher, hidden_size=16, ffn_dim=16, n_heads=2, conv_channels=(16,) * 7)
    assert student.target_layers == [1, 2]
    predictions, _ = student(torch.randn(1, 8000), torch.tensor([1.0]))
    assert predictions.shape == (2, 1, 24, teacher.hidden_size)
    assert sum(p.numel() for p in student.encoder.parameters()) < sum(p.numel() for p in teacher.parameters())


def test_loss_decreases_over_a_few_steps(teacher):
    torch.manual_seed(0)
    student = DistilHuBERT(teacher, n_layers=1, target_layers=[1, 2])
    optimizer = torch.optim.AdamW(student.parameters(), lr=2e-3)
    wavs, lens = torch.randn(4, 8000), torch.ones(4)
    hidden, frames = teacher(wavs, lens)
    losses = []
    for _ in range(8):
        predictions, _ = student(wavs, lens)
        loss, per_layer = l1_cosine_loss(predictions, hidden[student.target_layers], frame_mask(frames, 24))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert per_layer.shape == (2,)
    assert losses[-1] < 0.8 * losses[0], losses


def test_frozen_cnn_stays_as_the_teacher_while_the_rest_learns(teacher):
    torch.manual_seed(0)
    student = DistilHuBERT(teacher, n_layers=1, target_layers=[1, 2], freeze_cnn=True).train()
    cnn = {n: p.detach().clone() for n, p in student.encoder.feature_extractor.named_parameters()}
    first_layer = student.encoder.encoder.layers[0].attention.q_proj.weight.detach().clone()
    optimizer = torch.optim.AdamW(student.parameters(), lr=2e-3)
    wavs, lens = torch.randn(2, 8000), torch.ones(2)
    hidden, frames = teacher(wavs, lens)
    for _ in range(2):
        predictions, _ = student(wavs, lens)
        loss, _ = l1_cosine_loss(predictions, hidden[student.target_layers], frame_mask(frames, 24))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    for name, param in student.encoder.feature_extractor.named_parameters():
        assert param.grad is None and torch.equal(param, cnn[name]), name
    assert not torch.equal(student.encoder.encoder.layers[0].attention.q_proj.weight, first_layer)
    with pytest.raises(ValueError, match="init_from_teacher"):
        DistilHuBERT(teacher, n_layers=1, target_layers=[1], init_from_teacher=False, freeze_cnn=True)


def test_cnn_grad_mult_scales_only_the_cnn_gradients(teacher):
    """s3prl's feature_grad_mult: the CNN's gradients are exactly 0.1 of the unscaled ones, the rest unchanged."""
    wavs, lens = torch.randn(2, 8000), torch.tensor([1.0, 0.8])
    hidden, frames = teacher(wavs, lens)
    grads = {}
    for scale in (1.0, 0.1):
        student = DistilHuBERT(teacher, n_layers=1, target_layers=[1, 2], cnn_grad_mult=scale).eval()
        torch.manual_seed(0)  # the same heads in both students
        student.expand.apply(lambda m: m.reset_parameters() if isinstance(m, torch.nn.Linear) else None)
        student.heads.apply(lambda m: m.reset_parameters() if isinstance(m, torch.nn.Linear) else None)
        predictions, _ = student(wavs, lens)
        loss, _ = l1_cosine_loss(predictions, hidden[student.target_layers], frame_mask(frames, predictions.shape[2]))
        loss.backward()
        grads[scale] = {n: p.grad.clone() for n, p in student.named_parameters() if p.grad is not None}
    cnn = [n for n in grads[1.0] if n.startswith("encoder.feature_extractor.")]
    assert cnn and grads[0.1].keys() == grads[1.0].keys()
    for name, unscaled in grads[1.0].items():
        expected = unscaled * 0.1 if name in cnn else unscaled
        torch.testing.assert_close(grads[0.1][name], expected, rtol=1e-4, atol=1e-7, msg=name)
    with pytest.raises(ValueError, match="freeze_cnn"):
        DistilHuBERT(teacher, n_layers=1, target_layers=[1], freeze_cnn=True, cnn_grad_mult=0.1)


@pytest.mark.parametrize("student_class", [DistilHuBERT, FitHuBERT])
def test_a_trained_cnn_learns_without_a_gradient_for_the_waveform(teacher, student_class):
    kwargs = {"n_layers": 1, "target_layers": [1, 2]} if student_class is DistilHuBERT else {
        "hidden_size": 16, "ffn_dim": 16, "n_heads": 2, "conv_channels": teacher.config.conv_dim}
    student = student_class(teacher, **kwargs).train()
    first_conv = student.encoder.feature_extractor.conv_layers[0]
    inputs = []
    first_conv.register_forward_pre_hook(lambda module, args: inputs.append(args[0]))
    predictions, _ = student(torch.randn(2, 8000), torch.ones(2))
    predictions.square().mean().backward()
    assert len(inputs) == 1 and not inputs[0].requires_grad  # HF would mark it (gradient checkpointing)
    assert first_conv.conv.weight.grad is not None and first_conv.conv.weight.grad.abs().sum() > 0


def test_cached_teacher_cnn_features_replace_the_frozen_cnn(teacher):
    torch.manual_seed(0)
    student = DistilHuBERT(teacher, n_layers=1, target_layers=[1, 2], freeze_cnn=True).eval()
    wavs = torch.randn(2, 8000)
    wavs[1, 5600:] = 0.0
    lens = torch.tensor([1.0, 0.7])
    _, features, frames = teacher.forward_with_cnn(wavs, lens)
    assert features.shape == (2, 24, teacher.config.conv_dim[-1]) and frames.tolist() == [24, 17]
    live, live_frames = student(wavs, lens)
    cached, cached_frames = student(wavs, lens, cnn_features=features)
    assert torch.allclose(live, cached, atol=1e-5) and torch.equal(live_frames, cached_frames)
    # the CNN is itself again afterwards: other features give other predictions
    assert not torch.allclose(student(wavs, lens, cnn_features=torch.randn_like(features))[0], live, atol=1e-3)
    assert torch.allclose(student(wavs, lens)[0], live, atol=1e-6)
    assert student.cnn_matches(teacher)
    with torch.no_grad():
        student.encoder.feature_extractor.conv_layers[0].conv.weight.add_(1.0)
    assert not student.cnn_matches(teacher)
    with pytest.raises(ValueError, match="frozen"):
        DistilHuBERT(teacher, n_layers=1, target_layers=[1])(wavs, lens, cnn_features=features)


def test_cached_cnn_features_of_a_crop_are_the_cnn_on_the_crop(tiny_hubert_dir, tmp_path):
    from lobes.crops import frame_count

    teacher = FrozenTeacher(tiny_hubert_dir)  # layer-norm CNN, no input normalisation: crops are exact
    config = teacher.config
    hop = 320
    wav = torch.randn(1, 16000)
    def cnn_only(wavs, wav_lens):
        _, features, frames = teacher.forward_with_cnn(wavs, wav_lens)
        return {"cnn": features[None]}, frames

    cache = build_target_caches(cnn_only, [(["utt"], wav, torch.ones(1))], {"cnn": ([0], tmp_path / "cnn")})["cnn"]
    start, n_samples = 7 * hop, 6400
    n_frames = frame_count(n_samples, config.conv_kernel, config.conv_stride)
    live = teacher.forward_with_cnn(wav[:, start:start + n_samples], torch.ones(1))[1][0]
    assert live.shape[0] == n_frames
    assert torch.allclose(cache.get("utt", start // hop, n_frames)[:, 0], live, atol=2e-2, rtol=1e-2)
    assert not torch.allclose(cache.get("utt", start // hop + 1, n_frames)[:, 0], live, atol=2e-2, rtol=1e-2)


def test_hint_loss_weights_layers():
    predictions, targets = torch.zeros(2, 1, 3, 4), torch.ones(2, 1, 3, 4)
    targets[1] *= 2
    mask = torch.tensor([[True, True, False]])
    total, per_layer = hint_mse_loss(predictions, targets, mask, weights=[0.1, 1.0])
    assert per_layer.tolist() == [1.0, 4.0]
    assert total.item() == pytest.approx(0.1 * 1.0 + 1.0 * 4.0)


def test_exported_student_loads_offline(teacher, tmp_path):
    from speechbrain.integrations.huggingface.wav2vec2 import Wav2Vec2
    from transformers import AutoModel

    student = DistilHuBERT(teacher, n_layers=1, target_layers=[2])
    folder = student.export(tmp_path / "student")
    model = AutoModel.from_pretrained(folder)
    assert type(model) is type(teacher.model) and model.config.num_hidden_layers == 1
    wrapped = Wav2Vec2(str(folder), save_path=str(tmp_path / "sb"), freeze=True, output_all_hiddens=True)
    hidden = wrapped(torch.randn(1, 8000), torch.tensor([1.0]))
    assert hidden.shape == (2, 1, 24, teacher.hidden_size)


def test_target_cache_round_trip(teacher, tmp_path):
    wavs, lens = torch.randn(3, 8000), torch.tensor([1.0, 0.8, 0.5])
    batches = [(["a", "b"], wavs[:2], lens[:2]), (["c"], wavs[2:, :4000], torch.tensor([1.0]))]
    cache = build_target_cache(teacher, batches, [0, 2], tmp_path / "cache")
    hidden, frames = teacher(wavs[:2], lens[:2])
    assert len(cache) == 3 and cache.frames("b") == int(frames[1])
    got = cache.get("b", start=3, n_frames=5)
    expected = hidden[[0, 2], 1, 3:8].permute(1, 0, 2)
    assert got.shape == (5, 2, teacher.hidden_size)
    assert torch.allclose(got, expected, atol=2e-2 * expected.abs().max())  # fp16 storage
    again = build_target_cache(teacher, [], [0, 2], tmp_path / "cache")  # complete: reused, not rebuilt
    assert torch.equal(again.get("a"), cache.get("a"))


def test_teacher_targets_and_cnn_features_are_cached_from_one_pass(teacher, tmp_path):
    wavs, lens = torch.randn(2, 8000), torch.tensor([1.0, 0.6])
    hidden, cnn, frames = teacher.forward_with_cnn(wavs, lens)
    alone_hidden, alone_frames = teacher(wavs, lens)
    with torch.no_grad():  # the CNN alone, on the input as the teacher prepares it
        alone_cnn = teacher.model.feature_extractor(model_input(wavs, lens, teacher.normalize)[0]).transpose(1, 2)
    assert torch.equal(hidden, alone_hidden) and torch.equal(frames, alone_frames)
    assert torch.allclose(cnn, alone_cnn, atol=1e-6)
    calls = []

    def outputs(wavs, wav_lens):
        calls.append(len(wavs))
        hidden, cnn, frames = teacher.forward_with_cnn(wavs, wav_lens)
        return {"targets": hidden, "cnn": cnn[None]}, frames

    folders = {"targets": ([1, 2], tmp_path / "targets"), "cnn": ([0], tmp_path / "cnn")}
    caches = build_target_caches(outputs, [(["a", "b"], wavs, lens)], folders)
    assert calls == [2]  # one pass for both caches
    assert caches["targets"].layers == [1, 2] and caches["cnn"].dim == teacher.config.conv_dim[-1]
    n = int(frames[1])
    assert caches["cnn"].frames("b") == caches["targets"].frames("b") == n
    assert torch.allclose(caches["cnn"].get("b")[:, 0], cnn[1, :n], atol=2e-2 * cnn.abs().max())
    assert torch.allclose(caches["targets"].get("b"), hidden[[1, 2], 1, :n].permute(1, 0, 2),
                          atol=2e-2 * hidden.abs().max())
    # a missing cache is rebuilt alone (the encoder runs again); complete ones are only opened
    (tmp_path / "cnn" / "index.json").unlink()
    again = build_target_caches(outputs, [(["a", "b"], wavs, lens)], folders)
    assert calls == [2, 2] and torch.equal(again["targets"].get("a"), caches["targets"].get("a"))
    build_target_caches(outputs, [(["a", "b"], wavs, lens)], folders)
    assert calls == [2, 2]


def test_fithubert_time_reduction_halves_the_frames_and_hints_at_the_teacher_rate(teacher, tmp_path):
    from transformers import AutoModel

    torch.manual_seed(0)
    student = FitHuBERT(teacher, hidden_size=16, ffn_dim=16, n_heads=2, conv_channels=(16,) * 7,
                        time_reduction=True)
    wavs, lens = torch.randn(2, 8000), torch.tensor([1.0, 0.7])
    hidden, frames = teacher(wavs, lens)
    predictions, student_frames = student(wavs, lens)
    assert predictions.shape == (2, 2, 24, teacher.hidden_size) and student_frames.tolist() == [24, 16]
    optimizer = torch.optim.AdamW(student.parameters(), lr=5e-3)
    losses = []
    for _ in range(6):
        predictions, student_frames = student(wavs, lens)
        loss, _ = hint_mse_loss(predictions, hidden[student.target_layers], frame_mask(student_frames, 24),
                                weights=[0.1, 1.0])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0], losses
    model = AutoModel.from_pretrained(student.export(tmp_path / "student"))
    assert model.config.conv_stride[-1] == 2 and len(model.config.conv_dim) == 8
    assert model(torch.randn(1, 8000)).last_hidden_state.shape[1] == 12  # 25 frames per second
