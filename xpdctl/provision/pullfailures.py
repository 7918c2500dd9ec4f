"""What to do about a failed ``docker pull``: the images role's table (playbooks/roles/images/vars/main.yml),
read here too so that ``upgrade`` says what ``up`` says."""

from __future__ import annotations

import re
from functools import cache

import yaml

from xpdctl.paths import data_dir


@cache
def _table() -> dict:
    return yaml.safe_load((data_dir("playbooks") / "roles" / "images" / "vars" / "main.yml").read_text())


def pull_advice(output: str) -> str:
    """What to do, for what a failed pull printed (the first entry whose pattern it matches)."""
    table = _table()
    known = next((k for k in table["images_pull_failures"] if re.search(k["says"], output)), None)
    return known["do"] if known else table["images_pull_failure_default"]


def pull_failure_line(host: str, image: str, output: str) -> str:
    """One line: the host, the image, docker's last line and what to do."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return f"{host}: pulling {image} failed: {lines[-1] if lines else 'no output'}; {pull_advice(output)}"
