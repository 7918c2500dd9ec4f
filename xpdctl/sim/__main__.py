"""`python -m xpdctl.sim ...` is `xpdctl sim ...` (test hosts run it without a console script)."""

import sys

from xpdctl.cli import main

sys.argv[1:1] = ["sim"]
main()
