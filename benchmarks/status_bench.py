#!/usr/bin/env python3
"""How long ``status`` takes to observe N hosts. Target: under 3 s for 32 hosts.

--mode testhosts (default when run as root): N real test hosts (xpdctl.testhosts: network
namespaces reached over real SSH, fake sysfs PCI), N-1 of them with 2 simulated GPUs, alternately
NVIDIA (prefill) and AMD MI300X (decode), with the stand-in driver packages installed (their
nvidia-smi / amd-smi print the real formats), and one router host.
Each GPU host runs its engine as the manifest says (the simulator engine, started over SSH). Rows:
"cold" opens a new SSH connection per host per run (a single `xpdctl status`); "warm" reuses shared
connections (ControlMaster), as `status --watch` does after its first round.

--mode sim: SIMULATED hosts on this machine, for machines without test-host support: N hosts on
loopback addresses 127.0.1.x (half NVIDIA prefill, half AMD decode), simulator engines on those
addresses (several per process), the local-shell transport instead of SSH (the same status script,
run by this machine's sh) with each host's rendered files under its own root folder and stand-in
nvidia-smi/amd-smi printing the captured H200 XML and the hand-written MI300X JSON.

KV agents and the router are not started in either mode: their probes fail fast ("connection
refused"), which the output counts.

    .venv/bin/python benchmarks/status_bench.py --hosts 32 --repeat 5
    .venv/bin/python benchmarks/status_bench.py --mode sim --hosts 32
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
import children  # noqa: E402 - benchmarks/children.py, next to this script

REPO = Path(__file__).resolve().parents[1]
NVIDIA_XML = REPO.parent / "shared" / "fixtures" / "nvidia-h200-x2" / "nvidia-smi-q.xml"
AMD_FIXTURES = REPO / "tests" / "fixtures" / "amd"
TARGET_S = 3.0
FLEET = "sbench"
FLEET_SUBNET = "10.88.9.0/24"
# Stand-in driver packages per vendor, installed as the provisioning roles would (AMD: its repositories,
# then DKMS against the running kernel's headers).
_APT = "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq"
INSTALL = {
    "nvidia": f"apt-get update -qq && {_APT} nvidia-driver-570-server-open nvidia-utils-570-server ibverbs-utils >/dev/null",
    "amd": (
        'echo "deb https://repo.radeon.com/rocm/apt/6.4.1 jammy main" > /etc/apt/sources.list.d/rocm.list && '
        'echo "deb https://repo.radeon.com/amdgpu/6.4.1/ubuntu jammy main" > /etc/apt/sources.list.d/amdgpu.list && '
        f"apt-get update -qq && {_APT} linux-headers-$(uname -r) >/dev/null && "
        f"{_APT} amdgpu-dkms amd-smi-lib rocm-smi-lib rocm-core ibverbs-utils >/dev/null"
    ),
}


def inventory_yaml(hosts: int) -> str:
    prefill = [f"p{i}" for i in range(hosts // 2)]
    decode = [f"d{i}" for i in range(hosts - len(prefill))]
    lines = [
        "cluster: bench",
        "model: {name: tiny}",
        f'engine: {{vllm_version: "0.32.0", runtime: native, server: sim, python: {sys.executable}}}',
        "hosts:",
    ]
    for index, name in enumerate(prefill + decode):
        vendor, model = ("nvidia", "H100-SXM") if name.startswith("p") else ("amd", "MI300X")
        lines.append(
            f"  - {{name: {name}, address: 127.0.1.{index + 1}, vendor: {vendor}, gpu: {{model: {model}, count: 2}}}}"
        )
    lines += [
        "pools:",
        # Ports away from the defaults: a local cluster on this machine listens on 0.0.0.0:8100.
        f"  prefill: {{hosts: [{', '.join(prefill)}], tensor_parallel: 2, port: 18100}}",
        f"  decode: {{hosts: [{', '.join(decode)}], tensor_parallel: 2, port: 18200}}",
        f"router: {{hosts: [{prefill[0]}], port: 18000, auth: {{mode: open}}}}",
        "kv: {agent_port: 18788}",
    ]
    return "\n".join(lines) + "\n"


def _stand_in(path: Path, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


def install_host(root: Path, files: dict, vendor: str) -> None:
    """Put render's files ({host path: RenderedFile}) and the vendor's stand-in smi tool under root."""
    for host_path, rendered in files.items():
        target = root / host_path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(rendered.content)
        target.chmod(rendered.mode)
    if vendor == "nvidia":
        _stand_in(root / "usr/bin/nvidia-smi", f'exec cat "{NVIDIA_XML}"\n')
    else:
        _stand_in(
            root / "usr/bin/amd-smi",
            f'case "$1" in static) exec cat "{AMD_FIXTURES}/amd-smi-static.json";; '
            f'metric) exec cat "{AMD_FIXTURES}/amd-smi-metric.json";; esac\n',
        )


async def _serve_sims(specs: list[dict]) -> None:
    from xpdctl.sim.config import SimConfig
    from xpdctl.sim.server import start

    for spec in specs:
        await start(SimConfig(model="tiny", **spec))
    print("ready", flush=True)
    await asyncio.Event().wait()


def start_sims(engines: list[dict], processes: int, workers: list[subprocess.Popen]) -> None:
    """Start the simulator processes into ``workers`` (the caller stops them, also after a failure)."""
    for chunk in (engines[i::processes] for i in range(processes)):
        if not chunk:
            continue
        proc = children.track(subprocess.Popen(
            [sys.executable, __file__, "--serve-sims", json.dumps(chunk)], stdout=subprocess.PIPE, text=True,
            start_new_session=True,
        ))
        workers.append(proc)
    for proc in workers:
        line = proc.stdout.readline()
        if line.strip() != "ready":
            raise SystemExit(f"a simulator process did not start (exit {proc.poll()}); is a port in use?")


def _cpu_s() -> float:
    """CPU seconds of this process and its finished children (ssh clients, or local shells and all
    they ran): unlike wall time, barely moved by other load on the machine."""
    own, waited = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + waited.ru_utime + waited.ru_stime


def _netns_cpu_s(netns: list[str]) -> float:
    """CPU seconds so far of every process in these network namespaces (the test hosts), counting the
    finished children each has reaped: sshd's sessions, the status script and the tools it ran."""
    inodes = {f"net:[{os.stat(f'/run/netns/{name}').st_ino}]" for name in netns}
    ticks = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.readlink(f"/proc/{pid}/ns/net") not in inodes:
                continue
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += sum(int(value) for value in fields[11:15])  # utime, stime, cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def _timed_runs(cluster, targets, transport, repeat: int, netns: list[str] | None = None):
    """(wall s, local CPU s, hosts' CPU s) per run, and the last status. The hosts' CPU is measured
    only for test hosts (``netns``): there the remote side shares this machine's cores too."""
    from xpdctl.observe.cluster import observe_targets

    asyncio.run(observe_targets(cluster, targets, transport))  # warm-up: imports, first connections
    durations, cpu, remote, last = [], [], [], None
    for _ in range(repeat):
        began, began_cpu, began_remote = time.monotonic(), _cpu_s(), _netns_cpu_s(netns or [])
        last = asyncio.run(observe_targets(cluster, targets, transport))
        durations.append(time.monotonic() - began)
        cpu.append(_cpu_s() - began_cpu)
        remote.append(_netns_cpu_s(netns or []) - began_remote if netns else None)
    return (durations, cpu, remote), last


def _observed_line(status) -> str:
    engines = [e for h in status.hosts for e in h.engines]
    gpus = sum(len(h.accelerators.gpus) for h in status.hosts)
    refused = sum(1 for h in status.hosts for a in h.kv_agents if not a.reachable)
    reachable = sum(h.reachable for h in status.hosts)
    return (
        f"observed per run: {reachable}/{len(status.hosts)} hosts reachable, {gpus} GPUs parsed, "
        f"{sum(e.healthy for e in engines)}/{len(engines)} engines healthy, "
        f"{sum(len(h.drift) for h in status.hosts)} drifted files, {refused} KV agents not running (expected)"
    )


def run_sim(args, work: Path, workers: list[subprocess.Popen]) -> list[tuple[str, list[float]]]:
    from xpdctl.inventory import load_inventory
    from xpdctl.observe.targets import targets_from
    from xpdctl.ssh.transport import LocalShellTransport
    from xpdctl.plan import build_plan
    from xpdctl.render import render_files

    inventory_path = work / "inventory.yaml"
    inventory_path.write_text(inventory_yaml(args.hosts))
    loaded = load_inventory(inventory_path)
    files = render_files(build_plan(loaded, {}))
    cluster, targets = targets_from(loaded.inventory, files)
    vendors = {host.name: host.vendor for host in loaded.inventory.hosts}
    engines = []
    for target in targets:
        root = work / "hosts" / target.name
        prefix = f"hosts/{target.name}"
        install_host(
            root,
            {rel[len(prefix) :]: f for rel, f in files.items() if rel.startswith(prefix + "/")},
            vendors[target.name],
        )
        target.root = str(root)
        engines += [
            {"role": s.role, "host": target.address, "port": s.port}
            for s in target.services
            if s.role in ("prefill", "decode")
        ]
    started = time.monotonic()
    start_sims(engines, args.sim_processes, workers)
    print(f"started {len(engines)} simulator engines in {len(workers)} processes in {time.monotonic() - started:.1f} s")
    timing, last = _timed_runs(cluster, targets, LocalShellTransport(), args.repeat)
    print()
    print("hosts: SIMULATED (sim engines on 127.0.1.x, local-shell transport instead of SSH, stand-in smi tools)")
    print(_observed_line(last))
    return [("local-shell", timing)]


def _ssh(address: str, command: str) -> None:
    from xpdctl.testhosts.fleet import ssh_argv

    *argv, destination = ssh_argv(FLEET, address)
    argv += ["-o", "BatchMode=yes", destination, command]
    subprocess.run(argv, check=True, capture_output=True, timeout=600)


def run_testhosts(args, work: Path) -> list[tuple[str, list[float]]]:
    from xpdctl.inventory import load_inventory
    from xpdctl.observe.targets import targets_from
    from xpdctl.ssh.transport import SshTransport
    from xpdctl.paths import cluster_state_dir
    from xpdctl.plan import build_plan
    from xpdctl.render import render_files
    from xpdctl.testhosts import fleet
    from xpdctl.testhosts.models import GpuDecl

    inventory_path = work / "inventory.yaml"
    started = time.monotonic()
    # The cluster: H100 prefill hosts and MI300X decode hosts, one router host.
    gpus = [GpuDecl(vendor=("nvidia", "amd")[i % 2], count=2) for i in range(args.hosts - 1)] + [None]
    record = fleet.create(FLEET, args.hosts, gpus, subnet=FLEET_SUBNET, inventory_path=inventory_path)
    print(f"created {args.hosts} test hosts in {time.monotonic() - started:.1f} s")
    loaded = load_inventory(inventory_path)
    cluster, targets = targets_from(loaded.inventory, render_files(build_plan(loaded, {})))
    manifest = json.loads(render_files(build_plan(loaded, {}))["manifest.json"].content)
    jobs = []
    for rec in record.hosts:
        if rec.gpu is None:
            continue
        engines = [s for s in manifest["hosts"][rec.name]["services"] if s["role"] in ("prefill", "decode")]
        # The engine as its unit would run it (the simulator), detached so SSH returns.
        starts = "; ".join(
            f"nohup {' '.join(shlex.quote(word) for word in s['command'])} >/dev/null 2>&1 &" for s in engines
        )
        jobs.append((rec.address, f"{INSTALL[rec.gpu.vendor]} && {{ {starts} }}"))
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda job: _ssh(*job), jobs))
    print(f"installed stand-in drivers and started engines on {len(jobs)} hosts in {time.monotonic() - started:.1f} s")
    time.sleep(args.engine_start_s)  # the simulator engines take a moment to listen

    options = {"UserKnownHostsFile": str(cluster_state_dir(cluster) / "known_hosts")}
    netns = [rec.netns for rec in record.hosts]
    cold, last = _timed_runs(cluster, targets, SshTransport(options=options), args.repeat, netns)
    warm, last = _timed_runs(
        cluster, targets, SshTransport(options=options, control_dir=work / "ssh", keep_s=30), args.repeat, netns
    )
    print()
    print(
        "hosts: REAL TEST HOSTS over SSH (network namespaces; simulated GPUs: fake sysfs + stand-in nvidia-smi/amd-smi)"
    )
    print(_observed_line(last))
    return [("ssh cold", cold), ("ssh warm", warm)]


def main() -> int:
    children.install()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--mode", choices=["testhosts", "sim"], default="testhosts" if os.geteuid() == 0 else "sim")
    parser.add_argument("--sim-processes", type=int, default=4, help="processes the simulator engines share (sim mode)")
    parser.add_argument("--engine-start-s", type=float, default=20.0, help="wait for engines on test hosts to listen")
    parser.add_argument("--keep", action="store_true", help="keep the test hosts (testhosts mode)")
    parser.add_argument("--serve-sims", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_sims:
        asyncio.run(_serve_sims(json.loads(args.serve_sims)))
        return 0
    if args.hosts < 2:
        parser.error("--hosts must be at least 2")

    work = Path(tempfile.mkdtemp(prefix="xpd-status-bench-"))
    workers: list[subprocess.Popen] = []
    try:
        rows = run_testhosts(args, work) if args.mode == "testhosts" else run_sim(args, work, workers)
        # The machine is shared: a wall-clock target means little without the load it ran under.
        print(f"load average (1 min) after the runs: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        print()
        print(
            f"{'hosts':>5}  {'transport':<11}  {'runs':>4}  {'min s':>6}  {'median s':>8}  {'max s':>6}  "
            f"{'local cpu s':>11}  {'hosts cpu s':>11}  {'target s':>8}  result"
        )
        passed = True
        for transport, (durations, cpu, remote) in rows:
            median = statistics.median(durations)
            passed = passed and median < TARGET_S
            hosts_cpu = "-" if remote[0] is None else f"{statistics.median(remote):.2f}"
            print(
                f"{args.hosts:>5}  {transport:<11}  {len(durations):>4}  {min(durations):>6.2f}  {median:>8.2f}  "
                f"{max(durations):>6.2f}  {statistics.median(cpu):>11.2f}  {hosts_cpu:>11}  {TARGET_S:>8.1f}  "
                f"{'PASS' if median < TARGET_S else 'FAIL'}"
            )
        print("local cpu s: CPU of this process and its children per run (ssh clients; in sim mode also the shells)")
        print(
            "hosts cpu s: CPU of every test-host process per run (sshd sessions, the script, stand-in tools, engines)"
        )
        return 0 if passed else 1
    finally:
        for proc in workers:
            proc.terminate()
        for proc in workers:
            proc.wait(timeout=10)
        if args.mode == "testhosts" and not args.keep:
            from xpdctl.testhosts import fleet

            fleet.destroy(FLEET)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
