"""``xpdctl up`` for people: one row per host (provisioning counts, services, what failed), then the
KV paths, the smoke request and what to run next."""

from __future__ import annotations

from xpdctl.deploy.models import DeployResult, HostDeploy
from xpdctl.output import table
from xpdctl.provision.display import headline
from xpdctl.remote.hostchanges import VERB


def _services(host: HostDeploy) -> str:
    checked = [s for s in host.services if not s.health.startswith(("not checked", "-"))]
    if not host.services:
        return "-"
    if not checked:
        return "not checked"
    return f"{sum(s.health == 'healthy' for s in checked)}/{len(host.services)} healthy"


def _note(host: HostDeploy) -> str:
    run = host.provision
    if run.failure:
        role = f"{run.failure.role}: " if run.failure.role else ""
        return f"{role}{run.failure.task}: {headline(run.failure.message)}"
    if host.applied is not None and host.applied.error:
        return f"services: {host.applied.error}"
    sick = [f"{s.name} {s.health}" for s in host.services if s.health not in ("healthy", "-")
            and not s.health.startswith("not checked")]  # fmt: skip
    if sick:
        return "; ".join(sick)
    if run.reboot_pending:
        return "reboot pending (--allow-reboot): " + "; ".join(run.reboot_pending)
    return "" if host.targeted else "not in --limit"


def would_change(name: str, host: HostDeploy) -> list[str]:
    """A dry run's service changes on one host: a summary line, then each file's diff."""
    if host.applied is None or not host.applied.changes.needed():
        return []
    c = host.applied.changes
    parts = [f"{verb} {', '.join(items)}" for verb, items in (
        ("stop", c.stop), ("write", c.write), ("remove", c.remove),
        *((VERB[change], [u for u, v in c.units.items() if v == change]) for change in ("started", "restarted", "reloaded")),
        ("enable", [u for u in c.enable if c.units.get(u) == "unchanged"])) if items]
    return [f"services on {name} would: {'; '.join(parts)}"] + [d.rstrip("\n") for d in host.applied.diffs.values()]


def deploy_text(result: DeployResult) -> str:
    rows = [
        (name, h.provision.status, h.provision.ok, h.provision.changed, h.provision.failed,
         h.provision.unreachable, _services(h), _note(h))
        for name, h in sorted(result.hosts.items())
    ]  # fmt: skip
    lines = [table(["host", "provision", "ok", "changed", "failed", "unreachable", "services", "note"], rows)]
    if result.check:
        changes = sum(h.provision.changed for h in result.hosts.values())
        lines += ["", f"--check: {changes} task(s) would change; nothing was changed or started"]
        lines += [f"not checked on {name}: {', '.join(sorted(h.provision.not_checked))}"
                  for name, h in sorted(result.hosts.items()) if h.provision.not_checked]  # fmt: skip
        lines += [line for name, h in sorted(result.hosts.items()) for line in would_change(name, h)]
        return "\n".join(lines)
    if result.kv_pairs:
        lines.append("")
        lines += [
            f"KV {p.prefill} -> {p.decode}: {p.state}"
            + (f" via {p.transport}" if p.ok and p.transport else "") + ("" if p.ok else f" ({p.reason})")
            for p in result.kv_pairs
        ]
    if result.smoke is not None:
        lines += ["", f"smoke request through {result.router_url}: {result.smoke.text!r} "
                      f"({result.smoke.completion_tokens} tokens in {result.smoke.seconds:.1f} s)"]
    if result.problems:
        lines += [""] + [f"problem: {line}" for line in result.problems]
    verdict = "is up" if result.ok else f"is NOT up (stopped after stage {result.reached})"
    lines += ["", f"cluster {result.cluster} {verdict}; ansible output: {result.artifacts}/stdout"]
    if result.ok and result.curl:
        lines += ["try it:", f"  {result.curl}"]
    return "\n".join(lines)
