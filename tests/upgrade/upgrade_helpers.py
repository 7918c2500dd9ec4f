"""Helpers of the upgrade tests. The cluster: one prefill and three decode simulator instances on
127.0.0.1 (runtime native, `engine.server: sim`), run by the local executor, with the router's admin API on.

Engines run through a "release" script standing for an installed engine environment: upgrading
means pointing `engine.python` at another release. A release can be broken for one instance (its
engine exits at start), which is how the tests inject a failure on one host; simulated at the
lowest layer because a real broken vLLM build cannot be had here.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.ports import free_port_block

REPO = Path(__file__).resolve().parents[2]
TOKEN = "upgrade-test-token"


def write_release(path: Path, broken_port: int | None = None) -> Path:
    """An engine environment: runs this Python; with ``broken_port``, the engine on that port exits 1."""
    fault = ""
    if broken_port is not None:
        fault = (f'case " $* " in *" --port {broken_port} "*) '
                 f'echo "release {path.name}: injected failure on port {broken_port}" >&2; exit 1;; esac\n')
    path.write_text(f"#!/bin/sh\n{fault}exec {sys.executable} \"$@\"\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


@dataclass
class SimCluster:
    tmp: Path
    inventory: Path
    data: dict
    env: dict
    state_dir: Path
    router_url: str
    decode_ports: list[int]
    alt_offset: int

    def write(self, **changes) -> None:
        """Rewrite the inventory with ``engine`` fields changed (e.g. python=..., vllm_version=...)."""
        self.data["engine"].update(changes)
        self.inventory.write_text(yaml.safe_dump(self.data, sort_keys=False))

    def xpdctl(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
        done = subprocess.run([sys.executable, "-m", "xpdctl", *args, "-i", str(self.inventory)], env=self.env,
                              capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"xpdctl {' '.join(args)} exited {done.returncode}:\n{done.stderr[-3000:]}")
        return done

    def upgrade(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.xpdctl("upgrade", "--pool", "decode", "--timeout", "60", "--drain-timeout", "60",
                           "--alt-port-offset", str(self.alt_offset), *args, check=check)

    def rollout(self) -> dict:
        return json.loads((self.state_dir / "upgrade" / "rollout.json").read_text())

    def audit(self) -> list[dict]:
        return [json.loads(line) for line in (self.state_dir / "audit.jsonl").read_text().splitlines()]


def start_sim_cluster(tmp_path: Path) -> SimCluster:
    """Write the inventory (free ports, release-1) and bring the cluster up with `xpdctl up`."""
    # Ports: prefill, 3 decodes, router, KV agent, 4 side channels; the same block again for
    # surge/green instances (--alt-port-offset).
    count = 10
    base = free_port_block(2 * count)
    data = yaml.safe_load((REPO / "inventory" / "local.yaml").read_text())
    del data["model"]["builder"]  # the simulator needs no weights
    data["model"]["path"] = str(tmp_path / "no-model")
    data["engine"]["server"] = "sim"
    data["engine"]["python"] = str(write_release(tmp_path / "release-1"))
    data["hosts"][0]["gpu"]["count"] = 6  # in both pools: three cores each
    data["pools"]["prefill"].update(port=base, instances_per_host=1)
    data["pools"]["decode"].update(port=base + 1, instances_per_host=3)
    data["router"]["port"] = base + 4
    data["kv"].update(agent_port=base + 5, side_channel_port=base + 6)
    inventory = tmp_path / "cluster.yaml"
    inventory.write_text(yaml.safe_dump(data, sort_keys=False))
    env = dict(os.environ, XPDCTL_STATE_DIR=str(tmp_path / "state"), XPDCTL_ROUTER_ADMIN_TOKEN=TOKEN)
    cluster = SimCluster(tmp=tmp_path, inventory=inventory, data=data, env=env,
                         state_dir=tmp_path / "state" / data["cluster"], router_url=f"http://127.0.0.1:{base + 4}",
                         decode_ports=[base + 1, base + 2, base + 3], alt_offset=count)
    try:
        cluster.xpdctl("up", "--timeout", "120")
    except BaseException:
        cluster.xpdctl("down", check=False)  # what did start must not outlive the failed start
        raise
    return cluster


class Load:
    """Steady streaming load through the router from a few client threads, bounded in time and count,
    plus a sampler of how many decode instances the router has serving (admin API)."""

    def __init__(self, router_url: str, token: str, model: str, *, workers: int = 3, max_requests: int = 5000,
                 max_seconds: float = 300.0, request_timeout_s: float = 60.0, pause_s: float = 0.0,
                 client_key: str | None = None):
        """``pause_s``: each client waits this long after each answer before its next request;
        ``client_key``: what the clients present to a router that wants client keys."""
        import threading

        self.router_url, self.token, self.model = router_url, token, model
        self.workers, self.max_requests, self.max_seconds = workers, max_requests, max_seconds
        self.request_timeout_s, self.pause_s = request_timeout_s, pause_s
        self.headers = {"Content-Type": "application/json",
                        **({"Authorization": f"Bearer {client_key}"} if client_key else {})}
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.ok = 0
        self.failures: list[str] = []
        self.failed_at: list[float] = []  # seconds since the load started, per failure
        self.latencies: list[float] = []  # seconds, per successful request
        self.serving: list[int] = []  # decode instances serving, per sample
        self.started = 0.0
        self.threads = [threading.Thread(target=self._client, daemon=True) for _ in range(workers)]
        self.threads.append(threading.Thread(target=self._sampler, daemon=True))

    def _client(self) -> None:
        import http.client
        import time
        from urllib.parse import urlsplit

        url = urlsplit(self.router_url)
        body = json.dumps({"model": self.model, "prompt": "rolling upgrades must not fail requests",
                           "max_tokens": 12, "stream": True})
        deadline = time.monotonic() + self.max_seconds
        while not self.stop.is_set() and time.monotonic() < deadline:
            with self.lock:
                if self.ok + len(self.failures) >= self.max_requests:
                    return
            conn = http.client.HTTPConnection(url.hostname, url.port, timeout=self.request_timeout_s)
            start = time.monotonic()
            try:
                conn.request("POST", "/v1/completions", body, self.headers)
                resp = conn.getresponse()
                text = resp.read().decode(errors="replace")
                problem = None if resp.status == 200 and "data: [DONE]" in text else f"HTTP {resp.status}: {text[-200:]}"
            except OSError as exc:
                problem = repr(exc)
            finally:
                conn.close()
            with self.lock:
                if problem:
                    self.failures.append(problem)
                    self.failed_at.append(time.monotonic() - self.started)
                else:
                    self.ok += 1
                    self.latencies.append(time.monotonic() - start)
            self.stop.wait(self.pause_s)

    def _sampler(self) -> None:
        import time
        import urllib.request

        request = urllib.request.Request(f"{self.router_url}/admin/backends",
                                         headers={"Authorization": f"Bearer {self.token}"})
        deadline = time.monotonic() + self.max_seconds
        while not self.stop.is_set() and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(request, timeout=10) as resp:
                    backends = json.loads(resp.read())["backends"]
            except OSError:  # a router too busy to answer in time is no sample, not the end of sampling
                time.sleep(0.2)
                continue
            serving = [b for b in backends if b["pool"] == "decode" and b["health"] == "healthy" and not b["draining"]]
            self.serving.append(len(serving))
            time.sleep(0.2)

    def failure_summary(self) -> str:
        """Each distinct failure (its first 120 characters) on a line: count, and when it was seen first
        and last. A string, so that pytest prints it whole instead of abbreviating a list."""
        seen: dict[str, list[float]] = {}
        for problem, at in zip(self.failures, self.failed_at):
            seen.setdefault(problem[:120], []).append(at)
        return "\n".join(f"{len(times)}x at {min(times):.0f}-{max(times):.0f} s: {problem}"
                         for problem, times in seen.items())

    def __enter__(self) -> Load:
        import time

        self.started = time.monotonic()
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=90)
