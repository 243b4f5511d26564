"""Many texts to audio files, from a checkout: the same as the installed `nanobark synthesize` (nanobark/cli/).

python scripts/synthesize.py corpus.jsonl --out-dir out
torchrun --nproc_per_node=8 scripts/synthesize.py corpus.jsonl --out-dir out     # a process per GPU
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

from nanobark.__main__ import main  # noqa: E402

if __name__ == "__main__":
    sys.argv.insert(1, "synthesize")
    sys.exit(main())
