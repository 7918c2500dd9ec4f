#!/usr/bin/python3
"""Stand-in nv-fabricmanager: runs (in the foreground, as the unit starts it) only when the loaded
NVIDIA module has exactly its own version, and otherwise stops with the real tool's complaint."""

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
    xpd_standin.serve_forever(f"Fabric Manager version {own} is running with the following configuration options")


if __name__ == "__main__":
    main()
