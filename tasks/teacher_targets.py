"""Teacher targets of a dataset's items (utterances or fixed segments), cached once per teacher and item list.

Shared by the distillation task (training and validation items) and its
held-out evaluation (:mod:`tasks.heldout`).
"""

from pathlib import Path

import speechbrain as sb

from common.audio import load_audio
from common.hashing import files_state, settings_hash
from lobes.feature_cache import encoder_fingerprint
from lobes.target_cache import build_target_caches, module_device
from lobes.unit_prediction import frame_units


def load_item(wav, start=None, stop=None):
    """An item's audio: the whole file, or the segment ``[start, stop)`` (samples) of a segment row."""
    return load_audio(wav) if start is None else load_audio(wav, start=int(start), stop=int(stop))


def item_batches(dataset, batch_size):
    """``(ids, wavs, wav_lens)`` batches of a dataset's items, by duration (little padding).

    An item is a whole utterance, or a segment when its row has ``start`` and
    ``stop`` (:func:`lobes.segments.segment_rows`).

    Returns
    -------
    (generator, int)
        The batches and their number.
    """
    rows = {i: {k: v for k, v in dataset.data[i].items() if k != "id"} for i in dataset.data_ids}
    data = sb.dataio.dataset.DynamicItemDataset(rows).filtered_sorted(sort_key="duration")
    segmented = all("start" in row for row in rows.values())
    takes = ["wav", "start", "stop"] if segmented else ["wav"]
    sb.dataio.dataset.add_dynamic_item([data], load_item, takes=takes, provides="sig")
    sb.dataio.dataset.set_output_keys([data], ["id", "sig"])
    loader = sb.dataio.dataloader.make_dataloader(data, batch_size=batch_size)
    return ((batch.id, *batch.sig) for batch in loader), len(loader)


def build_caches(hparams, name, dataset, teacher, layers, with_cnn=False, units=None):
    """Teacher targets of a dataset's items, keyed by the teacher (its weights and precision), layers and the item list.

    The teacher runs on each item alone (a segment: on that segment's audio
    only). With ``with_cnn`` the same teacher pass also stores its CNN's
    output (:meth:`lobes.encoder.FrozenTeacher.forward_with_cnn`), in a cache
    of its own. With ``units`` the targets are the k-means units of one layer
    (``{"layer", "codebook", "codebook_path"}``, :func:`lobes.unit_prediction.frame_units`),
    stored as ``[T, 1, 1]`` instead of the hidden states. Folders:
    ``<cache_folder>/<name>-<teacher>-<layers, or units-<layer>-<codebook>>-<hash>``.

    Returns
    -------
    dict
        ``{"targets": TargetCache}``, plus ``"cnn"`` with ``with_cnn``.
    """
    ids = sorted(dataset.data_ids)
    audio = files_state(dataset.data[i]["wav"] for i in ids)  # a replaced file is computed again
    prefix = f"{name}-{Path(hparams['teacher_source']).name}"
    suffix = settings_hash({"utterances": [(i, dataset.data[i]["wav"]) for i in ids], "audio": audio,
                            "teacher": encoder_fingerprint(teacher), "precision": teacher.precision}, 12)
    folder = Path(hparams["cache_folder"])
    stored = '-'.join(map(str, layers)) if units is None else \
        f"units-{units['layer']}-{Path(units['codebook_path']).stem}"
    outputs = {"targets": (layers if units is None else [0], folder / f"{prefix}-{stored}-{suffix}")}
    if with_cnn:
        outputs["cnn"] = ([0], folder / f"{prefix}-cnn-{suffix}")

    device = module_device(teacher)  # the teacher runs where it was placed (the run's device)

    def teacher_outputs(wavs, wav_lens):
        wavs, wav_lens = wavs.to(device), wav_lens.to(device)
        if with_cnn:
            hidden, cnn_features, frame_lengths = teacher.forward_with_cnn(wavs, wav_lens)
        else:
            hidden, frame_lengths = teacher(wavs, wav_lens)
        if units is not None:  # [1, B, T, 1]: one "layer" of one value per frame
            hidden = frame_units(hidden[units["layer"]], frame_lengths, units["codebook"]).float()[None, :, :, None]
        outputs = {"targets": hidden}
        if with_cnn:
            outputs["cnn"] = cnn_features[None]
        return outputs, frame_lengths.cpu()

    batches, total = item_batches(dataset, hparams["cache_batch_size"])
    desc = ("teacher targets" if units is None else f"units of teacher layer {units['layer']}") + \
        (" and CNN features" if with_cnn else "")
    return build_target_caches(teacher_outputs, batches, outputs, total, desc=f"{name}: {desc}")
