"""The playbooks pass ansible-lint's production profile and Ansible's own syntax check."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PLAYBOOKS = REPO / "playbooks"
BIN = Path(sys.executable).parent
# Top-level playbooks: every file directly in playbooks/ that is a list of plays.
TOP_LEVEL = sorted(p.name for p in PLAYBOOKS.glob("*.yml"))


def _env() -> dict[str, str]:
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "ANSIBLE_NOCOLOR": "1"}


def test_there_are_playbooks_to_check():
    assert {"site.yml", "preflight.yml"} <= set(TOP_LEVEL)


def test_ansible_lint_production_profile_is_clean():
    result = subprocess.run(
        [str(BIN / "ansible-lint"), "--nocolor", "--profile", "production", "playbooks/"],
        cwd=REPO, env=_env(), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("playbook", TOP_LEVEL)
def test_syntax_check(playbook):
    result = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", "localhost,", "--syntax-check", playbook],
        cwd=PLAYBOOKS, env={**_env(), "ANSIBLE_CONFIG": str(PLAYBOOKS / "ansible.cfg")},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_role_has_defaults_and_metadata():
    roles = sorted(p for p in (PLAYBOOKS / "roles").iterdir() if p.is_dir())
    missing = [f"{r.name}/{part}" for r in roles for part in ("defaults/main.yml", "meta/main.yml", "tasks/main.yml")
               if not (r / part).exists()]  # fmt: skip
    assert roles and not missing
