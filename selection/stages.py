"""The whole selection run as one call: features -> k-means -> units -> selection -> outputs.

:func:`run_selection` is what recipes call (the selection recipe and the
distillation recipe, on every process under ``torchrun``). Every stage is cached under a hash of
what it depends on and skipped when its output exists:

* k-means codebook and units: :class:`selection.pipeline.UnitPipeline`, in
  ``units_folder`` (hash-keyed, so one folder can be shared by every selector);
* selection: keyed by the units files, the selector class and settings, the
  budget, the seed and the pool and target manifests; ``selection.json`` is
  written last and records that key, so a run killed while writing the outputs
  redoes the selection stage only.

Under ``torchrun`` every process extracts its shard of the units (in pieces); a
selector with a distributed form (``selector.distributed``) then selects with each
process reading only its own pieces (:mod:`selection.sharded`: the one-process subset
for random, longest, contrastive and DSIR; :mod:`selection.cluster_sharded`: the
one-process subset for cluster round robin; :mod:`selection.kcenter_sharded`: a
composable core-set for k-center; :mod:`selection.divergence_sharded`: a composed greedy
for divergence and coverage), and the report's figures come from counts summed
over the processes; for the other selectors process 0 merges the pieces and selects.

The k-means codebook is fitted on the pool only (never on the target), so that
one codebook and one set of pool units serve every selector, with or without a
target, and selectors are compared on the same units.

Outputs in ``output_folder`` (each written to a temporary file and renamed):

* ``subset.csv``: the selected pool rows, unchanged (SpeechBrain CSV), best first;
* ``len_for_bucket/subset.csv``: s3prl list (``file_path`` = that folder,
  ``sets: [subset]``, root = ``data_root``);
* ``fairseq/train.tsv``: fairseq audio list (``task.data`` = that folder);
* ``scores.csv``: ``ID,score`` of the selected utterances, when the selector scores;
* ``report.png``: composition and unit divergence (:func:`selection.report.write_report`);
* ``selection.json``: selector, settings, budget, hours, seed, input hashes,
  unit quality, per-domain hours, unit KL to the target, the selector's diagnostics and
  ``selector_seconds``, the wall time of the selector itself (scores and ranking, a proxy
  student's training and scoring included; the units, cached and shared by every selector on
  the same features, are not) and ``feature_seconds``, the feature pass that made the codebook
  and the units (features of the k-means sample and the fit, the units of the pool and of the
  target; kept beside the cached files, summed over the processes' pieces: see
  :meth:`selection.pipeline.UnitPipeline.feature_seconds`; ``null`` for files computed before
  it was kept).
"""

import csv
import io
import json
import logging
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from common.atomic import atomic_write_text, remove_temporaries
from common.hashing import file_sha256, settings_hash
from common.manifest_columns import read_columnar_manifest
from selection.outputs import (
    count_samples,
    write_fairseq_tsv,
    write_len_for_bucket_csv,
    write_selection_json,
    write_subset_csv,
)
from selection.pipeline import UnitPipeline, pool_pipeline
from selection.report import shard_report_counts, split_report_counts, write_report
from selection.selectors.base import SelectionResult, TargetError
from selection.sharded import ShardCache, UnitShard, collective_step
from selection.units import quality_of_counts, unit_quality

logger = logging.getLogger(__name__)

SUBSET = "subset.csv"
SELECTION_JSON = "selection.json"
SCORES = "scores.csv"
REPORT = "report.png"
LEN_FOR_BUCKET = Path("len_for_bucket") / "subset.csv"
FAIRSEQ_TSV = Path("fairseq") / "train.tsv"


def resolve_budget(pool, budget_hours=None, budget_fraction=None, usable_ids=None, usable_seconds=None):
    """Budget in hours: ``budget_hours`` when given, else ``budget_fraction`` of the pool's hours.

    Parameters
    ----------
    pool : common.manifest.Manifest
        Pool manifest.
    budget_hours : float, optional
        Absolute budget (takes precedence).
    budget_fraction : float, optional
        Share of the pool hours, in ``(0, 1]``.
    usable_ids : iterable of str, optional
        The utterances whose audio can be read: the fraction is of their
        hours (default: every utterance of the pool).
    usable_seconds : float, optional
        Their seconds, instead of ``usable_ids``.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        If neither is given, or the result is not positive.

    Example
    -------
    >>> from common.manifest import Manifest
    >>> pool = Manifest("pool.csv", ["ID", "duration", "wav"],
    ...                 [{"ID": "a", "duration": "1800", "wav": "a.flac"},
    ...                  {"ID": "b", "duration": "1800", "wav": "b.flac"}])
    >>> resolve_budget(pool, budget_fraction=0.1), resolve_budget(pool, budget_fraction=0.1, usable_ids=["a"])
    (0.1, 0.05)
    """
    if budget_hours is not None:
        budget = float(budget_hours)
    elif budget_fraction is not None:
        if not 0 < budget_fraction <= 1:
            raise ValueError(f"budget_fraction must be in (0, 1], got {budget_fraction}")
        if usable_seconds is None and usable_ids is not None:
            usable_seconds = pool.durations_of(list(usable_ids)).sum()
        hours = pool.total_hours if usable_seconds is None else float(usable_seconds) / 3600
        budget = float(budget_fraction) * hours
    else:
        raise ValueError("give budget_hours or budget_fraction")
    if not budget > 0:
        raise ValueError(f"budget must be > 0 hours, got {budget}")
    return budget


def load_selection(output_folder):
    """The :class:`~selection.selectors.base.SelectionResult` stored in ``output_folder``.

    Parameters
    ----------
    output_folder : str or os.PathLike
        Folder written by :func:`run_selection`.

    Returns
    -------
    SelectionResult
        IDs in ``subset.csv`` order, scores from ``scores.csv`` (``None`` if absent).
    """
    folder = Path(output_folder)
    record = json.loads((folder / SELECTION_JSON).read_text(encoding="utf-8"))
    with open(folder / SUBSET, newline="", encoding="utf-8") as handle:
        ids = [row["ID"] for row in csv.DictReader(handle)]
    scores = None
    if (folder / SCORES).exists():
        with open(folder / SCORES, newline="", encoding="utf-8") as handle:
            scores = np.array([float(row["score"]) for row in csv.DictReader(handle)])
    return SelectionResult(ids=ids, hours=record["hours"], budget_hours=record["budget_hours"], scores=scores,
                           selector=record["selector"], settings=record["settings"])


def _no_barrier():
    """Single process: nothing to wait for."""


@contextmanager
def _logged_time(stage, rank, world_size):
    """Log how long ``stage`` took on this process; under ``torchrun``, waits at barriers too (name them 'waiting')."""
    started = time.perf_counter()
    yield
    if world_size > 1:
        logger.info("process %d of %d: selection timing: %s %.1f s", rank, world_size, stage,
                    time.perf_counter() - started)
    elif not stage.startswith("waiting"):
        logger.info("selection timing: %s %.1f s", stage, time.perf_counter() - started)


def run_selection(pool_manifest, target_manifest, data_root, extractor, unit_settings, selector, output_folder,
                  units_folder=None, budget_hours=None, budget_fraction=0.1, seed=0, units_seed=None, rank=0,
                  world_size=1, barrier=None, group=None):
    """Select a subset of the pool under an hours budget; write and return it (cached stages).

    Parameters
    ----------
    pool_manifest : str or os.PathLike
        SpeechBrain CSV of the candidate utterances (``ID,duration,wav,...``).
    target_manifest : str or os.PathLike or None
        SpeechBrain CSV of target-domain audio; ``None`` (or a file without
        rows) for target-free selection.
    data_root : str or os.PathLike
        Replacement for ``$data_root`` in both manifests.
    extractor : callable
        Feature extractor with ``settings()``, ``frame_rate`` (see
        :mod:`selection.features`).
    unit_settings : dict
        Keyword arguments of :class:`selection.pipeline.UnitPipeline` other
        than the extractor, folder and seed: ``n_clusters`` (required),
        ``fit_hours``, ``max_fit_frames``, ``frames_per_utterance``, ``dedup``,
        ``batch_size``, ``kmeans_settings``.
    selector : selection.selectors.base.Selector
        The selector (its own seed is part of its settings).
    output_folder : str or os.PathLike
        Where the outputs go (see module notes).
    units_folder : str or os.PathLike, optional
        Cache of codebooks and units (default: ``output_folder/units``).
    budget_hours : float, optional
        Audio to select; when ``None``, ``budget_fraction`` of the pool hours
        (see :func:`resolve_budget`). A budget at least the pool takes the
        whole pool, with a warning.
    budget_fraction : float
        Share of the pool used when ``budget_hours`` is ``None``.
    seed : int
        The selection's seed, recorded in ``selection.json``; also the seed
        of the k-means sample and fit unless ``units_seed`` is given.
    units_seed : int, optional
        A fixed seed for the k-means sample and fit: the codebook and units
        (and the embeddings cached with them) are then shared by every
        ``seed``, so one feature pass over the pool serves them all.
    rank, world_size : int
        This process and the number of processes sharing the unit extraction.
    barrier : callable, optional
        Blocks until every process reaches it (e.g.
        ``speechbrain.utils.distributed.ddp_barrier``); required when
        ``world_size > 1``. Every rank calls it three times: after rank 0 fits
        k-means, after each rank extracts its shard of units, and after rank 0
        wrote the selection.
    group : selection.collectives.SingleProcess, optional
        The processes' collectives (:class:`selection.collectives.TorchProcessGroup`
        under ``torchrun``). With it, a selector with a distributed form
        (``selector.distributed``: ``"exact"`` for random, longest, contrastive and DSIR,
        whose subset does not depend on the sharding, :mod:`selection.sharded`, and for
        cluster round robin, :mod:`selection.cluster_sharded`; a
        composable core-set for target-free k-center, :mod:`selection.kcenter_sharded`, and
        for divergence and coverage, :mod:`selection.divergence_sharded`)
        runs on every process over its own shard of the units; without it, or for
        the other selectors, rank 0 merges the shards and selects.

    Returns
    -------
    tuple of (pathlib.Path, SelectionResult)
        ``subset.csv`` and the selection (on every rank).

    Raises
    ------
    common.manifest.ManifestError
        For a malformed manifest (the message names the file and line).
    selection.selectors.base.TargetError
        If the selector is target-aware and the target manifest is missing or empty.
    selection.units.UnitError
        If k-means cannot be fitted (e.g. fewer frames than ``n_clusters``) or is degenerate.
    ValueError
        For an empty pool, a bad budget, or ``world_size > 1`` without a barrier.
    """
    if world_size > 1 and barrier is None:
        raise ValueError("world_size > 1 needs a barrier")
    barrier = barrier or _no_barrier
    output_folder = Path(output_folder)
    units_folder = Path(units_folder) if units_folder is not None else output_folder / "units"
    pool = read_columnar_manifest(pool_manifest, data_root=data_root)  # arrays, no Python object per row
    target = read_columnar_manifest(target_manifest, data_root=data_root) if target_manifest is not None else None
    if len(pool) == 0:
        raise ValueError(f"{pool.path}: the pool manifest has no utterances")
    if target is not None and len(target) == 0:
        logger.warning("%s: target manifest without utterances, selecting without a target", target.path)
        target = None
    if selector.needs_target and target is None:
        raise TargetError(f"{type(selector).__name__} is target-aware but the target manifest "
                          f"{target_manifest} is {'missing' if target_manifest is None else 'empty'}")
    resolve_budget(pool, budget_hours, budget_fraction)  # a bad budget stops before any work

    pipeline = pool_pipeline(extractor, unit_settings, units_folder, data_root,
                             seed if units_seed is None else units_seed)
    if rank == 0:
        for folder in (output_folder, units_folder):  # what killed runs left half-written
            if folder.is_dir() and (removed := remove_temporaries(folder)):
                logger.info("removed %d temporary files a killed run left in %s", removed, folder)
        with _logged_time("k-means", rank, world_size):
            codebook, codebook_path = pipeline.fit_codebook(pool)
    with _logged_time("waiting for k-means", rank, world_size):
        barrier()
    if rank != 0:
        codebook, codebook_path = pipeline.fit_codebook(pool)  # loads what rank 0 wrote
    manifests = {"pool": pool} if target is None else {"pool": pool, "target": target}
    files = {}
    with _logged_time("units" + (f" (shard {rank})" if world_size > 1 else ""), rank, world_size):
        for name, manifest in manifests.items():
            files[name] = pipeline.extract(manifest, name, codebook, codebook_path, rank, world_size)
    with _logged_time("waiting for the other shards", rank, world_size):
        barrier()
    inputs = {"pool_manifest": pool.path, "codebook": codebook_path,
              "pool_units": pipeline.units_path(codebook_path, pool, "pool")}
    if target is not None:
        inputs.update(target_manifest=target.path, target_units=pipeline.units_path(codebook_path, target, "target"))
    provenance = {"unit_settings": {**pipeline.settings, "dedup": pipeline.dedup}, "world_size": world_size,
                  "budget_rule": {"budget_hours": budget_hours, "budget_fraction": budget_fraction},
                  "unit_quality": {"fit_sample": codebook.quality.as_dict()}}
    if world_size > 1 and group is not None and selector.distributed:
        with _logged_time("sharded selection", rank, world_size):
            shards = {name: UnitShard(paths if rank == 0 or paths != [inputs[f"{name}_units"]] else [])
                      for name, paths in files.items()}  # a whole units file left by an earlier run: process 0's
            shards.setdefault("target", UnitShard([]))
            result = _sharded_selection_stage(pool, target, shards, codebook.n_clusters, selector,
                                              (budget_hours, budget_fraction), seed, output_folder, inputs,
                                              provenance, units_folder, group)
    elif rank == 0:
        with _logged_time("merging units and selecting" if world_size > 1 else "selection", rank, world_size):
            units = {name: pipeline.merge_units(manifest, name, codebook_path, world_size)
                     for name, manifest in manifests.items()}
            # a share of the pool is a share of the audio that can be read (unreadable files are left out)
            budget = resolve_budget(pool, budget_hours, budget_fraction, [i for i in pool.ids if i in units["pool"]])
            result = _selection_stage(pool, target, units, selector, budget, seed, output_folder, inputs, provenance,
                                      units_folder)
    with _logged_time("waiting for the selection", rank, world_size):
        barrier()
    if rank != 0:
        result = load_selection(output_folder)
    return output_folder / SUBSET, result


def _stage_key(pool, selector, budget, seed, inputs):
    """The selection stage's key: its inputs (units files by name, manifests by content), selector, budget, seed."""
    return settings_hash({"inputs": {name: Path(p).name if name.endswith("units") else file_sha256(p)
                                     for name, p in inputs.items() if name != "codebook"},
                          "data_root": str(Path(pool.data_root).resolve()), "selector": type(selector).__name__,
                          "settings": selector.settings(), "budget_hours": budget, "seed": seed})


def _done(output_folder, key):
    """The stored selection when every output exists and ``selection.json`` records ``key``, else ``None``."""
    record_path = output_folder / SELECTION_JSON
    outputs = [output_folder / name for name in (SUBSET, REPORT, LEN_FOR_BUCKET, FAIRSEQ_TSV)]
    if record_path.exists() and all(p.exists() for p in outputs):
        if json.loads(record_path.read_text(encoding="utf-8")).get("stage_hash") == key:
            logger.info("selection stage done (%s), keeping %s", key, output_folder)
            return load_selection(output_folder)
    return None


def _selection_stage(pool, target, units, selector, budget, seed, output_folder, inputs, provenance, work_folder):
    """Run the selector (its caches in ``work_folder``) and write every output, unless done for the same key."""
    key = _stage_key(pool, selector, budget, seed, inputs)
    if (done := _done(output_folder, key)) is not None:
        return done
    pool_units, target_units = units["pool"], units.get("target")
    logger.info("selection stage (%s): %s, budget %.3f h of %.3f h", key, type(selector).__name__, budget,
                pool.total_hours)
    started = time.perf_counter()
    result = selector.select(pool, pool_units, budget, target_units, work_folder=work_folder)
    selector_seconds = round(time.perf_counter() - started, 1)
    figures = write_report(output_folder / REPORT, pool, result.ids, target, pool_units, target_units)
    for name, unit_set in units.items():
        provenance["unit_quality"][name] = unit_quality(unit_set.flat, unit_set.n_clusters).as_dict()
    without_units = sum(i not in pool_units for i in pool.ids)
    _write_outputs(pool, result, output_folder, inputs, seed, figures,
                   {"stage_hash": key, "selector_seconds": selector_seconds,
                    "feature_seconds": _feature_seconds(inputs)}, provenance, without_units)
    return result


def _sharded_selection_stage(pool, target, shards, n_clusters, selector, budget_rule, seed, output_folder, inputs,
                             provenance, work_folder, group):
    """:func:`_selection_stage` with each process reading only its shard's units (:mod:`selection.sharded`).

    Every process takes part; process 0 writes the outputs. The subset, its scores and
    the report's figures are those of :func:`_selection_stage` on the merged units.
    """
    started = time.perf_counter()
    bytes_before = group.bytes_sent

    def rows_of(ids):
        return pool.positions(ids)

    # a share of the pool is a share of the audio that can be read (utterances with units), summed as on one process
    local = collective_step(group, "reading the IDs", shards["pool"], lambda: np.concatenate(
        [rows_of(ids) for ids in shards["pool"].ids()] or [np.zeros(0, dtype=np.int64)]))
    usable = group.gather(local)

    def budget_and_candidates():
        rows = np.sort(np.concatenate(usable))
        return np.array([resolve_budget(pool, *budget_rule, usable_seconds=pool.durations[rows].sum()), len(rows)])

    usable = collective_step(group, "the budget", shards["pool"],
                             budget_and_candidates if group.rank == 0 else lambda: np.zeros(0))
    budget, n_usable = group.broadcast(usable)
    key = _stage_key(pool, selector, budget, seed, inputs)
    if all(group.all_gather_object((done := _done(output_folder, key)) is not None)):
        return done
    if group.rank == 0:
        logger.info("selection stage (%s): %s over %d processes, budget %.3f h of %.3f h", key,
                    type(selector).__name__, group.world_size, budget, pool.total_hours)
    cache_key = settings_hash({"inputs": {name: Path(p).name for name, p in inputs.items() if name.endswith("units")},
                               "selector": type(selector).__name__, "settings": selector.settings()}, 12)
    cache = ShardCache(work_folder, cache_key, group.rank, group.world_size)
    chosen = selector.select_shards(shards["pool"], shards["target"], rows_of, lambda rows: pool.durations[rows],
                                    n_clusters, budget, group, cache)
    picked = group.broadcast(chosen[0] if chosen is not None else np.zeros(0, dtype=np.int64))
    counts = collective_step(group, "counting for the report", shards["pool"], lambda: shard_report_counts(
        shards["pool"], shards["target"], rows_of, picked, len(pool), n_clusters))
    counts = group.all_reduce_sum(counts)
    pieces = group.all_gather_object({name: [str(p) for p in shard.paths] for name, shard in shards.items()})
    waits = group.all_gather_object(round(group.longest_wait, 3))
    sent = group.all_gather_object(group.bytes_sent - bytes_before)
    if group.rank != 0:
        return None
    rows, durations, scores = chosen
    result = selector.result([pool.ids[r] for r in rows], durations, scores, budget)
    unit_counts = {name: split_report_counts(part, n_clusters)
                   for name, part in zip(("pool", "subset", "target"), np.split(counts, 3))}
    if target is None:
        del unit_counts["target"]
    figures = write_report(output_folder / REPORT, pool, result.ids, target, unit_counts=unit_counts)
    for name in ("pool", "target") if target is not None else ("pool",):
        provenance["unit_quality"][name] = quality_of_counts(unit_counts[name][1][1 : n_clusters + 1]).as_dict()
    provenance["sharded"] = {"processes": group.world_size, "bytes_sent_per_process": sent,
                             "longest_wait_seconds_per_process": waits}
    recorded = {**inputs, **{f"{name}_units": [p for files in pieces for p in files[name]]
                             for name in ("pool", "target") if f"{name}_units" in inputs}}
    _write_outputs(pool, result, output_folder, recorded, seed, figures,
                   {"stage_hash": key, "selector_seconds": round(time.perf_counter() - started, 1),
                    "feature_seconds": _feature_seconds(recorded)}, provenance, len(pool) - int(n_usable))
    return result


def _feature_seconds(inputs):
    """:meth:`UnitPipeline.feature_seconds` of the codebook and the units files (or pieces) in ``inputs``."""
    paths = [inputs["codebook"]]
    for name in ("pool_units", "target_units"):
        files = inputs.get(name, [])
        paths += [files] if isinstance(files, (str, Path)) else files
    return UnitPipeline.feature_seconds(paths)


def _write_outputs(pool, result, output_folder, inputs, seed, figures, stage, provenance, without_units):
    """Every output but the report (written before): the subset lists, the scores, ``selection.json`` last."""
    logger.info("selected %d utterances, %.3f h (the selector took %.1f s)", result.n_utterances, result.hours,
                stage["selector_seconds"])
    write_subset_csv(pool, result.ids, output_folder / SUBSET)
    samples = count_samples(pool, result.ids)
    write_len_for_bucket_csv(pool, result.ids, output_folder / LEN_FOR_BUCKET, pool.data_root, samples)
    write_fairseq_tsv(pool, result.ids, output_folder / FAIRSEQ_TSV, pool.data_root, samples)
    _write_scores(output_folder / SCORES, result)
    extra = {**stage, "pool_hours": pool.total_hours, "pool_utterances": len(pool),
             "pool_utterances_without_units": without_units, **provenance, **figures,
             "outputs": {"subset": SUBSET, "len_for_bucket": str(LEN_FOR_BUCKET), "fairseq_tsv": str(FAIRSEQ_TSV),
                         "report": REPORT, "scores": SCORES if result.scores is not None else None,
                         "audio_root": str(Path(pool.data_root).resolve())}}
    write_selection_json(output_folder / SELECTION_JSON, result, inputs, seed=seed, extra=extra)


def _write_scores(path, result):
    """``ID,score`` of the selected utterances; no file (an old one removed) without scores."""
    if result.scores is None:
        path.unlink(missing_ok=True)
        return
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["ID", "score"])
    writer.writerows(zip(result.ids, (repr(s) for s in result.scores.tolist())))
    atomic_write_text(path, buffer.getvalue())
