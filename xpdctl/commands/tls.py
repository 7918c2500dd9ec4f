"""``xpdctl tls``: the router's certificate for clusters without a CA of their own."""

from __future__ import annotations

from pathlib import Path

import click

from xpdctl.output import emit_json, output_option


@click.group()
def command() -> None:
    """The router's TLS certificate (router.tls in the inventory; docs/security.md)."""


@command.command("generate")
@click.option("-i", "--inventory", "inventory", type=click.Path(path_type=Path), required=True,
              help="Inventory file (YAML) with router.tls: {cert_file, key_file, ca_file}.")
@click.option("--days", type=click.IntRange(1, 3650), default=397, show_default=True,
              help="Validity of the CA and the certificate (browsers refuse server certificates over 398 days).")
@output_option
def generate(inventory: Path, days: int, output: str) -> None:
    """Write a private CA and a router certificate signed by it to the files router.tls names.

    The certificate names every address clients reach the router at (each router host's address,
    or router.listen when it is one address). Keys are written mode 0600; the CA's key goes beside
    ca_file as <ca_file>.key: keep it offline, it signs any certificate your clients will trust.
    Existing files are never overwritten. Then `xpdctl check` reads the pair, `up` copies it to
    the router hosts, and the router serves HTTPS; give ca_file to the router's clients.

    \b
    Examples:
      xpdctl tls generate -i inventory/lab.yaml
      curl --cacert router-ca.pem https://10.0.0.10:8000/health
    """  # fmt: skip
    from xpdctl.errors import InputError
    from xpdctl.inventory import load_inventory
    from xpdctl.inventory.tlsgen import generate as make
    from xpdctl.inventory.topology import router_addresses

    inv = load_inventory(inventory, tls_files=False).inventory
    tls = inv.router.tls
    if tls is None or tls.ca_file is None:
        raise InputError(f"{inventory}: router.tls with cert_file, key_file and ca_file is needed to generate; "
                         "add e.g. tls: {cert_file: router.crt, key_file: router.key, ca_file: router-ca.pem}")
    names = router_addresses(inv)
    made = make(inv.cluster, Path(tls.cert_file), Path(tls.key_file), Path(tls.ca_file), names, days,
                Path(f"{tls.ca_file}.key"))
    if output == "json":
        emit_json({"cert_file": str(made.cert_file), "key_file": str(made.key_file), "ca_file": str(made.ca_file),
                   "ca_key_file": f"{made.ca_file}.key", "names": made.names, "not_after": made.not_after.isoformat()})
        return
    click.echo(f"wrote {made.cert_file} (for {', '.join(made.names)}; valid until {made.not_after:%Y-%m-%d}), "
               f"{made.key_file} (0600), CA {made.ca_file} and its key {made.ca_file}.key (0600: keep it offline)")
