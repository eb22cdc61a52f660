"""The k-means codebook of a teacher layer for the ``unit_prediction`` objective, shared with selection's units.

The codebook is the units stage of selection (:class:`selection.pipeline.UnitPipeline`)
run with the recipe's teacher on ``recipes/selection/units/teacher_layer.yaml`` (or
another units file), the layer set to the objective's ``unit_layer``: a selection
that already fitted those units (same teacher, layer, settings, seed and pool) left
the codebook in ``units_folder`` under the same content hash, and it is loaded from
there; otherwise it is fitted on a seeded sample of the pool and cached there.
"""

import logging
from pathlib import Path

from hyperpyyaml import load_hyperpyyaml
from speechbrain.utils.distributed import run_on_main

from common.manifest import read_manifest
from selection.pipeline import pool_pipeline
from tasks.subset import recipe_values, selection_file

logger = logging.getLogger(__name__)


def units_config(hparams, layer, device="cpu"):
    """The units file ``unit_units`` of ``selection_folder/units`` for the recipe's teacher at ``layer``.

    Parameters
    ----------
    hparams : dict
        With ``selection_folder``, ``unit_units``, ``unit_overrides``, ``unit_codebook_seed`` and
        ``teacher_source``.
    layer : int
        The teacher's hidden-state index whose frames are clustered.
    device : str
        Where the teacher runs.

    Returns
    -------
    dict
        The loaded units file (``extractor``, ``unit_settings``, ...).
    """
    path = selection_file(Path(hparams["selection_folder"]) / "units", hparams["unit_units"])
    overrides = {**hparams["unit_overrides"], "layer": int(layer)}
    given = {"seed": hparams["unit_codebook_seed"], "teacher_source": str(hparams["teacher_source"]),
             "device": str(device)}
    with open(path, encoding="utf-8") as handle:
        config = load_hyperpyyaml(handle, {**overrides, **recipe_values(path, given, overrides)})
    if "layer" not in config:
        raise ValueError(f"{path} has no 'layer': unit_prediction needs units of a teacher layer")
    return config


def unit_codebook(hparams, layer, device="cpu"):
    """The codebook of teacher layer ``layer`` (selection's cached one, else fitted on the main process).

    Returns
    -------
    tuple of (selection.units.KMeansCodebook, pathlib.Path)
        The codebook and its cache file (its name identifies it).
    """
    config = units_config(hparams, layer, device)
    pipeline = pool_pipeline(config["extractor"], config["unit_settings"], hparams["units_folder"],
                             hparams["data_folder"], hparams["unit_codebook_seed"])  # selection's cache names
    pool = read_manifest(hparams["pool_manifest"], hparams["data_folder"])
    run_on_main(pipeline.fit_codebook, args=[pool])
    codebook, path = pipeline.fit_codebook(pool)  # cached now: loaded
    logger.info("unit_prediction: %d units of teacher layer %d from %s", codebook.n_clusters, layer, path)
    return codebook, path
