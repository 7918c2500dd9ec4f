"""The one read of a host's services: the shell script both the applier's pyinfra fact
(:mod:`xpdctl.remote.facts`) and the executor's fast state read run on a host (POSIX sh, as root).

Output is sectioned (:mod:`xpdctl.ssh.sections`) like status's script.
"""

from __future__ import annotations

from xpdctl.observe.drift import owned_globs, parse_hashes, parse_modes
from xpdctl.remote.hostchanges import HostFile, HostSnapshot
from xpdctl.remote.unitstate import KEYS, parse_show
from xpdctl.ssh.sections import quote_glob, split_sections


def state_script(marker: str, cluster: str) -> str:
    """Sections ``units`` (``systemctl show`` of the cluster's installed units),
    ``hashes`` and ``modes`` (of every file only xpdctl writes, as status's drift check lists them),
    then ``end``."""
    globs = " ".join(quote_glob(g) for g in owned_globs(cluster))
    keys = "|".join(KEYS)
    return f"""M='{marker}'
u=
for f in {quote_glob(f"/etc/systemd/system/xpd-{cluster}-*.service")}; do [ -f "$f" ] && u="$u ${{f##*/}}"; done
u=$(printf '%s\\n' $u | sort -u)
printf '%s units 0\\n' "$M"
[ -z "$u" ] || systemctl show $u 2>/dev/null | grep -E '^({keys})=|^$'
set --
for f in {globs}; do [ -f "$f" ] && set -- "$@" "$f"; done
printf '%s hashes 0\\n' "$M"
[ $# -eq 0 ] || sha256sum -- "$@"
printf '%s modes 0\\n' "$M"
[ $# -eq 0 ] || stat -c '%a %n' -- "$@"
printf '%s end 0\\n' "$M"
"""


def finished(output: str, marker: str) -> bool:
    return f"{marker} end 0" in output.splitlines()


def parse_state(output: str, marker: str) -> HostSnapshot:
    """A finished state script's output; units systemd does not know (listed, not installed) left out."""
    sections = split_sections(output, marker)
    hashes = parse_hashes(sections["hashes"].text)
    modes = parse_modes(sections["modes"].text)
    units = {n: p for n, p in parse_show(sections["units"].text).items() if p.get("LoadState") != "not-found"}
    files = {p: HostFile(sha256=h, mode=modes.get(p, 0)) for p, h in hashes.items() if h is not None}
    return HostSnapshot(units=units, files=files)
