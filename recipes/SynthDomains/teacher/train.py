#!/usr/bin/env python3
"""Pretrain the self-supervised HuBERT-style teacher on SynthDomains (see README.md and :mod:`tasks.teacher_pretraining`).

python recipes/SynthDomains/teacher/train.py recipes/SynthDomains/teacher/hparams/hubert_small.yaml [--key=value ...]
"""

import sys

from tasks.teacher_pretraining import main

if __name__ == "__main__":
    main(sys.argv[1:])
