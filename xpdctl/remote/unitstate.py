"""What ``systemctl show`` says about units, as the executor's :class:`UnitState`.

Only full ``show`` output is read (no ``-p``): Debian's daemonless ``systemctl`` (test hosts) honours
one ``-p`` only, while both print every unit as a block of ``Key=Value`` lines, blocks separated by
a blank line. The state script keeps just the keys below.
"""

from __future__ import annotations

from xpdctl.units.state import ProcState, UnitState

KEYS = ("Id", "LoadState", "ActiveState", "SubState", "MainPID", "ExecMainStatus", "Result", "NRestarts", "UnitFileState")


def parse_show(text: str) -> dict[str, dict[str, str]]:
    """unit name (without ``.service``) -> its properties, from ``systemctl show U1 U2 ...``."""
    units: dict[str, dict[str, str]] = {}
    block: dict[str, str] = {}

    def close() -> None:
        if block.get("Id"):
            units[block["Id"].removesuffix(".service")] = dict(block)
        block.clear()

    for line in text.splitlines():
        if not line.strip():
            close()
            continue
        key, sep, value = line.partition("=")
        if sep:
            block[key.strip()] = value.strip()
    close()
    return units


def proc_state(props: dict[str, str]) -> ProcState:
    active, sub = props.get("ActiveState", ""), props.get("SubState", "")
    if active in ("active", "reloading"):
        return "running"
    if active == "activating":
        return "restarting" if sub == "auto-restart" else "starting"
    if active == "failed":
        return "failed"
    return "stopped"  # inactive, deactivating, or a unit systemd does not know


def last_exit(props: dict[str, str]) -> str | None:
    status = props.get("ExecMainStatus", "0")
    result = props.get("Result", "success")
    if status not in ("", "0"):
        return f"exit {status}"
    if result not in ("", "success"):
        return result
    return None


def unit_state(name: str, host: str, role: str, props: dict[str, str], content_hash: str) -> UnitState:
    pid = props.get("MainPID", "0")
    restarts = props.get("NRestarts", "0")
    return UnitState(
        name=name, host=host, role=role, content_hash=content_hash, state=proc_state(props),
        pid=int(pid) if pid.isdigit() and int(pid) > 0 else None,
        restarts=int(restarts) if restarts.isdigit() else 0, last_exit=last_exit(props),
        log=f"`journalctl -u {name}` on {host}",
    )
