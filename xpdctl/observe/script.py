"""The one shell script ``status`` runs on each host, and the parser of what it prints.

One SSH round trip per host: the script runs every probe and prints each one's output as a
section that starts with ``<marker> <name> [<rc>]``, where ``rc`` is the probe's exit status or ``-``
when its tool is not installed. A probe's output streams straight through (no copy through a temp
file), so its exit status follows it on a line ``<marker>! <rc>``. The marker carries a random nonce
so no file or tool output can forge a section. The script is POSIX sh, forks little (one process per
probe that runs, one sha256sum for all files) and reads sysfs with ``read``.
"""

from __future__ import annotations

import secrets
import shlex
from dataclasses import dataclass

ABSENT = None
UNFINISHED = -1  # a section whose exit status never came: the script was cut short


@dataclass(frozen=True)
class Section:
    rc: int | None  # None: the tool is not installed on the host; -1: no exit status came
    text: str

    @property
    def ok(self) -> bool:
        return self.rc == 0


# name -> (tool or file that must exist, command). Every tool found runs; none is chosen by vendor, so a host
# reports what it really has (an NVIDIA host with amd-smi installed shows both).
PROBES: tuple[tuple[str, str | None, str], ...] = (
    ("os-release", None, "cat /etc/os-release"),
    ("uname", None, "uname -a"),
    ("nvidia-module", "/proc/driver/nvidia/version", "cat /proc/driver/nvidia/version"),
    ("nvidia-smi", "nvidia-smi", "nvidia-smi -q -x"),
    ("amd-smi-static", "amd-smi", "amd-smi static --json"),
    ("amd-smi-metric", "amd-smi", "amd-smi metric --json"),
    ("rocm-smi-product", "rocm-smi", "rocm-smi --showproductname --json"),
    ("rocm-version", "/opt/rocm/.info/version", "cat /opt/rocm/.info/version"),
    ("ibv-devinfo", "ibv_devinfo", "ibv_devinfo"),
)

_PRELUDE = r"""
e=$(mktemp 2>/dev/null) || exit 90
trap 'rm -f "$e"' EXIT
M='{marker}'
have() {{ case $1 in /*) [ -r "$1" ] ;; *) command -v "$1" >/dev/null 2>&1 ;; esac; }}
# sec NAME TOOL CMD: run CMD unless TOOL (a command or a file) is named and missing; its stdout
# streams through, its stderr follows only when it failed, then its exit status.
sec() {{
  name=$1; tool=$2; shift 2
  if [ -n "$tool" ] && ! have "$tool"; then printf '%s %s -\n' "$M" "$name"; return; fi
  printf '\n%s %s\n' "$M" "$name"
  eval "$*" 2>"$e"; rc=$?
  [ "$rc" -eq 0 ] || cat "$e"
  printf '\n%s! %s\n' "$M" "$rc"
}}
pci() {{
  for d in /sys/bus/pci/devices/*; do
    [ -r "$d/vendor" ] || continue
    read -r v <"$d/vendor"; read -r p <"$d/device"; read -r c <"$d/class"
    printf '%s %s %s %s\n' "${{d##*/}}" "$v" "$p" "$c"
  done
}}
"""


def new_marker() -> str:
    return f"@@xpd-{secrets.token_hex(6)}@@"


def build_script(marker: str, *, units: list[str], files: list[str], extra_globs: list[str]) -> str:
    """The probe script for one host.

    ``units`` are systemd units whose state to report, ``files`` absolute paths whose sha256 to
    report (or ``MISSING``), ``extra_globs`` shell globs whose matches are listed (files the host has
    that render no longer produces).
    """
    lines = [_PRELUDE.format(marker=marker)]
    for name, tool, command in PROBES:
        lines.append(f"sec {name} {shlex.quote(tool or '')} {shlex.quote(command)}")
    lines.append("printf '%s %s 0\\n' \"$M\" pci; pci")
    if units:
        # One systemctl for every unit: it prints one state per unit, in the order asked (and exits
        # non-zero when any is not active, which is not a failure of the probe).
        quoted = " ".join(shlex.quote(unit) for unit in units)
        lines.append(
            "if have systemctl; then printf '%s %s 0\\n' \"$M\" units; "
            f"systemctl is-active {quoted} 2>/dev/null; "
            "else printf '%s %s -\\n' \"$M\" units; fi"
        )
    if files:
        quoted = " ".join(shlex.quote(path) for path in files)
        # One sha256sum and one stat for every file present (a fork per file costs more than the hashing).
        lines.append(
            "printf '%s %s 0\\n' \"$M\" hashes; set --; "
            f'for f in {quoted}; do if [ -f "$f" ]; then set -- "$@" "$f"; else printf \'MISSING  %s\\n\' "$f"; fi; done; '
            '[ $# -eq 0 ] || sha256sum -- "$@"; '
            "printf '%s %s 0\\n' \"$M\" modes; "
            "[ $# -eq 0 ] || stat -c '%a %n' -- \"$@\""
        )
    if extra_globs:
        # Globs stay unquoted so the host's shell expands them; unmatched ones print themselves and
        # are dropped by the -e test.
        globs = " ".join(quote_glob(pattern) for pattern in extra_globs)
        lines.append(
            f'printf \'%s %s 0\\n\' "$M" listing; for f in {globs}; do [ -f "$f" ] && printf \'%s\\n\' "$f"; done'
        )
    lines.append("printf '%s %s 0\\n' \"$M\" end")
    return "\n".join(lines) + "\n"


def quote_glob(pattern: str) -> str:
    """Quote everything but the ``*`` so only the intended wildcard expands."""
    return "*".join(shlex.quote(part) if part else "" for part in pattern.split("*"))


def split_sections(output: str, marker: str) -> dict[str, Section]:
    """The sections of the script's output. A host that stopped mid-way lacks the ``end`` section."""
    sections: dict[str, Section] = {}
    name: str | None = None
    rc: int | None = None
    body: list[str] = []

    def close() -> None:
        if name is not None:
            # The newline printed before a marker (output may lack a final one) is not output.
            sections[name] = Section(rc, "\n".join(body).strip("\n"))

    for line in output.splitlines():
        if line.startswith(marker + "! ") and name is not None:
            status = line[len(marker) + 2 :].strip()
            rc = int(status) if status.lstrip("-").isdigit() else UNFINISHED
        elif line.startswith(marker + " "):
            close()
            parts = line[len(marker) + 1 :].split()
            name = parts[0] if parts else "?"
            if len(parts) < 2:
                rc = UNFINISHED
            else:
                rc = int(parts[1]) if parts[1].isdigit() else ABSENT
            body = []
        elif name is not None:
            body.append(line)
    close()
    return sections
