#!/usr/bin/env python3
"""CTC ASR probe of a frozen encoder on SynthDomains (see README.md and :mod:`tasks.asr_probe`).

python recipes/SynthDomains/ASR/train.py recipes/SynthDomains/ASR/hparams/ctc_probe.yaml [--encoder_source=... --encoder_name=...]
"""

import sys

from tasks.asr_probe import main

if __name__ == "__main__":
    main(sys.argv[1:])
