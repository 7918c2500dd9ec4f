"""A real Prometheus (Debian's package) for tests, on the files `render` wrote under
`<rendered>/observability/`: start it, query it, read the dashboard's panel queries."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest


def get(url: str, timeout: float = 5) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


def query(prom: str, expr: str) -> list[dict]:
    answer = get(f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    assert answer["status"] == "success", (expr, answer)
    return answer["data"]["result"]


def wait(what: str, check, timeout_s: float, step_s: float = 0.5):
    deadline = time.monotonic() + timeout_s
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s} s")
        time.sleep(step_s)


def panel_queries(observability: Path) -> list[tuple[str, str]]:
    """(title, PromQL) of every panel target of the rendered dashboard, on a 1-minute rate window."""
    board = json.loads(next((observability / "grafana" / "dashboards").glob("*.json")).read_text())
    return [(p["title"], t["expr"].replace("$__rate_interval", "1m")) for p in board["panels"] for t in p["targets"]]


@contextlib.contextmanager
def running(observability: Path, port: int, workdir: Path):
    """Prometheus on the rendered config at 127.0.0.1:port; stopped on exit. Yields its URL."""
    if shutil.which("prometheus") is None:
        pytest.fail("prometheus not found: ./install.sh --test installs Debian's prometheus package")
    with (workdir / "prometheus.log").open("w") as log:
        proc = subprocess.Popen(
            ["prometheus", f"--config.file={observability / 'prometheus' / 'prometheus.yml'}",
             f"--storage.tsdb.path={workdir / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return proc.poll() is not None  # exited: fail below, not after the timeout

    try:
        wait("prometheus ready", ready, 60)
        assert proc.poll() is None, f"prometheus exited {proc.returncode}: {(workdir / 'prometheus.log').read_text()[-2000:]}"
        yield url
    finally:
        proc.terminate()
        proc.wait(30)
