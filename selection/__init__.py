"""Unsupervised training-data selection on discrete speech units.

Modules, in pipeline order:

* :mod:`common.manifest` -- read and validate SpeechBrain CSV manifests;
* :mod:`selection.audio` -- 16 kHz mono loading with documented skips;
* :mod:`selection.features` -- MFCC or HF SSL hidden-layer features, streamed;
* :mod:`selection.units` -- k-means units keyed by utterance ID, sharding;
* :mod:`selection.ngrams` -- vectorised unit n-gram statistics and LMs;
* :mod:`selection.selectors` -- the selectors (one ``Selector`` contract);
* :mod:`selection.collectives` / :mod:`selection.sharded` / :mod:`selection.cluster_sharded` /
  :mod:`selection.kcenter_sharded` --
  selection over processes, each holding its shard of the units (:mod:`common.manifest_columns`:
  manifests of millions of rows as arrays, :class:`common.manifest_columns.ColumnarManifest`
  in the recipe path);
* :mod:`selection.outputs` / :mod:`selection.report` -- artefacts of a selection;
* :mod:`selection.synthetic` -- synthetic unit corpora for tests and benchmarks.
"""
