"""An inventory's pools as simulator engines on loopback: a heterogeneous cluster without GPUs.

Every prefill and decode instance the inventory's pools describe becomes an ``xpdctl sim`` process
timed by its host's hardware profile (the performance model: xpdctl/perfmodel/simtiming.py) at the
pool's TP, decode instances pulling KV over the path the inventory's KV rule picks; an ``xpdctl
router`` process goes in front. Separate processes keep the engines' token streams off the
benchmark client's interpreter. Each announces its URL on stdout; all are stopped on exit.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from xpdctl.errors import ExecutionError, InputError
from xpdctl.inventory.schema import Inventory

_START_TIMEOUT_S = 120.0
# The report's largest scenario (8K in + 8K out) fits; the inventory's max_model_len wins when set.
_DEFAULT_MAX_MODEL_LEN = 16640


@dataclass
class SimulatedCluster:
    inv: Inventory
    time_scale: float = 1.0
    url: str = ""
    engines: list[dict] = field(default_factory=list)  # role, profile, tp, kv_path, url of each simulator
    _procs: list[subprocess.Popen] = field(default_factory=list)
    _tmp: tempfile.TemporaryDirectory | None = None

    def __enter__(self) -> SimulatedCluster:
        from xpdctl.perfmodel.options import current_option

        option = current_option(self.inv)
        if option is None:
            raise InputError(f"cluster {self.inv.cluster}: every pooled host needs a GPU model with a performance profile "
                             "(e.g. H100-SXM, MI300X) to be simulated")
        self._tmp = tempfile.TemporaryDirectory(prefix="xpdctl-simcluster-")
        try:
            self._start(option)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        with (Path(self._tmp.name) / f"{name}.log").open("w") as err:
            proc = subprocess.Popen([sys.executable, "-m", "xpdctl", *args], stdout=subprocess.PIPE, stderr=err, text=True)
        self._procs.append(proc)
        return proc

    def _announced_url(self, name: str, proc: subprocess.Popen) -> str:
        line = proc.stdout.readline()  # blocks until it listens, or exits
        if " listening on " not in line:
            proc.wait(10)
            log = (Path(self._tmp.name) / f"{name}.log").read_text()
            raise ExecutionError(f"simulated {name} did not start: {log[-500:].strip()}")
        return line.rsplit(" listening on ", 1)[1].strip()

    def _start(self, option) -> None:
        max_len = str(self.inv.model.max_model_len or _DEFAULT_MAX_MODEL_LEN)
        started = []  # all engines start at once: each takes seconds to import on a busy machine
        for role, choice in (("prefill", option.prefill), ("decode", option.decode)):
            for i in range(choice.instances):
                proc = self._spawn(f"{role}-{i}", [
                    "sim", "--role", role, "--model", self.inv.model.name, "--port", "0", "--max-model-len", max_len,
                    "--profile", choice.hardware, "--profile-tp", str(choice.tp), "--kv-path", option.path,
                    "--time-scale", str(self.time_scale)])  # fmt: skip
                started.append((f"{role}-{i}", role, choice, proc))
        backends = []
        for name, role, choice, proc in started:
            url = self._announced_url(name, proc)
            self.engines.append({"role": role, "profile": choice.hardware, "tp": choice.tp, "kv_path": option.path, "url": url})
            backends.append({"url": url, "pool": role})
        config = Path(self._tmp.name) / "router.yaml"
        config.write_text(yaml.safe_dump({
            "model": self.inv.model.name, "listen": {"host": "127.0.0.1", "port": 1}, "backends": backends,
            "health": {"interval_s": 0.2, "timeout_s": 5.0}, "load_scrape_interval_s": 0.2}))
        self.url = self._announced_url("router", self._spawn("router", ["router", "--config", str(config), "--port", "0"]))
        self._wait_ready()

    def _wait_ready(self) -> None:
        """Until the router has a healthy pair: a tiny completion succeeds."""
        body = json.dumps({"model": self.inv.model.name, "prompt": "ready", "max_tokens": 1}).encode()
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            request = urllib.request.Request(self.url + "/v1/completions", data=body, method="POST",
                                             headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=10) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise ExecutionError(f"the simulated cluster's router at {self.url} served nothing within {_START_TIMEOUT_S:g} s; "
                             f"see the logs in {self._tmp.name}")

    def __exit__(self, *exc) -> None:
        for proc in reversed(self._procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in self._procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout:
                proc.stdout.close()
        self._procs.clear()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

