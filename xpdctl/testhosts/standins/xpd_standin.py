"""Shared by the stand-in tools inside a test host (installed as a Python module in the test host's root).

The tools stand in for vendor binaries on hosts without the hardware; they print the real formats
for the GPUs and NICs in /etc/xpd-testhost/hardware.json. A "loaded kernel module" is a file under
/run/xpd-testhost/modules (tmpfs: gone at the next boot, like a real module), holding the version
that was loaded, so upgrading a driver package without a reboot leaves the old version loaded.
"""

import glob
import json
import os
import signal
import sys
import time

HARDWARE = "/etc/xpd-testhost/hardware.json"
PACKAGES = "/usr/share/xpd-testhost/packages"
MODULES = "/run/xpd-testhost/modules"


def hardware():
    with open(HARDWARE) as handle:
        return json.load(handle)


def gpus(vendor):
    return [gpu for gpu in hardware()["gpus"] if gpu["vendor"] == vendor]


def package(pattern):
    """The installed stand-in package matching ``pattern``: {"package", "version", "upstream"} or None."""
    for path in sorted(glob.glob(os.path.join(PACKAGES, pattern + ".json"))):
        with open(path) as handle:
            return json.load(handle)
    return None


def loaded_module(name):
    try:
        with open(os.path.join(MODULES, name)) as handle:
            return handle.read().strip()
    except OSError:
        return None


def load_module(name, version):
    """Load ``name`` at ``version`` unless some version is loaded already (only a boot unloads it)."""
    if loaded_module(name) is not None:
        return False
    os.makedirs(MODULES, exist_ok=True)
    with open(os.path.join(MODULES, name), "w") as handle:
        handle.write(version + "\n")
    return True


def serve_forever(message):
    """What a stand-in daemon does once it started: say so, then wait for its unit to stop it."""
    print(message, flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        time.sleep(3600)


def die(message, code=1):
    sys.stderr.write(message.rstrip("\n") + "\n")
    sys.exit(code)
