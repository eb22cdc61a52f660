#!/usr/bin/env python3
"""Distillation on a selected subset of SynthDomains (see README.md and :mod:`tasks.distillation`).

python recipes/SynthDomains/distillation/train.py recipes/SynthDomains/distillation/hparams/distill_kmeans.yaml [--key=value ...]
"""

import sys

from tasks.distillation import main

if __name__ == "__main__":
    main(sys.argv[1:])
