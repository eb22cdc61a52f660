"""The plan of the selection benchmark: one row per encoder, one cell per recipe run.

A *row* is one encoder of the results table: a student distilled on a subset
(selector × budget × seed), the student of the full pool, or a reference
encoder (the teacher, MFCC). Its *cells* are the recipe runs that fill it: the
distillation (students only; it also scores the student's held-out
distillation loss), then the probes of ``probes`` (ASR, speaker; none for an
intrinsic-only benchmark, which then has no reference rows). Every cell is a
command line run from the repository root, so relative paths in the benchmark
YAML mean the same for the benchmark and for the recipes.

Equal compute: every student, of any subset or of the full pool, trains on
fixed segments of ``segment_seconds`` for ``number_of_epochs`` ×
``steps_per_epoch`` optimizer steps of the recipe's batch size, drawn from a
seeded schedule (:mod:`lobes.segments`), so each sees the same number of
segments whatever its subset's size and utterance lengths. A row's own
``objective`` (a name of the distillation recipe's ``objectives``) and
``overrides`` may change what it learns (``--lr``, the selector's settings)
but not its compute: a key of :data:`COMPUTE_KEYS` there is
refused before anything runs (``distill_overrides`` sets them for every student
alike).
"""

import sys
from dataclasses import dataclass
from pathlib import Path

from common.manifest import read_manifest
from tasks.subset import selection_file

ROOT = Path(__file__).resolve().parents[2]  # the repository
DISTILL_SCRIPT = "recipes/SynthDomains/distillation/train.py"
PROBE_SCRIPTS = {"asr": "recipes/SynthDomains/ASR/train.py", "spk": "recipes/SynthDomains/speaker/train.py"}
PROBE_KEYS_OF = {"asr": ("asr_hparams", "asr_overrides"), "spk": ("speaker_hparams", "speaker_overrides")}
RESULT_FILES = {"distill": "distillation.json", "asr": "results.json", "spk": "results.json"}
# keys the benchmark sets itself; an override list that sets one is refused
CORPUS_KEYS = {"data_folder", "manifest_folder", "corpus_scale"}
PROBE_KEYS = CORPUS_KEYS | {"encoder_source", "encoder_name", "output_folder", "feature_folder"}
TRAINING_KEYS = ("segment_seconds", "steps_per_epoch", "number_of_epochs")  # equal compute, the same for every student
# keys that change a student's training compute (examples per step, steps, audio per example, model size):
# the same for every student, so a row's own overrides may not set them
COMPUTE_KEYS = {"batch_size", "grad_accumulation_factor", "total_steps", "crop_seconds", "train_dataloader_opts",
                "student_layers", "target_layers", "student_class", "freeze_cnn", "cache_cnn_features",
                "precision", *TRAINING_KEYS}
RESERVED = {
    "distill_overrides": CORPUS_KEYS | set(TRAINING_KEYS) | {
        "teacher_source", "seed", "experiment_name", "output_folder", "cache_folder", "budget_fraction", "selection"},
    "asr_overrides": PROBE_KEYS,
    "speaker_overrides": PROBE_KEYS,
}


def resolve(path):
    """``path`` as the recipes see it: relative paths are relative to the repository root."""
    path = Path(path)
    return path if path.is_absolute() else ROOT / path


@dataclass(frozen=True)
class Cell:
    """One recipe run.

    Attributes
    ----------
    kind : str
        ``distill``, ``asr`` or ``spk``.
    name : str
        The row's name (experiment and encoder name).
    argv : tuple of str
        The whole command line, interpreter first.
    output_folder : pathlib.Path
        Where the recipe writes (absolute).
    """

    kind: str
    name: str
    argv: tuple
    output_folder: Path

    @property
    def result_file(self):
        """The file the recipe writes last (``distillation.json`` or ``results.json``)."""
        return self.output_folder / RESULT_FILES[self.kind]


@dataclass(frozen=True)
class Row:
    """One encoder of the results table and the cells that fill it.

    Attributes
    ----------
    name : str
        E.g. ``kmeans_10pct_s1234``, ``full_s1234``, ``teacher``.
    group : str
        ``subset``, ``full`` or ``reference``.
    selector : str
        Selector name, ``full`` or the reference's name.
    budget : float or None
        Fraction of the pool's hours (1.0 for the full pool, None for references).
    seed : int or None
        Seed of the selection and the student (None for references).
    epochs : int or None
        Distillation epochs, the same for every student (None for references).
    cells : tuple of Cell
        In run order: distillation (students only), then the probes.
    feature_folder : pathlib.Path
        The probes' feature cache of this encoder (absolute).
    """

    name: str
    group: str
    selector: str
    budget: float
    seed: int
    epochs: int
    cells: tuple
    feature_folder: Path


def budget_label(budget):
    """``0.05`` → ``"5"``, ``0.025`` → ``"2.5"`` (percent, for names and tables)."""
    return f"{100 * budget:.6g}"


def check_overrides(where, overrides, reserved):
    """The ``--key=value`` strings of an override list; refuses malformed ones and ``reserved`` keys.

    Parameters
    ----------
    where : str
        Name of the list in the benchmark YAML (for errors).
    overrides : list of str or None
        The list.
    reserved : set of str
        Keys the benchmark sets itself.

    Returns
    -------
    list of str
    """
    overrides = list(overrides or [])
    for item in overrides:
        if not (isinstance(item, str) and item.startswith("--") and "=" in item):
            raise ValueError(f"{where}: {item!r} is not of the form --key=value")
        if item[2:].split("=", 1)[0] in reserved:
            raise ValueError(f"{where}: {item!r} sets a key the benchmark sets itself")
    return overrides


def check_row_overrides(name, overrides):
    """A row's own distillation overrides (:func:`check_overrides`); refuses those of :data:`COMPUTE_KEYS`.

    Example
    -------
    >>> check_row_overrides("dsir_1pct_s1", ["--lr=0.001", "--objective=l1"])
    ['--lr=0.001', '--objective=l1']
    """
    overrides = check_overrides(f"overrides of {name}", overrides, RESERVED["distill_overrides"])
    changed = [item for item in overrides if item[2:].split("=", 1)[0] in COMPUTE_KEYS]
    if changed:
        raise ValueError(f"overrides of {name}: {', '.join(changed)} would give this row other compute than the "
                         "other students (equal compute); set it for every student in distill_overrides instead")
    return overrides


def corpus_args(hp):
    """The corpus keys every recipe gets."""
    return [f"--data_folder={hp['data_folder']}", f"--manifest_folder={hp['manifest_folder']}",
            f"--corpus_scale={hp['corpus_scale']}"]


def pool_hours(hp):
    """Hours of the pool manifest (its ``duration`` column); a clear error when it is missing."""
    path = resolve(hp["pool_manifest"])
    if not path.exists():
        raise FileNotFoundError(
            f"pool manifest {path} not found: generate the corpus first, e.g. `python "
            f"recipes/SynthDomains/synthdomains_prepare.py --data_folder {hp['data_folder']} "
            f"--save_folder {hp['manifest_folder']} --scale {hp['corpus_scale']} --seed 0`")
    return read_manifest(path).total_hours


def distill_cell(hp, name, selection, seed, budget, extra):
    """The distillation run of one student: ``distill_hparams`` with the selection file ``selection``."""
    if not resolve(hp["distill_hparams"]).exists():
        raise FileNotFoundError(f"distill_hparams: {resolve(hp['distill_hparams'])} does not exist")
    selection_file(resolve("recipes/selection"), selection)  # a clear error for a name without a file
    output = f"{hp['output_folder']}/distill/{name}"
    argv = [sys.executable, DISTILL_SCRIPT, hp["distill_hparams"], *corpus_args(hp),
            f"--teacher_source={hp['teacher_source']}", f"--selection={selection}", f"--seed={seed}",
            *(f"--{key}={hp[key]}" for key in TRAINING_KEYS), f"--experiment_name={name}", f"--output_folder={output}",
            f"--cache_folder={hp['output_folder']}/teacher_targets", f"--budget_fraction={budget}"]
    argv += check_overrides("distill_overrides", hp["distill_overrides"], RESERVED["distill_overrides"])
    argv += check_row_overrides(name, extra)
    return Cell("distill", name, tuple(argv), resolve(output))


def probe_cell(hp, kind, name, encoder_source, feature_folder, seed=None):
    """The ASR (``kind`` ``asr``) or speaker (``spk``) probe of one encoder (``seed``: the probe's, else its default)."""
    hparams_key, overrides_key = PROBE_KEYS_OF[kind]
    if not resolve(hp[hparams_key]).exists():
        raise FileNotFoundError(f"{hparams_key}: {resolve(hp[hparams_key])} does not exist")
    output = f"{hp['output_folder']}/{kind}/{name}"
    overrides = check_overrides(overrides_key, hp[overrides_key], RESERVED[overrides_key])
    argv = [sys.executable, PROBE_SCRIPTS[kind], hp[hparams_key], *corpus_args(hp),
            f"--encoder_source={encoder_source}", f"--encoder_name={name}", f"--output_folder={output}",
            f"--feature_folder={feature_folder}", *([] if seed is None else [f"--seed={seed}"]), *overrides]
    return Cell(kind, name, tuple(argv), resolve(output))


def probe_kinds(hp):
    """The probes every encoder gets (``probes`` of the YAML: ``asr``, ``spk``, both or none)."""
    kinds = list(hp["probes"] or [])
    unknown = [kind for kind in kinds if kind not in PROBE_SCRIPTS]
    if unknown:
        raise ValueError(f"probes: {unknown} unknown; choose among {sorted(PROBE_SCRIPTS)}")
    return kinds


def student_row(hp, group, selector, spec, budget, seed):
    """A distilled student: its distillation and the probes of ``<output>/save/student``."""
    name = f"full_s{seed}" if group == "full" else f"{selector}_{budget_label(budget)}pct_s{seed}"
    extra = list(spec.get("overrides") or []) + ([f"--objective={spec['objective']}"] if spec.get("objective") else [])
    distill = distill_cell(hp, name, spec.get("selection", selector), seed, budget, extra)
    student = f"{hp['output_folder']}/distill/{name}/save/student"
    features = f"{hp['output_folder']}/probe_features/{name}"
    probes = [probe_cell(hp, kind, name, student, features) for kind in probe_kinds(hp)]
    return Row(name, group, selector, budget, seed, hp["number_of_epochs"], (distill, *probes), resolve(features))


def reference_rows(hp, name, spec):
    """A reference encoder (teacher, MFCC): the probes, with its own feature cache folder.

    With ``seeds`` in ``spec``, one row per probe seed (``<name>_s<seed>``, the
    same features): the probe's own seed-to-seed spread on a fixed encoder.
    """
    rows = []
    for seed in spec.get("seeds") or [None]:
        row_name = name if seed is None else f"{name}_s{seed}"
        cells = tuple(probe_cell(hp, kind, row_name, spec["encoder_source"], spec["feature_folder"], seed)
                      for kind in probe_kinds(hp))
        rows.append(Row(row_name, "reference", name, None, seed, None, cells, resolve(spec["feature_folder"])))
    return rows


def build_plan(hp):
    """Every row of the benchmark, in run order.

    Subset students by budget, then selector, then seed (``seeds``, or the
    selector's own); the full-pool students last; the reference encoders (with
    probes only) right after the first student, whose distillation builds the
    offline teacher if it is missing.

    Parameters
    ----------
    hp : dict
        The loaded benchmark YAML.

    Returns
    -------
    rows : list of Row
    hours : float
        The pool's hours.
    """
    hours = pool_hours(hp)
    students = []
    for budget in hp["budgets"]:
        if not 0 < budget < 1:
            raise ValueError(f"budgets: {budget} is not a fraction of the pool between 0 and 1")
        for selector, spec in hp["selectors"].items():
            spec = spec or {}
            for seed in spec.get("seeds") or hp["seeds"]:
                students.append(student_row(hp, "subset", selector, spec, budget, seed))
    if hp["full_pool"]:  # a selection name (``--full_pool=full`` on the command line) or a row's mapping
        spec = {"selection": hp["full_pool"]} if isinstance(hp["full_pool"], str) else \
            {"selection": "full", **hp["full_pool"]}
        students += [student_row(hp, "full", "full", spec, 1.0, seed) for seed in spec.get("seeds") or hp["seeds"]]
    references = [row for name, spec in (hp["references"] or {}).items() if probe_kinds(hp)
                  for row in reference_rows(hp, name, spec)]
    return students[:1] + references + students[1:], hours
