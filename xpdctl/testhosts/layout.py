"""Where test hosts keep their files.

The cache (the debootstrapped root, the stand-in apt repository) is shared by every fleet and survives
``destroy``; building it takes minutes. Fleet state (per-host overlay upper dirs, SSH key, the
fleet record) lives under the state dir and is removed by ``destroy``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CACHE_ENV = "XPDCTL_TESTHOSTS_CACHE"
STATE_ENV = "XPDCTL_TESTHOSTS_DIR"


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or "/var/cache/xpdctl/testhosts")


def state_root() -> Path:
    return Path(os.environ.get(STATE_ENV) or "/var/lib/xpdctl/testhosts")


@dataclass(frozen=True)
class FleetDirs:
    root: Path

    @property
    def record(self) -> Path:
        return self.root / "fleet.json"

    @property
    def key(self) -> Path:
        return self.root / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.root / "known_hosts"

    @property
    def apt_server_pid(self) -> Path:
        return self.root / "apt-server.pid"

    @property
    def apt_server_log(self) -> Path:
        return self.root / "apt-server.log"

    @property
    def registry_config(self) -> Path:
        return self.root / "registry.yml"

    @property
    def registry_pid(self) -> Path:
        return self.root / "registry.pid"

    @property
    def registry_log(self) -> Path:
        return self.root / "registry.log"

    def host(self, name: str) -> HostDirs:
        return HostDirs(self.root / "hosts" / name)


@dataclass(frozen=True)
class HostDirs:
    root: Path

    @property
    def upper(self) -> Path:
        return self.root / "upper"

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def merged(self) -> Path:
        # Mounted only inside the host's own mount namespace; empty when seen from outside.
        return self.root / "root"

    @property
    def hardware(self) -> Path:
        # Bind-mounted read-only at /etc/xpd-testhost; edited from outside to inject faults.
        return self.root / "hardware"

    @property
    def shares(self) -> Path:
        # The read-only folders the host was created with, one per line, for reboots.
        return self.root / "shares"

    @property
    def sysctl(self) -> Path:
        # The host's own copies of global kernel settings, bind-mounted over /proc/sys/<key>.
        return self.root / "sysctl"

    @property
    def power_requests(self) -> Path:
        # Where the host's stand-in `reboot`/`poweroff` leave their request, on its disk, for the supervisor.
        return self.upper / "var/lib/xpd-testhost"

    @property
    def reboot_request(self) -> Path:
        return self.power_requests / "reboot-requested"

    @property
    def docker_data(self) -> Path:
        # Bind-mounted at /var/lib/docker: the host's "data disk" for images and containers.
        return self.root / "docker"

    @property
    def pid(self) -> Path:
        return self.root / "init.pid"

    @property
    def log(self) -> Path:
        return self.root / "init.log"


def fleet_dirs(name: str) -> FleetDirs:
    return FleetDirs(state_root() / name)
