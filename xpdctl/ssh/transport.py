"""How a script reaches a host: SSH, or a local shell standing in for hosts that share this machine
(simulated hosts in benchmarks, the local cluster)."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from pathlib import Path

from xpdctl.paths import cluster_scratch_dir, known_hosts_file
from xpdctl.ssh.target import HostLink


@dataclass
class RunResult:
    rc: int | None  # None: killed after the timeout
    stdout: str
    stderr: str


async def _run(argv: list[str], stdin: str, timeout_s: float, env: dict[str, str] | None = None) -> RunResult:
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            start_new_session=True,
        )
    except FileNotFoundError:
        return RunResult(127, "", f"{argv[0]} is not installed on this machine")
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), timeout_s)
    except asyncio.TimeoutError:
        proc.kill()
        try:
            # A shared SSH connection's master holds our pipes for its session: reading to EOF could
            # wait as long as that master lives, so what arrived so far is all there is.
            out, err = await asyncio.wait_for(proc.communicate(), 2.0)
        except asyncio.TimeoutError:
            out, err = b"", b""
        return RunResult(None, out.decode(errors="replace"), err.decode(errors="replace"))
    return RunResult(proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"))


# The remote command: root reads every file render writes (env files holding secrets are 0600), so a
# login other than root runs the script through passwordless sudo when it has it, as provisioning does.
_AS_ROOT_IF_ALLOWED = 'if [ "$(id -u)" != 0 ] && sudo -n true 2>/dev/null; then exec sudo -n sh -s; else exec sh -s; fi'


# ssh's control socket is <dir>/<%C: 40 hex chars><17-char temporary suffix> and must fit a Unix socket
# path (108 bytes): from a deeper dir ssh refuses to connect at all, so it goes without sharing.
_MAX_CONTROL_DIR = 107 - 1 - 40 - 17


@dataclass
class SshTransport:
    """``ssh user@address`` running ``sh -s`` (as root through ``sudo -n`` when the login is not root
    and may) with the script on stdin; never prompts (BatchMode)."""

    connect_timeout_s: float = 3.0
    # Further ``-o`` options, e.g. {"UserKnownHostsFile": "/path"} for test hosts.
    options: dict[str, str] = field(default_factory=dict)
    # Folder for shared connections (ControlMaster): with one, a repeated status (--watch) skips the
    # SSH handshake, which costs more than the probes; the connection closes after keep_s idle.
    control_dir: Path | None = None
    keep_s: int = 120

    def argv(self, target: HostLink) -> list[str]:
        options = {
            "BatchMode": "yes",
            "ConnectTimeout": str(int(max(1, self.connect_timeout_s))),
            "StrictHostKeyChecking": "accept-new",
            "LogLevel": "ERROR",
            # Prefer classic X25519 key exchange: OpenSSH 9's default post-quantum hybrid
            # (sntrup761x25519) costs ~80 ms of CPU per connection on each side, measured here, which
            # for 32 hosts is seconds; status only carries host facts and file hashes, nothing whose
            # secrecy must outlive a future quantum computer. Others stay allowed as fallbacks.
            "KexAlgorithms": "^curve25519-sha256,curve25519-sha256@libssh.org",
            **self.options,
        }
        if self.control_dir is not None and len(str(self.control_dir)) <= _MAX_CONTROL_DIR:
            self.control_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            options.update(
                ControlMaster="auto",
                ControlPath=str(self.control_dir / "%C"),
                ControlPersist=f"{self.keep_s}s",
                # A host that vanishes under a shared connection: its master gives up within ~3 s
                # instead of holding every later status of that host.
                ServerAliveInterval="1",
                ServerAliveCountMax="3",
            )
        argv = ["ssh", "-p", str(target.ssh.port)]
        for key, value in options.items():
            argv += ["-o", f"{key}={value}"]
        if target.ssh.key:
            argv += ["-i", os.path.expanduser(target.ssh.key)]
        return argv + [f"{target.ssh.user}@{target.address}", _AS_ROOT_IF_ALLOWED]

    def forward_argv(self, target: HostLink, local_socket: str, remote_socket: str) -> list[str]:
        """``ssh -N`` forwarding ``local_socket`` to the host's ``remote_socket``, with this transport's
        options but its own connection (a forward through a shared one would outlive this call)."""
        argv = self.argv(target)[:-1]
        argv[1:1] = ["-N", "-o", "ControlPath=none", "-o", "ExitOnForwardFailure=yes", "-L", f"{local_socket}:{remote_socket}"]
        return argv

    async def run(self, target: HostLink, script: str, timeout_s: float) -> RunResult:
        result = await _run(self.argv(target), script, timeout_s)
        if result.rc == 255:
            # ssh's own failure (refused, no route, auth): its last stderr line says which.
            lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
            result.stderr = lines[-1] if lines else "ssh failed"
        return result


@dataclass
class LocalShellTransport:
    """Runs the script with this machine's ``sh``: every target is this machine seen through its
    ``root`` folder, for files (drift) and for tools (``<root>/usr/bin`` comes first on PATH, where a
    simulated host keeps stand-in ``nvidia-smi`` or ``amd-smi``)."""

    async def run(self, target: HostLink, script: str, timeout_s: float) -> RunResult:
        env = dict(os.environ)
        if target.root:
            env["PATH"] = f"{target.root}/usr/bin:{env.get('PATH', '')}"
        return await _run(["sh", "-s"], script, timeout_s, env)


Transport = SshTransport | LocalShellTransport


def cluster_ssh(cluster: str, *, record: bool) -> SshTransport:
    """SSH as xpdctl uses it for a cluster: the host keys file provisioning uses (accept-new, so a
    host re-installed at the same address does not trip over the operator's own known_hosts; commands
    that change nothing pass ``record=False`` and record no new key), and connections shared between
    commands in the cluster's scratch dir."""
    return SshTransport(
        options={"UserKnownHostsFile": str(known_hosts_file(cluster, record=record))},
        control_dir=cluster_scratch_dir(cluster) / "ssh",
    )
