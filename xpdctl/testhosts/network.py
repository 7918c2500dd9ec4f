"""The fleet's virtual network: one bridge on this machine, one namespace + veth pair per host."""

from __future__ import annotations

from xpdctl.testhosts.run import run, succeeds


def link_exists(name: str) -> bool:
    return succeeds(["ip", "link", "show", "dev", name])


def link_up(name: str) -> bool:
    """Whether the link exists and carries traffic (both ends of a veth pair up)."""
    return link_exists(name) and "state UP" in run(["ip", "link", "show", "dev", name])


def netns_exists(name: str) -> bool:
    return name in netns_list()


def netns_list() -> list[str]:
    return [line.split()[0] for line in run(["ip", "netns", "list"]).splitlines() if line.strip()]


def ensure_bridge(bridge: str, gateway: str, prefix_len: int) -> None:
    if not link_exists(bridge):
        run(["ip", "link", "add", bridge, "type", "bridge"])
    run(["ip", "addr", "replace", f"{gateway}/{prefix_len}", "dev", bridge])
    run(["ip", "link", "set", bridge, "up"])


def remove_link(name: str) -> None:
    if link_exists(name):
        run(["ip", "link", "del", name])


def add_host(netns: str, veth: str, bridge: str, address: str, prefix_len: int, gateway: str) -> None:
    """A fresh namespace whose eth0 is wired into the bridge, with a default route via the bridge."""
    remove_host(netns, veth)
    run(["ip", "netns", "add", netns])
    run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns])
    run(["ip", "link", "set", veth, "master", bridge, "up"])
    inside = ["ip", "-n", netns]
    run([*inside, "link", "set", "lo", "up"])
    run([*inside, "addr", "add", f"{address}/{prefix_len}", "dev", "eth0"])
    run([*inside, "link", "set", "eth0", "up"])
    run([*inside, "route", "add", "default", "via", gateway])


def netns_pids(netns: str) -> list[int]:
    if not netns_exists(netns):
        return []
    return [int(pid) for pid in run(["ip", "netns", "pids", netns]).split()]


def remove_host(netns: str, veth: str) -> None:
    remove_link(veth)  # deleting one end removes the pair
    if netns_exists(netns):
        run(["ip", "netns", "del", netns])


def set_link(veth: str, up: bool, address: str) -> None:
    """Plug or pull the host's cable. Pulling it also resets this machine's connections to the host.

    Without the reset, an SSH connection kept open for reuse (Ansible's ControlPersist) would wait for
    the dead peer for many minutes instead of failing, which is what a cut link does in the end.
    """
    run(["ip", "link", "set", veth, "up" if up else "down"])
    if not up:
        run(["ss", "-K", "dst", address], check=False)
