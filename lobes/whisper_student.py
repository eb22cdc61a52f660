"""DistilWhisper: a DistilHuBERT-style student of a Whisper encoder teacher.

As DistilHuBERT starts from HuBERT's CNN and first layers, this student starts
from the Whisper teacher's front end (log-mel, two convolutions, position
table), its first ``n_layers`` layers and its final layer norm, and predicts
chosen teacher layers with DistilHuBERT's heads (``Linear(D, D * N) -> GELU``,
then one ``Linear`` per layer). It runs at the teacher's 50 Hz on inputs of any
length up to 30 s (:mod:`lobes.whisper_encoder`). :meth:`DistilWhisper.export`
writes a transformers ``WhisperModel`` folder whose decoder is empty (no layers,
a 4-token vocabulary): ``AutoModel`` loads it and the probes use its encoder.
"""

import copy
import logging

import torch
from torch import nn

from lobes import whisper_encoder
from lobes.encoder import run_unpadded, sample_mask
from lobes.students import check_target_layers, copy_matching_weights, expanded_heads, export_model_folder

logger = logging.getLogger(__name__)
CNN_MODULES = ("conv1", "conv2")


class DistilWhisper(nn.Module):
    """Whisper encoder student: the teacher's front end + its first ``n_layers`` layers, with expand-last heads.

    Parameters
    ----------
    teacher : lobes.encoder.FrozenTeacher
        A Whisper teacher: source of the config, the front end and the initial weights.
    n_layers : int
        Student layers (2, as DistilHuBERT).
    target_layers : sequence of int
        Teacher hidden states to predict (2, 4, 6 of Whisper base).
    init_from_teacher : bool
        Copy the convolutions, the position table, the first layers and the final layer norm.
    freeze_cnn : bool
        Keep the two convolutions as copied, without gradients; their output may then be
        cached and given to :meth:`forward` (``cnn_features``).
    """

    def __init__(self, teacher, n_layers=2, target_layers=(2, 4, 6), init_from_teacher=True, freeze_cnn=False):
        from transformers.models.whisper.modeling_whisper import WhisperEncoder

        super().__init__()
        if not teacher.is_whisper:
            raise ValueError(f"DistilWhisper needs a Whisper teacher; {teacher.source} is a "
                             f"{teacher.config.model_type} model (use DistilHuBERT or FitHuBERT)")
        self.config = copy.deepcopy(teacher.config)
        self.config.encoder_layers = int(n_layers)
        self.config.encoder_layerdrop = 0.0
        self.encoder = WhisperEncoder(self.config)
        self.feature_extractor = teacher.feature_extractor
        self.target_layers = [int(layer) for layer in target_layers]
        check_target_layers(self.target_layers, teacher.num_layers)
        if init_from_teacher:
            copied = copy_matching_weights(teacher.model, self.encoder)
            logger.info("DistilWhisper: %d tensors initialised from the teacher", len(copied))
        self.cnn_frozen = bool(freeze_cnn)
        if freeze_cnn:
            if not init_from_teacher:
                raise ValueError("freeze_cnn keeps the convolutions as initialised: it needs init_from_teacher=True")
            for name in CNN_MODULES:
                getattr(self.encoder, name).requires_grad_(False)
        dim, n_targets = self.config.d_model, len(self.target_layers)
        self.expand = nn.Sequential(nn.Linear(dim, dim * n_targets), nn.GELU())
        self.heads = nn.ModuleList(nn.Linear(dim, teacher.hidden_size) for _ in range(n_targets))

    def forward(self, wavs, wav_lens, cnn_features=None, masked_frames=None):
        """Predicted teacher layers ``[N, B, T, D_teacher]`` and frame lengths ``[B]``.

        Parameters
        ----------
        wavs : torch.Tensor
            ``[B, S]`` waveforms, zero-padded; equal-length ones run together, unpadded.
        wav_lens : torch.Tensor
            ``[B]`` relative lengths (SpeechBrain convention).
        cnn_features : torch.Tensor, optional
            ``[B, T, D]``: the teacher's convolution output for ``wavs``
            (:meth:`lobes.encoder.FrozenTeacher.forward_with_cnn`); the front end is then not run.
        masked_frames : torch.Tensor, optional
            ``[B, T]`` bool: convolution output frames replaced by the learnt mask embedding
            (after :meth:`enable_input_masking`), before the position table is added.
        """
        embedding = None if masked_frames is None else self.input_mask_embedding()
        n_samples = sample_mask(wavs, wav_lens).sum(1)
        frame_lengths = whisper_encoder.frame_lengths(n_samples).long()
        if cnn_features is not None:
            if not self.cnn_frozen:
                raise ValueError("cnn_features replace the convolutions' output: they must be frozen (freeze_cnn)")
            expected = int(whisper_encoder.frame_lengths(wavs.shape[1]))
            if cnn_features.shape[1] != expected:
                raise ValueError(f"cnn_features have {cnn_features.shape[1]} frames; the front end makes "
                                 f"{expected} of {wavs.shape[1]} samples")

        def run_group(group, rows):
            n_frames = int(whisper_encoder.frame_lengths(group.shape[1]))
            if cnn_features is None:
                conv_out = whisper_encoder.convolutions(
                    self.encoder, whisper_encoder.log_mel(self.feature_extractor, group))
            else:
                conv_out = cnn_features[rows, :n_frames]
            if embedding is not None:
                conv_out = torch.where(masked_frames[rows, :n_frames, None], embedding.to(conv_out.dtype), conv_out)
            return whisper_encoder.hidden_states(self.encoder, conv_out), conv_out

        hidden, _ = run_unpadded(run_group, wavs, wav_lens, frame_lengths, whisper_encoder.MIN_SAMPLES)
        return self.predict(hidden), frame_lengths

    def predict(self, hidden):
        return expanded_heads(self.expand, self.heads, hidden[-1])

    def enable_input_masking(self):
        """Add the learnt embedding that replaces masked convolution output frames (zeros at first)."""
        if getattr(self, "mask_embedding", None) is None:
            self.mask_embedding = nn.Parameter(torch.zeros(self.config.d_model))

    def input_mask_embedding(self):
        """The mask embedding, or an error when :meth:`enable_input_masking` was not called."""
        if getattr(self, "mask_embedding", None) is None:
            raise ValueError("DistilWhisper: masked_frames given before enable_input_masking()")
        return self.mask_embedding

    def front_end_frames(self, wavs, wav_lens):
        """Frames of the front end's output: each item's real ones ``[B]`` and the batch's ``T`` (what ``masked_frames`` spans)."""
        frame_lengths = whisper_encoder.frame_lengths(sample_mask(wavs, wav_lens).sum(1)).long()
        return frame_lengths, int(frame_lengths.max()) if len(frame_lengths) else 0

    def cnn_matches(self, teacher):
        """Whether the student's convolutions hold exactly the teacher's weights."""
        for name in CNN_MODULES:
            mine = getattr(self.encoder, name).state_dict()
            theirs = getattr(teacher.model, name).state_dict()
            if mine.keys() != theirs.keys() or not all(
                    mine[k].shape == theirs[k].shape and torch.equal(mine[k], theirs[k].to(mine[k].device))
                    for k in mine):
                return False
        return True

    def export(self, folder):
        """Write the student as a transformers Whisper folder (empty decoder) with its feature extractor, atomically."""
        from transformers import WhisperModel

        config = copy.deepcopy(self.config)
        config.update({"decoder_layers": 0, "vocab_size": 4, "max_target_positions": 1, "pad_token_id": 0,
                       "bos_token_id": 1, "eos_token_id": 2, "decoder_start_token_id": 1,
                       "suppress_tokens": None, "begin_suppress_tokens": None})
        model = WhisperModel(config)
        model.encoder.load_state_dict(self.encoder.state_dict())
        return export_model_folder(folder, model, self.feature_extractor)
