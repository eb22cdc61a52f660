#!/usr/bin/env python3
"""SUPERB-style CTC ASR probe of a frozen encoder on LibriSpeech (see ../README.md and :mod:`tasks.asr_probe`).

python recipes/LibriSpeech/ASR/train.py recipes/LibriSpeech/ASR/hparams/ctc_probe.yaml --data_folder=/path/to/LibriSpeech
"""

import sys

from tasks.asr_probe import main

if __name__ == "__main__":
    main(sys.argv[1:])
