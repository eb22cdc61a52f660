#!/usr/bin/env python3
"""Distillation on a selected subset of LibriSpeech (see ../README.md and :mod:`tasks.distillation`).

python recipes/LibriSpeech/distillation/train.py recipes/LibriSpeech/distillation/hparams/distill_wavlm_kmeans.yaml --data_folder=/path/to/LibriSpeech
"""

import sys

from tasks.distillation import main

if __name__ == "__main__":
    main(sys.argv[1:])
