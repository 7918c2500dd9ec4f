"""``xpdctl up``: bring a cluster up and prove it answers."""

from __future__ import annotations

from pathlib import Path

import click

from xpdctl.output import emit_json, output_option


@click.command()
@click.option("-i", "--inventory", "inventory", type=click.Path(path_type=Path), required=True,
              help="Inventory file (YAML).")
@click.option("--timeout", "timeout_s", type=float, default=900.0, show_default=True,
              help="Seconds to wait at each stage (engines healthy, KV path verified, smoke request).")
@click.option("--limit", default=None, metavar="HOSTS",
              help="Hosts only: provision these (names, groups nvidia/amd/prefill/decode/router, patterns).")
@click.option("--check", is_flag=True, help="Hosts only: change nothing, report what provisioning would change.")
@click.option("--allow-reboot", is_flag=True,
              help="Hosts only: reboot hosts whose driver or kernel command line changed (else reported).")
@click.option("-e", "--extra-vars", "extra_vars", multiple=True, metavar="KEY=VALUE|@FILE",
              help="Hosts only: Ansible variables for the roles (repeatable), as in `xpdctl provision`.")
@output_option
def command(inventory: Path, timeout_s: float, limit: str | None, check: bool, allow_reboot: bool,
            extra_vars: tuple[str, ...], output: str) -> None:
    """Bring a cluster to serving: engines, verified KV paths, the router, and one request through it.

    \b
    Two forms, chosen by the inventory:
      this machine  every host is this machine (127.0.0.1, its name) with runtime native: the
                    services run here as supervised processes (steps below)
      hosts         anything else: the playbooks run over SSH (`xpdctl provision`, live progress per
                    host and role) and install and start the rendered services in order; then `up`
                    waits for every engine's /health, for the KV agents to verify each
                    prefill->decode path, for the router to serve, and sends one request through it.
                    A host that fails is reported with its failing task and message while the others
                    finish; a summary row per host counts ok/changed/failed tasks. Exit status 1 when a
                    host failed (re-run with the --limit it prints: every task probes first, so a
                    re-run resumes), 3 when all provisioned but the cluster does not serve.

    \b
    Steps on this machine, each shown as it runs:
      1. check that the engine interpreter has vLLM and NIXL (install nothing: ./install.sh does that)
      2. build the model the inventory names with model.builder, if it is not on disk yet
      3. render into the cluster's state directory (XPDCTL_STATE_DIR, default ~/.local/state/xpdctl/<cluster>)
      4. start the engines and the KV agent, wait for /health (about a minute per engine on 2 cores)
      5. wait for the KV agent to verify every prefill->decode KV path (side channel, NIXL transfer)
      6. start the router and send one completion through it
    Running `up` again restarts only services whose rendered unit or environment changed, and starts
    again any that gave up. On hosts, a router that restarts is first handed off to a stand-in on its
    own host and port, so no connection is refused and router.vip stays put (docs/router.md). Services
    keep running after `up` exits; `xpdctl down` stops them.

    \b
    Examples:
      xpdctl up -i inventory/local.yaml
      xpdctl up -i inventory/local.yaml -o json | jq -r .router_url
      XPDCTL_STATE_DIR=/tmp/xpd xpdctl up -i inventory/local.yaml --timeout 1800
      xpdctl up -i inventory/lab.yaml --check
      xpdctl up -i inventory/lab.yaml --limit mi300x-01,mi300x-02 --allow-reboot
      xpdctl up -i inventory/lab.yaml -o json | jq '.hosts[] | {host, changed: .provision.changed}'
    """  # fmt: skip
    from xpdctl.deploy import runs_locally
    from xpdctl.inventory import load_inventory

    loaded = load_inventory(inventory)
    if not runs_locally(loaded.inventory):
        _up_hosts(loaded, inventory, limit=limit, check=check, allow_reboot=allow_reboot,
                  extra_vars=extra_vars, timeout_s=timeout_s, output=output)  # fmt: skip
        return
    if limit or check or allow_reboot or extra_vars:
        from xpdctl.errors import InputError

        raise InputError(
            f"--limit, --check, --allow-reboot and -e are for clusters of hosts; every host of {inventory} is "
            "this machine, where `up` runs the services itself: drop them"
        )
    from xpdctl.local.bringup import bring_up
    from xpdctl.verify.health import Progress

    from xpdctl.audit import audited, cluster_of

    with audited(cluster_of(inventory), "up", timeout_s=timeout_s) as details:
        result = bring_up(inventory, timeout_s=timeout_s, progress=Progress())
        details["changes"] = {k: v for k, v in result.changes.items() if v != "unchanged"}
    if output == "json":
        emit_json(result.model_dump())
        return
    changed = {k: v for k, v in result.changes.items() if v != "unchanged"}
    click.echo(f"cluster {result.cluster} is up ({len(changed)} service(s) changed"
               + (": " + ", ".join(f"{k} {v}" for k, v in sorted(changed.items())) if changed else "") + ")")
    click.echo(f"  endpoint: {result.router_url}  (model {result.model})")
    click.echo(f"  smoke:    {result.smoke.text!r}")
    click.echo(f"  state:    {result.state_dir}")
    click.echo("  took:     " + ", ".join(f"{k} {v:.0f} s" for k, v in result.timings_s.items()))
    click.echo("try it:")
    click.echo(f"  {result.curl}")
    click.echo(f"status: xpdctl status -i {inventory}    stop: xpdctl down -i {inventory}")


def _up_hosts(loaded, inventory: Path, *, limit: str | None, check: bool, allow_reboot: bool,
              extra_vars: tuple[str, ...], timeout_s: float, output: str) -> None:
    from contextlib import nullcontext

    from xpdctl.audit import audited
    from xpdctl.deploy import deploy
    from xpdctl.deploy.display import deploy_text
    from xpdctl.errors import ExecutionError, UnhealthyError
    from xpdctl.verify.health import Progress
    from xpdctl.provision.display import parse_extra_vars, print_progress

    variables = parse_extra_vars(extra_vars)
    cluster = loaded.inventory.cluster
    # --check changes no host: only real runs go to the audit log.
    audit = nullcontext({}) if check else audited(
        cluster, "up", limit=limit, allow_reboot=allow_reboot, extra_vars=sorted(variables), timeout_s=timeout_s)
    with audit as details:
        result = deploy(loaded, limit=limit, check=check, allow_reboot=allow_reboot, extra_vars=variables,
                        timeout_s=timeout_s, on_progress=print_progress, progress=Progress())  # fmt: skip
        details.update(changed=result.changed, reached=result.reached, retry=result.retry)
        if output == "json":
            emit_json(result.model_dump(mode="json"))
        else:
            click.echo(deploy_text(result))
        if result.retry:
            raise ExecutionError(
                f"provisioning did not finish on {result.retry}; fix what the table says, then re-run only "
                f"those: xpdctl up -i {inventory} --limit {result.retry}"
            )
        if not result.ok:
            raise UnhealthyError(
                f"cluster {cluster} is provisioned but does not serve ({len(result.problems)} problem(s) above); "
                f"see `xpdctl status -i {inventory}`, fix the cause and run `xpdctl up -i {inventory}` again",
                details=[f"  {line}" for line in result.problems],
            )
