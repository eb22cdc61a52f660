#!/usr/bin/env python3
"""Speaker probe of a frozen encoder: identification and verification on (noisy) crops, for every dataset.

Frozen encoder (``encoder_source``: ``mfcc``, an HF hub id or a model folder)
→ every hidden state of ``n_crops`` seeded random crops per utterance with white
noise added before the encoder (the crops are fixed, so the features are cached
once in fp16; ``cache_features: False`` runs the encoder on every batch instead)
→ learnable softmax-weighted layer sum → statistics pooling → linear embedding
→ linear classifier over the training speakers. Reported on ``test_split``:
identification accuracy over all its crops; and the EER of cosine scores
between embeddings (first crop of each utterance) on the trials of
``trials_file`` over the utterances of ``verification_split`` (VoxCeleb1), or,
without them, on every pair of test utterances (SynthDomains).

Stages (re-running the same command resumes):
1. the dataset's preparation (``prepare_data`` in the hparams) when not done;
2. the features of the crops of the training, test and verification splits;
3. training on the training crops, a seeded share of its utterances held out
   for validation (best accuracy kept), checkpointed every epoch;
4. the test; ``results.json``, ``trials.txt`` and (with a test split)
   ``identification.txt`` in the output folder: ``<crop ID> <1|0>``, whether the
   classifier named each test crop's speaker, the per-crop outcomes behind the
   accuracy (a benchmark's bootstrap intervals resample them by utterance).

Each dataset's ``recipes/<Dataset>/speaker/train.py`` calls :func:`main` with its hparams:

python recipes/SynthDomains/speaker/train.py recipes/SynthDomains/speaker/hparams/spk_probe.yaml   # the default teacher
python recipes/SynthDomains/speaker/train.py recipes/SynthDomains/speaker/hparams/spk_probe.yaml --encoder_source=mfcc --encoder_name=mfcc
"""

import logging
import sys
import time
from pathlib import Path

import numpy as np
import speechbrain as sb
import torch
import torch.nn.functional as F
from speechbrain.utils.distributed import if_main_process, run_on_main
from speechbrain.utils.metric_stats import EER

from common.atomic import atomic_write_text
from common.audio import load_audio
from common.manifest import dataset_rows
from lobes.feature_cache import SAMPLE_RATE, NoisyCrops, cache_features
from lobes.probe_brain import LayerMixProbeBrain
from tasks.experiment import checkpoint_probe, load_probe_encoder, start_experiment, write_results

logger = logging.getLogger(__name__)
IDENTIFICATION_FILE = "identification.txt"  # ``<crop ID> <1|0>``: the test crops the classifier named right


def verification_trials(utt_ids, speakers):
    """Every pair ``(a, b, same_speaker)`` of distinct utterances, in a fixed order."""
    return [(utt_ids[i], utt_ids[j], speakers[i] == speakers[j])
            for i in range(len(utt_ids)) for j in range(i + 1, len(utt_ids))]


def read_trials(path, utt_ids):
    """``(a, b, same_speaker)`` trials of a file of ``<1|0> <ID a> <ID b>`` lines, checked against ``utt_ids``."""
    trials = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 3 or fields[0] not in ("0", "1"):
                raise ValueError(f"{path}, line {number}: expected '<1|0> <ID a> <ID b>', got {line.strip()!r}")
            for utt in fields[1:]:
                if utt not in utt_ids:
                    raise ValueError(f"{path}, line {number}: utterance {utt!r} is not in the verification manifest")
            trials.append((fields[1], fields[2], fields[0] == "1"))
    return trials


def trial_eer(trials, embeddings):
    """EER (%) of cosine scores over ``trials``; ``None`` without both kinds of trial."""
    names = sorted({name for a, b, _ in trials for name in (a, b)})
    row = {name: i for i, name in enumerate(names)}
    normed = F.normalize(torch.stack([embeddings[name] for name in names]), dim=-1)
    scores = torch.tensor([float(normed[row[a]] @ normed[row[b]]) for a, b, _ in trials])
    same = torch.tensor([s for _, _, s in trials], dtype=torch.bool)
    if same.all() or not same.any():
        return None
    return 100 * EER(scores[same], scores[~same])[0]


class SpeakerProbeBrain(LayerMixProbeBrain):
    """Weighted layer sum + statistics pooling + classifier on cached crop features (or a live ``encoder``)."""

    verification_set = None  # a dataset of its own when verification is not on the test split

    def compute_forward(self, batch, stage):
        return self.modules.head(*self.mixed_features(batch))

    def verification_embeddings(self):
        """Embeddings of the verification crops: those of the test pass, or a pass over their own set."""
        if self.verification_set is None:
            return self.embeddings
        embeddings = {}
        loader = self.make_dataloader(self.verification_set, sb.Stage.TEST, **self.hparams.test_dataloader_opts)
        with torch.no_grad():
            for batch in loader:
                _, batch_embeddings = self.compute_forward(batch, sb.Stage.TEST)
                embeddings.update(zip(batch.id, batch_embeddings.cpu()))
        return embeddings

    def compute_objectives(self, predictions, batch, stage):
        logits, embeddings = predictions
        labels = batch.label.data[:, 0].to(self.device)
        loss = F.cross_entropy(logits, labels)
        if stage != sb.Stage.TRAIN:
            self.outcomes.update(zip(batch.id, (logits.argmax(-1) == labels).tolist()))
            self.embeddings.update(zip(batch.id, embeddings.detach().cpu()))
        return loss

    def on_stage_start(self, stage, epoch=None):
        self.outcomes, self.embeddings = {}, {}  # outcomes: {crop ID: named its speaker right}
        self.stage_started = time.time()

    def on_stage_end(self, stage, stage_loss, epoch=None):
        stats = {"loss": stage_loss, "minutes": round((time.time() - self.stage_started) / 60, 2)}
        if stage == sb.Stage.TRAIN:
            self.train_stats = stats
            return
        stats["accuracy"] = 100 * sum(self.outcomes.values()) / max(len(self.outcomes), 1)
        if stage == sb.Stage.VALID:
            self.log_epoch(epoch, stats)
            self.checkpointer.save_and_keep_only(meta={"accuracy": stats["accuracy"]}, max_keys=["accuracy"])
        else:
            self.log_test_stats({**stats, **self.verification_stats()})

    def verification_stats(self):
        """EER (%) of the cosine scores of ``self.trials`` (first crop of each utterance) and trial counts."""
        return {"EER": trial_eer([(f"{a}#0", f"{b}#0", same) for a, b, same in self.trials],
                                 self.verification_embeddings()),
                "trials": len(self.trials), "target_trials": sum(same for _, _, same in self.trials)}

    def log_test_stats(self, stats):
        self.hparams.train_logger.log_stats(
            stats_meta={"test set": self.hparams.test_split or self.hparams.verification_split,
                        "checkpoint of epoch": self.hparams.epoch_counter.current},
            test_stats=stats)
        self.test_stats = stats

    def verify_only(self):
        """Verification without an identification test (``test_split: null``), with the best checkpoint."""
        self.on_evaluate_start(max_key="accuracy")
        self.modules.eval()
        self.log_test_stats(self.verification_stats())


def crop_settings(hparams, split):
    """The fixed noisy crops of a split (test and verification crops drawn from another seed than training's).

    A verification split of its own gets one crop per utterance: trials score crop 0 only, and
    crop ``k`` does not depend on the number of crops, so it matches crop 0 of the test split.
    """
    is_test = split != hparams["train_split"]
    n_crops = hparams["n_test_crops" if is_test else "n_crops"]
    if split not in (hparams["train_split"], hparams["test_split"]):
        n_crops = 1
    return NoisyCrops(n_crops=n_crops, seconds=hparams["crop_seconds"], snr_db=hparams["snr_db"],
                      seed=hparams["crop_seed"] + int(is_test))


def probe_splits(hparams):
    """The manifests the probe reads: training, test (if any) and (when another) verification split."""
    if not (hparams["test_split"] or hparams["verification_split"]):
        raise ValueError("set test_split (identification), verification_split (verification) or both")
    splits = [hparams["train_split"]]
    for split in (hparams["test_split"], hparams["verification_split"]):
        if split and split not in splits:
            splits.append(split)
    return splits


def compute_features(hparams, encoder, fingerprint):
    """Feature caches of the crops of every split the probe reads."""
    return {split: cache_features(encoder, Path(hparams["manifest_folder"]) / f"{split}.csv", hparams["data_folder"],
                                  hparams["feature_folder"], crops=crop_settings(hparams, split),
                                  batch_size=hparams["feature_batch_size"], fingerprint=fingerprint)
            for split in probe_splits(hparams)}


def crop_dataset(hparams, split, rows, cache=None):
    """Dataset of the crops of ``rows``: ``id`` (``utt#k``), ``spk_id``, and ``feats`` from ``cache`` or ``sig``."""
    crops = crop_settings(hparams, split)
    items = {}
    for utt, row in rows.items():
        n_samples = int(round(float(row["duration"]) * SAMPLE_RATE))
        for item_id, wav, start, stop in crops.items(utt, row["wav"], n_samples):
            items[item_id] = {"spk_id": row["spk_id"], "wav": wav, "start": start, "stop": stop}
    data = sb.dataio.dataset.DynamicItemDataset(items)
    if cache is not None:
        sb.dataio.dataset.add_dynamic_item([data], cache.get, takes="id", provides="feats")
    else:
        def noisy_crop(item_id, wav, start, stop):
            return crops.corrupt(load_audio(wav, start=start, stop=stop), item_id)
        sb.dataio.dataset.add_dynamic_item([data], noisy_crop, takes=["id", "wav", "start", "stop"], provides="sig")
    return data


def dataio_prepare(hparams, caches=None):
    """Datasets of crops (train, valid, test and maybe verification), the speakers and the trials."""
    rows = {split: dataset_rows(Path(hparams["manifest_folder"]) / f"{split}.csv", hparams["data_folder"])
            for split in probe_splits(hparams)}
    speakers = sorted({row["spk_id"] for row in rows[hparams["train_split"]].values()})
    label = {spk: i for i, spk in enumerate(speakers)}
    train_utts = sorted(rows[hparams["train_split"]])
    order = np.random.default_rng(hparams["seed"]).permutation(len(train_utts))
    n_valid = max(1, int(round(hparams["valid_fraction"] * len(train_utts))))
    valid_utts = {train_utts[i] for i in order[:n_valid]}

    def part(split, keep):
        return {utt: row for utt, row in rows[split].items() if keep(utt)}

    parts = {"train": (hparams["train_split"], part(hparams["train_split"], lambda u: u not in valid_utts)),
             "valid": (hparams["train_split"], part(hparams["train_split"], lambda u: u in valid_utts))}
    if hparams["test_split"]:
        unknown = {row["spk_id"] for row in rows[hparams["test_split"]].values()} - set(speakers)
        if unknown:
            raise ValueError(f"{hparams['test_split']}.csv: speakers not in {hparams['train_split']}.csv, so they "
                             f"cannot be identified: {sorted(unknown)[:5]}")
        parts["test"] = (hparams["test_split"], rows[hparams["test_split"]])
    verification = hparams["verification_split"] or hparams["test_split"]
    if verification != hparams["test_split"]:  # embeddings only: no speaker label needed
        parts["verification"] = (verification, rows[verification])
    datasets = {}
    for name, (split, split_rows) in parts.items():
        data = crop_dataset(hparams, split, split_rows, None if caches is None else caches[split])
        keys = ["id", "sig" if caches is None else "feats"]
        if name != "verification":
            sb.dataio.dataset.add_dynamic_item([data], lambda spk: torch.LongTensor([label[spk]]), takes="spk_id",
                                               provides="label")
            keys.append("label")
        sb.dataio.dataset.set_output_keys([data], keys)
        datasets[name] = data
    verification_rows = rows[verification]
    if hparams["trials_file"]:
        trials = read_trials(hparams["trials_file"], verification_rows)
    else:
        utts = sorted(verification_rows)
        trials = verification_trials(utts, [verification_rows[u]["spk_id"] for u in utts])
    return datasets, speakers, trials


def main(argv):
    started = time.time()
    hparams, run_opts = start_experiment(argv, process_group=False)
    torch.set_num_threads(hparams["torch_threads"])
    encoder, fingerprint = load_probe_encoder(hparams, run_opts.device)
    caches = None
    if hparams["cache_features"]:
        run_on_main(compute_features, args=[hparams, encoder, fingerprint])
        caches = compute_features(hparams, encoder, fingerprint)  # complete: only opens them
    feature_minutes = (time.time() - started) / 60
    datasets, speakers, trials = dataio_prepare(hparams, caches)

    weighted_sum = hparams["weighted_sum"](encoder)
    head = hparams["head"](input_size=weighted_sum.hidden_size, n_classes=len(speakers))
    checkpoint_probe(hparams, fingerprint, weighted_sum, head)
    brain = SpeakerProbeBrain(modules={"weighted_sum": weighted_sum, "head": head}, hparams=hparams,
                              run_opts=run_opts, checkpointer=hparams["checkpointer"])
    brain.trials = trials
    brain.verification_set = datasets.get("verification")
    if caches is None:
        brain.encoder = encoder.to(brain.device)  # frozen, outside the modules: never trained nor switched to train()
    fit_started = time.time()
    brain.fit(hparams["epoch_counter"], datasets["train"], datasets["valid"],
              train_loader_kwargs=hparams["train_dataloader_opts"],
              valid_loader_kwargs=hparams["test_dataloader_opts"])
    fit_minutes = (time.time() - fit_started) / 60
    epochs = hparams["epoch_counter"].current  # testing loads the best checkpoint, and its epoch count
    if "test" in datasets:
        brain.evaluate(datasets["test"], max_key="accuracy", test_loader_kwargs=hparams["test_dataloader_opts"])
    else:
        brain.verify_only()

    if if_main_process():
        with open(Path(hparams["output_folder"]) / "trials.txt", "w", encoding="utf-8") as handle:
            handle.writelines(f"{int(same)} {a} {b}\n" for a, b, same in trials)
        if "test" in datasets:
            atomic_write_text(Path(hparams["output_folder"]) / IDENTIFICATION_FILE,
                              "".join(f"{crop} {int(right)}\n" for crop, right in sorted(brain.outcomes.items())))
        results = {
            "task": "speaker_probe", "encoder_name": hparams["encoder_name"],
            "encoder_source": hparams["encoder_source"], **brain.describe(encoder, fingerprint),
            "metrics": {hparams["test_split"] or hparams["verification_split"]: brain.test_stats},
            "speakers": len(speakers),
            "crops": {**{name: len(data) for name, data in datasets.items()}, "seconds": hparams["crop_seconds"],
                      "snr_db": hparams["snr_db"]},
            "epochs": epochs, "best_epoch": hparams["epoch_counter"].current,
            "feature_minutes": round(feature_minutes, 2), "train_minutes": round(fit_minutes, 2),
            "this_run_minutes": round((time.time() - started) / 60, 2), "seed": hparams["seed"],
        }
        write_results(hparams["output_folder"], "results.json", results)
    return brain


if __name__ == "__main__":
    main(sys.argv[1:])
