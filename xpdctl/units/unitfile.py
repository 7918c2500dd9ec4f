"""Reads the systemd unit files ``render`` writes, into what the local supervisor needs to run them.

Only the directives xpdctl's templates use are understood; any other directive in [Service] is an
error rather than silently ignored, because a unit that runs differently under the local executor
than under systemd would make the local cluster a poor test of the real one.
"""

from __future__ import annotations

import hashlib
import shlex
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from xpdctl.errors import InputError

# Directives that only matter to systemd itself (logging, sandboxing, install targets): accepted and
# not acted on, since the supervisor already captures output and runs everything as one user.
_IGNORED = {
    "Description", "Documentation", "Type", "WantedBy", "StandardOutput", "StandardError",
    "SyslogIdentifier", "LimitNOFILE", "LimitMEMLOCK", "TimeoutStartSec", "KillMode", "KillSignal",
    "StartLimitIntervalSec", "StartLimitBurst", "User", "Group", "ExecStop", "Delegate", "ExecStartPost",
}


class ExecCommand(BaseModel):
    model_config = ConfigDict(frozen=True)

    argv: list[str]
    # systemd's "-" prefix: a failing command does not fail the unit.
    ignore_failure: bool = False


class Unit(BaseModel):
    """One service as the supervisor runs it: every host path already mapped into the rendered tree."""

    name: str  # without ".service"
    exec_start: ExecCommand
    exec_start_pre: list[ExecCommand] = []
    environment: dict[str, str] = {}
    working_directory: str | None = None
    restart: Literal["no", "always", "on-failure", "on-abnormal", "on-abort", "on-success"] = "no"
    restart_sec: float = 0.1
    nice: int = 0
    after: list[str] = []
    requires: list[str] = []
    wants: list[str] = []
    # ExecReload=: makes the service apply its config files again without a restart.
    exec_reload: ExecCommand | None = None
    # Hash of the unit file and every file it reads: `up` restarts a unit only when it changed. A unit
    # with ExecReload= has "<unit and env files>+<config files>", so that a change to its config files
    # alone is a reload (reload_suffices).
    content_hash: str = ""
    # Host paths of the rendered files behind content_hash: a change to one of ``files`` restarts the
    # unit; a change to ``reload_files`` only (its config, with ExecReload=) reloads it.
    files: list[str] = []
    reload_files: list[str] = []


def reload_suffices(running: str, wanted: str) -> bool:
    """Whether a unit running with content hash ``running`` gets to ``wanted`` by a reload: only the
    config files it reloads differ."""
    base, sep, config = running.partition("+")
    wanted_base, wanted_sep, wanted_config = wanted.partition("+")
    return bool(sep and wanted_sep) and base == wanted_base and config != wanted_config


def _nice(value: str, where: str) -> int:
    try:
        nice = int(value)
    except ValueError:
        nice = None
    if nice is None or not -20 <= nice <= 19:
        raise InputError(f"{where}: Nice={value} is not a whole number from -20 to 19, as systemd requires")
    return nice


def _split_words(value: str) -> list[str]:
    try:
        return shlex.split(value)
    except ValueError as exc:
        raise InputError(f"cannot split {value!r} into words: {exc}; fix the quoting in the template") from exc


def _parse_sections(text: str) -> dict[str, list[tuple[str, str]]]:
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    pending = ""
    for raw in text.splitlines():
        line = pending + raw.strip()
        pending = ""
        if line.endswith("\\"):  # systemd continues a line that ends in a backslash
            pending = line[:-1] + " "
            continue
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        if current is None or "=" not in line:
            raise InputError(f"unexpected line {line!r}; a unit file has [Section] headers and Key=Value lines")
        key, _, value = line.partition("=")
        current.append((key.strip(), value.strip()))
    return sections


def _exec(value: str, host_paths: HostPaths) -> ExecCommand:
    ignore = False
    while value and value[0] in "-@+!:":  # systemd's command prefixes; only "-" changes what we do
        ignore = ignore or value[0] == "-"
        value = value[1:]
    return ExecCommand(argv=[host_paths.map(w) for w in _split_words(value)], ignore_failure=ignore)


def parse_env_file(text: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("export "):
            line = line[len("export "):]
        key, sep, value = line.partition("=")
        if not sep:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        env[key.strip()] = value
    return env


class HostPaths:
    """Maps paths of a host's filesystem to where ``render`` put them (``DIR/hosts/<host>/...``)."""

    # Only files xpdctl itself renders live under these; everything else (interpreters, models) is
    # the real path on this machine.
    RENDERED_PREFIXES = ("/etc/xpdctl/", "/etc/systemd/system/")

    def __init__(self, host_root: Path):
        self.host_root = host_root

    def map(self, value: str) -> str:
        for prefix in self.RENDERED_PREFIXES:
            at = value.find(prefix)
            # Either the whole word is a path, or it is the value of a --flag=PATH or KEY=PATH word.
            if at == 0 or (at > 0 and value[at - 1] == "="):
                return value[:at] + str(self.host_root) + value[at:]
        return value

    def host_path(self, rendered: Path) -> str | None:
        """``/x/hosts/h/etc/xpdctl/a.yaml`` -> ``/etc/xpdctl/a.yaml``; None for a path outside the host's tree."""
        try:
            return "/" + rendered.relative_to(self.host_root).as_posix()
        except ValueError:
            return None

    def rendered_file(self, mapped: str) -> Path | None:
        """The rendered file a mapped word names (``/x/hosts/h/etc/xpdctl/a.yaml``, ``--config=...``), if any."""
        root = str(self.host_root) + "/"
        at = mapped.find(root)
        if at < 0 or (at > 0 and mapped[at - 1] != "="):
            return None
        path = Path(mapped[at:])
        return path if path.is_file() else None


def load_unit(path: Path, host_paths: HostPaths) -> Unit:
    """Parse a rendered unit file; EnvironmentFile= paths are read from the rendered tree."""
    text = path.read_text()
    where = str(path)
    try:
        sections = _parse_sections(text)
    except InputError as exc:
        raise InputError(f"{where}: {exc.message}") from None
    digest = hashlib.sha256(text.encode())
    read_paths = [path]
    fields: dict = {"name": path.name.removesuffix(".service"), "exec_start_pre": [], "environment": {}}
    deps: dict[str, list[str]] = {"After": [], "Requires": [], "Wants": [], "BindsTo": []}
    for key, value in sections.get("Unit", []):
        if key in deps:
            deps[key] += [w.removesuffix(".service") for w in value.split()]
    exec_start = None
    for key, value in sections.get("Service", []):
        if key == "ExecStart":
            if exec_start is not None:
                raise InputError(f"{where}: more than one ExecStart=; a simple service runs one command")
            exec_start = _exec(value, host_paths)
        elif key == "ExecStartPre":
            fields["exec_start_pre"].append(_exec(value, host_paths))
        elif key == "ExecReload":
            fields["exec_reload"] = _exec(value, host_paths)
        elif key == "Environment":
            for word in _split_words(value):
                k, _, v = word.partition("=")
                fields["environment"][k] = host_paths.map(v)
        elif key == "EnvironmentFile":
            optional = value.startswith("-")
            env_path = Path(host_paths.map(value.lstrip("-")))
            if not env_path.exists():
                if optional:
                    continue
                raise InputError(f"{where}: EnvironmentFile {env_path} does not exist; render the cluster again")
            env_text = env_path.read_text()
            read_paths.append(env_path)
            digest.update(env_text.encode())
            fields["environment"].update({k: host_paths.map(v) for k, v in parse_env_file(env_text).items()})
        elif key == "WorkingDirectory":
            fields["working_directory"] = host_paths.map(value.lstrip("-"))
        elif key == "Restart":
            fields["restart"] = value
        elif key == "RestartSec":
            fields["restart_sec"] = _seconds(value, where)
        elif key == "Nice":
            fields["nice"] = _nice(value, where)
        elif key not in _IGNORED:
            raise InputError(
                f"{where}: [Service] {key}= is not supported by the local executor; "
                "remove it from the template or teach xpdctl/units/unitfile.py what it means"
            )
    if exec_start is None:
        raise InputError(f"{where}: no ExecStart=; every rendered service needs one")
    # A config file the service reads (router.yaml, kv-agent.yaml) changes the service as much as
    # its unit does: hash every rendered file its command line or environment names.
    words = [w for c in [*fields["exec_start_pre"], exec_start] for w in c.argv] + list(fields["environment"].values())
    configs = hashlib.sha256()
    reloads = "exec_reload" in fields
    referenced = sorted({p for w in words if (p := host_paths.rendered_file(w)) is not None})
    # An env file a container gets (`docker run --env-file=`) is read when it starts, never on reload; so
    # is a rendered program a command runs (/etc/xpdctl/container-run).
    programs = [c.argv[0] for c in [*fields["exec_start_pre"], exec_start] if c.argv]
    start_only = {p for w in words if w.startswith("--env-file=") and (p := host_paths.rendered_file(w)) is not None}
    start_only |= {p for w in programs if (p := host_paths.rendered_file(w)) is not None}
    config_paths = [p for p in referenced if reloads and p not in start_only]
    for path in referenced:
        (configs if path in config_paths else digest).update(path.read_bytes())
    restart_paths = read_paths + [p for p in referenced if p not in config_paths]
    content_hash = digest.hexdigest() + (f"+{configs.hexdigest()}" if reloads else "")
    return Unit(
        **fields,
        exec_start=exec_start,
        after=deps["After"],
        requires=deps["Requires"] + deps["BindsTo"],
        wants=deps["Wants"],
        content_hash=content_hash,
        files=[h for p in restart_paths if (h := host_paths.host_path(p)) is not None],
        reload_files=[h for p in config_paths if (h := host_paths.host_path(p)) is not None],
    )


def _seconds(value: str, where: str) -> float:
    units = {"ms": 0.001, "s": 1.0, "sec": 1.0, "min": 60.0, "m": 60.0}
    for suffix in sorted(units, key=len, reverse=True):
        if value.endswith(suffix) and value[: -len(suffix)].strip().replace(".", "", 1).isdigit():
            return float(value[: -len(suffix)]) * units[suffix]
    try:
        return float(value)
    except ValueError:
        raise InputError(f"{where}: RestartSec={value} is not a time span like 10, 10s or 500ms") from None
