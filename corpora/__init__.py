"""Dataset preparation: manifests (SpeechBrain CSV) for each corpus, named by the recipes' hparams (``prepare_data``).

:mod:`corpora.synthdomains` generates the offline default corpus;
:mod:`corpora.librispeech` and :mod:`corpora.voxceleb` index existing downloads;
:mod:`corpora.audio_folders` prepares any folders of audio (or Kaldi / lhotse
lists, :mod:`corpora.kaldi_lhotse`, which also writes a subset back in those forms).
"""
