#!/usr/bin/python3
"""Stand-in nv-fabricmanager: runs (in the foreground, as the unit starts it) only when the loaded
NVIDIA module has exactly its own version, and otherwise stops with the real tool's complaint."""

import signal
import sys
import time

import xpd_standin


def main():
    own = xpd_standin.package("nvidia-fabricmanager-*")["upstream"]
    loaded = xpd_standin.loaded_module("nvidia")
    if loaded is None:
        xpd_standin.die("fabric manager: NVIDIA driver is not loaded; request to query NVSwitch device information failed", 1)
    if loaded != own:
        xpd_standin.die(
            f"fabric manager NVIDIA GPU driver interface version {own} don't match with driver version {loaded}. "
            "Please update with matching NVIDIA driver package.",
            1,
        )
    print(f"Fabric Manager version {own} is running with the following configuration options", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
