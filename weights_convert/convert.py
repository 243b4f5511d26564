"""Convert a Bark checkpoint directory into nanobark's layout, from a checkout:

    python weights_convert/convert.py SRC OUT

The converter itself (key tables included) is nanobark.weights.convert; see there for the layouts it reads.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

from nanobark.weights.convert.folder import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(prog="python weights_convert/convert.py"))
