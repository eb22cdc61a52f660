#!/usr/bin/env python3
"""From folders of your own audio to a distilled student (the root README.md, "Your own audio"; and :mod:`tasks.distillation`).

python recipes/AudioFolders/distillation/train.py recipes/AudioFolders/distillation/hparams/distill.yaml \
    --pool_folder=/path/to/pool --target_folder=/path/to/target --budget_hours=10 [--key=value ...]
"""

import sys

from tasks.distillation import main

if __name__ == "__main__":
    main(sys.argv[1:])
