#!/usr/bin/python3
"""xpd-load-module NAME VERSION: "load" a stand-in kernel module and create its device nodes.

Run by a driver package's postinst and by its boot hook. Device numbers are the real drivers'
(nvidia: major 195; DRM: major 226), so ``ls -l /dev`` looks as on a GPU server; opening them fails.
"""

import os
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


def main():
    name, version = sys.argv[1], sys.argv[2]
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
