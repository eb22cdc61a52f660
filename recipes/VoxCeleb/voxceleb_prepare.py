#!/usr/bin/env python3
"""Write the VoxCeleb1 manifests (see :mod:`corpora.voxceleb`).

python recipes/VoxCeleb/voxceleb_prepare.py --data_folder /data/VoxCeleb1 \
    --save_folder data/VoxCeleb1/manifests --trials_file /data/VoxCeleb1/veri_test2.txt
"""

import sys

from corpora.voxceleb import main

if __name__ == "__main__":
    main(sys.argv[1:])
