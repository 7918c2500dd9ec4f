"""The shell scripts the remote executor runs on a host (POSIX sh, as root), and their output.

Output is sectioned (:mod:`xpdctl.ssh.sections`) like status's script.
"""

from __future__ import annotations

import base64
import posixpath
import shlex

from xpdctl.observe.drift import owned_globs
from xpdctl.remote.decide import HostActions
from xpdctl.remote.unitstate import KEYS
from xpdctl.render import RenderedFile
from xpdctl.ssh.sections import quote_glob


def record_dir(cluster: str) -> str:
    """Where a host keeps the content hash each unit of the cluster was (re)started with."""
    return f"/var/lib/xpdctl/{cluster}/units"


def state_script(marker: str, cluster: str, units: list[str]) -> str:
    """Sections ``units`` (``systemctl show`` of the listed units, of the cluster's unit files and of
    recorded units), ``recorded`` (``<unit> <hash> <main pid>`` lines), ``hashes`` and ``modes`` (of every file
    only xpdctl writes, as status's drift check lists them), then ``end``."""
    listed = " ".join(shlex.quote(f"{u}.service") for u in units)
    globs = " ".join(quote_glob(g) for g in owned_globs(cluster))
    keys = "|".join(KEYS)
    return f"""M='{marker}'
D={shlex.quote(record_dir(cluster))}
u="{listed}"
for f in {quote_glob(f"/etc/systemd/system/xpd-{cluster}-*.service")}; do [ -f "$f" ] && u="$u ${{f##*/}}"; done
for f in "$D"/*.hash; do [ -f "$f" ] && {{ n=${{f##*/}}; u="$u ${{n%.hash}}.service"; }}; done
u=$(printf '%s\\n' $u | sort -u)
printf '%s units 0\\n' "$M"
[ -z "$u" ] || systemctl show $u 2>/dev/null | grep -E '^({keys})=|^$'
printf '%s recorded 0\\n' "$M"
for f in "$D"/*.hash; do [ -f "$f" ] && {{ n=${{f##*/}}; read -r h <"$f"; printf '%s %s\\n' "${{n%.hash}}" "$h"; }}; done
set --
for f in {globs}; do [ -f "$f" ] && set -- "$@" "$f"; done
printf '%s hashes 0\\n' "$M"
[ $# -eq 0 ] || sha256sum -- "$@"
printf '%s modes 0\\n' "$M"
[ $# -eq 0 ] || stat -c '%a %n' -- "$@"
printf '%s end 0\\n' "$M"
"""


_APPLY_PRELUDE = r"""M='{marker}'
D={record_dir}
# fail ACTION WHAT OUTPUT: a section per failure; the script goes on, so one bad unit does not leave
# the others of the host half-applied.
fail() {{ printf '%s fail %s %s\n%s\n' "$M" "$1" "$2" "$3"; }}
w() {{
  mkdir -p "${{1%/*}}" && (umask 077 && base64 -d >"$1.xpd-new") && chmod "$2" "$1.xpd-new" && mv -f "$1.xpd-new" "$1" \
    || fail write "$1" "cannot write $1"
}}
run() {{ a=$1; n=$2; shift 2; o=$("$@" 2>&1) && return 0; fail "$a" "$n" "$o"; return 1; }}
# rec UNIT HASH: the hash the unit runs with, and its main pid: a record whose pid is not the unit's
# (started again by `up`, by systemd after a crash, by hand) no longer says what runs.
rec() {{
  p=$(systemctl show -p MainPID "$1.service" 2>/dev/null); p=${{p#MainPID=}}
  mkdir -p "$D" && printf '%s %s\n' "$2" "$p" >"$D/$1.hash.new" && mv -f "$D/$1.hash.new" "$D/$1.hash" \
    || fail record "$1" "cannot write $D/$1.hash"
}}
"""


def apply_script(marker: str, cluster: str, actions: HostActions, files: dict[str, RenderedFile]) -> str:
    """``files``: host path -> rendered file, for every path in ``actions.write``.

    Prints a ``fail ACTION WHAT`` section per failed action (:func:`failures`), then ``end``.
    """
    q = shlex.quote
    lines = [_APPLY_PRELUDE.format(marker=marker, record_dir=q(record_dir(cluster)))]
    for name in actions.stop:
        unit = q(f"{name}.service")
        lines.append(f"run stop {q(name)} systemctl stop {unit}")
        lines.append(f"systemctl disable {unit} >/dev/null 2>&1; rm -f \"$D\"/{q(name)}.hash")
    for path in actions.write:
        rendered = files[path]
        encoded = base64.encodebytes(rendered.content.encode()).decode()
        lines.append(f"w {q(path)} {rendered.mode:o} <<'XPD_FILE_END'\n{encoded}XPD_FILE_END")
    for path in actions.remove:
        lines.append(f"rm -f {q(path)} || fail remove {q(posixpath.basename(path))} 'cannot remove {path}'")
    if actions.write or actions.remove or actions.start or actions.restart:
        lines.append("run daemon-reload systemd systemctl daemon-reload")
    for verb, names in (("start", actions.start), ("restart", actions.restart), ("reload", actions.reload)):
        for name in names:
            unit = q(f"{name}.service")
            record = f" && rec {q(name)} {q(actions.record[name])}" if name in actions.record else ""
            if verb == "start":
                lines.append(f"run enable {q(name)} systemctl enable {unit}")
            lines.append(f"run {verb} {q(name)} systemctl {verb} {unit}{record}")
    for name, digest in actions.record.items():
        if name not in actions.start and name not in actions.restart and name not in actions.reload:
            lines.append(f"rec {q(name)} {q(digest)}")
    lines.append("printf '%s end 0\\n' \"$M\"")
    return "\n".join(lines) + "\n"


def failures(output: str, marker: str) -> list[tuple[str, str, str]]:
    """(action, unit or path, what the host said) of every failed action in an apply script's output."""
    found: list[tuple[str, str, list[str]]] = []
    current: list[str] | None = None
    for line in output.splitlines():
        if line.startswith(marker + " "):
            words = line[len(marker) + 1:].split(" ", 2)
            current = None
            if words[0] == "fail" and len(words) == 3:
                current = []
                found.append((words[1], words[2], current))
        elif current is not None:
            current.append(line)
    return [(action, what, "\n".join(body).strip()) for action, what, body in found]


def finished(output: str, marker: str) -> bool:
    return f"{marker} end 0" in output.splitlines()
