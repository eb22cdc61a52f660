#!/usr/bin/env python3
"""Generate the SynthDomains corpus (see :mod:`corpora.synthdomains.prepare`).

python recipes/SynthDomains/synthdomains_prepare.py --data_folder D --save_folder S --scale X --seed N [--n_jobs J]
    [--target_domain formant]   # also S/target-formant/: the same audio with formant as the target domain
"""

import sys

from corpora.synthdomains.prepare import main

if __name__ == "__main__":
    main(sys.argv[1:])
