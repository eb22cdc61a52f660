"""Whisper models in CTranslate2 format turned into transformers ``WhisperModel`` folders.

CTranslate2 stores a model as one ``model.bin``: ``u32`` format version, the
spec name, ``u32`` revision, ``u32`` variable count, then per variable its name,
``u8`` rank, ``u32`` dimensions, ``u8`` dtype code, ``u32`` byte count and the raw
little-endian data; then ``u32`` alias count and (alias, target) name pairs. A
string is a ``u16`` length that counts a trailing NUL, then its bytes. (Read off
the CTranslate2 sources, https://github.com/OpenNMT/CTranslate2.)

Whisper's variables map one to one onto transformers' ``WhisperModel`` except
that self-attention stores q, k and v as one fused matrix (and cross-attention k
and v as another); the k bias is stored as zeros, and transformers' ``k_proj``
has none.

Example
-------
>>> from lobes.whisper_ct2 import convert_ct2_whisper
>>> convert_ct2_whisper("model.bin", "vocabulary.txt", "whisper_hf")  # doctest: +SKIP
"""

import re
import struct
from pathlib import Path

import numpy as np
import torch

from common.audio import SAMPLE_RATE

DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: "bfloat16"}


class CT2FormatError(ValueError):
    """A file that is not a CTranslate2 Whisper model this reader understands."""


def _read(handle, fmt):
    size = struct.calcsize(fmt)
    data = handle.read(size)
    if len(data) != size:
        raise CT2FormatError(f"{handle.name}: file ends early (truncated model?)")
    return struct.unpack(fmt, data)


def _read_string(handle):
    (length,) = _read(handle, "<H")
    return handle.read(length).rstrip(b"\0").decode("utf-8")


def read_ct2_model(path):
    """Every variable of a CTranslate2 ``model.bin``.

    Parameters
    ----------
    path : str or os.PathLike
        The ``model.bin`` file.

    Returns
    -------
    (str, dict)
        The spec name (``WhisperSpec``) and ``{name: numpy.ndarray}``, aliases resolved
        (bfloat16 arrays are returned as float32).
    """
    variables = {}
    with open(path, "rb") as handle:
        (version,) = _read(handle, "<I")
        if not 1 <= version <= 64:
            raise CT2FormatError(f"{path}: not a CTranslate2 model (format version {version})")
        spec = _read_string(handle)
        _read(handle, "<I")  # spec revision
        (count,) = _read(handle, "<I")
        for _ in range(count):
            name = _read_string(handle)
            (rank,) = _read(handle, "<B")
            shape = _read(handle, f"<{rank}I")
            (code,) = _read(handle, "<B")
            (n_bytes,) = _read(handle, "<I")
            raw = handle.read(n_bytes)
            if len(raw) != n_bytes or code not in DTYPES:
                raise CT2FormatError(f"{path}: variable {name}: truncated data or unknown dtype {code}")
            if DTYPES[code] == "bfloat16":
                array = (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)
            else:
                array = np.frombuffer(raw, DTYPES[code])
            variables[name] = array.reshape(shape)
        (n_aliases,) = _read(handle, "<I")
        for _ in range(n_aliases):
            alias, target = _read_string(handle), _read_string(handle)
            variables[alias] = variables[target]
    return spec, variables


def _special_tokens(vocabulary_path):
    tokens = Path(vocabulary_path).read_text(encoding="utf-8").splitlines()
    index = {token: i for i, token in enumerate(tokens)}
    missing = {"<|endoftext|>", "<|startoftranscript|>"} - set(index)
    if missing:
        raise CT2FormatError(f"{vocabulary_path}: no {sorted(missing)} token")
    return len(tokens), index["<|endoftext|>"], index["<|startoftranscript|>"]


def whisper_config(variables, vocabulary_path):
    """The transformers ``WhisperConfig`` of a CTranslate2 Whisper model (sizes read off its weights)."""
    from transformers import WhisperConfig

    def n_layers(part):
        return len({name.split("/")[1] for name in variables if re.match(rf"{part}/layer_\d+/", name)})

    d_model, n_mels, _ = variables["encoder/conv1/weight"].shape
    vocab_size = variables["decoder/embeddings/weight"].shape[0]
    n_tokens, end_of_text, start_of_transcript = _special_tokens(vocabulary_path)
    return WhisperConfig(
        vocab_size=vocab_size,
        num_mel_bins=int(n_mels),
        d_model=int(d_model),
        encoder_layers=n_layers("encoder"),
        decoder_layers=n_layers("decoder"),
        encoder_attention_heads=int(variables["encoder/num_heads"]),
        decoder_attention_heads=int(variables["decoder/num_heads"]),
        encoder_ffn_dim=int(variables["encoder/layer_0/ffn/linear_0/weight"].shape[0]),
        decoder_ffn_dim=int(variables["decoder/layer_0/ffn/linear_0/weight"].shape[0]),
        max_source_positions=int(variables["encoder/position_encodings/encodings"].shape[0]),
        max_target_positions=int(variables["decoder/position_encodings/encodings"].shape[0]),
        pad_token_id=end_of_text,
        bos_token_id=end_of_text,
        eos_token_id=end_of_text,
        decoder_start_token_id=start_of_transcript,
    )


def _layer_norm(variables, ct2, hf):
    return {f"{hf}.weight": variables[f"{ct2}/gamma"], f"{hf}.bias": variables[f"{ct2}/beta"]}


def _linear(variables, ct2, hf, bias=True):
    out = {f"{hf}.weight": variables[f"{ct2}/weight"]}
    if bias:
        out[f"{hf}.bias"] = variables[f"{ct2}/bias"]
    return out


def _split_projection(variables, ct2, hf, names):
    """A fused ``[n * D, D]`` projection split into ``n`` transformers projections (``k_proj`` without bias)."""
    weights = np.split(variables[f"{ct2}/weight"], len(names))
    biases = np.split(variables[f"{ct2}/bias"], len(names))
    out = {}
    for name, weight, bias in zip(names, weights, biases):
        out[f"{hf}.{name}.weight"] = weight
        if name != "k_proj":
            out[f"{hf}.{name}.bias"] = bias
    return out


def _layer(variables, ct2, hf, cross_attention):
    out = {
        **_layer_norm(variables, f"{ct2}/self_attention/layer_norm", f"{hf}.self_attn_layer_norm"),
        **_split_projection(variables, f"{ct2}/self_attention/linear_0", f"{hf}.self_attn",
                            ("q_proj", "k_proj", "v_proj")),
        **_linear(variables, f"{ct2}/self_attention/linear_1", f"{hf}.self_attn.out_proj"),
        **_layer_norm(variables, f"{ct2}/ffn/layer_norm", f"{hf}.final_layer_norm"),
        **_linear(variables, f"{ct2}/ffn/linear_0", f"{hf}.fc1"),
        **_linear(variables, f"{ct2}/ffn/linear_1", f"{hf}.fc2"),
    }
    if cross_attention:
        out.update({
            **_layer_norm(variables, f"{ct2}/attention/layer_norm", f"{hf}.encoder_attn_layer_norm"),
            **_linear(variables, f"{ct2}/attention/linear_0", f"{hf}.encoder_attn.q_proj"),
            **_split_projection(variables, f"{ct2}/attention/linear_1", f"{hf}.encoder_attn", ("k_proj", "v_proj")),
            **_linear(variables, f"{ct2}/attention/linear_2", f"{hf}.encoder_attn.out_proj"),
        })
    return out


def whisper_state_dict(variables, config):
    """transformers ``WhisperModel`` weights (float32 tensors) from CTranslate2 variables."""
    arrays = {
        **_linear(variables, "encoder/conv1", "encoder.conv1"),
        **_linear(variables, "encoder/conv2", "encoder.conv2"),
        "encoder.embed_positions.weight": variables["encoder/position_encodings/encodings"],
        **_layer_norm(variables, "encoder/layer_norm", "encoder.layer_norm"),
        "decoder.embed_tokens.weight": variables["decoder/embeddings/weight"],
        "decoder.embed_positions.weight": variables["decoder/position_encodings/encodings"],
        **_layer_norm(variables, "decoder/layer_norm", "decoder.layer_norm"),
    }
    for i in range(config.encoder_layers):
        arrays.update(_layer(variables, f"encoder/layer_{i}", f"encoder.layers.{i}", cross_attention=False))
    for i in range(config.decoder_layers):
        arrays.update(_layer(variables, f"decoder/layer_{i}", f"decoder.layers.{i}", cross_attention=True))
    return {name: torch.from_numpy(np.array(array, dtype=np.float32)) for name, array in arrays.items()}


def convert_ct2_whisper(model_bin, vocabulary_path, folder):
    """Write a CTranslate2 Whisper model as a transformers folder (``save_pretrained``), weights in float32.

    Parameters
    ----------
    model_bin : str or os.PathLike
        CTranslate2 ``model.bin`` (spec ``WhisperSpec``).
    vocabulary_path : str or os.PathLike
        Its ``vocabulary.txt`` (one token per line: special token ids).
    folder : str or os.PathLike
        Output folder: ``config.json``, weights and ``preprocessor_config.json``
        (a ``WhisperFeatureExtractor`` with the model's mel bins).

    Returns
    -------
    pathlib.Path
        ``folder``.
    """
    from transformers import WhisperFeatureExtractor, WhisperModel

    spec, variables = read_ct2_model(model_bin)
    if spec != "WhisperSpec":
        raise CT2FormatError(f"{model_bin}: a {spec} model, not WhisperSpec")
    config = whisper_config(variables, vocabulary_path)
    model = WhisperModel(config)
    state = whisper_state_dict(variables, config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CT2FormatError(f"{model_bin}: weights do not fit WhisperModel (missing {missing}, unexpected {unexpected})")
    folder = Path(folder)
    model.save_pretrained(folder)
    WhisperFeatureExtractor(feature_size=config.num_mel_bins, sampling_rate=SAMPLE_RATE).save_pretrained(folder)
    return folder
