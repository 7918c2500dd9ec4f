"""``python -m xpdctl.testhosts.supervise NETNS REQUESTS``: run one test host, and again after each reboot.

The host ends when its PID 1 exits (a ``reboot`` or ``poweroff`` inside, or a kill from outside). The
stand-in ``reboot`` and ``poweroff`` leave ``reboot-requested`` / ``poweroff-requested`` in the host's
``REQUESTS`` folder (on its disk): after a reboot request the supervisor boots the host again, as a
server's firmware would; otherwise it exits and the host stays down.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from xpdctl.testhosts.host import boot_argv

REQUESTS = ("reboot-requested", "poweroff-requested")
# A real shutdown does not wait on PID 1 forever (systemd stops each unit with a timeout, then kills
# what is left). Debian's daemonless systemctl can be held up (a unit that ignores its stop, a signal
# it did not take): this long after a request the power is cut from outside.
SHUTDOWN_GRACE_S = 90.0


def _requested(folder: Path) -> bool:
    return any((folder / name).exists() for name in REQUESTS)


def run_once(netns: str, folder: Path, grace_s: float = SHUTDOWN_GRACE_S) -> None:
    """One boot, until PID 1 exits or, after a power request, the grace runs out."""
    process = subprocess.Popen(boot_argv(netns))  # the environment carries the host's paths
    asked: float | None = None
    while process.poll() is None:
        time.sleep(0.5)
        if asked is None and _requested(folder):
            asked = time.monotonic()
        if asked is not None and time.monotonic() - asked > grace_s:
            print(f"PID 1 did not end {grace_s:.0f} s after a power request: cutting the power", flush=True)
            process.kill()  # unshare --kill-child takes PID 1, and with it every process of the host
            process.wait()


def main() -> None:
    netns, folder = sys.argv[1], Path(sys.argv[2])
    while True:
        run_once(netns, folder)
        reboot = (folder / "reboot-requested").exists()
        for name in REQUESTS:
            (folder / name).unlink(missing_ok=True)
        if not reboot:
            return


if __name__ == "__main__":
    main()
