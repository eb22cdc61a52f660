#!/usr/bin/env python3
"""Write the LibriSpeech manifests (see :mod:`corpora.librispeech`).

python recipes/LibriSpeech/librispeech_prepare.py --data_folder /data/LibriSpeech \
    --save_folder data/LibriSpeech/manifests --splits dev-clean test-clean \
    --merge pool=train-clean-100,train-clean-360,train-other-500 target=dev-other
"""

import sys

from corpora.librispeech import main

if __name__ == "__main__":
    main(sys.argv[1:])
