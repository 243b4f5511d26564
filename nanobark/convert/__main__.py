"""python -m nanobark.convert SRC OUT"""

import sys

from .convert import main

sys.exit(main())
