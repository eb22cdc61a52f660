"""Frozen speech encoders (HF WavLM, HuBERT, wav2vec 2.0; Whisper) behind one padding-aware contract.

``forward(wavs, wav_lens) -> (hidden_states [L+1, B, T, D], frame_lengths [B])``:
index 0 of the hidden states is the CNN projection (after the positional
convolution), index ``i`` the output of transformer layer ``i``; frames past an
utterance's ``frame_lengths`` are padding.

Batching never changes an utterance's outputs. Models that take an attention
mask (layer-norm CNNs: WavLM, Large models) run the padded batch with the mask.
Models that take none (group-norm CNNs: HuBERT Base, wav2vec 2.0 Base, WavLM
Base+) normalise each CNN channel over the whole padded input, so padding would
change every real frame of the shorter utterances (by about half the
hidden-state norm for an utterance batched with one three times longer); they
run one forward per group of equal-length utterances, without padding. So does
Whisper's encoder, which takes no mask either (:mod:`lobes.whisper_encoder`).

Utterances of any length run, the model's memory bounded by a window's. One of
more than ``chunk_frames`` frames runs alone, in overlapping windows of
``chunk_frames`` frames (:func:`windows`). Each window starts on a frame boundary
(``frame_hop``: 320 samples, 20 ms, for every supported family), so its frame
``k`` is frame ``start + k`` of the utterance; it keeps its frames but the
``context_frames`` at either side (except at the utterance's ends), written in
place into the output, which has the frame count and alignment of a run in one
piece. Exact (to float rounding): the CNN output, a local function of the
samples (a group-norm CNN, which normalises each channel of its first layer over
its whole input, is given the statistics of the whole utterance, gathered piece
by piece; input normalisation too is the whole utterance's), and for the SSL
models hidden state 0 when ``context_frames`` covers the positional
convolution's reach (``num_conv_pos_embeddings // 2`` frames). The transformer
layers attend within their window only: close to a run in one piece, not equal.
Whisper cannot run more than 30 s in one piece; each of its windows is what it
makes of that audio alone (the log-mel floor set by the window's loudest frame,
positions from 0).
"""

import re
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from lobes import whisper_encoder

WHISPER_CHUNK_SECONDS = 30.0
SSL_CHUNK_SECONDS = 40.0
CONTEXT_SECONDS = 3.0
AUTOCAST_TYPES = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


def input_policy(source, config):
    """How a checkpoint expects its input: ``(normalize, use_attention_mask)``.

    Read from its feature-extractor config when there is one (``do_normalize``,
    ``return_attention_mask``); otherwise models with layer-norm front-ends
    (WavLM, large models) take an attention mask and group-norm ones
    (HuBERT/wav2vec 2.0 Base) take plain zero padding, as HF advises.
    """
    from transformers import AutoFeatureExtractor

    try:
        processor = AutoFeatureExtractor.from_pretrained(str(source))
        return bool(getattr(processor, "do_normalize", False)), bool(getattr(processor, "return_attention_mask", False))
    except OSError:
        return False, getattr(config, "feat_extract_norm", "group") == "layer"


def sample_mask(wavs, wav_lens):
    """``[B, S]`` bool mask of the real samples, from SpeechBrain relative lengths."""
    n_samples = torch.round(wav_lens * wavs.shape[1]).long()
    return torch.arange(wavs.shape[1], device=wavs.device)[None, :] < n_samples[:, None]


def normalize_valid(wavs, mask):
    """Zero mean, unit variance over each utterance's real samples; padding stays 0."""
    count = mask.sum(1, keepdim=True).clamp(min=1)
    mean = (wavs * mask).sum(1, keepdim=True) / count
    var = (((wavs - mean) * mask) ** 2).sum(1, keepdim=True) / count
    return (wavs - mean) / torch.sqrt(var + 1e-7) * mask


def model_input(wavs, wav_lens, normalize):
    """The waveforms as the model takes them (padding zeroed, normalised if asked) and their ``[B, S]`` mask."""
    mask = sample_mask(wavs, wav_lens)
    return (normalize_valid(wavs, mask) if normalize else wavs * mask), mask


def frame_lengths_of(model, mask):
    """Frames the model's CNN makes of each waveform's real samples."""
    return model._get_feat_extract_output_lengths(mask.sum(1)).clamp(min=0).long()


def run_encoder(model, wavs, wav_lens, normalize, use_mask):
    """Hidden states ``[L+1, B, T, D]`` and frame lengths of an HF SSL model."""
    wavs, mask = model_input(wavs, wav_lens, normalize)
    out = model(wavs, attention_mask=mask.long() if use_mask else None, output_hidden_states=True)
    return torch.stack(out.hidden_states), frame_lengths_of(model, mask)


def receptive_field(config):
    """Samples one output frame of an HF SSL model's CNN sees (its shortest usable input)."""
    field = 1
    for kernel, stride in zip(reversed(config.conv_kernel), reversed(config.conv_stride)):
        field = (field - 1) * stride + kernel
    return field


def run_unpadded(run_group, wavs, wav_lens, frame_lengths, min_samples):
    """Run a model that takes no attention mask so that no utterance sees another's padding.

    Utterances of equal length share one forward (``run_group``); outputs are
    zero-padded to the longest afterwards. An utterance shorter than
    ``min_samples`` is padded up to it (it has no frame, or one).

    Parameters
    ----------
    run_group : callable
        ``run_group(wavs [G, S], rows [G]) -> (hidden [L+1, G, T, D], cnn [G, T, C])`` on unpadded
        waveforms; ``rows`` are their indices in the batch.
    wavs, wav_lens : torch.Tensor
        The batch (``[B, S]``, relative lengths ``[B]``).
    frame_lengths : torch.Tensor
        ``[B]`` frames of each utterance's real samples.
    min_samples : int
        Shortest input the model takes.

    Returns
    -------
    (torch.Tensor, torch.Tensor)
        Hidden states ``[L+1, B, T, D]`` and CNN output ``[B, T, C]``, zero past each frame length.
    """
    n_samples = sample_mask(wavs, wav_lens).sum(1)
    n_frames = int(frame_lengths.max()) if len(frame_lengths) else 0
    hidden = cnn = None
    for length in torch.unique(n_samples).tolist():
        rows = torch.nonzero(n_samples == length).flatten()
        group = wavs.new_zeros(len(rows), max(length, min_samples))
        group[:, :length] = wavs[rows, :length]
        group_hidden, group_cnn = run_group(group, rows)
        if hidden is None:
            hidden = group_hidden.new_zeros(group_hidden.shape[0], len(wavs), n_frames, group_hidden.shape[-1])
            cnn = group_cnn.new_zeros(len(wavs), n_frames, group_cnn.shape[-1])
        keep = min(group_hidden.shape[2], n_frames)
        hidden[:, rows, :keep] = group_hidden[:, :, :keep]
        cnn[rows, :keep] = group_cnn[:, :keep]
    mask = frame_mask(frame_lengths, n_frames)
    return hidden * mask[None, :, :, None], cnn * mask[:, :, None]


def windows(n_frames, chunk_frames, context_frames):
    """The windows that cover ``n_frames`` frames: ``(start, kept_start, kept_end)`` each.

    A window spans frames ``[start, start + chunk_frames)`` and keeps
    ``[kept_start, kept_end)``: at least ``context_frames`` from either side of the
    window, except at the utterance's ends. The kept parts tile ``[0, n_frames)``.
    The last window ends with the utterance (it may keep more left context).

    Example
    -------
    >>> list(windows(250, 100, 10))
    [(0, 0, 90), (80, 90, 170), (150, 170, 250)]
    """
    if chunk_frames <= 2 * context_frames:
        raise ValueError(f"windows of {chunk_frames} frames keep nothing of {context_frames} context frames a side")
    kept_start = 0
    while kept_start < n_frames:
        start = max(0, min(kept_start - context_frames, n_frames - chunk_frames))
        last = start + chunk_frames >= n_frames
        kept_end = n_frames if last else start + chunk_frames - context_frames
        yield start, kept_start, kept_end
        kept_start = kept_end


def channel_statistics(conv, wav, piece_samples):
    """Mean and variance over time of each output channel of ``conv`` on a long waveform ``[S]``.

    Computed piece by piece (each output frame once, no more than ``piece_samples``
    input samples at a time), the pieces' statistics combined in float64: those of
    the whole output, which is never held.

    Returns
    -------
    (torch.Tensor, torch.Tensor)
        ``[C]`` means and (biased) variances, float32.
    """
    kernel, stride = conv.kernel_size[0], conv.stride[0]
    n_out = (len(wav) - kernel) // stride + 1
    per_piece = max(1, (piece_samples - kernel) // stride + 1)
    counts, means, variances = [], [], []
    for first in range(0, n_out, per_piece):
        last = min(first + per_piece, n_out)
        out = conv(wav[first * stride: (last - 1) * stride + kernel][None, None])[0]
        variance, mean = torch.var_mean(out, dim=1, correction=0)
        counts.append(last - first)
        means.append(mean)
        variances.append(variance)
    counts = torch.tensor(counts, dtype=torch.float64, device=wav.device)[:, None]
    means, variances = torch.stack(means).double(), torch.stack(variances).double()
    mean = (counts * means).sum(0) / counts.sum()
    variance = (counts * (variances + (means - mean) ** 2)).sum(0) / counts.sum()
    return mean.float(), variance.float()


class FixedChannelNorm(nn.Module):
    """A per-channel ``GroupNorm`` (one group a channel) that uses given statistics instead of its input's.

    Parameters
    ----------
    norm : torch.nn.GroupNorm
        The layer replaced: its ``eps`` and affine weights.
    mean, variance : torch.Tensor
        ``[C]`` statistics to normalise with (those of a whole utterance).
    """

    def __init__(self, norm, mean, variance):
        super().__init__()
        self.mean, self.bias = mean[:, None], norm.bias[:, None]
        self.scale = (norm.weight / torch.sqrt(variance + norm.eps))[:, None]

    def forward(self, hidden):
        return (hidden - self.mean) * self.scale + self.bias


def group_norm_layer(model):
    """The first CNN layer of an HF SSL model when it normalises over the whole input (group-norm CNNs), else None."""
    layers = getattr(getattr(model, "feature_extractor", None), "conv_layers", None)
    first = layers[0] if layers else None
    return first if isinstance(getattr(first, "layer_norm", None), nn.GroupNorm) else None


@contextmanager
def whole_input_statistics(model, wav, piece_samples):
    """Within the block, a group-norm CNN normalises any piece of ``wav`` ``[S]`` as it does all of it.

    Models of other kinds are left as they are.
    """
    layer = group_norm_layer(model)
    if layer is None:
        yield
        return
    norm = layer.layer_norm
    layer.layer_norm = FixedChannelNorm(norm, *channel_statistics(layer.conv, wav, piece_samples))
    try:
        yield
    finally:
        layer.layer_norm = norm


HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def checked_source(source):
    """``source`` as a string, when it is an existing folder or looks like a hub id (``owner/name``).

    Raises
    ------
    FileNotFoundError
        For a path that does not exist and is not of the ``owner/name`` form (a mistyped local
        folder would otherwise be looked up on the hub, and fail late with a network error).

    Example
    -------
    >>> checked_source("microsoft/wavlm-base-plus")
    'microsoft/wavlm-base-plus'
    >>> checked_source("results/no/such/teacher")
    Traceback (most recent call last):
    ...
    FileNotFoundError: model folder results/no/such/teacher not found (nor is it a hub id like owner/name)
    """
    source = str(source)
    if Path(source).is_dir() or (HUB_ID.fullmatch(source) and not source.startswith((".", "/"))):
        return source
    if Path(source).exists():
        raise NotADirectoryError(f"{source} is a file; a model is a folder written by save_pretrained, or a hub id")
    raise FileNotFoundError(f"model folder {source} not found (nor is it a hub id like owner/name)")


def resolved_config(source):
    """The config of the model ``source`` names (a folder, or a hub id fetched now): a bad source stops early.

    Raises
    ------
    FileNotFoundError
        For a folder that does not exist (:func:`checked_source`), or an
        ``owner/name`` that is no local folder and that the hub did not give
        (the message says both, and the hub's error).
    """
    from transformers import AutoConfig

    source = checked_source(source)
    try:
        return AutoConfig.from_pretrained(source)
    except OSError as err:
        local = "is a folder without a model config" if Path(source).is_dir() else "is no local folder"
        raise FileNotFoundError(f"model {source!r} {local}, and no hub model of that id could be loaded "
                                f"(mistyped path? no network?): {err}") from None


def frame_mask(frame_lengths, n_frames):
    """``[B, T]`` bool mask of the real frames."""
    return torch.arange(n_frames, device=frame_lengths.device)[None, :] < frame_lengths[:, None]


class FrozenTeacher(nn.Module):
    """A frozen teacher by hub id or local folder: HF SSL models (WavLM, HuBERT, wav2vec 2.0) or Whisper encoders.

    Always in ``eval`` mode (``train()`` is a no-op), no gradients, layerdrop 0,
    fp32 outputs even under autocast (the model runs in ``precision``: fp32 unless
    asked, whatever autocast is around it). Keep it out of ``Brain.modules`` anyway, so
    that checkpoints do not carry its weights. Outputs do not depend on what an
    utterance is batched with (module notes): models without attention mask run
    unpadded, one forward per group of equal-length utterances; utterances longer
    than ``chunk_seconds`` run alone, in overlapping windows (module notes).

    A Whisper checkpoint (``model_type: whisper``) is used through its encoder
    alone, on log-mel input without the 30 s padding (:mod:`lobes.whisper_encoder`,
    which also states how its 50 Hz frames line up with the waveform models').

    Parameters
    ----------
    source : str or os.PathLike
        Hub id (``microsoft/wavlm-base-plus``) or folder written by ``save_pretrained``.
    chunk_seconds : float, optional
        Longest utterance run in one piece, and the length of the windows of longer
        ones. Whisper: 30 s by default, the most its position table takes (and what it
        was trained on). SSL models: 40 s by default, above LibriSpeech's longest
        segments (35 s), which therefore run whole as they always did; one 40 s window
        is 2000 frames, whose attention weights take 16 MB a head (fp32).
    context_seconds : float
        Audio a window sees on either side of the frames it keeps (3 s by default):
        over twice the reach of the released SSL models' positional convolution (64
        frames, 1.28 s), below which hidden state 0 is not exact, with room left for
        the layers' attention across the kept frames' edges. Costs
        ``chunk / (chunk - 2 context)`` times the compute on long utterances (1.25 for
        Whisper, 1.18 for SSL models by default).
    windows_per_forward : int
        Windows of a long utterance run together (memory grows with it).
    precision : str
        ``fp32`` (default), or ``fp16`` / ``bf16``: the model runs under autocast
        in that type on a GPU (SpeechBrain's ``--precision``); on a CPU it runs in fp32.

    Example
    -------
    >>> teacher = FrozenTeacher("microsoft/wavlm-base-plus")  # doctest: +SKIP
    >>> hidden, frames = teacher(torch.randn(2, 16000), torch.tensor([1.0, 0.5]))  # doctest: +SKIP
    >>> hidden.shape  # doctest: +SKIP
    torch.Size([13, 2, 49, 768])
    """

    def __init__(self, source, chunk_seconds=None, context_seconds=CONTEXT_SECONDS, windows_per_forward=4,
                 precision="fp32"):
        from transformers import AutoFeatureExtractor, AutoModel

        super().__init__()
        self.source = checked_source(source)
        self.is_whisper = resolved_config(self.source).model_type == "whisper"
        if self.is_whisper:
            self.model = AutoModel.from_pretrained(self.source).encoder  # the decoder is not used
            self.feature_extractor = AutoFeatureExtractor.from_pretrained(self.source)
            self.normalize, self.use_mask = False, False
            self.min_samples = whisper_encoder.MIN_SAMPLES
        else:
            self.model = AutoModel.from_pretrained(self.source, layerdrop=0.0)
            self.normalize, self.use_mask = input_policy(self.source, self.model.config)
            self.min_samples = receptive_field(self.model.config)
        self.model.requires_grad_(False)
        super().train(False)
        if chunk_seconds is None:
            chunk_seconds = WHISPER_CHUNK_SECONDS if self.is_whisper else SSL_CHUNK_SECONDS
        self.chunk_frames = round(chunk_seconds * self.frame_rate)
        self.context_frames = round(context_seconds * self.frame_rate)
        self.windows_per_forward = int(windows_per_forward)
        self._check_windows()
        if precision not in AUTOCAST_TYPES:
            raise ValueError(f"precision {precision!r}: choose from {sorted(AUTOCAST_TYPES)}")
        self.precision = precision

    def _check_windows(self):
        if self.is_whisper and self.chunk_frames > self.config.max_source_positions:
            raise ValueError(f"chunk_seconds of {self.chunk_frames} frames: Whisper's encoder takes at most "
                             f"{self.config.max_source_positions} ({self.config.max_source_positions / 50:.0f} s)")
        if self.chunk_frames <= 2 * self.context_frames:
            raise ValueError(f"windows of {self.chunk_frames} frames keep nothing of {self.context_frames} context "
                             "frames a side: chunk_seconds must exceed twice context_seconds")
        if self.windows_per_forward < 1:
            raise ValueError(f"windows_per_forward must be at least 1, not {self.windows_per_forward}")

    @property
    def config(self):
        return self.model.config

    @property
    def num_layers(self):
        return self.model.config.num_hidden_layers

    @property
    def hidden_size(self):
        return self.model.config.hidden_size

    @property
    def cnn_channels(self):
        """Channels of the CNN output (:meth:`forward_with_cnn`)."""
        return self.hidden_size if self.is_whisper else self.config.conv_dim[-1]

    @property
    def frame_hop(self):
        """Samples from one frame to the next (320 for every supported family)."""
        if self.is_whisper:
            return 2 * whisper_encoder.HOP
        return int(torch.tensor(self.config.conv_stride).prod())

    @property
    def frame_rate(self):
        """Frames per second of the hidden states (50 for every supported family)."""
        return 16000 / self.frame_hop

    @property
    def window_samples(self):
        """Fewest samples of which the teacher makes ``chunk_frames`` frames: the input of one window."""
        if self.is_whisper:
            return self.frame_hop * self.chunk_frames - whisper_encoder.HOP  # 2 chunk_frames - 1 log-mel frames
        return self.frame_hop * (self.chunk_frames - 1) + self.min_samples  # the last frame's receptive field

    def frame_lengths(self, n_samples):
        """Frames the teacher makes of ``n_samples`` real samples (``[B]`` tensor)."""
        if self.is_whisper:
            return whisper_encoder.frame_lengths(n_samples).long()
        return self.model._get_feat_extract_output_lengths(n_samples).clamp(min=0).long()

    def train(self, mode=True):
        """Stay in eval mode: dropout and layerdrop never switch on."""
        return super().train(False)

    @torch.no_grad()
    def forward(self, wavs, wav_lens):
        hidden, _, frame_lengths = self.forward_with_cnn(wavs, wav_lens)
        return hidden, frame_lengths

    @torch.no_grad()
    def forward_with_cnn(self, wavs, wav_lens):
        """As :meth:`forward`, plus the CNN's output ``[B, T, C]`` of the same pass (before the feature projection).

        A frozen student CNN copied from the teacher computes exactly these, so they can be cached and fed
        to it instead (``SSLStudent.forward(..., cnn_features=...)``). For Whisper, the output of its two
        convolutions, before the positions are added.

        Returns
        -------
        tuple of (torch.Tensor, torch.Tensor, torch.Tensor)
            Hidden states ``[L+1, B, T, D]``, CNN features ``[B, T, C]``, frame lengths ``[B]``.
        """
        reduced = AUTOCAST_TYPES[self.precision] is not None and wavs.device.type == "cuda"
        with torch.autocast(device_type=wavs.device.type, dtype=AUTOCAST_TYPES[self.precision], enabled=reduced):
            wavs = wavs.float()
            n_samples = sample_mask(wavs, wav_lens).sum(1)
            frame_lengths = self.frame_lengths(n_samples)
            long = frame_lengths > self.chunk_frames
            if long.any():
                hidden, cnn = self._run_with_long(wavs, n_samples, frame_lengths, long)
            else:
                hidden, cnn = self._run_short(wavs, wav_lens, frame_lengths)
        return hidden.float(), cnn.float(), frame_lengths

    def _run_short(self, wavs, wav_lens, frame_lengths):
        """Hidden states and CNN output of utterances of at most ``chunk_frames`` frames, batched (module notes)."""
        if self.use_mask:
            return self._run_ssl(wavs, wav_lens, self.normalize, use_mask=True)
        return run_unpadded(self._run_group, wavs, wav_lens, frame_lengths, self.min_samples)

    def _run_with_long(self, wavs, n_samples, frame_lengths, long):
        """As :meth:`_run_short`, for a batch with long utterances (``long``: ``[B]`` bool): each runs in windows."""
        n_frames = int(frame_lengths.max())
        hidden = wavs.new_zeros(self.num_layers + 1, len(wavs), n_frames, self.hidden_size)
        cnn = wavs.new_zeros(len(wavs), n_frames, self.cnn_channels)
        short = torch.nonzero(~long).flatten()
        if len(short):
            length = int(n_samples[short].max())
            short_hidden, short_cnn = self._run_short(wavs[short, :length], n_samples[short] / length,
                                                      frame_lengths[short])
            hidden[:, short, : short_hidden.shape[2]] = short_hidden
            cnn[short, : short_cnn.shape[1]] = short_cnn
        for row in torch.nonzero(long).flatten().tolist():
            self._run_long(wavs[row, : int(n_samples[row])], int(frame_lengths[row]), hidden[:, row], cnn[row])
        return hidden, cnn

    def _run_long(self, wav, n_frames, hidden, cnn):
        """Write the outputs of one long waveform ``[S]`` into ``hidden [L+1, T, D]`` and ``cnn [T, C]``, by window.

        The windows (:func:`windows`) run ``windows_per_forward`` at a time; the last one, which takes the
        utterance's last samples (up to a frame more than the others), runs on its own.
        """
        if self.normalize:
            wav = normalize_valid(wav[None], torch.ones_like(wav[None], dtype=torch.bool))[0]
        *body, last = windows(n_frames, self.chunk_frames, self.context_frames)
        size = self.windows_per_forward
        groups = [(body[i: i + size], self.window_samples) for i in range(0, len(body), size)] + [([last], None)]
        with whole_input_statistics(self.model, wav, self.window_samples):
            for group, stop in groups:
                pieces = torch.stack([wav[self.frame_hop * start:][:stop] for start, _, _ in group])
                window_hidden, window_cnn = self._run_windows(pieces)
                for i, (start, kept_start, kept_end) in enumerate(group):
                    kept = slice(kept_start - start, kept_end - start)
                    hidden[:, kept_start:kept_end] = window_hidden[:, i, kept]
                    cnn[kept_start:kept_end] = window_cnn[i, kept]

    def _run_windows(self, pieces):
        """Hidden states and CNN output of equal-length windows ``[W, S]`` of one utterance, already normalised."""
        if self.is_whisper:
            return whisper_encoder.run_whisper(self.model, self.feature_extractor, pieces)
        return self._run_ssl(pieces, torch.ones(len(pieces), device=pieces.device), False, self.use_mask)

    def _run_group(self, wavs, rows=None):
        """Hidden states and CNN output of unpadded, equal-length waveforms (``rows``: unused)."""
        if self.is_whisper:
            return whisper_encoder.run_whisper(self.model, self.feature_extractor, wavs)
        return self._run_ssl(wavs, torch.ones(len(wavs), device=wavs.device), self.normalize, use_mask=False)

    def _run_ssl(self, wavs, wav_lens, normalize, use_mask):
        captured = []
        hook = self.model.feature_extractor.register_forward_hook(lambda module, args, out: captured.append(out))
        try:
            hidden, _ = run_encoder(self.model, wavs, wav_lens, normalize, use_mask)
        finally:
            hook.remove()
        return hidden, captured[0].transpose(1, 2)
