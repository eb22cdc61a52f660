#!/usr/bin/env python3
"""CTC speech-recognition probe of a frozen encoder (SUPERB-style ASR), for every dataset.

Frozen encoder (``encoder_source``: ``mfcc``, an HF hub id or a model folder)
→ every hidden state, cached once in fp16 (or computed live with
``cache_features: False``, for corpora too large to cache) → learnable
softmax-weighted layer sum → BiLSTM → linear → CTC over characters; greedy
decoding; WER and CER on every split of ``test_splits`` (SynthDomains:
``asr_test_in``, the domains seen in training, and ``asr_test_target``, the
unseen ``neural`` domain; LibriSpeech: test-clean and test-other). The layer
weights and the head have their own optimisers.

Stages (re-running the same command resumes):
1. the dataset's preparation (``prepare_data`` in the hparams) when not done;
2. the features of every split, keyed by encoder weights, manifest and settings;
3. training, checkpointed every epoch (the best by dev ``best_key``, WER or CER, kept);
4. every test set with the best checkpoint; ``results.json`` in the output folder.

Each dataset's ``recipes/<Dataset>/ASR/train.py`` calls :func:`main` with its hparams:

python recipes/SynthDomains/ASR/train.py recipes/SynthDomains/ASR/hparams/ctc_probe.yaml     # the default teacher
python recipes/SynthDomains/ASR/train.py recipes/SynthDomains/ASR/hparams/ctc_probe.yaml --encoder_source=mfcc --encoder_name=mfcc
"""

import logging
import sys
import time
from pathlib import Path

import speechbrain as sb
import torch
from speechbrain.dataio.encoder import CTCTextEncoder
from speechbrain.decoders import ctc_greedy_decode
from speechbrain.utils.distributed import if_main_process, run_on_main

from common.audio import load_audio
from common.manifest import load_dataset
from lobes.feature_cache import cache_features
from lobes.probe_brain import LayerMixProbeBrain
from tasks.experiment import checkpoint_probe, load_probe_encoder, start_experiment, write_results

logger = logging.getLogger(__name__)


def load_text_encoder(folder, train):
    """SpeechBrain's CTC character encoder: blank 0, the training transcripts' characters, ``<unk>`` last.

    Built from ``train``'s ``wrd`` column on the first run and saved to
    ``folder/chars.txt`` (on the main process); a resumed run reloads it, so the
    output layer keeps its meaning. Characters unseen in training map to ``<unk>``.
    """
    folder = Path(folder)
    if (folder / "chars.json").exists():
        raise RuntimeError(f"{folder} holds a probe run started before the character vocabulary moved to "
                           "SpeechBrain's CTCTextEncoder (chars.json): restart it in a new output_folder")
    chars = sorted({char for utt_id in train.data_ids for char in train.data[utt_id]["wrd"]})
    folder.mkdir(parents=True, exist_ok=True)
    encoder = CTCTextEncoder()  # load_or_create: built and saved on the main process, loaded by every process
    encoder.load_or_create(folder / "chars.txt", from_iterables=[chars], sequence_input=False,
                           special_labels={"blank_label": 0, "unk_label": "<unk>"})
    encoder.expect_len(len(encoder.lab2ind))
    return encoder


def greedy_transcripts(log_probs, frame_lengths, text_encoder):
    """Best-path CTC decoding (SpeechBrain's ``ctc_greedy_decode``): ``[B, T, V]`` → list of word lists."""
    relative = frame_lengths.float() / log_probs.shape[1]
    sequences = ctc_greedy_decode(log_probs, relative, blank_id=0)
    return ["".join(text_encoder.decode_ndim(ids)).split() for ids in sequences]


def error_rate_stats():
    """``{"WER": ..., "CER": ...}`` SpeechBrain error-rate accumulators."""
    return {"WER": sb.utils.metric_stats.ErrorRateStats(),
            "CER": sb.utils.metric_stats.ErrorRateStats(split_tokens=True)}


class CTCProbeBrain(LayerMixProbeBrain):
    """Weighted layer sum + BiLSTM + CTC on cached features, or on a live frozen ``encoder`` when set."""

    def compute_forward(self, batch, stage):
        mixed, frame_lengths = self.mixed_features(batch)
        logits = self.modules.head(mixed, frame_lengths)
        return logits.log_softmax(-1), frame_lengths

    def compute_objectives(self, predictions, batch, stage):
        log_probs, frame_lengths = predictions
        tokens, token_lens = batch.tokens
        loss = torch.nn.functional.ctc_loss(
            log_probs.transpose(0, 1), tokens, frame_lengths,
            torch.round(token_lens * tokens.shape[1]).long(), blank=0, zero_infinity=True)
        if stage != sb.Stage.TRAIN:
            hyps = greedy_transcripts(log_probs.detach().cpu(), frame_lengths, self.vocab)
            refs = [wrd.split() for wrd in batch.wrd]
            for stats in self.error_stats.values():
                stats.append(batch.id, hyps, refs)
        return loss

    def on_stage_start(self, stage, epoch=None):
        self.error_stats = error_rate_stats()
        self.stage_started = time.time()

    def on_stage_end(self, stage, stage_loss, epoch=None):
        stats = {"loss": stage_loss, "minutes": round((time.time() - self.stage_started) / 60, 2)}
        if stage == sb.Stage.TRAIN:
            self.train_stats = stats
            return
        stats.update({name: s.summarize("error_rate") for name, s in self.error_stats.items()})
        if stage == sb.Stage.VALID:
            self.log_epoch(epoch, stats)
            best_key = self.hparams.best_key
            self.checkpointer.save_and_keep_only(meta={best_key: stats[best_key]}, min_keys=[best_key])
        else:
            self.hparams.train_logger.log_stats(
                stats_meta={"test set": self.test_set, "checkpoint of epoch": self.hparams.epoch_counter.current},
                test_stats=stats)
            with open(Path(self.hparams.output_folder) / f"wer_{self.test_set}.txt", "w", encoding="utf-8") as f:
                self.error_stats["WER"].write_stats(f)
            self.test_stats = stats


def dataio_prepare(hparams, splits, caches=None):
    """Datasets of transcripts and cached features (``feats``), or audio (``sig``) without ``caches``."""
    datasets = {}
    for split in splits:
        data = load_dataset(Path(hparams["manifest_folder"]) / f"{split}.csv", hparams["data_folder"])
        if caches is None:
            sb.dataio.dataset.add_dynamic_item([data], load_audio, takes="wav", provides="sig")
        else:
            sb.dataio.dataset.add_dynamic_item([data], caches[split].get, takes="id", provides="feats")
        datasets[split] = data
    vocab = load_text_encoder(hparams["save_folder"], datasets[hparams["train_split"]])

    @sb.utils.data_pipeline.takes("wrd")
    @sb.utils.data_pipeline.provides("tokens")
    def tokens(wrd):
        return vocab.encode_sequence_torch(list(wrd))

    sb.dataio.dataset.add_dynamic_item(list(datasets.values()), tokens)
    inputs = "sig" if caches is None else "feats"
    sb.dataio.dataset.set_output_keys(list(datasets.values()), ["id", inputs, "tokens", "wrd"])
    return datasets, vocab


def compute_features(hparams, encoder, fingerprint, splits):
    """Feature caches of every split (built once per encoder, manifest and settings)."""
    return {split: cache_features(encoder, Path(hparams["manifest_folder"]) / f"{split}.csv", hparams["data_folder"],
                                  hparams["feature_folder"], batch_size=hparams["feature_batch_size"],
                                  fingerprint=fingerprint)
            for split in splits}


def main(argv):
    started = time.time()
    hparams, run_opts = start_experiment(argv, process_group=False)
    torch.set_num_threads(hparams["torch_threads"])
    encoder, fingerprint = load_probe_encoder(hparams, run_opts.device)
    splits = [hparams["train_split"], hparams["valid_split"], *hparams["test_splits"]]
    caches = None
    if hparams["cache_features"]:
        run_on_main(compute_features, args=[hparams, encoder, fingerprint, splits])
        caches = compute_features(hparams, encoder, fingerprint, splits)  # complete: only opens them
    feature_minutes = (time.time() - started) / 60
    datasets, vocab = dataio_prepare(hparams, splits, caches)

    weighted_sum = hparams["weighted_sum"](encoder)
    head = hparams["head"](input_size=weighted_sum.hidden_size, n_outputs=len(vocab))
    checkpoint_probe(hparams, fingerprint, weighted_sum, head)
    brain = CTCProbeBrain(modules={"weighted_sum": weighted_sum, "head": head}, hparams=hparams,
                          run_opts=run_opts, checkpointer=hparams["checkpointer"])
    brain.vocab = vocab
    if caches is None:
        brain.encoder = encoder.to(brain.device)  # frozen, outside the modules: never trained nor switched to train()
    train_sampler = sb.dataio.sampler.DynamicBatchSampler(
        datasets[hparams["train_split"]], max_batch_length=hparams["max_batch_seconds"],
        num_buckets=hparams["num_buckets"], length_func=lambda x: float(x["duration"]), shuffle=True,
        seed=hparams["seed"])
    fit_started = time.time()
    brain.fit(hparams["epoch_counter"], datasets[hparams["train_split"]], datasets[hparams["valid_split"]],
              train_loader_kwargs={"batch_sampler": train_sampler, "num_workers": hparams["num_workers"]},
              valid_loader_kwargs=hparams["test_dataloader_opts"])
    fit_minutes = (time.time() - fit_started) / 60
    epochs = hparams["epoch_counter"].current  # testing loads the best checkpoint, and its epoch count

    metrics = {}
    for split in hparams["test_splits"]:
        brain.test_set = split
        brain.evaluate(datasets[split], min_key=hparams["best_key"], test_loader_kwargs=hparams["test_dataloader_opts"])
        metrics[split] = brain.test_stats
    if if_main_process():
        train = datasets[hparams["train_split"]]
        results = {
            "task": "asr_ctc_probe", "encoder_name": hparams["encoder_name"],
            "encoder_source": hparams["encoder_source"], **brain.describe(encoder, fingerprint),
            "metrics": metrics, "vocabulary": len(vocab),
            "train_hours": round(sum(float(train.data[i]["duration"]) for i in train.data_ids) / 3600, 4),
            "epochs": epochs, "best_epoch": hparams["epoch_counter"].current,
            "feature_minutes": round(feature_minutes, 2), "train_minutes": round(fit_minutes, 2),
            "this_run_minutes": round((time.time() - started) / 60, 2), "seed": hparams["seed"],
        }
        write_results(hparams["output_folder"], "results.json", results)
    return brain


if __name__ == "__main__":
    main(sys.argv[1:])
