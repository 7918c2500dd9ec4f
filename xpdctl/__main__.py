"""`python -m xpdctl` is `xpdctl`: rendered native units use it with the cluster's own interpreter."""

from xpdctl.cli import main

main()
