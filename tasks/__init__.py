"""The project's tasks (distillation, selection, probes, teacher pretraining, benchmark), as importable modules.

Each dataset's recipe scripts (``recipes/<Dataset>/<task>/train.py``) call a
task's ``main(argv)`` with their hparams file; the hparams name the dataset's
preparation (``prepare_data``) from :mod:`corpora`. Imports go one way:
recipes -> ``tasks`` -> ``corpora`` / ``selection`` / ``lobes``.
"""
