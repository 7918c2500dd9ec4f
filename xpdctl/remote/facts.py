"""The applier's own pyinfra fact: a host's xpdctl files and the cluster's units, in one command.

pyinfra's ``SystemdStatus`` reads only whether a unit runs; the applier also needs each unit's main
pid, restarts and enablement, and the digest and mode of every file xpdctl owns, so it reads them
with the same state script the executor's quick read runs (:mod:`xpdctl.remote.script`).
"""

from __future__ import annotations

from pyinfra.api import FactBase

from xpdctl.remote.hostchanges import HostSnapshot
from xpdctl.remote.script import finished, parse_state, state_script

# Fixed, unlike status's random marker: a fact's command is its cache key, and what it prints comes from
# systemctl, sha256sum and stat of files only root writes, none of which can print a line that starts so.
MARKER = "@@xpd-applier@@"


class HostServices(FactBase):
    def command(self, cluster: str) -> str:
        return state_script(MARKER, cluster)

    def process(self, output: list[str]) -> HostSnapshot | None:
        text = "\n".join(output)
        return parse_state(text, MARKER) if finished(text, MARKER) else None
