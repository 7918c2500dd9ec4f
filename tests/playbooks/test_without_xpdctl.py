"""The playbooks run with plain `ansible-playbook`, on a controller where xpdctl cannot be imported:
site.yml on this machine (connection local, --check) runs preflight's fact module and its judging
filter for real. This machine is Debian, which preflight does not allow, so the run stops there with
the filter's verdict: the judgement ran, and nothing of xpdctl was needed for it."""

from __future__ import annotations

import subprocess

from tests.playbooks.test_lint import BIN, PLAYBOOKS, _env


def test_site_yml_runs_preflight_with_plain_ansible_playbook_and_no_xpdctl(tmp_path):
    # An xpdctl that cannot be imported, first on Python's path: any import of it would fail the run.
    (tmp_path / "xpdctl").mkdir()
    (tmp_path / "xpdctl" / "__init__.py").write_text("raise ImportError('xpdctl is not installed here')\n")
    env = {**_env(), "ANSIBLE_CONFIG": str(PLAYBOOKS / "ansible.cfg"), "PYTHONPATH": str(tmp_path),
           "ANSIBLE_LOCAL_TEMP": str(tmp_path / "tmp")}
    done = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", "site.yml", "--check",
         "-e", f"ansible_python_interpreter={BIN / 'python'}"],
        cwd=PLAYBOOKS, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    out = done.stdout + done.stderr
    assert "xpdctl is not installed here" not in out and "needs the xpdctl package" not in out, out[-3000:]
    release = dict(line.split("=", 1) for line in open("/etc/os-release").read().splitlines() if "=" in line)
    found = f"{release['ID']} {release['VERSION_ID'].strip(chr(34))}"
    assert f"preflight failed: {found} is not one of ubuntu 22.04" in out, out[-3000:]
