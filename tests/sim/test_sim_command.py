"""`python -m xpdctl.sim` as a real process: flags, the announced URL, SIGTERM."""

import json
import subprocess
import sys
import urllib.request


def test_python_m_sim_serves_and_stops_on_sigterm():
    proc = subprocess.Popen(
        [sys.executable, "-m", "xpdctl.sim", "--role", "prefill", "--model", "tiny", "--port", "0", "--ttft-ms", "1",
         "--health-status", "503"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stdout.readline()
        assert "listening on http://127.0.0.1:" in line
        url = line.rsplit(" ", 1)[1].strip()
        with urllib.request.urlopen(url + "/v1/models", timeout=10) as resp:
            assert json.load(resp)["data"][0]["id"] == "tiny"
        try:
            urllib.request.urlopen(url + "/health", timeout=10)
            raise AssertionError("health should fail: --health-status 503")
        except urllib.error.HTTPError as exc:
            assert exc.code == 503
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


def test_invalid_flags_are_an_input_error():
    result = subprocess.run([sys.executable, "-m", "xpdctl", "sim", "--model", "m", "--fail-status", "200"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "invalid simulator options" in result.stderr
