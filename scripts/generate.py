"""Text to speech from a checkout: the same as the installed `nanobark` command (nanobark/cli/).

python scripts/generate.py "Hello, my dog is cute" --out hello.wav
python scripts/generate.py --help
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

from nanobark.__main__ import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
