"""The applier's own interpreter: ``python -m xpdctl.remote.pyinfra_run`` reads
:class:`~xpdctl.remote.applier.ApplyRequest` s (JSON, one a line) on stdin, applies each with pyinfra
and prints its :class:`~xpdctl.remote.applier.ApplyOutcome` (JSON, one line); it ends with its stdin.

gevent patches the standard library first, as pyinfra's own command line does: pyinfra runs every
host in a greenlet, and an unpatched socket read would hold the others up.
"""

from gevent import monkey

monkey.patch_all()

# The imports below must follow the patch.
import difflib
import gevent
import io
import logging
import posixpath
import re
import sys
from pathlib import Path

from pyinfra.api import BaseStateCallback, Config, Inventory, State
from pyinfra.api.connect import connect_all, disconnect_all
from pyinfra.api.exceptions import PyinfraError
from pyinfra.api.facts import get_fact
from pyinfra.api.host import Host
from pyinfra.api.operation import add_op
from pyinfra.api.operations import run_ops
from pyinfra.context import ctx_host, ctx_state
from pyinfra.facts.files import FileContents
from pyinfra.operations import files, systemd

from xpdctl.observe.drift import host_files
from xpdctl.remote.applier import ApplyOutcome, ApplyRequest, HostOutcome, HostRequest, planned
from xpdctl.remote.facts import HostServices
from xpdctl.remote.hostchanges import VERB, HostChanges, HostSnapshot
from xpdctl.render import HOSTS, RenderedFile, read_tree

SECRET_MODE = 0o600
_LOG_PREFIX = re.compile(r"^[A-Z]+:[\w.]+:")  # "ERROR:systemctl:"
_UNIT_VERBS = ("start ", "restart ", "reload ", "stop ", "enable ")


class _Failures(BaseStateCallback):
    """The first thing that went wrong on each host, for a person."""

    def __init__(self) -> None:
        self.by_host: dict[str, str] = {}

    def host_connect_error(self, state: State, host: Host, error: object) -> None:
        self.by_host.setdefault(host.name, f"unreachable over SSH ({error})")


def _host_data(request: ApplyRequest, host: HostRequest) -> dict:
    ssh = host.link.ssh
    data = {
        "ssh_hostname": host.link.address,
        "ssh_port": ssh.port,
        "ssh_user": ssh.user,
        "ssh_known_hosts_file": request.known_hosts,
        # As provisioning's SSH: trust a host's key the first time, refuse it if it changes later.
        "ssh_strict_host_key_checking": "accept-new",
        # Root reads and writes every file render writes (env files holding secrets are 0600).
        "_sudo": ssh.user != "root",
    }
    if ssh.key:
        data["ssh_key"] = str(Path(ssh.key).expanduser())
    return data


def _diff(host: Host, state: State, path: str, rendered: RenderedFile) -> str:
    if rendered.mode == SECRET_MODE:
        return f"{path}: differs from the render (mode 0600: its content is a secret and not shown)\n"
    lines = get_fact(state, host, FileContents, kwargs={"path": path})
    old = [line + "\n" for line in lines] if lines is not None else []
    new = rendered.content.splitlines(keepends=True)
    diff = "".join(difflib.unified_diff(old, new, f"{path} (on {host.name})", f"{path} (render)"))
    return diff or f"{path}: mode {rendered.mode:o} (the content is the render's)\n"


def _add_ops(state: State, host: Host, changes: HostChanges, rendered: dict[str, RenderedFile],
             snapshot: HostSnapshot) -> None:
    def op(func, name: str, **kwargs) -> None:
        add_op(state, func, name=name, host=host, **kwargs)

    # Each check or command below is one more command over SSH (a rollout step pays them while it
    # waits), so the ones the host's read already answered are left out: the folders that hold its
    # files exist, and a file root uploads is root's (a login through sudo hands it over).
    folders = {posixpath.dirname(p) for p in snapshot.files}
    owner = {"user": "root", "group": "root"} if host.data.get("_sudo") else {}
    for unit in changes.stop:
        op(systemd.service, f"stop {unit}", service=f"{unit}.service", running=False, enabled=False)
    for path in changes.write:
        file = rendered[path]
        # force: the host's digest was read already (it differs), so pyinfra need not read it twice more.
        op(files.put, f"write {path}", src=io.BytesIO(file.content.encode()), dest=path, mode=f"{file.mode:o}",
           force=True, create_remote_dir=posixpath.dirname(path) not in folders, **owner)
    for path in changes.remove:
        op(files.file, f"remove {path}", path=path, present=False)
    if changes.daemon_reload:
        op(systemd.daemon_reload, "reload systemd")
    for unit, change in changes.units.items():
        if change != "unchanged" or unit in changes.enable:
            # enabled only where the host said it is not: each check is a systemctl run before and during the op.
            op(systemd.service, f"{VERB[change]} {unit}", service=f"{unit}.service", running=True,
               enabled=True if unit in changes.enable else None,
               restarted=change == "restarted", reloaded=change == "reloaded")


def _read_hosts(state: State, hosts: list[Host], cluster: str, failures: _Failures) -> dict[Host, HostSnapshot]:
    """Every host's units and files at once; a host whose read fails is left out, with the reason."""

    def read(host: Host) -> HostSnapshot | None:
        try:
            with ctx_host.use(host):
                return get_fact(state, host, HostServices, kwargs={"cluster": cluster})
        except Exception as exc:  # SSH dropped, no host left: this host's reason, not the worker's end
            failures.by_host.setdefault(host.name, f"reading its units and files failed ({exc})")
            return None

    with ctx_state.use(state):
        greenlets = {host: gevent.spawn(read, host) for host in hosts}
    gevent.joinall(list(greenlets.values()))
    return {host: g.value for host, g in greenlets.items() if g.value is not None}


# SSH connections kept between applies (this interpreter lives as long as xpdctl): a rollout applies to
# the same hosts again and again, and pyinfra would open a new one to a host at each apply (a key
# exchange in Python: CPU that the hosts' applies, all on one interpreter, wait for in turn).
_CLIENTS: dict[tuple, object] = {}


def _client_key(request: ApplyRequest, host: HostRequest) -> tuple:
    return (host.link.address, host.link.ssh.port, host.link.ssh.user, host.link.ssh.key, request.known_hosts)


def _reuse_connections(request: ApplyRequest, state: State) -> None:
    for host in state.inventory:
        wanted = request.hosts[host.name]
        client = _CLIENTS.get(_client_key(request, wanted)) if wanted.snapshot is not None else None
        transport = client.get_transport() if client is not None else None
        if transport is not None and transport.is_active():
            host.connector.client = client
            host.connected = True  # connect_all then only activates it


def _keep_connections(request: ApplyRequest, state: State) -> None:
    for host in state.inventory:
        key = _client_key(request, request.hosts[host.name])
        if host in state.activated_hosts and host not in state.failed_hosts:
            _CLIENTS[key] = host.connector.client
        else:  # a host that failed may have lost its connection: the next apply connects again
            _CLIENTS.pop(key, None)


def apply(request: ApplyRequest) -> ApplyOutcome:
    rendered = read_tree(Path(request.tree)) if request.tree else {}
    inventory = Inventory(([(name, _host_data(request, h)) for name, h in request.hosts.items()], {}))
    state = State(inventory, Config(CONNECT_TIMEOUT=request.connect_timeout_s))
    failures = _Failures()
    state.add_callback_handler(failures)
    outcomes = {name: HostOutcome(status="unreachable") for name in request.hosts}
    _reuse_connections(request, state)
    try:
        connect_all(state)
    except PyinfraError:
        pass  # no host answered: each one's reason is in failures
    hosts = {h.name: h for h in state.inventory.get_active_hosts()}
    snapshots = {h: request.hosts[h.name].snapshot for h in hosts.values() if request.hosts[h.name].snapshot}
    snapshots |= _read_hosts(state, [h for h in hosts.values() if h not in snapshots], request.cluster, failures)
    prepared: dict[str, Host] = {}
    for name, host in hosts.items():
        snapshot = snapshots.get(host)
        if snapshot is None:
            outcomes[name] = HostOutcome(status="failed", error=failures.by_host.get(
                name, "reading its units and files failed; check that the login can run systemctl as root"))
            continue
        outcome = outcomes[name] = planned(request.hosts[name], snapshot, host_files(rendered, name))
        changes = outcome.changes
        mine = {path: rendered[f"{HOSTS}/{name}" + path] for path in changes.write}
        try:
            if request.check:
                outcome.diffs = {path: _diff(host, state, path, mine[path]) for path in changes.write}
            elif changes.needed():
                _add_ops(state, host, changes, mine, snapshot)
                prepared[name] = host
        except Exception as exc:  # pyinfra refused an operation, SSH dropped: this host's failure only
            outcome.status, outcome.error = "failed", f"preparing its changes failed: {exc}"
            prepared.pop(name, None)
            if not request.check:
                try:
                    state.fail_hosts({host})
                except PyinfraError:
                    pass  # no host left to change
    if prepared and not request.check:
        try:
            run_ops(state)
        except PyinfraError:
            pass  # every host failed: each one's reason is read below
        for name, host in prepared.items():
            if host in state.failed_hosts:
                outcomes[name].status = "failed"
                outcomes[name].error = _op_error(state, host) or failures.by_host.get(name) or "an operation failed"
    for name, reason in failures.by_host.items():
        if outcomes[name].status == "unreachable":
            outcomes[name].error = reason
    disconnect_all(state)  # pyinfra's own: it drops its file-transfer sessions, the connections stay
    _keep_connections(request, state)
    return ApplyOutcome(hosts=outcomes)


def _op_error(state: State, host: Host) -> str | None:
    """The host's first failed operation, with the last line of its output that says something."""
    for op_hash in state.get_op_order():
        data = state.ops.get(host, {}).get(op_hash)
        meta = data.operation_meta if data else None
        if meta is not None and meta.is_complete() and meta.did_error():
            # Lines that say something: words after any log prefix, not a row of "!!!".
            lines = [line for line in (meta.stderr + "\n" + meta.stdout).splitlines()
                     if re.search(r"[A-Za-z]{3}", _LOG_PREFIX.sub("", line))]
            names = ", ".join(sorted(state.get_op_meta(op_hash).names))
            units = [n.split()[-1] for n in state.get_op_meta(op_hash).names if n.startswith(_UNIT_VERBS)]
            hint = f" (see `journalctl -u {units[0]}` there)" if units else ""
            return f"{names} failed" + (f": {lines[-1].strip()}" if lines else "") + hint
    return None


def main() -> None:
    logging.getLogger("pyinfra").setLevel(logging.CRITICAL)
    # Answers only on stdout: whatever pyinfra prints goes to stderr, which xpdctl shows when it fails.
    answers, sys.stdout = sys.stdout, sys.stderr
    for line in sys.stdin:
        answers.write(apply(ApplyRequest.model_validate_json(line)).model_dump_json() + "\n")
        answers.flush()


if __name__ == "__main__":
    main()
