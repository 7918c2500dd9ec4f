"""The apply script run by this machine's real sh: file writing (contents and modes) and how a
failed action is reported. This machine has no systemd as PID 1, so `systemctl daemon-reload` fails
here (whether systemctl is installed or not), which is exactly the failure report under test; starting units is covered on test hosts
(tests/upgrade/test_rollout_testhosts.py)."""

import os
import subprocess

from xpdctl.remote.decide import HostActions
from xpdctl.remote.script import apply_script, failures, finished
from xpdctl.render import RenderedFile
from xpdctl.ssh.sections import new_marker


def run(script: str) -> str:
    env = {"PATH": "/usr/bin:/bin"}
    return subprocess.run(["sh", "-s"], input=script, capture_output=True, text=True, env=env, timeout=30).stdout


def test_files_written_with_their_modes_and_a_failure_reported(tmp_path):
    secret = str(tmp_path / "etc/xpdctl/xpd-c-decode-0.env")
    unit = str(tmp_path / "etc/systemd/system/xpd-c-decode-0.service")
    stale = tmp_path / "etc/xpdctl/old.env"
    stale.parent.mkdir(parents=True)
    stale.write_text("x")
    files = {secret: RenderedFile("TOKEN='s3cr$t'\nPATH=/x\n", 0o600), unit: RenderedFile("[Unit]\nÄ\n", 0o644)}
    marker = new_marker()
    out = run(apply_script(marker, "c", HostActions(write=[secret, unit], remove=[str(stale)]), files))
    assert open(secret).read() == "TOKEN='s3cr$t'\nPATH=/x\n" and open(unit).read() == "[Unit]\nÄ\n"
    assert os.stat(secret).st_mode & 0o777 == 0o600 and os.stat(unit).st_mode & 0o777 == 0o644
    assert not stale.exists() and not list(tmp_path.rglob("*.xpd-new"))
    [(action, what, said)] = failures(out, marker)
    assert (action, what) == ("daemon-reload", "systemd") and said
    assert finished(out, marker)


def test_nothing_to_do_touches_nothing():
    marker = new_marker()
    out = run(apply_script(marker, "c", HostActions(), {}))
    assert failures(out, marker) == [] and finished(out, marker)


def test_failures_cannot_be_forged_by_output():
    marker = new_marker()
    out = f"@@xpd-000000000000@@ fail start x\n{marker} fail start xpd-c-router\nJob failed.\nmore\n{marker} end 0\n"
    assert failures(out, marker) == [("start", "xpd-c-router", "Job failed.\nmore")]
