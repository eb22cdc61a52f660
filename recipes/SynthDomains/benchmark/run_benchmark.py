#!/usr/bin/env python3
"""The SynthDomains selection benchmark (see README.md and :mod:`tasks.benchmark.run`).

python recipes/SynthDomains/benchmark/run_benchmark.py recipes/SynthDomains/benchmark/hparams/benchmark.yaml
"""

import sys

from tasks.benchmark.run import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
