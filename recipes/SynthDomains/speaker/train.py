#!/usr/bin/env python3
"""Speaker probe of a frozen encoder on SynthDomains (see README.md and :mod:`tasks.speaker_probe`).

python recipes/SynthDomains/speaker/train.py recipes/SynthDomains/speaker/hparams/spk_probe.yaml [--encoder_source=... --encoder_name=...]
"""

import sys

from tasks.speaker_probe import main

if __name__ == "__main__":
    main(sys.argv[1:])
