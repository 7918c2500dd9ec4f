#!/usr/bin/python3
"""Stand-in nvidia-persistenced: runs in the foreground (as its unit starts it) only while an NVIDIA
module of this package's version is loaded, and otherwise exits as the real daemon does when it
cannot initialise the driver ("nvidia-persistenced failed to initialize. Check syslog for more details.")."""

import xpd_standin


def main():
    own = xpd_standin.package("nvidia-compute-utils-*")["upstream"]
    loaded = xpd_standin.loaded_module("nvidia")
    if loaded != own:
        xpd_standin.die("nvidia-persistenced failed to initialize. Check syslog for more details.", 1)
    xpd_standin.serve_forever(f"nvidia-persistenced {own}: persistence mode enabled on every GPU")


if __name__ == "__main__":
    main()
