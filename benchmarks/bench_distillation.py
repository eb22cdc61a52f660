"""Benchmark of distillation training (prints figures; not a test).

(a) Student training throughput, in audio seconds per wall second, of our
    DistilHuBERT (:class:`lobes.students.DistilHuBERT` +
    :func:`lobes.losses.l1_cosine_loss` + AdamW) against s3prl's
    ``DistillerModel`` (the model of s3prl's ``pretrain/distiller``, with the
    L1 + cosine loss of its pretrain expert) on the same student config and the
    same batch. Targets are precomputed: only the student step (forward, loss,
    backward, gradient clipping, AdamW) is timed. The two steps alternate
    (ABBA order); the medians are reported, and the median of the per-round
    ratios (robust to the machine's drifts). s3prl is imported from
    ``--s3prl_path`` only (install it outside the project venv, e.g.
    ``pip install --no-deps --target /tmp/s3prl_pkgs s3prl==0.4.18``); without
    it only our figures are printed.
(b) Epoch time of the distillation recipe's loop (``DistillBrain``,
    ``load_datasets`` and ``add_pipelines`` of ``tasks/distillation.py``, which
    ``recipes/SynthDomains/distillation/train.py`` runs, and ``build_caches`` of
    ``tasks/teacher_targets.py``) with the teacher-target
    cache on and off (``--freeze_cnn``: the student's CNN without gradients), on
    generated audio (or ``--manifest``), with a randomly initialised teacher saved
    like the teacher recipe saves it: the offline teacher's shape
    (``teacher/hparams/hubert_small.yaml``: 6 layers, 256 wide) or, with
    ``--cache_teacher base``, HuBERT Base's (12 x 768, the student 2 x 768).
    The first epoch with the cache includes building it. ``--cache_cnn``
    (with ``--freeze_cnn``): the cache holds the teacher's CNN output as well
    (the recipe's ``cache_cnn_features``), so the student's CNN never runs.

Example::

    python benchmarks/bench_distillation.py --s3prl_path /tmp/s3prl_pkgs
    python benchmarks/bench_distillation.py --small --skip_cache --s3prl_path /tmp/s3prl_pkgs
    python benchmarks/bench_distillation.py --skip_throughput --manifest pool.csv --data_root data/SynthDomains
    python benchmarks/bench_distillation.py --skip_throughput --freeze_cnn
    python benchmarks/bench_distillation.py --skip_throughput --cache_teacher base --freeze_cnn
    python benchmarks/bench_distillation.py --skip_throughput --freeze_cnn --cache_cnn
"""

import argparse
import contextlib
import functools
import importlib.util
import os
import shutil
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "SynthDomains" / "distillation"
TEACHER_HPARAMS = ROOT / "recipes" / "SynthDomains" / "teacher" / "hparams" / "hubert_small.yaml"
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from lobes.encoder import frame_mask  # noqa: E402
from lobes.losses import l1_cosine_loss  # noqa: E402
from lobes.students import DistilHuBERT  # noqa: E402
from tasks.teacher_targets import build_caches  # noqa: E402

SAMPLE_RATE = 16000


# ----------------------------------------------------------------- configs --
def small_teacher_config(workdir):
    """The offline teacher's ``HubertConfig``, read from ``teacher/hparams/hubert_small.yaml``.

    Parameters
    ----------
    workdir : pathlib.Path
        Scratch folder for the yaml's ``output_folder`` (its checkpointer makes folders).

    Returns
    -------
    transformers.HubertConfig
        As the teacher recipe exports it (``mask_time_prob`` 0.05).
    """
    from hyperpyyaml import load_hyperpyyaml

    with open(TEACHER_HPARAMS, encoding="utf-8") as handle:
        hparams = load_hyperpyyaml(handle, {"output_folder": str(workdir / "teacher_yaml")})
    config = hparams["hubert_config"]
    config.mask_time_prob = 0.05  # what teacher/train.py writes into the exported config
    return config


def base_teacher_config():
    """HuBERT Base: ``transformers.HubertConfig()`` defaults (12 x 768, 7-layer 512-channel CNN)."""
    from transformers import HubertConfig

    return HubertConfig()


def thirds(n_layers):
    """DistilHuBERT's predicted layers: 4-8-12 of 12, 2-4-6 of 6."""
    return [n_layers // 3, 2 * n_layers // 3, n_layers]


def teacher_stub(config, normalize, use_mask):
    """What :class:`lobes.students.DistilHuBERT` reads from a teacher, without building its weights."""
    return types.SimpleNamespace(config=config, normalize=normalize, use_mask=use_mask,
                                 num_layers=config.num_hidden_layers, hidden_size=config.hidden_size)


def s3prl_distiller_config(student_hf_config, target_layers, teacher_hidden):
    """The s3prl ``DistillerConfig`` fields that reproduce our DistilHuBERT student.

    Parameters
    ----------
    student_hf_config : transformers.HubertConfig
        Our student's encoder config (the teacher's with fewer layers).
    target_layers : sequence of int
        Predicted teacher layers (``pred_layer_id``; ``n_tasks`` is their number).
    teacher_hidden : int
        Width of the teacher's hidden states (``final_dim``).

    Returns
    -------
    dict
        Keyword dictionary for ``s3prl.upstream.distiller.model.DistillerConfig``.
    """
    c = student_hf_config
    layers = ", ".join(f"({d}, {k}, {s})" for d, k, s in zip(c.conv_dim, c.conv_kernel, c.conv_stride))
    if c.conv_bias:
        raise ValueError("s3prl's DistillerModel builds its CNN without bias")
    return {
        # CNN: HF "group" = GroupNorm on the first layer = fairseq/s3prl "default"; "layer" = "layer_norm"
        "extractor_mode": {"group": "default", "layer": "layer_norm"}[c.feat_extract_norm],
        "extractor_conv_feature_layers": f"[{layers}]",
        "extractor_dropout": 0.0,
        "feature_grad_mult": 1.0,  # HF has no gradient multiplier (s3prl's release: 0.1, same cost)
        "conv_pos": c.num_conv_pos_embeddings,
        "conv_pos_groups": c.num_conv_pos_embedding_groups,
        "encoder_layers": c.num_hidden_layers,
        "encoder_embed_dim": c.hidden_size,
        "encoder_ffn_embed_dim": c.intermediate_size,
        "encoder_attention_heads": c.num_attention_heads,
        "activation_fn": c.hidden_act,
        "layer_norm_first": bool(c.do_stable_layer_norm),
        "attention_type": "original",
        "dropout": c.hidden_dropout,
        "attention_dropout": c.attention_dropout,
        "activation_dropout": c.activation_dropout,
        "encoder_layerdrop": 0.0,
        # expand-last heads: Linear(D, D*N) -> GELU -> N x Linear(D, D_teacher)
        "final_dim": teacher_hidden,
        "out_layer_type": "expand-last",
        "out_layer_inter_dim": -1,
        "n_tasks": len(target_layers),
        "task_emb_type": "expand-last",
        "pred_layer_id": list(target_layers),
        "loss_type": "l1",
        "feat_pen_loss": 0.0,
        "cosine_loss": 1.0,
        "init_teacher_conv_layers": False,
        "init_teacher_encoder_layers": False,
    }


def count(module):
    """Number of parameters of ``module`` (0 for ``None``)."""
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def ours_blocks(student):
    """Parameter counts of our student by block, named like s3prl's."""
    enc = student.encoder
    return {"cnn": count(enc.feature_extractor),
            "feature LayerNorm": count(enc.feature_projection.layer_norm),
            "projection": count(enc.feature_projection.projection),
            "pos conv": count(enc.encoder.pos_conv_embed),
            "encoder LayerNorm": count(enc.encoder.layer_norm),
            "layers": count(enc.encoder.layers),
            "heads": count(student.expand) + count(student.heads)}


def s3prl_blocks(model):
    """Parameter counts of s3prl's ``DistillerModel`` by block."""
    return {"cnn": count(model.feature_extractor),
            "feature LayerNorm": 0,
            "projection": count(model.post_extract_proj),
            "pos conv": count(model.encoder.pos_conv),
            "encoder LayerNorm": count(model.encoder.layer_norm),
            "layers": count(model.encoder.layers),
            "heads": count(model.output_layer)}


def import_s3prl(path):
    """``(DistillerConfig, DistillerModel)`` from ``path``, or ``(None, reason)``."""
    if not path:
        return None, "no --s3prl_path given"
    if not Path(path).is_dir():
        return None, f"--s3prl_path {path} is not a folder"
    sys.path.insert(0, str(Path(path).resolve()))
    try:
        from s3prl.upstream.distiller.model import DistillerConfig, DistillerModel
    except Exception as error:  # any import failure: report it and go on with our figures
        return None, f"cannot import s3prl.upstream.distiller.model from {path}: {type(error).__name__}: {error}"
    return (DistillerConfig, DistillerModel), None


def s3prl_loss(pred, target, cosine_weight=1.0):
    """The objective of s3prl's distiller pretrain expert (``compute_loss``), re-stated.

    ``mean |pred - target| + cosine_weight * mean(-log sigmoid(cos(pred, target)))``
    over ``B x N x T`` (no padding mask), plus ``feat_pen_loss`` (0) times the
    feature penalty, which the expert computes anyway and is left out here.
    """
    rec = (pred - target).abs().mean()
    sim = -F.logsigmoid(F.cosine_similarity(pred, target, dim=-1)).mean()
    return rec + cosine_weight * sim


# --------------------------------------------------------- (a) throughput --
def train_step(params, optimizer, forward_loss, max_grad_norm):
    """One optimiser step; returns its wall time in seconds."""
    start = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    loss = forward_loss()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    optimizer.step()
    return time.perf_counter() - start, float(loss.detach())


def bench_throughput(args, workdir):
    """Print student-step throughput of ours vs s3prl's DistillerModel on one batch."""
    if args.small:
        teacher_config, normalize, use_mask = small_teacher_config(workdir), True, True  # teacher_hf's extractor
        shape = "offline teacher shape (hubert_small.yaml): CNN 64 ch, 256 wide"
    else:
        teacher_config, normalize, use_mask = base_teacher_config(), False, False  # HuBERT Base's extractor
        shape = "DistilHuBERT-Base: CNN 512 ch, 768 wide"
    target_layers = thirds(teacher_config.num_hidden_layers)
    torch.manual_seed(0)
    ours = DistilHuBERT(teacher_stub(teacher_config, normalize, use_mask), n_layers=args.student_layers,
                        target_layers=target_layers, init_from_teacher=False).train()
    c = ours.encoder.config
    print(f"[throughput] {shape}; student {c.num_hidden_layers} x {c.hidden_size} (FFN {c.intermediate_size}, "
          f"{c.num_attention_heads} heads), heads for teacher layers {target_layers}; batch {args.batch_size} x "
          f"{args.seconds:g} s; input policy normalize={normalize} attention_mask={use_mask}; "
          f"torch threads {torch.get_num_threads()}")

    classes, skipped = import_s3prl(args.s3prl_path)
    theirs = None
    if classes is not None:
        DistillerConfig, DistillerModel = classes
        fields = s3prl_distiller_config(c, target_layers, teacher_config.hidden_size)
        torch.manual_seed(0)
        with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):  # DistillerModel prints its settings
            theirs = DistillerModel(DistillerConfig(fields)).train()
        print("[throughput] s3prl DistillerConfig: " + ", ".join(f"{k}={v}" for k, v in fields.items()))
        a, b = ours_blocks(ours), s3prl_blocks(theirs)
        print("[throughput] parameters by block (ours / s3prl): "
              + ", ".join(f"{k} {a[k]:,}/{b[k]:,}" for k in a))
        total_a, total_b = count(ours), count(theirs)
        others = {k for k in a if a[k] != b[k]}
        print(f"[throughput] parameters: ours {total_a:,} ({total_a / 1e6:.2f} M), s3prl {total_b:,} "
              f"({total_b / 1e6:.2f} M); difference {total_a - total_b:,} = "
              + (", ".join(sorted(others)) or "none")
              + (" (HF keeps HuBERT's LayerNorm before the projection; s3prl's distiller has none)"
                 if others == {"feature LayerNorm"} else ""))
        print(f"[throughput] without the training heads (what is kept after distillation): ours "
              f"{total_a - a['heads']:,}, s3prl {total_b - b['heads']:,} (DistilHuBERT paper: 23.49 M at Base shape)")
    else:
        print(f"[throughput] parameters: ours {count(ours):,} ({count(ours) / 1e6:.2f} M)")
        print(f"[throughput] s3prl skipped: {skipped}")

    generator = torch.Generator().manual_seed(1)
    n_samples = int(args.seconds * SAMPLE_RATE)
    wavs = 0.1 * torch.randn(args.batch_size, n_samples, generator=generator)
    wav_lens = torch.ones(args.batch_size)
    with torch.no_grad():
        n_frames = int(ours.encoder._get_feat_extract_output_lengths(torch.tensor(n_samples)))
    targets = torch.randn(len(target_layers), args.batch_size, n_frames, teacher_config.hidden_size,
                          generator=generator)  # [N, B, T, D], as DistillBrain gets them
    targets_s3prl = targets.permute(1, 0, 2, 3).contiguous()  # [B, N, T, D], as s3prl's expert stacks them
    pad_mask = torch.ones(args.batch_size, n_samples)  # s3prl: 1 on real samples

    def ours_loss():
        predictions, frame_lengths = ours(wavs, wav_lens)
        n = min(predictions.shape[2], targets.shape[2])
        loss, _ = l1_cosine_loss(predictions[:, :, :n], targets[:, :, :n], frame_mask(frame_lengths, n))
        return loss

    def s3prl_step_loss():
        _, _, pred, _ = theirs(wavs, pad_mask)
        return s3prl_loss(pred, targets_s3prl)

    runs = {"ours": (ours, ours_loss)}
    if theirs is not None:
        runs["s3prl"] = (theirs, s3prl_step_loss)
    optimizers = {name: torch.optim.AdamW(model.parameters(), lr=2e-4, betas=(0.9, 0.98), eps=1e-6,
                                          weight_decay=1e-6) for name, (model, _) in runs.items()}
    times = {name: [] for name in runs}
    order = list(runs)
    for rep in range(args.warmup + args.reps):
        for name in (order if rep % 2 == 0 else order[::-1]):  # ABBA: neither always runs first
            model, loss_fn = runs[name]
            wall, loss = train_step(list(model.parameters()), optimizers[name], loss_fn, args.max_grad_norm)
            if not np.isfinite(loss):
                raise RuntimeError(f"{name}: non-finite loss {loss}")
            if rep >= args.warmup:
                times[name].append(wall)
    audio = args.batch_size * args.seconds
    medians = {}
    for name, values in times.items():
        medians[name] = statistics.median(values)
        print(f"[throughput] {name:5s} step median {medians[name]:.3f} s (min {min(values):.3f}, max "
              f"{max(values):.3f}, {len(values)} steps) = {audio / medians[name]:.1f} audio s per wall s")
    if "s3prl" in medians:
        # each round times both steps back to back: its ratio is paired, so slow drifts of the machine cancel
        ratios = [theirs_time / ours_time for theirs_time, ours_time in zip(times["s3prl"], times["ours"])]
        low, _, high = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else (ratios[0],) * 3
        print(f"[throughput] ours / s3prl throughput: {medians['s3prl'] / medians['ours']:.2f}x (ratio of the "
              f"medians); per round {statistics.median(ratios):.2f}x (median; quartiles {low:.2f}-{high:.2f}) "
              f"(target >= 1.0x)")


# --------------------------------------------------- (b) cache on vs off --
def load_recipe():
    """The distillation recipe's ``train.py`` as a module (as tests/test_distillation.py loads it)."""
    spec = importlib.util.spec_from_file_location("distill_train", RECIPE / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_corpus(folder, n_train, n_valid, min_seconds, max_seconds, seed=0):
    """Write FLAC utterances (tones plus noise) and SpeechBrain CSVs ``subset.csv`` and ``asr_dev.csv``.

    Parameters
    ----------
    folder : pathlib.Path
        Audio goes to ``folder/audio``, manifests to ``folder/manifests``.
    n_train, n_valid : int
        Utterances in the training subset and the validation split.
    min_seconds, max_seconds : float
        Uniform range of the durations.
    seed : int
        Seed of the generator.

    Returns
    -------
    tuple of (pathlib.Path, pathlib.Path)
        The data root and the manifest folder.
    """
    rng = np.random.default_rng(seed)
    audio, manifests = folder / "audio", folder / "manifests"
    audio.mkdir(parents=True, exist_ok=True)
    manifests.mkdir(parents=True, exist_ok=True)
    for name, n in (("subset", n_train), ("asr_dev", n_valid)):
        lines = ["ID,duration,wav"]
        for i in range(n):
            seconds = round(float(rng.uniform(min_seconds, max_seconds)), 2)
            t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
            wav = sum(np.sin(2 * np.pi * f * t * (1 + 0.1 * np.sin(t))) for f in rng.uniform(100, 4000, 3))
            wav = 0.1 * wav + 0.05 * rng.normal(size=len(t))
            sf.write(audio / f"{name}{i:04d}.flac", wav.astype(np.float32), SAMPLE_RATE, subtype="PCM_16")
            lines.append(f"{name}{i:04d},{seconds},$data_root/audio/{name}{i:04d}.flac")
        (manifests / f"{name}.csv").write_text("\n".join(lines) + "\n")
    return folder, manifests


def save_teacher(config, folder, normalize=True):
    """A randomly initialised ``HubertModel`` saved as the teacher recipe exports one."""
    from transformers import HubertModel, Wav2Vec2FeatureExtractor

    torch.manual_seed(0)
    HubertModel(config).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SAMPLE_RATE, padding_value=0.0, do_normalize=normalize,
                             return_attention_mask=True).save_pretrained(folder)
    return folder


def run_recipe_loop(recipe, args, data_root, manifests, subset_csv, teacher_dir, run_dir, use_cache):
    """Train a fresh student for ``args.epochs`` epochs with the recipe's loop; return timings.

    Returns
    -------
    dict
        ``build`` (cache build, s), ``train`` and ``epoch`` (per-epoch lists, s;
        ``epoch`` = train + validation + checkpoint), ``steps`` per epoch, ``step``
        (wall time of each ``fit_batch`` after the first epoch, s).
    """
    import speechbrain as sb

    from lobes.encoder import FrozenTeacher

    hparams = {
        "data_folder": str(data_root), "manifest_folder": str(manifests), "valid_split": "asr_dev",
        "valid_utterances": args.valid_utterances, "crop_seconds": args.crop_seconds,
        "teacher_source": str(teacher_dir), "cache_folder": str(run_dir / "teacher_targets"),
        "cache_batch_size": args.cache_batch_size, "batch_size": args.train_batch_size,
        "loss": functools.partial(l1_cosine_loss, cos_weight=1.0), "max_grad_norm": 10.0,
        "train_logger": sb.utils.train_logger.FileTrainLogger(save_file=str(run_dir / "train_log.txt")),
    }
    torch.manual_seed(1234)
    teacher = FrozenTeacher(teacher_dir)
    student = DistilHuBERT(teacher, n_layers=args.student_layers, target_layers=args.target_layers,
                           freeze_cnn=args.freeze_cnn)
    train, valid = recipe.load_datasets(hparams, subset_csv)
    started = time.perf_counter()
    caches = {}
    if use_cache:
        for name, dataset in (("train", train), ("valid", valid)):
            built = build_caches(hparams, name, dataset, teacher, student.target_layers, args.cache_cnn)
            caches[f"{name}_cache"] = built["targets"]
            if args.cache_cnn:
                caches[f"{name}_cnn_cache"] = built["cnn"]
    build = time.perf_counter() - started
    recipe.add_pipelines(hparams, train, valid, teacher, **caches)
    epochs = sb.utils.epoch_loop.EpochCounter(limit=args.epochs)
    checkpointer = sb.utils.checkpoints.Checkpointer(str(run_dir / "save"), recoverables={
        "student": student, "counter": epochs})
    steps = -(-len(train) // args.train_batch_size)
    hparams["lr_schedule"] = sb.nnet.schedulers.LinearWarmupScheduler(5e-4, int(0.07 * steps * args.epochs),
                                                                       steps * args.epochs)
    marks, step_times = [], []

    class TimedBrain(recipe.DistillBrain):
        def fit_batch(self, batch):
            start = time.perf_counter()
            loss = super().fit_batch(batch)
            step_times.append(time.perf_counter() - start)
            return loss

        def on_stage_start(self, stage, epoch=None):
            marks.append((stage, "start", time.perf_counter()))
            super().on_stage_start(stage, epoch)

        def on_stage_end(self, stage, stage_loss, epoch=None):
            super().on_stage_end(stage, stage_loss, epoch)  # VALID: logs and saves the checkpoint
            marks.append((stage, "end", time.perf_counter()))

    brain = TimedBrain(modules={"student": student},
                       opt_class=functools.partial(torch.optim.AdamW, lr=5e-4, weight_decay=0.0),
                       hparams=hparams, run_opts={"device": "cpu", "noprogressbar": True},
                       checkpointer=checkpointer)
    brain.teacher = teacher
    brain.target_layers = student.target_layers
    brain.fit(epochs, train, valid,
              train_loader_kwargs={"batch_size": args.train_batch_size, "shuffle": True,
                                   "num_workers": args.num_workers},
              valid_loader_kwargs={"batch_size": args.train_batch_size})
    train_starts = [t for s, e, t in marks if s == sb.Stage.TRAIN and e == "start"]
    train_ends = [t for s, e, t in marks if s == sb.Stage.TRAIN and e == "end"]
    valid_ends = [t for s, e, t in marks if s == sb.Stage.VALID and e == "end"]
    return {"build": build, "steps": steps, "loss": brain.last_stats["loss"], "step": step_times[steps:],
            "train": [e - s for s, e in zip(train_starts, train_ends)],
            "epoch": [e - s for s, e in zip(train_starts, valid_ends)]}


def ceiling_probe(args, data_root, subset_csv, teacher_dir, reps=3):
    """Warm the kernels up, then print what the cache can save at most on one training batch.

    The cache removes the teacher's forward pass and nothing else, so the
    speed-up of a training step is at most ``1 + teacher forward / student step``;
    with ``--cache_cnn`` it is ``(teacher forward + student step) / student step
    on cached CNN features``.
    """
    from lobes.encoder import FrozenTeacher

    rows = subset_csv.read_text().splitlines()[1:args.train_batch_size + 1]
    crop = int(args.crop_seconds * SAMPLE_RATE)
    sigs = [torch.from_numpy(sf.read(row.split(",")[2].replace("$data_root", str(data_root)), dtype="float32",
                                     frames=crop)[0]) for row in rows]
    wavs = torch.nn.utils.rnn.pad_sequence(sigs, batch_first=True)
    wav_lens = torch.tensor([len(sig) / wavs.shape[1] for sig in sigs])
    torch.manual_seed(0)
    teacher = FrozenTeacher(teacher_dir)
    student = DistilHuBERT(teacher, n_layers=args.student_layers, target_layers=args.target_layers,
                           freeze_cnn=args.freeze_cnn).train()
    optimizer = torch.optim.AdamW(student.parameters(), lr=5e-4)

    def teacher_forward():
        start = time.perf_counter()
        hidden, _ = teacher(wavs, wav_lens)
        return time.perf_counter() - start, hidden[args.target_layers]

    _, targets = teacher_forward()
    cnn_features = teacher.forward_with_cnn(wavs, wav_lens)[1] if args.cache_cnn else None

    def loss_fn(features=None):
        predictions, frame_lengths = student(wavs, wav_lens, cnn_features=features)
        n = min(predictions.shape[2], targets.shape[2])
        return l1_cosine_loss(predictions[:, :, :n], targets[:, :, :n], frame_mask(frame_lengths, n))[0]

    times = {"teacher": [], "student": [], "cached": []}
    params = list(student.parameters())
    for rep in range(1 + reps):  # the first round warms up
        t_teacher = teacher_forward()[0]
        t_student = train_step(params, optimizer, loss_fn, 10.0)[0]
        t_cached = t_student
        if cnn_features is not None:
            t_cached = train_step(params, optimizer, functools.partial(loss_fn, cnn_features), 10.0)[0]
        if rep:
            for key, value in (("teacher", t_teacher), ("student", t_student), ("cached", t_cached)):
                times[key].append(value)
    t_teacher, t_student, t_cached = (statistics.median(times[key]) for key in ("teacher", "student", "cached"))
    on_cnn = f", student step on cached CNN features {t_cached:.2f} s" if cnn_features is not None else ""
    print(f"[cache] one training batch ({len(sigs)} x <= {args.crop_seconds:g} s), medians of {reps}: teacher "
          f"forward {t_teacher:.2f} s, student step {t_student:.2f} s{on_cnn} -> the cache can speed a step up "
          f"by at most {(t_teacher + t_student) / t_cached:.2f}x", flush=True)


def bench_cache(args, workdir):
    """Print per-epoch times of the recipe loop with the teacher-target cache on and off."""
    import logging

    logging.getLogger("speechbrain").setLevel(logging.WARNING)
    recipe = load_recipe()
    if args.cache_teacher == "base":
        config, normalize = base_teacher_config(), False  # fairseq's HuBERT Base config: normalize false
    else:
        config, normalize = small_teacher_config(workdir), True
    if args.target_layers is None:
        args.target_layers = thirds(config.num_hidden_layers)
    teacher_dir = save_teacher(config, workdir / "teacher_hf", normalize)
    if args.manifest:
        data_root, subset_csv = Path(args.data_root), Path(args.manifest)
        manifests = workdir / "manifests"
        manifests.mkdir(exist_ok=True)
        shutil.copy(args.valid_manifest or args.manifest, manifests / "asr_dev.csv")
        source = f"{subset_csv}"
    else:
        data_root, manifests = make_corpus(workdir / "corpus", args.utterances, args.valid_utterances,
                                           args.min_seconds, args.max_seconds)
        subset_csv = manifests / "subset.csv"
        source = (f"generated: {args.utterances} utterances of {args.min_seconds:g}-{args.max_seconds:g} s, "
                  f"{args.valid_utterances} for validation")
    hours = sum(float(line.split(",")[1]) for line in subset_csv.read_text().splitlines()[1:]) / 3600
    print(f"[cache] subset {source} ({hours * 60:.1f} min); teacher {config.num_hidden_layers} x "
          f"{config.hidden_size} (CNN {config.conv_dim[0]} ch, random weights), student DistilHuBERT "
          f"{args.student_layers} layers -> teacher layers {args.target_layers}"
          f"{' (CNN frozen)' if args.freeze_cnn else ''}{'; CNN output cached' if args.cache_cnn else ''}; "
          f"batch {args.train_batch_size}, "
          f"crops {args.crop_seconds:g} s, {args.epochs} epochs per run, num_workers {args.num_workers}, "
          f"torch threads {torch.get_num_threads()}", flush=True)
    ceiling_probe(args, data_root, subset_csv, teacher_dir)
    results = {True: [], False: []}
    for rep in range(args.cache_repeats):
        for use_cache in ((False, True) if rep % 2 == 0 else (True, False)):  # interleaved
            run_dir = workdir / f"run{rep}_{'cache' if use_cache else 'live'}"
            timing = run_recipe_loop(recipe, args, data_root, manifests, subset_csv, teacher_dir, run_dir,
                                     use_cache)
            results[use_cache].append(timing)
            label = "cache on " if use_cache else "cache off"
            print(f"[cache] run {rep + 1} {label}: build {timing['build']:.2f} s; train per epoch "
                  + " ".join(f"{t:.2f}" for t in timing["train"]) + " s; epoch incl. validation + checkpoint "
                  + " ".join(f"{t:.2f}" for t in timing["epoch"]) + f" s ({timing['steps']} steps/epoch, "
                  f"median step after epoch 1 {statistics.median(timing['step']):.2f} s, "
                  f"last loss {timing['loss']:.5f})",
                  flush=True)

    def later(mode, key):
        return statistics.median(t for r in results[mode] for t in r[key][1:])

    def first(mode, key):
        return statistics.median(r[key][0] + r["build"] for r in results[mode])

    for key, what in (("train", "train stage"), ("epoch", "whole epoch (train + validation + checkpoint)")):
        off_first, on_first = first(False, key), first(True, key)
        off_later, on_later = later(False, key), later(True, key)
        print(f"[cache] {what}: first epoch off {off_first:.2f} s / on {on_first:.2f} s (incl. cache build "
              f"{statistics.median(r['build'] for r in results[True]):.2f} s); later epochs (median) off "
              f"{off_later:.2f} s / on {on_later:.2f} s -> cache speed-up {off_later / on_later:.2f}x "
              f"(target >= 2x)")
    off_step = statistics.median(t for r in results[False] for t in r["step"])
    on_step = statistics.median(t for r in results[True] for t in r["step"])
    print(f"[cache] training step (fit_batch) after epoch 1, median: off {off_step:.2f} s / on {on_step:.2f} s "
          f"-> {off_step / on_step:.2f}x")
    valid = statistics.median(e - t for r in results[True] for e, t in zip(r["epoch"], r["train"]))
    print(f"[cache] validation + checkpoint per epoch: {valid:.2f} s median with the cache on")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--s3prl_path", help="folder holding the s3prl package (put on sys.path only here)")
    parser.add_argument("--small", action="store_true",
                        help="(a) at the offline teacher's shape (hubert_small.yaml) instead of HuBERT Base")
    parser.add_argument("--batch_size", type=int, default=8, help="(a) batch size")
    parser.add_argument("--seconds", type=float, default=2.0, help="(a) seconds per waveform")
    parser.add_argument("--reps", type=int, default=15, help="(a) timed steps per model")
    parser.add_argument("--warmup", type=int, default=1, help="(a) untimed steps per model first")
    parser.add_argument("--max_grad_norm", type=float, default=5.0, help="(a) gradient clipping (both models)")
    parser.add_argument("--student_layers", type=int, default=2)
    parser.add_argument("--target_layers", type=int, nargs="+",
                        help="(b) teacher layers predicted (default: a third, two thirds and all of its layers)")
    parser.add_argument("--cache_teacher", choices=("small", "base"), default="small",
                        help="(b) teacher shape: the offline teacher's (hubert_small.yaml) or HuBERT Base's")
    parser.add_argument("--epochs", type=int, default=3, help="(b) epochs per run")
    parser.add_argument("--cache_repeats", type=int, default=2, help="(b) runs per mode, interleaved")
    parser.add_argument("--utterances", type=int, default=32, help="(b) generated training utterances")
    parser.add_argument("--valid_utterances", type=int, default=8, help="(b) validation utterances")
    parser.add_argument("--min_seconds", type=float, default=3.0, help="(b) shortest generated utterance")
    parser.add_argument("--max_seconds", type=float, default=8.0, help="(b) longest generated utterance")
    parser.add_argument("--crop_seconds", type=float, default=4.0, help="(b) training crops (recipe: 4)")
    parser.add_argument("--train_batch_size", type=int, default=8, help="(b) batch size (recipe: 8)")
    parser.add_argument("--cache_batch_size", type=int, default=8, help="(b) teacher batch when caching")
    parser.add_argument("--num_workers", type=int, default=1, help="(b) DataLoader workers (recipe: 1)")
    parser.add_argument("--freeze_cnn", action="store_true",
                        help="(b) the student's CNN without gradients (DistilHuBERT freeze_cnn)")
    parser.add_argument("--cache_cnn", action="store_true",
                        help="(b) the cache holds the teacher's CNN output too (needs --freeze_cnn)")
    parser.add_argument("--manifest", help="(b) SpeechBrain CSV to train on instead of generated audio")
    parser.add_argument("--valid_manifest", help="(b) validation CSV (default: --manifest)")
    parser.add_argument("--data_root", help="(b) replacement for $data_root in the manifests")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--skip_throughput", action="store_true")
    parser.add_argument("--skip_cache", action="store_true")
    parser.add_argument("--workdir", help="scratch folder (default: a temporary one, removed)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.manifest and not args.data_root:
        parser.error("--manifest needs --data_root")
    if args.cache_cnn and not args.freeze_cnn:
        parser.error("--cache_cnn needs --freeze_cnn (the cached CNN output stands in for a frozen CNN)")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(args.workdir or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        if not args.skip_throughput:
            bench_throughput(args, workdir)
        if not args.skip_cache:
            bench_cache(args, workdir)
    print(f"[total] {time.perf_counter() - started:.0f} s wall")


if __name__ == "__main__":
    main()
