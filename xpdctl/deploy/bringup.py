"""``deploy()``: provision every host, install and start its services, then engines healthy -> KV paths verified -> router serving -> a request.

Each stage works with what the previous one left standing: a host whose provisioning failed is reported
with its failing task and its services are not waited for; pairs, the router and the smoke request use
the hosts that finished. Running it again resumes, since every playbook task probes before it changes.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable

from xpdctl.deploy.handoff import apply_with_handoff
from xpdctl.deploy.models import DeployResult, HostDeploy, ServiceHealth, Stage
from xpdctl.deploy.stacks import shell_reader, unreadable
from xpdctl.deploy.waits import wait_healthy, wait_pairs
from xpdctl.errors import InputError, UnhealthyError
from xpdctl.identity.record import holds_declared, judge, keep, read_hosts, reads_stacks
from xpdctl.inventory.routertls import client_context
from xpdctl.inventory import LoadedInventory
from xpdctl.observe.targets import HostTarget, client_url, targets_from
from xpdctl.paths import cluster_state_dir
from xpdctl.plan import ENGINE_ROLES, Plan, build_plan
from xpdctl.provision import provision, render_now
from xpdctl.provision.display import headline
from xpdctl.provision.events import Progress as HostProgress
from xpdctl.provision.events import ProgressCallback
from xpdctl.provision.models import HostResult
from xpdctl.provision.runner import ensure_ansible
from xpdctl.verify.health import Progress, probe
from xpdctl.verify.smoke import curl_line, smoke_request

# "not checked" comes only from --check: steps it could not check without changing the host.
FINISHED = ("ok", "changed", "not checked")


def _failure_line(name: str, result: HostResult) -> str:
    if result.failure is None:
        return f"{name}: provisioning {result.status}"
    where = f"{result.failure.role}: {result.failure.task}" if result.failure.role else result.failure.task
    return f"{name}: {result.status} at {where}: {headline(result.failure.message)}"


def _label(host: str, service: str) -> str:
    """How a service is named in progress and health: KV agents have one name on every host."""
    return f"{host}/{service}"


def _urls(targets: Iterable[HostTarget], roles: tuple[str, ...]) -> dict[str, str]:
    return {_label(t.name, s.name): s.url for t in targets for s in t.services if s.role in roles and s.url}


def _retry(provision_retry: str | None, hosts: dict[str, HostDeploy]) -> str | None:
    """The --limit that re-runs the hosts whose provisioning or services failed."""
    failed = provision_retry.split(",") if provision_retry else []
    failed += [n for n, h in hosts.items() if h.applied is not None and h.applied.error and n not in failed]
    return ",".join(failed) or None


def _ready(host: HostDeploy) -> bool:
    return host.provision.status in FINISHED and (host.applied is None or host.applied.status in ("ok", "changed"))


class _Run:
    """The state one ``deploy`` carries from stage to stage."""

    def __init__(self, hosts: dict[str, HostDeploy], targets: list[HostTarget], progress: Progress,
                 context: ssl.SSLContext | None):
        self.hosts = hosts
        self.context = context  # what the router's https URL is verified against
        self.progress = progress
        # Hosts whose services are checked: provisioned and their services applied now, or left out by
        # --limit (probed only).
        self.live = [t for t in targets if not hosts[t.name].targeted or _ready(hosts[t.name])]
        self.waited = [t for t in self.live if hosts[t.name].targeted]
        self.health: dict[str, str] = {}
        self.problems: list[str] = []
        for target in targets:
            if target not in self.live:
                for s in target.services:
                    failed = "provisioning" if hosts[target.name].provision.status not in FINISHED else "installing its services"
                    self.health[_label(target.name, s.name)] = f"not checked: {failed} failed on {target.name}"

    def check(self, roles: tuple[str, ...], what: str, timeout_s: float) -> dict[str, str]:
        """Health of the live hosts' services of ``roles``: waited for where this run deployed them,
        probed once where --limit left the host out (a never-deployed host must not cost the timeout)."""
        waited = _urls(self.waited, roles)
        found = {label: probe(url, context=self.context)
                 for label, url in _urls(self.live, roles).items() if label not in waited}
        if waited:
            found.update(wait_healthy(waited, timeout_s=timeout_s, what=what, progress=self.progress,
                                      context=self.context))
        self.health.update(found)
        for label, state in sorted(found.items()):
            if state != "healthy":
                host, name = label.split("/", 1)
                self.problems.append(f"{name} on {host}: not healthy ({state}); see `systemctl status {name}` there")
        return found

    def healthy(self, roles: tuple[str, ...]) -> list[str]:
        """Names of the healthy services of ``roles``."""
        return [label.split("/", 1)[1] for label in _urls(self.live, roles) if self.health.get(label) == "healthy"]


class _Stacks:
    """The engine stacks ``deploy`` reads: before provisioning (what is wrong stops ``up`` before any
    engine restarts), and once more after it for the hosts that could not be read before."""

    def __init__(self, plan: Plan, progress: Progress, check: bool):
        self.plan = plan
        self.read = shell_reader(plan, record=not check)
        progress.show("engine stacks: reading vLLM, NIXL, UCX and torch on every engine host")
        self.hosts = read_hosts(plan, self.read)
        self.later = unreadable(self.hosts)
        _, self.problems = judge({n: e for n, e in self.hosts.items() if n not in self.later},
                                 plan.settings.forced_backend, holds_declared(plan))
        progress.done(f"engine stacks: {len(self.hosts) - len(self.later)} host(s) read"
                      + (f"; after provisioning: {', '.join(self.later)}" if self.later else ""))

    def refuse(self, check: bool) -> list[str]:
        """Problems found before provisioning: raised (nothing changed yet), or returned under --check."""
        if self.problems and not check:
            raise InputError("the engine stacks cannot serve PD together; nothing was changed: "
                             + "; ".join(self.problems))
        return self.problems

    def finish(self, provisioned: list[str]) -> list[str]:
        """Read the hosts left for later, keep the record, and return what is wrong; a host whose
        provisioning failed is left to provisioning's report."""
        again = {n for n in self.later if n in provisioned}
        if again:
            self.hosts.update(read_hosts(self.plan, self.read, only=again))
        judged = {n: e for n, e in self.hosts.items() if "problem" not in e or n in provisioned}
        pairs, problems = judge(judged, self.plan.settings.forced_backend, holds_declared(self.plan))
        keep(cluster_state_dir(self.plan.cluster), self.hosts, pairs)
        return problems


def deploy(
    loaded: LoadedInventory,
    *,
    limit: str | None = None,
    check: bool = False,
    allow_reboot: bool = False,
    extra_vars: dict | None = None,
    timeout_s: float = 900.0,
    on_progress: ProgressCallback | None = None,
    progress: Progress | None = None,
) -> DeployResult:
    """Bring the inventory's hosts to serving and prove it with one request through the router.

    ``check`` only reports what provisioning would change. ``timeout_s`` bounds each waiting stage.
    Never raises for an unhealthy cluster: the result says what is wrong (``ok``, ``problems``).
    """
    from xpdctl.render import read_tree

    ensure_ansible()  # a missing Ansible stops `up` before it reads or touches any host
    progress = progress or Progress()
    inv = loaded.inventory
    plan = build_plan(loaded, {})  # what the stacks are judged against; secrets play no part
    stacks = _Stacks(plan, progress, check) if reads_stacks(plan) else None
    stack_problems = stacks.refuse(check) if stacks else []
    tree = render_now(loaded, record=not check)
    run = provision(loaded, tree, limit=limit, check=check, allow_reboot=allow_reboot,
                    extra_vars=extra_vars, on_progress=on_progress)  # fmt: skip
    files = read_tree(tree)
    _, targets = targets_from(inv, files)
    hosts = {
        t.name: HostDeploy(host=t.name, provision=run.hosts.get(t.name) or HostResult(host=t.name, status="not run"),
                           targeted=t.name in run.hosts)
        for t in targets
    }
    # The host layer is the playbooks'; the cluster's services are the applier's, on the hosts it readied.
    ready = [n for n, h in hosts.items() if h.targeted and h.provision.status in FINISHED]
    handoff_problems: list[str] = []
    for name in ready:
        if on_progress:
            on_progress(HostProgress(host=name, kind="role", role="services", task="install and start its services"))
    if ready:
        applied, handoff_problems = apply_with_handoff(loaded, tree, ready, check=check, record=not check,
                                                       timeout_s=timeout_s, progress=progress)
        for name, outcome in applied.hosts.items():
            hosts[name].applied = outcome
    context = client_context(loaded.router_tls.ca_pem if loaded.router_tls else None)
    state = _Run(hosts, targets, progress, context)
    state.problems += [_failure_line(n, h.provision) for n, h in hosts.items() if h.targeted
                       and h.provision.status not in FINISHED]  # fmt: skip
    state.problems += stack_problems
    state.problems += handoff_problems
    state.problems += [f"{n}: installing its services failed: {h.applied.error}" for n, h in hosts.items()
                       if h.applied is not None and h.applied.error]
    # Through router.vip when there is one: the smoke request then also proves the address answers.
    router_url = client_url(files) if any(s.role == "router" for t in targets for s in t.services) else None
    reached: Stage = "provision"
    kv_pairs = []
    smoke = None

    def result() -> DeployResult:
        for t in targets:
            hosts[t.name].services = [
                ServiceHealth(name=s.name, role=s.role, host=t.name, url=s.url,
                              health=state.health.get(_label(t.name, s.name), "-"))
                for s in t.services
            ]
        return DeployResult(
            cluster=inv.cluster, check=check, ok=run.ok and not state.problems and (check or reached == "done"),
            reached=reached, hosts=hosts, kv_pairs=kv_pairs, router_url=router_url, model=inv.model.name,
            smoke=smoke, curl=curl_line(router_url, inv.model.name, loaded.own_key is not None,
                                                       inv.router.tls.ca_file if inv.router.tls else None) if router_url else None,
            problems=state.problems, retry=_retry(run.retry, hosts), artifacts=run.artifacts, rendered=str(tree),
        )  # fmt: skip

    if check:
        return result()
    if stacks:
        late = stacks.finish([n for n, h in hosts.items() if h.provision.status in FINISHED])
        if late:
            state.problems += late
            return result()

    reached = "engines"
    state.check(ENGINE_ROLES, "engines", timeout_s)
    prefill, decode = state.healthy(("prefill",)), state.healthy(("decode",))
    if not prefill or not decode:
        state.problems.append("no healthy prefill and decode engine to pair: nothing can serve until one of each is up")
        return result()

    reached = "kv"
    agents = _urls(state.live, ("kv-agent",))
    kv_pairs, unread = wait_pairs(list(agents.values()), set(prefill + decode), timeout_s=timeout_s, progress=progress)
    # An agent is healthy when it answers; what it says about each pair is in kv_pairs.
    state.health.update({label: unread.get(url, "healthy") for label, url in agents.items()})
    state.problems += [f"KV agent: {reason}" for reason in unread.values()]
    state.problems += [f"KV path {p.prefill} -> {p.decode} {p.state}: {p.reason}" for p in kv_pairs if not p.ok]
    if not any(p.ok for p in kv_pairs):
        state.problems.append("no verified KV path between healthy engines: the router has no pair to use")
        return result()

    reached = "router"
    if router_url is None or not any(s.role == "router" for t in state.live for s in t.services):
        state.problems.append(f"the router's host {', '.join(inv.router.hosts)} did not finish provisioning: nothing to send to")
        return result()
    if "healthy" not in state.check(("router",), "router", timeout_s).values():
        return result()

    reached = "smoke"
    progress.show(f"smoke request through {router_url}")
    try:
        smoke = smoke_request(router_url, inv.model.name, timeout_s=timeout_s, api_key=loaded.own_key,
                              context=context)
    except UnhealthyError as exc:
        progress.done("smoke request failed")
        state.problems.append(exc.message)
        return result()
    progress.done(f"smoke request: {smoke.completion_tokens} tokens in {smoke.seconds:.1f} s")
    reached = "done"
    return result()
