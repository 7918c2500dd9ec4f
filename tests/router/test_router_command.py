"""`xpdctl router` as real processes, in both forms, in front of `python -m xpdctl.sim` processes."""

import json
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
import yaml


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(*args: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "xpdctl", *args], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert "listening on http://" in line, line
    return proc, line.rsplit(" ", 1)[1].strip()


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as resp:
        return json.load(resp)


def _wait_healthy(url: str) -> None:
    for _ in range(300):
        try:
            with urllib.request.urlopen(url + "/health", timeout=5) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{url} never became healthy")


@pytest.fixture(scope="module")
def engines():
    procs = []
    urls = {}
    for role in ("prefill", "decode", "both"):
        proc, url = _spawn("sim", "--role", role, "--model", "tiny", "--port", "0", "--ttft-ms", "2", "--itl-ms", "1")
        procs.append(proc)
        urls[role] = url
    yield urls
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.parametrize("form", ["quick", "config"])
def test_router_process_serves_pd_requests(engines, tmp_path, form):
    port = _free_port()
    if form == "quick":
        args = ["router", "--prefill", engines["prefill"], "--decode", engines["decode"], "--host", "127.0.0.1", "--port", str(port)]
    else:
        config = tmp_path / "router.yaml"
        config.write_text(yaml.safe_dump({
            "model": "tiny",
            "listen": {"host": "127.0.0.1", "port": port},
            "backends": [{"url": engines["prefill"], "pool": "prefill"}, {"url": engines["decode"], "pool": "decode"}],
        }))
        args = ["router", "--config", str(config)]
    router, url = _spawn(*args)
    try:
        assert url == f"http://127.0.0.1:{port}"
        _wait_healthy(url)
        body = {"model": "tiny", "prompt": "same text either way", "max_tokens": 7}
        routed = _post(url + "/v1/completions", body)
        aggregated = _post(engines["both"] + "/v1/completions", body)
        assert routed["choices"][0]["text"] == aggregated["choices"][0]["text"]
        assert routed["usage"] == aggregated["usage"]
        with urllib.request.urlopen(url + "/v1/models", timeout=10) as resp:
            assert json.load(resp)["data"][0]["id"] == "tiny"
    finally:
        router.terminate()
        assert router.wait(timeout=10) == 0


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["router", "--prefill", "http://127.0.0.1:1"], "at least one --prefill URL and one --decode URL"),
        (["router", "--config", "{config}", "--prefill", "http://127.0.0.1:1"], "not both"),
        (["router", "--prefill", "http://a:1", "--decode", "http://a:1"], "listed twice"),
        (["router", "--config", "{bad}"], "invalid router config"),
    ],
)
def test_router_flag_errors_are_input_errors(tmp_path, args, words):
    good, bad = tmp_path / "ok.yaml", tmp_path / "bad.yaml"
    good.write_text("model: m\n")
    bad.write_text("model: m\nbackends: [{url: http://x:1, pool: sideways}]\n")
    args = [a.format(config=good, bad=bad) for a in args]
    result = subprocess.run([sys.executable, "-m", "xpdctl", *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and words in result.stderr, result.stderr
