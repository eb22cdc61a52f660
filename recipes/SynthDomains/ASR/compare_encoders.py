#!/usr/bin/env python3
"""Compare encoders scored by the ASR probe, with intervals and paired differences (:mod:`tasks.compare_probes`).

python recipes/SynthDomains/ASR/compare_encoders.py --runs results/asr_probe \
    --encoders teacher_whisper_base distill_contrastive mfcc --baseline mfcc
"""

import sys

from tasks.compare_probes import main

if __name__ == "__main__":
    main(sys.argv[1:])
