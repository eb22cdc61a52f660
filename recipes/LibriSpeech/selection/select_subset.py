#!/usr/bin/env python3
"""Select a subset of LibriSpeech train-960 without labels (see ../README.md and :mod:`tasks.select_subset`).

python recipes/LibriSpeech/selection/select_subset.py recipes/LibriSpeech/selection/hparams/select.yaml --data_folder=/path/to/LibriSpeech
"""

import sys

from tasks.select_subset import main

if __name__ == "__main__":
    main(sys.argv[1:])
