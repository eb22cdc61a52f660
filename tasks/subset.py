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
pool, target, budget and folders. Adding a selector is one class and one such file.
"""

from pathlib import Path

from hyperpyyaml import load_hyperpyyaml

from selection.stages import run_selection


def selection_file(folder, name):
    """``folder/<name>.yaml``, or an error listing the YAML files there."""
    path = Path(folder) / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in Path(folder).glob("*.yaml"))
        raise FileNotFoundError(f"'{name}': no file {path}; choose from {known}")
    return path


def load_selection(folder, name, units_overrides, selector_overrides, seed):
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

    Returns
    -------
    dict
        ``selector`` (``None``: the whole pool), ``units`` (``extractor``,
        ``unit_settings``, ...) and the file's other keys. A key of either
        override that the file lacks is an error.
    """
    with open(selection_file(folder, name), encoding="utf-8") as handle:
        config = load_hyperpyyaml(handle, {**selector_overrides, "seed": seed})
    with open(selection_file(Path(folder) / "units", config["units"]), encoding="utf-8") as handle:
        config["units"] = load_hyperpyyaml(handle, units_overrides)
    return config


def select_subset(hparams, output_folder, rank=0, world_size=1, barrier=None):
    """Run the recipe's selection; returns ``(subset manifest path, SelectionResult or None)``.

    Reads the recipe keys ``selection``, ``selection_folder``, ``units_overrides``,
    ``selector_overrides``, ``seed``, ``pool_manifest``, ``target_manifest``, ``data_folder``, ``units_folder``,
    ``budget_hours`` and ``budget_fraction``. The whole pool (``selector: null``)
    is its own manifest; nothing is computed.
    """
    name = hparams["selection"]
    config = load_selection(hparams["selection_folder"], name, hparams["units_overrides"],
                            hparams["selector_overrides"].get(name, {}), hparams["seed"])
    if config["selector"] is None:
        return Path(hparams["pool_manifest"]), None
    return run_selection(
        hparams["pool_manifest"], hparams["target_manifest"], hparams["data_folder"], config["units"]["extractor"],
        config["units"]["unit_settings"], config["selector"], output_folder, units_folder=hparams["units_folder"],
        budget_hours=hparams["budget_hours"], budget_fraction=hparams["budget_fraction"], seed=hparams["seed"],
        units_seed=config.get("units_seed"), rank=rank, world_size=world_size, barrier=barrier)
