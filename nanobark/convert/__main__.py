"""python -m nanobark.convert SRC OUT"""

import sys

from .folder import main

sys.exit(main())
