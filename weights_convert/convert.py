"""Convert a Bark checkpoint directory into nanobark's layout, from a checkout:

    python weights_convert/convert.py SRC OUT

The same as `nanobark convert SRC OUT`; the converter itself (key tables included) is nanobark.weights.convert.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

from nanobark.cli.convert import convert  # noqa: E402

if __name__ == "__main__":
    sys.exit(convert(sys.argv[1:], prog="python weights_convert/convert.py"))
