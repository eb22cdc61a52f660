#!/usr/bin/env python3
"""CTC ASR probe of a frozen encoder on your transcribed audio (the root README.md, "Your own audio"; and :mod:`tasks.asr_probe`).

python recipes/AudioFolders/ASR/train.py recipes/AudioFolders/ASR/hparams/ctc_probe.yaml \
    --encoder_source=results/folders_distill_contrastive/1234/save/student --encoder_name=student [--key=value ...]
"""

import sys

from tasks.asr_probe import main

if __name__ == "__main__":
    main(sys.argv[1:])
