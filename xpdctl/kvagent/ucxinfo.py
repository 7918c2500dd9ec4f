"""Which UCX transport carried a transfer, read from what UCX prints with ``UCX_PROTO_INFO=y``.

UCX prints one table per protocol selection on the process's stdout, every line prefixed with
``[timestamp] [host:pid:thread]``; all lines of one table share that prefix. A table looks like::

    | agent intra-node cfg#1                                                 |
    | remote memory read by ucp_get*(multi) into host memory from host      |
    | Range  | Description | Config                                          |
    | 0..inf | zero-copy   | cma/memory                                      |

The Config column names ``transport/device`` (several for multi-lane protocols, e.g.
``50% on rc_mlx5/mlx5_0:1 and 50% on rc_mlx5/mlx5_1:1``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_PREFIX = re.compile(r"^(\[\d+\.\d+\]\s+\[[^\]]*\])\s*(.*)$")
_TRANSPORT = re.compile(r"\b([a-z][a-z0-9_]*)/([A-Za-z0-9_.:\-]+)")

# What each UCX transport is, so a probe can tell RDMA from a silent fallback. Unknown names are
# reported as "other" and never count as RDMA.
TRANSPORT_CLASSES: dict[str, str] = {
    "rc_mlx5": "rdma",
    "rc_verbs": "rdma",
    "dc_mlx5": "rdma",
    "ud_mlx5": "rdma",
    "ud_verbs": "rdma",
    "gga_mlx5": "rdma",
    "srd": "rdma",
    "tcp": "tcp",
    "cma": "shared-memory",
    "knem": "shared-memory",
    "xpmem": "shared-memory",
    "sysv": "shared-memory",
    "posix": "shared-memory",
    "self": "loopback",
    "cuda_ipc": "gpu-ipc",
    "rocm_ipc": "gpu-ipc",
    "cuda_copy": "gpu-copy",
    "rocm_copy": "gpu-copy",
}


def transport_class(transport: str) -> str:
    """The class of a ``transport/device`` string such as ``rc_mlx5/mlx5_0:1``."""
    return TRANSPORT_CLASSES.get(transport.split("/", 1)[0], "other")


def _tables(lines: Iterable[str]) -> list[list[str]]:
    grouped: dict[str, list[str]] = {}
    for line in lines:
        match = _PREFIX.match(line.rstrip("\n"))
        if match and match.group(2).startswith("|"):
            grouped.setdefault(match.group(1), []).append(match.group(2))
    return list(grouped.values())


def read_transports(output: str) -> list[str]:
    """Every ``transport/device`` UCX chose for remote memory reads to another process, in order.

    Tables for the ``self`` endpoint (an agent reading its own memory) are skipped: they say nothing
    about the path between the two agents.
    """
    found: list[str] = []
    for table in _tables(output.splitlines()):
        cells = [[c.strip() for c in row.strip("|").split("|")] for row in table]
        headers = [row[0] for row in cells if len(row) == 1]
        if len(headers) < 2 or not headers[1].startswith("remote memory read"):
            continue
        if " self " in f" {headers[0]} ":
            continue
        for row in cells:
            if len(row) == 3 and row[0] != "Range":
                for name, device in _TRANSPORT.findall(row[2]):
                    transport = f"{name}/{device}"
                    if transport not in found:
                        found.append(transport)
    return found
