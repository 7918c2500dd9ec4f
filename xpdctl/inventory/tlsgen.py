"""A private CA and a router certificate for the files ``router.tls`` names (``xpdctl tls generate``).

For clusters without a company CA: the certificate names every address clients reach the router at
(each router host's address and name), is signed by a CA of its own, and that CA is what xpdctl's
own requests trust (``ca_file``); give the CA file to the router's clients. ECDSA P-256, as modern
TLS clients all accept it.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from xpdctl.errors import InputError


@dataclass(frozen=True)
class Generated:
    cert_file: Path
    key_file: Path
    ca_file: Path
    names: list[str]
    not_after: datetime.datetime


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "xpdctl"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _san(names: list[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for n in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            entries.append(x509.DNSName(n))
    return x509.SubjectAlternativeName(entries)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write(path: Path, data: bytes, secret: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # O_EXCL with the final mode: a key is never readable by others, not even for a moment.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if secret else 0o644)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def generate(cluster: str, cert_file: Path, key_file: Path, ca_file: Path, names: list[str],
             days: int, ca_key_file: Path) -> Generated:
    """Write a new CA (certificate ``ca_file``, key ``ca_key_file``) and a router certificate and key
    signed by it. Refuses to overwrite any of the four files."""
    existing = [str(p) for p in (cert_file, key_file, ca_file, ca_key_file) if p.exists()]
    if existing:
        raise InputError(f"{', '.join(existing)} already exist; generate writes new files only: remove them "
                         "first (clients trusting the old CA then need the new one)")
    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=days)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name(f"xpdctl {cluster} router CA")
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name(f"xpdctl {cluster} router")).issuer_name(ca_name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(_san(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    _write(ca_key_file, _pem_key(ca_key), secret=True)
    _write(ca_file, ca.public_bytes(serialization.Encoding.PEM), secret=False)
    _write(key_file, _pem_key(key), secret=True)
    _write(cert_file, cert.public_bytes(serialization.Encoding.PEM), secret=False)
    return Generated(cert_file, key_file, ca_file, names, end)
