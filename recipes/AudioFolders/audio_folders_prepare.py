#!/usr/bin/env python3
"""Write manifests of your own folders of audio (see :mod:`corpora.audio_folders`).

python recipes/AudioFolders/audio_folders_prepare.py --save_folder results/my_manifests \
    --pool_folder /data/my_pool --target_folder /data/my_domain --asr_train_folder /data/transcribed --seed 0
"""

import sys

from corpora.audio_folders import main

if __name__ == "__main__":
    main(sys.argv[1:])
