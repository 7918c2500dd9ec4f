"""The one shell script ``status`` runs on each host, and the parser of what it prints.

One SSH round trip per host: the script runs every probe and prints each one's output as a
section that starts with ``<marker> <name> <rc>``, where ``rc`` is the probe's exit status, ``-``
when its tool is not installed, or ``-1`` when it never finished. The vendor tools run at the same
time and bounded by ``timeout`` (amd-smi alone can take seconds per call, and nvidia-smi hangs on a
wedged GPU), so a host answers in the time of its slowest tool, not their sum. The marker carries a random nonce so no file or tool output can forge a section. The
script is POSIX sh, forks little (one sha256sum and one stat for all files) and reads sysfs with
``read``.
"""

from __future__ import annotations

import shlex

from xpdctl.ssh.sections import quote_glob

UNFINISHED = -1  # a probe that never finished (killed, or the host stopped it)
TIMED_OUT = 124  # exit status of coreutils' timeout, which bounds every probe on the host


# Files read as they are (a section each; ``-`` when the host has no such file).
FILES: tuple[tuple[str, str], ...] = (
    ("os-release", "/etc/os-release"),
    ("nvidia-module", "/proc/driver/nvidia/version"),
    ("rocm-version", "/opt/rocm/.info/version"),
)
# name -> (tool, command). Every tool found runs, in the background and bounded in time; none is chosen
# by vendor, so a host reports what it really has (an NVIDIA host with amd-smi installed shows both).
TOOLS: tuple[tuple[str, str, str], ...] = (
    ("nvidia-smi", "nvidia-smi", "nvidia-smi -q -x"),
    ("amd-smi-static", "amd-smi", "amd-smi static --json"),
    ("amd-smi-metric", "amd-smi", "amd-smi metric --json"),
    ("rocm-smi-product", "rocm-smi", "rocm-smi --showproductname --json"),
    ("ibv-devinfo", "ibv_devinfo", "ibv_devinfo"),
)

_PRELUDE = r"""
t=$(mktemp -d 2>/dev/null) || exit 90
trap 'rm -rf "$t"' EXIT
M='{marker}'
have() {{ command -v "$1" >/dev/null 2>&1; }}
# A hung tool (nvidia-smi on a wedged GPU) must not cost the whole host's report.
T=''; have timeout && T='timeout {probe_timeout}'
# bg NAME TOOL CMD: start CMD in the background unless TOOL is missing.
bg() {{
  name=$1; tool=$2; shift 2
  if ! have "$tool"; then : >"$t/$name.absent"; return; fi
  ( $T sh -c "$*" >"$t/$name.out" 2>"$t/$name.err"; echo $? >"$t/$name.rc" ) &
}}
# readfile NAME PATH: a file's section, read now (files do not hang).
readfile() {{
  if [ -r "$2" ]; then printf '%s %s 0\n' "$M" "$1"; cat "$2"; printf '\n'; else printf '%s %s -\n' "$M" "$1"; fi
}}
# show NAME: the section of a finished background probe (its stderr too when it failed).
show() {{
  name=$1
  if [ -e "$t/$name.absent" ]; then printf '%s %s -\n' "$M" "$name"; return; fi
  read -r rc <"$t/$name.rc" 2>/dev/null || rc=-1
  printf '%s %s %s\n' "$M" "$name" "$rc"; cat "$t/$name.out"
  [ "$rc" = 0 ] || cat "$t/$name.err"
  printf '\n'
}}
pci() {{
  for d in /sys/bus/pci/devices/*; do
    [ -r "$d/vendor" ] || continue
    read -r v <"$d/vendor"; read -r p <"$d/device"; read -r c <"$d/class"
    printf '%s %s %s %s\n' "${{d##*/}}" "$v" "$p" "$c"
  done
}}
"""


def build_script(
    marker: str, *, units: list[str], files: list[str], extra_globs: list[str], probe_timeout_s: int = 6,
    vip: str | None = None,
) -> str:
    """The probe script for one host.

    ``units`` are systemd units whose state to report, ``files`` absolute paths whose sha256 to
    report (or ``MISSING``, or ``UNREADABLE`` for a login without root), ``extra_globs`` shell globs whose matches are listed (files the host has
    that render no longer produces), ``vip`` a virtual address whose presence on the host's
    interfaces to report (``ip -o addr show to ADDRESS`` prints a line when the host has it).
    """
    lines = [_PRELUDE.format(marker=marker, probe_timeout=int(probe_timeout_s))]
    lines += [f"bg {name} {shlex.quote(tool)} {shlex.quote(command)}" for name, tool, command in TOOLS]
    lines += [f"readfile {name} {shlex.quote(path)}" for name, path in FILES]
    lines.append("printf '%s %s 0\\n' \"$M\" uname; uname -a")
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
            f'for f in {quoted}; do if [ ! -f "$f" ]; then printf \'MISSING  %s\\n\' "$f"; '
            f'elif [ ! -r "$f" ]; then printf \'UNREADABLE  %s\\n\' "$f"; else set -- "$@" "$f"; fi; done; '
            '[ $# -eq 0 ] || sha256sum -- "$@"; '
            "printf '%s %s 0\\n' \"$M\" modes; "
            "[ $# -eq 0 ] || stat -c '%a %n' -- \"$@\""
        )
    if vip:
        lines.append(f"if have ip; then printf '%s %s 0\\n' \"$M\" vip; ip -o addr show to {shlex.quote(vip)}; "
                     "else printf '%s %s -\\n' \"$M\" vip; fi")
    if extra_globs:
        # Globs stay unquoted so the host's shell expands them; unmatched ones print themselves and
        # are dropped by the -f test.
        globs = " ".join(quote_glob(pattern) for pattern in extra_globs)
        lines.append(
            f'printf \'%s %s 0\\n\' "$M" listing; for f in {globs}; do [ -f "$f" ] && printf \'%s\\n\' "$f"; done'
        )
    lines.append("wait")
    lines += [f"show {name}" for name, _, _ in TOOLS]
    lines.append("printf '%s %s 0\\n' \"$M\" end")
    return "\n".join(lines) + "\n"

