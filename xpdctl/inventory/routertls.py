"""The router's TLS files named in the inventory (``router.tls``): read and checked on this machine.

Every problem points at the inventory field naming the file, so ``check`` refuses a pair the router
could not load, or one its clients would refuse (expired, not naming the address they connect to,
not signed by ``ca_file``), before anything reaches a host. The key must be readable by its owner
only (0600); nothing read from it leaves this module but the PEM text handed to ``render``.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from xpdctl.inventory.problems import Problem
from xpdctl.inventory.schema import RouterTls

LOC = ("router", "tls")
GENERATE = "run `xpdctl tls generate -i INVENTORY` to make a CA and a certificate for the router hosts"


@dataclass(frozen=True)
class TlsPair:
    cert_pem: str  # the certificate chain the router presents, leaf first
    key_pem: str
    ca_pem: str | None  # what xpdctl's own requests to the router trust; None: the system's store


@dataclass
class TlsRead:
    pair: TlsPair | None
    problems: list[Problem]


def client_context(ca_pem: str | None) -> ssl.SSLContext | None:
    """What xpdctl's own requests to the router trust: the cluster's CA, or (None) the system's store."""
    return ssl.create_default_context(cadata=ca_pem) if ca_pem else None


def _read(path: Path, field: str, secret: bool) -> tuple[bytes | None, Problem | None]:
    loc = (*LOC, field)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        if secret and mode & 0o077:
            return None, Problem(loc, f"{path} is readable by others (mode {mode:04o}); run chmod 600 {path}")
        return path.read_bytes(), None
    except OSError as exc:
        return None, Problem(loc, f"cannot read {path}: {exc.strerror}; fix the path or {GENERATE}")


def _certs(data: bytes, path: Path, field: str) -> tuple[list[x509.Certificate], Problem | None]:
    try:
        return x509.load_pem_x509_certificates(data), None
    except ValueError:
        return [], Problem((*LOC, field), f"{path} holds no PEM certificate (-----BEGIN CERTIFICATE-----); "
                                          f"give a PEM file or {GENERATE}")


def names_of(cert: x509.Certificate) -> list[str]:
    """The DNS names and IP addresses a certificate is valid for (its subjectAltName)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [*san.get_values_for_type(x509.DNSName), *(str(a) for a in san.get_values_for_type(x509.IPAddress))]


def _covers(names: list[str], address: str) -> bool:
    try:
        wanted = ipaddress.ip_address(address)
    except ValueError:
        return address.lower() in (n.lower() for n in names)
    return any(n == str(wanted) for n in names)


def _leaf_problems(leaf: x509.Certificate, path: Path, addresses: Iterable[str],
                   now: datetime.datetime) -> list[Problem]:
    loc = (*LOC, "cert_file")
    problems = []
    if leaf.not_valid_after_utc <= now:
        problems.append(Problem(loc, f"{path} expired on {leaf.not_valid_after_utc:%Y-%m-%d}; renew it or {GENERATE}"))
    elif leaf.not_valid_before_utc > now:
        problems.append(Problem(loc, f"{path} is valid only from {leaf.not_valid_before_utc:%Y-%m-%d %H:%M} UTC; "
                                     "check this machine's clock or the certificate's dates"))
    names = names_of(leaf)
    missing = [a for a in addresses if not _covers(names, a)]
    if missing:
        problems.append(Problem(loc, f"{path} names {', '.join(names) or 'nothing (no subjectAltName)'}, not "
                                     f"{', '.join(missing)}, where clients reach the router; issue one with those "
                                     f"in its subjectAltName or {GENERATE}"))
    return problems


def read_tls(tls: RouterTls, addresses: list[str]) -> TlsRead:
    """``tls``'s paths are absolute (the loader resolved them); ``addresses``: where clients reach the router."""
    cert_path, key_path = Path(tls.cert_file), Path(tls.key_file)
    cert_data, problem = _read(cert_path, "cert_file", secret=False)
    key_data, key_problem = _read(key_path, "key_file", secret=True)
    ca_data, ca_problem = _read(Path(tls.ca_file), "ca_file", secret=False) if tls.ca_file else (None, None)
    problems = [p for p in (problem, key_problem, ca_problem) if p]
    if problems:
        return TlsRead(None, problems)
    chain, problem = _certs(cert_data, cert_path, "cert_file")
    if problem:
        return TlsRead(None, [problem])
    leaf = chain[0]
    problems = _leaf_problems(leaf, cert_path, addresses, datetime.datetime.now(datetime.timezone.utc))
    try:
        key = serialization.load_pem_private_key(key_data, password=None)
    except (ValueError, TypeError) as exc:
        reason = "is encrypted: the router cannot ask for a passphrase" if isinstance(exc, TypeError) else \
            "holds no PEM private key"
        problems.append(Problem((*LOC, "key_file"), f"{key_path} {reason}; give an unencrypted PEM key "
                                                     f"(openssl pkey -in KEY -out KEY.pem) or {GENERATE}"))
    else:
        if key.public_key().public_bytes(*_SPKI) != leaf.public_key().public_bytes(*_SPKI):
            problems.append(Problem((*LOC, "key_file"), f"{key_path} is not the key of {cert_path}; "
                                                         "give the key the certificate was issued for"))
    if ca_data is not None:
        cas, problem = _certs(ca_data, Path(tls.ca_file), "ca_file")
        problems += [problem] if problem else _signed_by(chain[-1], cas, cert_path, Path(tls.ca_file))
    if problems:
        return TlsRead(None, problems)
    return TlsRead(TlsPair(cert_data.decode(), key_data.decode(), ca_data.decode() if ca_data else None), [])


_SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _signed_by(last: x509.Certificate, cas: list[x509.Certificate], cert_path: Path, ca_path: Path) -> list[Problem]:
    for ca in cas:
        if ca.fingerprint(ca.signature_hash_algorithm) == last.fingerprint(ca.signature_hash_algorithm):
            return []  # the chain ends with the CA itself
        try:
            last.verify_directly_issued_by(ca)
            return []
        except (ValueError, TypeError, InvalidSignature):
            continue
    return [Problem((*LOC, "ca_file"), f"{cert_path} is not signed by the CA in {ca_path}; xpdctl's own requests "
                                       "to the router would be refused: give the CA that issued it")]

