"""Plan -> files: ``DIR/hosts/<host>/...`` mirrors each host's filesystem, plus ``DIR/manifest.json``.

:func:`render_files` is pure (plan in, ``{relative path: RenderedFile}`` out) so ``plan`` can diff it
against an earlier render; :func:`write_tree` puts it on disk. Output is deterministic: the same
inventory and secrets give byte-identical files.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import jinja2
import yaml

from xpdctl.observability.targets import target_groups
from xpdctl.paths import data_dir
from xpdctl.plan import CONTAINER_RUN, ENGINE_HOOK_DIR, ETC, Plan, Service

MANIFEST = "manifest.json"
HOSTS = "hosts"
FIREWALL = "firewall"  # nftables rules per host, loaded by the firewall role
KEEPALIVED = "keepalived"  # keepalived config per router host (router.vip), for the keepalived role
OBSERVABILITY = "observability"  # Prometheus and Grafana files for the operator's monitoring host
GRAFANA_DASHBOARDS = "/var/lib/grafana/dashboards/xpdctl"
UNIT_DIR = "etc/systemd/system"

# systemd splits ExecStart= like a shell but without one: quote words holding anything it treats
# specially, and double the specifier and variable characters (% and $).
_PLAIN = re.compile(r"^[A-Za-z0-9_./:=,@+-]+$")


def exec_word(word: str) -> str:
    word = word.replace("%", "%%").replace("$", "$$")
    if _PLAIN.match(word):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def exec_line(argv: tuple[str, ...] | list[str]) -> str:
    return " ".join(exec_word(w) for w in argv)


@dataclass(frozen=True)
class RenderedFile:
    content: str
    mode: int  # 0o600 for files that may hold secrets


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(data_dir("templates"))),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["exec_line"] = exec_line
    return env


def _host_path(host: str, absolute: str) -> str:
    return f"{HOSTS}/{host}{absolute}"


def _env_items(service: Service) -> list[tuple[str, str]]:
    items = sorted({**service.env, **service.secret_env}.items())
    for key, value in items:
        if "\n" in value:
            raise ValueError(f"environment value of {key} for {service.name} contains a newline")
    return items


def _config(jinja: jinja2.Environment, plan: Plan, host: str, what: str, schema: str, config) -> str:
    body = yaml.safe_dump(
        config.model_dump(mode="json", exclude_defaults=True), sort_keys=False, default_flow_style=False
    )
    return jinja.get_template("xpdctl/config.yaml.j2").render(
        what=what, cluster=plan.cluster, host=host, schema=schema, body=body.rstrip("\n")
    )


def _manifest_service(service: Service, host: str) -> dict:
    entry = {
        "name": service.name,
        "role": service.role,
        "unit": _host_path(host, f"/{UNIT_DIR}/{service.unit}"),
        "port": service.port,
        "command": list(service.command),
        "env": dict(sorted(service.env.items())),
        "secret_env": sorted(service.secret_env),
        "env_file": _host_path(host, service.env_file),
        "after": list(service.after),
        "vllm_args": list(service.vllm_args) if service.vllm_args is not None else None,
        **service.details,
    }
    if service.config:
        entry["config"] = _host_path(host, service.config)
        entry["reloads_config"] = service.reload_signal is not None
    return entry


def manifest(plan: Plan) -> dict:
    inv = plan.inventory
    router_hosts = inv.router.hosts
    return {
        "cluster": plan.cluster,
        "model": {
            "name": inv.model.name,
            "path": inv.model.weights_path,
            "builder": inv.model.builder,
            "max_model_len": inv.model.max_model_len,
        },
        "router": {
            "hosts": list(router_hosts),
            # Where clients reach the router: its virtual address when it has one.
            "url": f"{'https' if inv.router.tls else 'http'}://"
                   f"{inv.router.vip.address if inv.router.vip else plan.hosts[router_hosts[0]].address}:{inv.router.port}",
            # What xpdctl's own requests to the router trust (a public certificate, not a secret).
            **({"ca_pem": plan.router_ca_pem} if plan.router_ca_pem else {}),
        },
        "hosts": {
            name: {
                "address": h.address,
                "services": [_manifest_service(s, name) for s in h.services],
            }
            for name, h in plan.hosts.items()
        },
    }


def _duration(seconds: float) -> str:
    """Prometheus durations take integers with a unit: 15 -> 15s, 0.5 -> 500ms."""
    return f"{int(seconds)}s" if float(seconds).is_integer() else f"{round(seconds * 1000)}ms"


def _observability(jinja: jinja2.Environment, plan: Plan, files: dict[str, RenderedFile]) -> dict[str, RenderedFile]:
    inv = plan.inventory
    obs = inv.observability
    router = next(rel for rel in files if rel.endswith(f"{ETC}/router.yaml"))
    groups = target_groups(plan)
    context = {
        "cluster": plan.cluster,
        "jobs": list(groups),
        "scrape_interval": _duration(obs.scrape_interval_s),
        "evaluation_interval": _duration(obs.evaluation_interval_s),
        "down_for": _duration(obs.down_for_s),
        "ttft_p99_s": obs.ttft_p99_s,
        "itl_p99_s": obs.itl_p99_s,
        "rdma_declared": any(h.nics for h in inv.hosts),
        "router_sha256": hashlib.sha256(files[router].content.encode()).hexdigest(),
        "dashboards_path": GRAFANA_DASHBOARDS,
    }
    # Imported here, not at the top: grafanalib takes ~0.8 s to import, measured (`python -X importtime`),
    # and what reads a render (status, the service applier's own interpreter at every apply) never needs it.
    from xpdctl.observability.dashboard import dashboard_json

    prom, grafana = f"{OBSERVABILITY}/prometheus", f"{OBSERVABILITY}/grafana"
    out = {
        f"{prom}/prometheus.yml": jinja.get_template("observability/prometheus.yml.j2").render(context),
        f"{prom}/rules/xpdctl-alerts.yml": jinja.get_template("observability/alerts.yml.j2").render(context),
        f"{grafana}/provisioning/dashboards/xpdctl.yaml":
            jinja.get_template("observability/grafana-dashboards.yaml.j2").render(context),
        f"{grafana}/provisioning/datasources/xpdctl.yaml":
            jinja.get_template("observability/grafana-datasources.yaml.j2").render(context),
        f"{grafana}/dashboards/xpdctl-{plan.cluster}.json": dashboard_json(plan.cluster),
    }
    for job, job_groups in groups.items():
        out[f"{prom}/targets/{job}.json"] = json.dumps(job_groups, indent=2) + "\n"
    return {rel: RenderedFile(content, 0o644) for rel, content in out.items()}


def _split(networks: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """IPv4 and IPv6 elements of an nftables interval set: overlapping ones merged (nft refuses them)."""
    found: tuple[list, list] = ([], [])
    for text in networks:
        net = ipaddress.ip_network(text)
        found[net.version == 6].append(net)
    return tuple([str(n.network_address) if n.prefixlen == n.max_prefixlen else str(n)
                  for n in ipaddress.collapse_addresses(nets)] for nets in found)


def _firewall(jinja: jinja2.Environment, plan: Plan) -> dict[str, RenderedFile]:
    """One nftables file per host (FIREWALL/<host>.nft), for the firewall role; not under hosts/, as
    the role, not the service executor, puts it in place and loads it."""
    out = {}
    for name, host in plan.hosts.items():
        rules = host.firewall
        if rules is None:
            continue
        sets = []
        for set_name, networks in (("trusted", rules.trusted), ("clients", rules.clients),
                                   ("prometheus", rules.prometheus)):
            v4, v6 = _split(networks)
            sets += [(f"{set_name}4", "ipv4", v4), (f"{set_name}6", "ipv6", v6)]
        text = jinja.get_template("firewall/xpdctl.nft.j2").render(
            cluster=plan.cluster, host=name, sets=sets, router_port=rules.router_port,
            service_ports=rules.service_ports, open_ports=rules.open_ports)
        out[f"{FIREWALL}/{name}.nft"] = RenderedFile(text, 0o644)
    return out


def _keepalived(jinja: jinja2.Environment, plan: Plan) -> dict[str, RenderedFile]:
    """One keepalived config per router host (KEEPALIVED/<host>.conf) when router.vip is set; the
    keepalived role puts it in place. The first router host listed is preferred."""
    router = plan.inventory.router
    vip = router.vip
    if vip is None:
        return {}
    addresses = {name: plan.hosts[name].address for name in router.hosts}
    out = {}
    for j, name in enumerate(router.hosts):
        text = jinja.get_template("keepalived/keepalived.conf.j2").render(
            cluster=plan.cluster, host=name, address=vip.address, prefix=ipaddress.ip_network(vip.network).prefixlen,
            interface=vip.interface, vrid=vip.vrid, priority=max(1, 150 - 10 * j), self_address=addresses[name],
            peers=[a for n, a in addresses.items() if n != name], port=router.port, tls=router.tls is not None,
            scheme="https" if router.tls else "http")
        out[f"{KEEPALIVED}/{name}.conf"] = RenderedFile(text, 0o644)
    return out


def render_files(plan: Plan) -> dict[str, RenderedFile]:
    jinja = _environment()
    unit = jinja.get_template("systemd/service.j2")
    env_file = jinja.get_template("xpdctl/service.env.j2")
    files: dict[str, RenderedFile] = {}
    for name, host in plan.hosts.items():
        for s in host.services:
            files[_host_path(name, f"/{UNIT_DIR}/{s.unit}")] = RenderedFile(
                unit.render(s=s, cluster=plan.cluster, restart_sec=plan.restart_sec), 0o644
            )
            files[_host_path(name, s.env_file)] = RenderedFile(env_file.render(s=s, env=_env_items(s)), 0o600)
        if any(s.command[:1] == (CONTAINER_RUN,) for s in host.services):
            script = data_dir("templates") / "systemd" / "container-run"
            files[_host_path(name, CONTAINER_RUN)] = RenderedFile(script.read_text(), 0o755)
        if any(s.env.get("PYTHONPATH") == ENGINE_HOOK_DIR for s in host.services):
            hook = data_dir("templates") / "engine" / "sitecustomize.py"
            files[_host_path(name, f"{ENGINE_HOOK_DIR}/sitecustomize.py")] = RenderedFile(hook.read_text(), 0o644)
        if host.router_config is not None:
            files[_host_path(name, f"{ETC}/router.yaml")] = RenderedFile(
                _config(jinja, plan, name, "Router config", "xpdctl.router.config.RouterConfig", host.router_config),
                0o644,
            )
        for path, (content, mode) in host.files.items():
            files[_host_path(name, path)] = RenderedFile(content, mode)
        if host.kv_agent_config is not None:
            files[_host_path(name, f"{ETC}/kv-agent.yaml")] = RenderedFile(
                _config(
                    jinja, plan, name, "KV agent config", "xpdctl.kvagent.config.KvAgentConfig", host.kv_agent_config
                ),
                0o644,
            )
    if any(h.router_config is not None for h in plan.hosts.values()):  # not the partial plans of an upgrade
        files.update(_observability(jinja, plan, files))
    files.update(_firewall(jinja, plan))
    files.update(_keepalived(jinja, plan))
    files[MANIFEST] = RenderedFile(json.dumps(manifest(plan), indent=2, sort_keys=True) + "\n", 0o644)
    return dict(sorted(files.items()))


def _owned(rel: str) -> bool:
    """Files render writes; anything else under DIR (e.g. a local executor's state) is left alone."""
    if "/__pycache__/" in rel:
        return False  # Python's bytecode of the engines' start-up hook, written beside it when it runs
    if rel == MANIFEST or rel.startswith(f"{OBSERVABILITY}/"):
        return True
    parts = rel.split("/", 2)
    if len(parts) < 3 or parts[0] != HOSTS:
        return False
    inside = parts[2]
    return inside.startswith(f"{UNIT_DIR}/xpd-") or inside.startswith(ETC.lstrip("/") + "/")


def read_tree(directory: Path) -> dict[str, RenderedFile]:
    """A previous render as :func:`render_files` would return it (only the files render owns)."""
    found: dict[str, RenderedFile] = {}
    candidates = [directory / MANIFEST] + sorted((directory / HOSTS).rglob("*")) + sorted(
        (directory / OBSERVABILITY).rglob("*"))
    for path in candidates:
        if not path.is_file():
            continue
        rel = path.relative_to(directory).as_posix()
        if _owned(rel):
            found[rel] = RenderedFile(path.read_text(), path.stat().st_mode & 0o777)
    return found


def write_tree(files: dict[str, RenderedFile], directory: Path) -> list[str]:
    """Write ``files`` under ``directory``; remove files an earlier render left that are no longer wanted.

    Returns the relative paths removed. Only files render owns are touched (see :func:`_owned`).
    """
    directory.mkdir(parents=True, exist_ok=True)
    removed = []
    for rel in read_tree(directory):
        if rel not in files:
            (directory / rel).unlink()
            removed.append(rel)
    for rel, rendered in files.items():
        path = directory / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        # Create with the final mode so a secret is never readable, even for a moment.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, rendered.mode)
        with os.fdopen(fd, "w") as handle:
            handle.write(rendered.content)
        os.chmod(path, rendered.mode)
    return removed
