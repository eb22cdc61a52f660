"""The subset a recipe trains on: a selection file run on the recipe's pool.

A selection file (``recipes/selection/<name>.yaml``) holds one method's whole
configuration: ``units`` (the name of a features and k-means file of
``recipes/selection/units/``), ``selector`` (a :mod:`selection.selectors`
object, or ``null`` for the whole pool) and its knobs, plus a ``seed`` that
the recipe gives. The recipes (selection, distillation, benchmark) name it by
``selection`` and may change its keys with ``units_overrides`` (the ``units``
block: the same keys in every file, e.g. a dataset's codebook size) and
``selector_overrides`` (per method: ``{method: {knob: value}}``, applied when
that method runs, so a dataset's hparams can tune several methods and still
run any of them). A selection file may fix ``units_seed`` (the k-means seed,
otherwise the recipe's seed) when its selector does not read the units, so that
every seed shares one feature pass. The recipes' own hparams hold the
pool, target, budget, teacher and folders. Adding a selector is one class and one such file.

Keys a recipe gives (:data:`RECIPE_KEYS`): a selection or units file declares
them with ``!PLACEHOLDER`` when it needs them (``seed``; ``teacher_source`` and
``device`` for the files that run a teacher), and they are filled from the
recipe, never from the overrides: the teacher a recipe names is the teacher
every stage of it uses, on the device the run resolved.
"""

import json
from pathlib import Path

from hyperpyyaml import load_hyperpyyaml
from ruamel.yaml import YAML
from speechbrain.utils.distributed import run_on_main

from common.atomic import atomic_write_text
from common.hashing import file_sha256
from common.manifest import check_durations, read_manifest
from selection.audio import screen_headers
from selection.outputs import write_subset_csv
from selection.stages import SELECTION_JSON, SUBSET, run_selection


def selection_file(folder, name):
    """``folder/<name>.yaml``, or an error listing the YAML files there."""
    path = Path(folder) / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in Path(folder).glob("*.yaml"))
        raise FileNotFoundError(f"'{name}': no file {path}; choose from {known}")
    return path


RECIPE_KEYS = ("seed", "teacher_source", "device")


def declared_keys(path):
    """The top-level keys of a YAML file, read without building its objects (tags kept as they are)."""
    with open(path, encoding="utf-8") as handle:
        return set(YAML(typ="rt").load(handle))


def recipe_values(path, given, overrides):
    """The recipe's values of the :data:`RECIPE_KEYS` that the file at ``path`` declares.

    Raises
    ------
    ValueError
        When ``overrides`` set one of them (they are the recipe's), or when the
        file needs one the recipe left empty.
    """
    declared = declared_keys(path)
    overridden = sorted(set(overrides) & set(RECIPE_KEYS) & declared)
    if overridden:
        raise ValueError(f"{path}: {overridden} come from the recipe (e.g. --teacher_source=..., --device=...), "
                         "not from units_overrides / selector_overrides")
    values = {key: given[key] for key in RECIPE_KEYS if key in declared}
    missing = sorted(key for key, value in values.items() if value is None)
    if missing:
        raise ValueError(f"{path} runs a teacher: the recipe must set {missing} (e.g. --teacher_source=<hub id or "
                         "folder>)")
    return values


def load_selection(folder, name, units_overrides, selector_overrides, seed, teacher_source=None, device="cpu",
                   build_teacher=None):
    """The objects of a selection file, its ``units`` replaced by those of its units file.

    Parameters
    ----------
    folder : str or os.PathLike
        Where the selection files are (``recipes/selection``; units files in
        its ``units/`` folder).
    name : str
        The selection file's name without ``.yaml``.
    units_overrides : dict
        Keys of the units file to change.
    selector_overrides : dict
        Keys of the selection file to change.
    seed : int
        The recipe's seed (the selection file's ``seed``).
    teacher_source : str, optional
        The recipe's teacher (hub id or folder), for files that run one
        (teacher-layer units, the difficulty proxy).
    device : str
        Where those files run their models (the device the recipe resolved).
    build_teacher : callable, optional
        Makes ``teacher_source`` ready (e.g. converts a packaged teacher);
        called on the main process, only when one of the two files runs a
        teacher, before its model is loaded.

    Returns
    -------
    dict
        ``selector`` (``None``: the whole pool), ``units`` (``extractor``,
        ``unit_settings``, ...) and the file's other keys. A key of either
        override that the file lacks is an error.
    """
    given = {"seed": seed, "teacher_source": None if teacher_source is None else str(teacher_source),
             "device": str(device)}
    path = selection_file(folder, name)
    with open(path, encoding="utf-8") as handle:
        config = load_hyperpyyaml(handle, {**selector_overrides, **recipe_values(path, given, selector_overrides)})
    units_path = selection_file(Path(folder) / "units", config["units"])
    runs_teacher = "teacher_source" in declared_keys(path) | declared_keys(units_path)
    if runs_teacher and build_teacher is not None:
        run_on_main(build_teacher)
    with open(units_path, encoding="utf-8") as handle:
        config["units"] = load_hyperpyyaml(handle, {**units_overrides,
                                                    **recipe_values(units_path, given, units_overrides)})
    return config


def whole_pool(pool_manifest, data_root, output_folder, rank=0, barrier=None):
    """The whole pool as the subset, less the rows whose audio cannot be used (the selectors' rule).

    Every file's header is read (:func:`selection.audio.screen_headers`); a
    missing, unreadable or empty file is left out and counted, as every
    selector does; a duration that disagrees with its file is an error, as in
    the units stage. Writes ``subset.csv`` and ``selection.json``
    (``pool_utterances_without_units``, the skipped rows with their lines)
    into ``output_folder`` on the main process.

    Raises
    ------
    ValueError
        For a pool without utterances, or without one whose audio can be used.
    """
    pool = read_manifest(pool_manifest, data_root=data_root)
    if len(pool) == 0:
        raise ValueError(f"{pool.path}: the pool manifest has no utterances")
    output_folder = Path(output_folder)
    ids, skipped = screen_headers(pool)  # on every process (headers only): all of them stop on a bad pool
    if not ids:
        raise ValueError(f"{pool.path}: no utterance of the pool has usable audio ({skipped[0][2]}, ...)")
    rows = {utt_id: {"wav": pool.wav_path(utt_id), "duration": pool.duration(utt_id)} for utt_id in ids}
    check_durations(rows, pool.path)  # hours and budgets come from them
    if rank == 0:
        write_subset_csv(pool, ids, output_folder / SUBSET)
        hours = float(pool.durations_of(ids).sum()) / 3600
        atomic_write_text(output_folder / SELECTION_JSON, json.dumps({
            "selector": "full", "utterances": len(ids), "hours": round(hours, 6), "pool_manifest": str(pool.path),
            "pool_manifest_sha256": file_sha256(pool.path), "pool_utterances": len(pool),
            "pool_hours": pool.total_hours, "pool_utterances_without_units": len(skipped),
            "skipped": [{"ID": utt_id, "line": line, "reason": reason} for utt_id, line, reason in skipped]},
            indent=2))
    if barrier is not None:
        barrier()
    return output_folder / SUBSET


def select_subset(hparams, output_folder, rank=0, world_size=1, barrier=None, device="cpu", group=None):
    """Run the recipe's selection; returns ``(subset manifest path, SelectionResult or None)``.

    Reads the recipe keys ``selection``, ``selection_folder``, ``units_overrides``,
    ``selector_overrides``, ``seed``, ``teacher_source``, ``pool_manifest``, ``target_manifest``,
    ``data_folder``, ``units_folder``, ``budget_hours`` and ``budget_fraction``, and
    ``build_teacher`` when the selection runs a teacher; models run on ``device``; ``group`` (the
    processes' collectives, :func:`tasks.process_group.process_share`) lets the selectors that allow
    it select over each process's shard of the units. The whole
    pool (``selector: null``) is screened like any selection's, nothing else is computed
    (:func:`whole_pool`).
    """
    name = hparams["selection"]
    config = load_selection(hparams["selection_folder"], name, hparams["units_overrides"],
                            hparams["selector_overrides"].get(name, {}), hparams["seed"],
                            teacher_source=hparams.get("teacher_source"), device=device,
                            build_teacher=hparams.get("build_teacher"))
    if config["selector"] is None:
        return whole_pool(hparams["pool_manifest"], hparams["data_folder"], output_folder, rank, barrier), None
    return run_selection(
        hparams["pool_manifest"], hparams["target_manifest"], hparams["data_folder"], config["units"]["extractor"],
        config["units"]["unit_settings"], config["selector"], output_folder, units_folder=hparams["units_folder"],
        budget_hours=hparams["budget_hours"], budget_fraction=hparams["budget_fraction"], seed=hparams["seed"],
        units_seed=config.get("units_seed"), rank=rank, world_size=world_size, barrier=barrier, group=group)
