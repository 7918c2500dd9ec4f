"""``python -m xpdctl.testhosts.supervise NETNS REQUEST``: run one test host, and again after each reboot.

The host ends when its PID 1 exits (a ``reboot`` or ``poweroff`` inside, or a kill from outside). When
the stand-in ``reboot`` left the ``REQUEST`` file in the host's disk, the supervisor removes it and boots
the host again, as a server's firmware would; otherwise the supervisor exits and the host stays down.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from xpdctl.testhosts.host import boot_argv


def main() -> None:
    netns, request = sys.argv[1], Path(sys.argv[2])
    while True:
        subprocess.run(boot_argv(netns), check=False)  # the environment carries the host's paths
        if not request.exists():
            return
        request.unlink()


if __name__ == "__main__":
    main()
