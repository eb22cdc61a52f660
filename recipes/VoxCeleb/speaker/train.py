#!/usr/bin/env python3
"""VoxCeleb1 speaker probes of a frozen encoder, SID and ASV (see ../README.md and :mod:`tasks.speaker_probe`).

python recipes/VoxCeleb/speaker/train.py recipes/VoxCeleb/speaker/hparams/sid_probe.yaml --data_folder=/path/to/VoxCeleb1
"""

import sys

from tasks.speaker_probe import main

if __name__ == "__main__":
    main(sys.argv[1:])
