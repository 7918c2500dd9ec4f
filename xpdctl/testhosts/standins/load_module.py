#!/usr/bin/python3
"""xpd-load-module NAME VERSION: "load" a stand-in kernel module and create its device nodes.

Run by a driver package's postinst and by its boot hook. Device numbers are the real drivers'
(nvidia: major 195; DRM: major 226), so ``ls -l /dev`` looks as on a GPU server; opening them fails.
``xpd-load-module nouveau -`` runs at every boot: on a host whose hardware.json has faults.nouveau,
nouveau takes the NVIDIA GPUs unless a modprobe.d file blacklists it, and nvidia then stays unloaded.
"""

import glob
import os
import re
import stat
import sys

import xpd_standin

# name -> (GPU vendor, [(path, major, minor)] per GPU index i, fixed [(path, major, minor)])
NODES = {
    "nvidia": ("nvidia", [("/dev/nvidia{i}", 195, "{i}")], [("/dev/nvidiactl", 195, 255)]),
    "amdgpu": (
        "amd",
        [("/dev/dri/card{i}", 226, "{i}"), ("/dev/dri/renderD{r}", 226, "{r}")],
        [("/dev/kfd", 235, 0)],
    ),
}


def mknod(path, major, minor):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if not os.path.exists(path):
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(major, minor))
        os.chmod(path, 0o666)  # mknod's mode passes through the umask


def nouveau_blacklisted():
    for path in glob.glob("/etc/modprobe.d/*.conf"):
        with open(path) as handle:
            if re.search(r"^\s*blacklist\s+nouveau\s*$", handle.read(), re.MULTILINE):
                return True
    return False


def main():
    name, version = sys.argv[1], sys.argv[2]
    if name == "nouveau":
        fresh = xpd_standin.hardware().get("faults", {}).get("nouveau", False)
        if fresh and xpd_standin.gpus("nvidia") and not nouveau_blacklisted():
            xpd_standin.load_module("nouveau", "in-tree")
        return
    if name == "nvidia" and xpd_standin.loaded_module("nouveau") is not None:
        # The real module loads but finds no GPU it may drive: "NVRM: ... nouveau ... probe routine
        # was not called"; the daemons and tools then see no driver.
        return
    vendor, per_gpu, fixed = NODES[name]
    xpd_standin.load_module(name, version)
    for gpu in xpd_standin.gpus(vendor):
        for template, major, minor in per_gpu:
            values = {"i": gpu["index"], "r": 128 + gpu["index"]}
            mknod(template.format(**values), major, int(minor.format(**values)))
    for path, major, minor in fixed:
        mknod(path, major, minor)


if __name__ == "__main__":
    main()
