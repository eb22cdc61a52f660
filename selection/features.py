"""Frame-level features for unit discovery: MFCC or a hidden layer of an HF SSL model.

An *extractor* is a callable taking a list of 1-D float32 waveforms (16 kHz, any
lengths) and returning one ``float32`` array ``[frames, dim]`` per waveform; it also
exposes ``frame_rate`` (frames per second) and ``dim``. :func:`iter_features`
streams ``(utt_id, feats)`` pairs so that the frames of a whole pool are never
held in memory at once.
"""

import hashlib
from pathlib import Path

import torch

from common.hashing import file_sha256
from common.mfcc import MFCCFrontEnd

MFCCExtractor = MFCCFrontEnd  # MFCC unit features (the name the hparams use)


class SSLExtractor:
    """One hidden layer of a HuggingFace speech encoder (WavLM, HuBERT, wav2vec 2.0, Whisper).

    Parameters
    ----------
    source : str or os.PathLike
        Hub id or local folder (``save_pretrained`` output) for
        :meth:`transformers.AutoModel.from_pretrained`.
    layer : int
        Index into ``hidden_states`` (``output_hidden_states=True`` gives
        ``num_hidden_layers + 1`` tensors: 0 is the CNN projection after the
        positional convolution, ``i`` the output of transformer layer ``i``);
        negative values count from the last layer.
    device : str or torch.device
        Where the model runs.

    Notes
    -----
    The model runs through :class:`lobes.encoder.FrozenTeacher`, so an
    utterance's features do not depend on the batch: the attention mask built
    from the true lengths is passed when the model's feature extractor says the
    model was trained with one (``return_attention_mask``); models such as
    HuBERT/wav2vec 2.0 Base were not, and run without padding, one forward per
    group of equal-length utterances. Each output is cut to the number of frames
    the true length yields through the CNN front-end. Waveforms are normalised (zero mean,
    unit variance over their own samples) when the feature extractor has
    ``do_normalize``. The model stays in ``eval`` mode, in fp32, without gradients.
    Features are not L2-normalised (k-means on normalised SSL output converges poorly).
    """

    def __init__(self, source, layer, device="cpu"):
        from lobes.encoder import FrozenTeacher

        self.device = torch.device(device)
        self.source = str(source)
        self.encoder = FrozenTeacher(source).to(self.device)
        config = self.encoder.config
        n_states = config.num_hidden_layers + 1
        if not -n_states <= layer < n_states:
            raise ValueError(f"layer {layer} out of range for {n_states} hidden states of {source}")
        self.layer = layer % n_states
        self.frame_rate = self.encoder.frame_rate
        self.dim = config.hidden_size
        self.min_samples = self.encoder.min_samples

    def settings(self):
        """What identifies these features (for stage hashes and provenance).

        A local model folder is identified by the SHA-256 of its files as well
        as its path, so retraining a model in place never reuses stale units.
        """
        settings = {"kind": "ssl", "source": self.source, "layer": self.layer}
        folder = Path(self.source)
        if folder.is_dir():
            digest = hashlib.sha256()
            for path in sorted(p for p in folder.rglob("*") if p.is_file()):
                digest.update(f"{path.relative_to(folder)}:{file_sha256(path)}\n".encode())
            settings["files_sha256"] = digest.hexdigest()
        return settings

    def __call__(self, wavs):
        """Features of each waveform (see class notes for padding).

        Parameters
        ----------
        wavs : list of torch.Tensor
            1-D waveforms at 16 kHz.

        Returns
        -------
        list of numpy.ndarray
            ``float32`` arrays ``[frames, dim]``.
        """
        lengths = torch.tensor([len(w) for w in wavs])
        width = max(int(lengths.max()), self.min_samples)
        batch = torch.zeros(len(wavs), width)
        for i, wav in enumerate(wavs):
            batch[i, : len(wav)] = wav
        with torch.inference_mode():
            hidden, frames = self.encoder(batch.to(self.device), (lengths / width).to(self.device))
        hidden = hidden[self.layer].cpu()
        return [hidden[i, : int(frames[i])].numpy() for i in range(len(wavs))]


def iter_features(waveforms, extractor, batch_size=8):
    """Stream features utterance by utterance.

    Parameters
    ----------
    waveforms : iterable of (str, torch.Tensor)
        ``(utt_id, waveform)`` pairs, e.g. a :class:`selection.audio.AudioStream`
        (order it by duration to reduce padding for SSL extractors).
    extractor : callable
        :class:`MFCCExtractor`, :class:`SSLExtractor` or any callable with the same
        contract.
    batch_size : int
        Waveforms passed to the extractor at once.

    Yields
    ------
    (str, numpy.ndarray)
        ``(utt_id, feats)`` with ``feats`` of shape ``[frames, dim]``; at most
        ``batch_size`` utterances are held at a time.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    ids, wavs = [], []
    for utt_id, wav in waveforms:
        ids.append(utt_id)
        wavs.append(wav)
        if len(ids) == batch_size:
            yield from zip(ids, extractor(wavs))
            ids, wavs = [], []
    if ids:
        yield from zip(ids, extractor(wavs))
