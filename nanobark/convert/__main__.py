"""python -m nanobark.convert SRC OUT (the same as `nanobark convert SRC OUT`)"""

import sys

from .folder import main

sys.exit(main(prog="python -m nanobark.convert"))
