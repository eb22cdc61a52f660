#!/usr/bin/env python3
"""Select a subset of the SynthDomains pool without labels (see README.md and :mod:`tasks.select_subset`).

python recipes/SynthDomains/selection/select_subset.py recipes/SynthDomains/selection/hparams/select.yaml [--selection=random ...]
"""

import sys

from tasks.select_subset import main

if __name__ == "__main__":
    main(sys.argv[1:])
