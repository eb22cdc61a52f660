"""Probe features: every hidden state of a frozen encoder for a manifest's items, computed once.

A probe trains for many epochs on a frozen encoder, so the encoder runs once per
(encoder, manifest, view) and the probe reads fp16 features back (storage:
:mod:`lobes.target_cache`). A cache folder is named by a hash of

- the encoder: its class, config, input policy and every weight,
- the manifest's bytes,
- the view: whole utterances, or seeded noisy crops (:class:`NoisyCrops`),

so a retrained encoder, an edited manifest or other crop settings get a new
folder and an unchanged one is reused.
"""

import hashlib
import json
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from common.audio import SAMPLE_RATE, load_audio
from common.hashing import file_sha256, files_state, settings_hash
from common.manifest import dataset_rows
from lobes.target_cache import build_target_cache

FORMAT_VERSION = 1


def encoder_fingerprint(encoder):
    """Hex SHA-256 of an encoder's class, config, input policy and weights."""
    config = encoder.config.to_dict() if hasattr(encoder.config, "to_dict") else dict(encoder.config)
    for where in ("_name_or_path", "transformers_version"):  # the same weights elsewhere are the same encoder
        config.pop(where, None)
    identity = {
        "class": type(encoder).__name__,
        "config": config,
        "input_policy": [getattr(encoder, "normalize", None), getattr(encoder, "use_mask", None)],
    }
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode())
    for name, tensor in sorted(encoder.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def crop_of(item_id):
    """``(utterance ID, crop index)`` of a crop's item ID ``utt#k`` (:meth:`NoisyCrops.items`).

    Example
    -------
    >>> crop_of("spk1-utt#3")
    ('spk1-utt', 3)
    """
    utt_id, _, k = item_id.rpartition("#")
    if not utt_id or not k.isdigit():
        raise ValueError(f"{item_id!r} is not a crop ID '<utterance>#<crop index>'")
    return utt_id, int(k)


@dataclass(frozen=True)
class NoisyCrops:
    """``n_crops`` random crops of each utterance with white noise added, drawn from ``seed``.

    Every crop, noise included, is a function of ``(seed, utterance ID, crop
    index)`` only, so a cache of them is reproducible. Crops of utterances shorter than
    ``seconds`` are the whole utterance.

    Parameters
    ----------
    n_crops : int
        Crops per utterance; crop ``k`` of ``utt`` has the item ID ``utt#k``.
    seconds : float
        Crop length.
    snr_db : float or None
        Signal-to-noise ratio of the added white noise; ``None``: no noise.
    seed : int
        Seed of the crop positions and the noise.
    """

    n_crops: int = 4
    seconds: float = 1.5
    snr_db: float = 10.0
    seed: int = 0

    def rng(self, utt_id, k, stream):
        """Generator of crop ``k`` of ``utt_id``: stream 0 places it, stream 1 draws its noise."""
        return np.random.default_rng([self.seed, zlib.crc32(utt_id.encode()), k, stream])

    def items(self, utt_id, wav, n_samples):
        """``(item_id, wav, start, stop)`` of every crop of one utterance."""
        crop = min(int(self.seconds * SAMPLE_RATE), n_samples)
        out = []
        for k in range(self.n_crops):
            start = int(self.rng(utt_id, k, 0).integers(0, n_samples - crop + 1))
            out.append((f"{utt_id}#{k}", wav, start, start + crop))
        return out

    def corrupt(self, sig, item_id):
        """``sig`` with white noise at ``snr_db`` (seeded by the item)."""
        if self.snr_db is None:
            return sig
        utt_id, k = crop_of(item_id)
        noise = torch.from_numpy(self.rng(utt_id, k, 1).standard_normal(len(sig))).float()
        power = sig.pow(2).mean().clamp(min=1e-10)
        return sig + noise * torch.sqrt(power / 10 ** (self.snr_db / 10))


def manifest_items(csv_path, data_root, crops=None):
    """``(item_id, wav, start, stop)`` for every utterance of a manifest (or its crops)."""
    rows = dataset_rows(csv_path, data_root)
    items = []
    for utt_id, row in rows.items():
        n_samples = int(round(float(row["duration"]) * SAMPLE_RATE))
        if crops is None:
            items.append((utt_id, row["wav"], 0, n_samples))
        else:
            items.extend(crops.items(utt_id, row["wav"], n_samples))
    return items


def item_batches(items, batch_size, crops=None):
    """``(ids, wavs [B, S], wav_lens [B])`` batches, items sorted by length (little padding)."""
    items = sorted(items, key=lambda item: item[3] - item[2])
    for first in range(0, len(items), batch_size):
        chunk = items[first: first + batch_size]
        sigs = []
        for item_id, wav, start, stop in chunk:
            if crops is None:  # the whole file, whatever the rounding of the manifest's duration
                sigs.append(load_audio(wav))
            else:
                sigs.append(crops.corrupt(load_audio(wav, start=start, stop=stop), item_id))
        lengths = torch.tensor([len(sig) for sig in sigs], dtype=torch.float)
        wavs = torch.nn.utils.rnn.pad_sequence(sigs, batch_first=True)
        yield [item[0] for item in chunk], wavs, lengths / wavs.shape[1]


def cache_key(fingerprint, csv_path, crops=None, audio=None):
    """Hex key of (encoder fingerprint, manifest bytes, view, audio files' state)."""
    spec = {"format": FORMAT_VERSION, "encoder": fingerprint, "manifest": file_sha256(csv_path),
            "crops": None if crops is None else asdict(crops), "audio": audio}
    return settings_hash(spec)


def cache_features(encoder, csv_path, data_root, cache_root, crops=None, batch_size=8, fingerprint=None):
    """Every hidden state of ``encoder`` for the items of a manifest, cached in fp16.

    Parameters
    ----------
    encoder : torch.nn.Module
        Frozen encoder with the ``(hidden [L+1, B, T, D], frame_lengths)``
        contract (:class:`lobes.encoder.FrozenTeacher`,
        :class:`lobes.mfcc_encoder.MFCCEncoder`).
    csv_path : str or os.PathLike
        SpeechBrain CSV manifest (``ID``, ``duration``, ``wav``).
    data_root : str or os.PathLike
        Replacement of ``$data_root`` in the manifest.
    cache_root : str or os.PathLike
        Parent folder; the cache is ``<cache_root>/<manifest stem>-<key>``, the key
        hashing the encoder, the manifest, the crops and each audio file's size
        and modification time.
    crops : NoisyCrops, optional
        Store noisy crops (IDs ``utt#k``) instead of whole utterances.
    batch_size : int
        Items per encoder call.
    fingerprint : str, optional
        :func:`encoder_fingerprint` of ``encoder``, when already computed.

    Returns
    -------
    lobes.target_cache.TargetCache
        Read access; ``get(item_id)`` gives ``[T, L+1, D]`` float32 features.
    """
    fingerprint = fingerprint or encoder_fingerprint(encoder)
    name = Path(csv_path).stem
    items = manifest_items(csv_path, data_root, crops)
    audio = files_state(sorted({item[1] for item in items}))  # a replaced audio file is encoded again
    folder = Path(cache_root) / f"{name}-{cache_key(fingerprint, csv_path, crops, audio)[:16]}"
    # a lazy generator: nothing is read or encoded when the cache is already complete
    return build_target_cache(encoder, item_batches(items, batch_size, crops), None, folder,
                              total=-(-len(items) // batch_size), desc=f"{name} features")


def probe_inputs(batch, encoder=None):
    """Hidden states ``[L+1, B, T, D]`` and frame lengths ``[B]`` of a probe batch.

    Parameters
    ----------
    batch : speechbrain.dataio.batch.PaddedBatch
        With ``feats`` (cached ``[B, T, L+1, D]`` features) when ``encoder`` is
        ``None``, else with ``sig`` (audio ``[B, S]``).
    encoder : torch.nn.Module, optional
        The frozen encoder, run now on ``batch.sig`` (corpora too large to cache).

    Returns
    -------
    (torch.Tensor, torch.Tensor)
    """
    if encoder is None:
        feats, rel_lens = batch.feats
        return feats.permute(2, 0, 1, 3), torch.round(rel_lens * feats.shape[1]).long()
    wavs, rel_lens = batch.sig
    with torch.no_grad():
        return encoder(wavs, rel_lens)
