#!/usr/bin/env python3
"""Write a subset manifest as a Kaldi data directory and lhotse manifests (see :mod:`corpora.kaldi_lhotse`).

python recipes/AudioFolders/export_subset.py --subset results/my_selection/subset.csv \
    --kaldi_dir results/my_subset/kaldi --lhotse_dir results/my_subset/lhotse
"""

import sys

from corpora.kaldi_lhotse import main

if __name__ == "__main__":
    main(sys.argv[1:])
