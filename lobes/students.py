"""Distillation students: DistilHuBERT and FitHuBERT, built from a teacher's HF config.

Each student is a stock transformers encoder of the teacher's class (HuBERT,
WavLM, wav2vec 2.0) with a smaller config, plus prediction heads used only in
training. :meth:`SSLStudent.export` writes the encoder with ``save_pretrained``
and a feature-extractor config, so the student loads with
``AutoModel.from_pretrained`` and SpeechBrain's HF wrapper like any public
model. FitHuBERT's optional time-reduction layer (50 -> 25 frames per second)
is an eighth CNN layer, so that a stock config still holds it.
"""

import logging
import math
from pathlib import Path

import torch
from torch import nn

from common.atomic import atomic_folder
from lobes.encoder import frame_lengths_of, model_input, run_encoder

logger = logging.getLogger(__name__)


def student_config(teacher_config, **changes):
    """A copy of the teacher's config with ``changes``; layerdrop and input masking off."""
    config = teacher_config.__class__.from_dict(teacher_config.to_dict())
    for key, value in changes.items():
        if not hasattr(config, key):
            raise ValueError(f"{type(config).__name__} has no setting '{key}'")
        setattr(config, key, value)
    config.layerdrop = 0.0
    config.mask_time_prob = 0.0  # the student sees its whole input (no SpecAugment in distillation)
    config.mask_feature_prob = 0.0
    return config


class ScaleGradient(torch.autograd.Function):
    """Identity forward; the backward multiplies the gradient by ``scale`` (fairseq's and s3prl's ``GradMultiply``)."""

    @staticmethod
    def forward(ctx, tensor, scale):
        ctx.scale = scale
        return tensor.view_as(tensor)

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.scale, None


def scale_cnn_gradients(encoder, scale):
    """Make the gradients reaching an HF SSL encoder's CNN ``scale`` times smaller or larger.

    s3prl's DistilHuBERT (``feature_grad_mult: 0.1``) and wav2vec 2.0 / HuBERT
    pretraining scale the gradient at the CNN's output, so the CNN trains
    ``scale`` times slower than the transformer. A forward hook on the CNN does
    it here, with the stock HF model left unchanged (what is exported).

    Example
    -------
    >>> cnn = nn.Conv1d(1, 2, 3)
    >>> scale_cnn_gradients(nn.Module(), 1.0)  # nothing to do
    >>> holder = nn.Module(); holder.feature_extractor = cnn
    >>> scale_cnn_gradients(holder, 0.5)
    >>> cnn(torch.ones(1, 1, 3)).sum().backward(); cnn.bias.grad
    tensor([0.5000, 0.5000])
    """
    if scale == 1.0:
        return
    if not 0.0 < scale:
        raise ValueError(f"cnn_grad_mult must be > 0 (a frozen CNN is freeze_cnn: True), got {scale}")
    encoder.feature_extractor.register_forward_hook(lambda module, inputs, output: ScaleGradient.apply(output, scale))


def copy_matching_weights(source, target):
    """Copy every parameter whose name and shape match; returns the names copied."""
    source_state = source.state_dict()
    target_state = target.state_dict()
    copied = [k for k, v in target_state.items() if k in source_state and source_state[k].shape == v.shape]
    target.load_state_dict({**target_state, **{k: source_state[k] for k in copied}})
    return copied


class SSLStudent(nn.Module):
    """An HF encoder that predicts chosen teacher layers.

    Parameters
    ----------
    config : transformers.PretrainedConfig
        The student encoder's config.
    normalize, use_mask : bool
        Input policy, the teacher's (see :func:`lobes.encoder.input_policy`).
    target_layers : sequence of int
        Teacher hidden-state indices the heads predict.
    """

    cnn_frozen = False  # True: the CNN keeps its initial weights and may be replaced by cached features

    def __init__(self, config, normalize, use_mask, target_layers):
        from transformers import AutoModel

        super().__init__()
        self.encoder = AutoModel.from_config(config)
        # HF's CNN marks the waveform as requiring grad in training (for gradient checkpointing), so each step
        # would also back-propagate to the waveform through the first convolution: 5-8 % of a DistilHuBERT step.
        self.encoder.feature_extractor._requires_grad = False  # its weights still train unless frozen
        self.normalize = normalize
        self.use_mask = use_mask
        self.target_layers = [int(layer) for layer in target_layers]

    def forward(self, wavs, wav_lens, cnn_features=None, masked_frames=None):
        """Predicted teacher layers ``[N, B, T, D_teacher]`` and frame lengths ``[B]``.

        Parameters
        ----------
        wavs : torch.Tensor
            ``[B, S]`` waveforms, zero-padded.
        wav_lens : torch.Tensor
            ``[B]`` relative lengths (SpeechBrain convention).
        cnn_features : torch.Tensor, optional
            ``[B, T, C]``: the output the frozen CNN would give for ``wavs``
            (the teacher's: :meth:`lobes.encoder.FrozenTeacher.forward_with_cnn`); the
            CNN is then not run.
        masked_frames : torch.Tensor, optional
            ``[B, T]`` bool: CNN output frames replaced by the learnt mask embedding
            (after :meth:`enable_input_masking`), as HuBERT pretraining masks its input.
        """
        cnn = self.encoder.feature_extractor
        own_forward = cnn.__dict__.get("forward")  # an instance-level forward set by someone else, if any
        if cnn_features is not None:
            if not self.cnn_frozen:
                raise ValueError("cnn_features replace the CNN's output: the student's CNN must be frozen (freeze_cnn)")
            expected = int(self.encoder._get_feat_extract_output_lengths(torch.tensor(wavs.shape[1])))
            if cnn_features.shape[1] != expected:
                raise ValueError(f"cnn_features have {cnn_features.shape[1]} frames; the CNN makes {expected} of "
                                 f"{wavs.shape[1]} samples")
            cnn.forward = lambda input_values: cnn_features.transpose(1, 2)  # HF reads [B, C, T]
        masking = None
        if masked_frames is not None:  # after the CNN's own hooks (its gradient scaling)
            embedding = self.input_mask_embedding()
            masking = cnn.register_forward_hook(
                lambda module, inputs, output: torch.where(masked_frames[:, None, :output.shape[2]],
                                                           embedding[None, :, None].to(output.dtype), output))
        try:
            hidden, frame_lengths = run_encoder(self.encoder, wavs, wav_lens, self.normalize, self.use_mask)
        finally:
            if cnn_features is not None:
                if own_forward is None:
                    del cnn.forward  # the class's forward again
                else:
                    cnn.forward = own_forward
            if masking is not None:
                masking.remove()
        return self.predict(hidden), frame_lengths

    def enable_input_masking(self):
        """Add the learnt embedding that replaces masked CNN output frames (zeros at first; objectives that mask)."""
        if getattr(self, "mask_embedding", None) is None:
            self.mask_embedding = nn.Parameter(torch.zeros(self.encoder.config.conv_dim[-1]))

    def input_mask_embedding(self):
        """The mask embedding, or an error when :meth:`enable_input_masking` was not called."""
        if getattr(self, "mask_embedding", None) is None:
            raise ValueError(f"{type(self).__name__}: masked_frames given before enable_input_masking()")
        return self.mask_embedding

    def front_end_frames(self, wavs, wav_lens):
        """Frames of the CNN's output: each item's real ones ``[B]`` and the batch's ``T`` (what ``masked_frames`` spans)."""
        _, mask = model_input(wavs, wav_lens, False)
        n_frames = int(self.encoder._get_feat_extract_output_lengths(torch.tensor(wavs.shape[1])))
        return frame_lengths_of(self.encoder, mask), n_frames

    def cnn_matches(self, teacher):
        """Whether the student's CNN holds exactly the teacher's CNN weights."""
        mine = self.encoder.feature_extractor.state_dict()
        theirs = teacher.model.feature_extractor.state_dict()
        return mine.keys() == theirs.keys() and all(
            mine[k].shape == theirs[k].shape and torch.equal(mine[k], theirs[k].to(mine[k].device)) for k in mine)

    def predict(self, hidden):
        raise NotImplementedError

    def export(self, folder):
        """Write the encoder as an HF model folder (``save_pretrained`` + feature extractor), atomically."""
        from transformers import Wav2Vec2FeatureExtractor

        extractor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0,
                                             do_normalize=self.normalize, return_attention_mask=self.use_mask)
        return export_model_folder(folder, self.encoder, extractor)


def export_model_folder(folder, model, feature_extractor):
    """``save_pretrained`` of a model and its feature extractor into ``folder``, atomically (temp folder, rename)."""
    with atomic_folder(folder) as tmp:
        model.save_pretrained(tmp)
        feature_extractor.save_pretrained(tmp)
    return Path(folder)


class DistilHuBERT(SSLStudent):
    """DistilHuBERT: the teacher's CNN + its first ``n_layers`` layers, with expand-last heads.

    Heads: ``Linear(D, D * N) -> GELU`` on the last student layer, then one
    ``Linear(D, D_teacher)`` per predicted teacher layer.

    Parameters
    ----------
    teacher : lobes.encoder.FrozenTeacher
        Source of the config, the input policy and (optionally) the initial weights.
    n_layers : int
        Student transformer layers (2 in DistilHuBERT).
    target_layers : sequence of int
        Teacher layers to predict (4, 8, 12 for a 12-layer teacher).
    init_from_teacher : bool
        Copy the CNN, projection, positional convolution and first layers.
    freeze_cnn : bool
        Keep the CNN as initialised: it runs without gradients, so a training
        step skips its backward pass (s3prl's ``feature_grad_mult: 0``; the
        released DistilHuBERT trained it with gradients scaled by 0.1). About
        halves a step on a CPU, which is what lets the teacher-target cache pay;
        the CNN's output may then be cached too (``cnn_features``).
    cnn_grad_mult : float
        Scale of the gradient that reaches a trained CNN (s3prl's
        ``feature_grad_mult``; 0.1 in the released DistilHuBERT): see
        :func:`scale_cnn_gradients`. Only with ``freeze_cnn: False``.
    """

    def __init__(self, teacher, n_layers=2, target_layers=(4, 8, 12), init_from_teacher=True, freeze_cnn=False,
                 cnn_grad_mult=1.0):
        config = student_config(teacher.config, num_hidden_layers=n_layers)
        super().__init__(config, teacher.normalize, teacher.use_mask, target_layers)
        check_target_layers(self.target_layers, teacher.num_layers)
        if init_from_teacher:
            copied = copy_matching_weights(teacher.model, self.encoder)
            logger.info("DistilHuBERT: %d tensors initialised from the teacher", len(copied))
        if freeze_cnn:
            if not init_from_teacher:
                raise ValueError("freeze_cnn keeps the CNN as initialised: it needs init_from_teacher=True")
            if cnn_grad_mult != 1.0:
                raise ValueError("cnn_grad_mult scales the gradient of a trained CNN; freeze_cnn: True trains none")
            self.encoder.feature_extractor._freeze_parameters()  # no grad, and no input grad either
            self.cnn_frozen = True
        scale_cnn_gradients(self.encoder, cnn_grad_mult)
        dim, n_targets = config.hidden_size, len(self.target_layers)
        self.expand = nn.Sequential(nn.Linear(dim, dim * n_targets), nn.GELU())
        self.heads = nn.ModuleList(nn.Linear(dim, teacher.hidden_size) for _ in range(n_targets))

    def predict(self, hidden):
        return expanded_heads(self.expand, self.heads, hidden[-1])


def expanded_heads(expand, heads, last):
    """DistilHuBERT's prediction heads: ``[N, B, T, D_teacher]`` from the last layer ``[B, T, D]``.

    ``expand`` (``Linear(D, D * N) -> GELU``) widens the last layer; head ``i`` reads slice ``i``.
    """
    expanded = expand(last).unflatten(-1, (len(heads), last.shape[-1]))  # [B, T, N, D]
    # head i on slice i, all heads in one batched product (one matmul instead of N on strided slices)
    weight = torch.stack([head.weight for head in heads])  # [N, D_teacher, D]
    bias = torch.stack([head.bias for head in heads])
    return torch.einsum("btnd,nod->nbto", expanded, weight) + bias[:, None, None]


class FitHuBERT(SSLStudent):
    """FitHuBERT: thin and deep, trained from scratch with a hint head on every layer.

    With ``time_reduction`` the encoder runs at half the teacher's frame rate:
    FitHuBERT's time-reduction layer (Conv1d, kernel 2, stride 2) is added as
    an eighth layer of the CNN (with the CNN's activation, and before the
    feature projection rather than after it), which a stock HF config
    expresses, so the exported student loads like any other. Each hint head
    undoes it (ConvTranspose1d, kernel 2, stride 2, then the linear map to
    the teacher's width), so the hints are taken at the teacher's frame rate.

    Parameters
    ----------
    teacher : lobes.encoder.FrozenTeacher
        Source of the config family and the input policy.
    hidden_size, ffn_dim, n_heads : int
        Width of the student (FitHuBERT: 480, 480, 12 for a 768-wide teacher).
    n_layers : int, optional
        Depth (default: the teacher's). Student layer ``i`` predicts teacher layer
        ``round(i * L_teacher / n_layers)``.
    conv_channels : sequence of int
        Channels of the teacher-shaped CNN layers (thin front-end).
    time_reduction : bool
        Halve the frame rate with FitHuBERT's time-reduction layer.
    """

    def __init__(self, teacher, hidden_size=480, ffn_dim=480, n_heads=12, n_layers=None,
                 conv_channels=(128, 128, 256, 256, 512, 512, 512), time_reduction=False):
        n_layers = n_layers or teacher.num_layers
        conv = {"conv_dim": tuple(conv_channels), "conv_kernel": tuple(teacher.config.conv_kernel),
                "conv_stride": tuple(teacher.config.conv_stride)}
        if len(conv_channels) != len(conv["conv_kernel"]):
            raise ValueError(f"conv_channels has {len(conv_channels)} layers, the teacher's CNN "
                             f"{len(conv['conv_kernel'])}")
        if time_reduction:
            conv = {key: value + ((conv_channels[-1],) if key == "conv_dim" else (2,)) for key, value in conv.items()}
        config = student_config(
            teacher.config, hidden_size=hidden_size, intermediate_size=ffn_dim, num_attention_heads=n_heads,
            num_hidden_layers=n_layers, num_feat_extract_layers=len(conv["conv_dim"]), **conv,
            num_conv_pos_embedding_groups=math.gcd(hidden_size, teacher.config.num_conv_pos_embedding_groups))
        targets = [round(i * teacher.num_layers / n_layers) for i in range(1, n_layers + 1)]
        super().__init__(config, teacher.normalize, teacher.use_mask, targets)
        self.time_reduction = time_reduction
        self.heads = nn.ModuleList(
            (UpsampledHint(hidden_size, teacher.hidden_size) if time_reduction
             else nn.Linear(hidden_size, teacher.hidden_size)) for _ in targets)

    def forward(self, wavs, wav_lens, cnn_features=None, masked_frames=None):
        """As :meth:`SSLStudent.forward`; with time reduction, frame lengths at the teacher's rate."""
        predictions, frame_lengths = super().forward(wavs, wav_lens, cnn_features, masked_frames)
        return predictions, frame_lengths * 2 if self.time_reduction else frame_lengths

    def enable_input_masking(self):
        """As :meth:`SSLStudent.enable_input_masking`; not with time reduction (its frames are not the targets')."""
        if self.time_reduction:
            raise ValueError("FitHuBERT with time_reduction runs at half the targets' frame rate: objectives that "
                             "mask the input need time_reduction: False")
        super().enable_input_masking()

    def predict(self, hidden):
        return torch.stack([head(hidden[i + 1]) for i, head in enumerate(self.heads)])


class UpsampledHint(nn.Module):
    """A hint head for a time-reduced student: ``ConvTranspose1d(k=2, s=2)`` then ``Linear``.

    ``[B, T, D_in] -> [B, 2T, D_out]``.

    Parameters
    ----------
    dim_in : int
        Width of the student layer.
    dim_out : int
        Width of the teacher layer it predicts.

    Example
    -------
    >>> UpsampledHint(8, 12)(torch.randn(2, 5, 8)).shape
    torch.Size([2, 10, 12])
    """

    def __init__(self, dim_in, dim_out):
        super().__init__()
        self.upsample = nn.ConvTranspose1d(dim_in, dim_in, kernel_size=2, stride=2)
        self.linear = nn.Linear(dim_in, dim_out)

    def forward(self, hidden):
        return self.linear(self.upsample(hidden.transpose(1, 2)).transpose(1, 2))


def check_target_layers(layers, n_teacher_layers):
    bad = [layer for layer in layers if not 0 <= layer <= n_teacher_layers]
    if bad:
        raise ValueError(f"target layers {bad} outside the teacher's hidden states 0..{n_teacher_layers}")
