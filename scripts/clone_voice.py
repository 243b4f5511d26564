"""A voice from a recording, from a checkout: the same as the installed `nanobark clone` (nanobark/cli/).

python scripts/clone_voice.py me.wav --out me.npz
python scripts/generate.py "Hello, it is me." --voice me.npz --out hello.wav
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

from nanobark.__main__ import main  # noqa: E402

if __name__ == "__main__":
    sys.argv.insert(1, "clone")
    sys.exit(main())
