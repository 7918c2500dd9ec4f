"""A machine without ansible-runner (an older install, or xpdctl installed without its dependencies):
host commands stop with one line naming the command that installs it, exit status 2, no traceback.

ansible-runner cannot be uninstalled from the shared test environment, so a folder put first on
PYTHONPATH holds an ``ansible_runner`` module that raises ImportError when imported: what Python does
when the package is missing, as the import runs in xpdctl.
"""

from __future__ import annotations

import os
import subprocess
import sys


def test_missing_ansible_runner_is_one_line_naming_the_install_command(tmp_path, lab_data, write_inventory):
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "ansible_runner.py").write_text("raise ImportError(\"No module named 'ansible_runner'\")\n")
    env = {**os.environ, "PYTHONPATH": str(shadow), "XPDCTL_STATE_DIR": str(tmp_path / "state"),
           "XPDCTL_SCRATCH_DIR": str(tmp_path / "scratch")}  # fmt: skip
    inventory = write_inventory(lab_data)  # its 10.0.0.x hosts are never contacted: the import fails first
    for command in (["preflight"], ["up", "--check"], ["provision"]):
        done = subprocess.run([sys.executable, "-m", "xpdctl", *command, "-i", str(inventory)],
                              capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
        assert done.returncode == 2, done.stderr
        [line] = done.stderr.splitlines()
        assert line.startswith("xpdctl: error: ansible-runner (Python package) is not installed in ")
        assert "./install.sh" in line and f"{sys.executable} -m pip install 'ansible-runner>=2.4'" in line
    # The real `provision` stopped before it rendered: nothing records the cluster as deployed.
    assert not (tmp_path / "state" / "lab" / "rendered").exists()
