"""`xpdctl down` of the container cluster: last of the tier (file name), after every test that needs it."""

from __future__ import annotations

import pytest
from conftest import DECODE, PREFILL

pytestmark = pytest.mark.containers


def test_down_leaves_no_container_and_no_unit(lab, up):
    done = lab.xpdctl("down")
    assert done.returncode == 0, done.stderr[-3000:]
    for host in (PREFILL, DECODE):
        left = lab.on(host, "docker ps -aq | wc -l; systemctl list-units --all --no-legend 'xpd-*' | grep -cw active")
        assert left.stdout.split() == ["0", "0"], (host, left.stdout, left.stderr)
