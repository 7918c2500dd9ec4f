"""The signing key and TLS certificates of the test hosts' package mirror, made once per cache.

The mirror answers for vendor sites (repo.radeon.com, nvidia.github.io, ...), so the playbooks' apt
sources, key downloads and ``signed-by`` checks run unchanged: the repository is signed with a
generated OpenPGP key (served wherever a playbook downloads a vendor key), and HTTPS uses a
certificate from a generated CA that every test host's root trusts.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from xpdctl.testhosts.run import run


@dataclass(frozen=True)
class Identity:
    root: Path

    @property
    def gnupg(self) -> Path:
        return self.root / "gnupg"

    @property
    def public_key(self) -> Path:
        return self.root / "repo-key.asc"

    @property
    def ca_cert(self) -> Path:
        return self.root / "ca.crt"

    @property
    def server_cert(self) -> Path:
        return self.root / "server.crt"

    @property
    def server_key(self) -> Path:
        return self.root / "server.key"


@contextmanager
def gpg_home(source: Path | None = None) -> Iterator[list[str]]:
    """A gpg command line on a short temporary copy of ``source`` (the agent's socket path must be short).

    gpg starts an agent that outlives it; it is stopped here, since it is ours.
    """
    with tempfile.TemporaryDirectory(prefix="xpdgpg-") as short:
        home = Path(short) / "home"
        if source is None:
            home.mkdir(mode=0o700)
        else:
            shutil.copytree(source, home, ignore=shutil.ignore_patterns("S.*"))
        try:
            yield ["gpg", "--homedir", str(home), "--batch", "--yes"]
        finally:
            run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], check=False)


def _gpg_key(target: Path, public_key: Path) -> None:
    with gpg_home() as gpg:
        run([*gpg, "--passphrase", "", "--quick-gen-key", "xpd test hosts <testhosts@xpdctl.invalid>",
             "ed25519", "sign", "never"])  # fmt: skip
        public_key.write_text(run([*gpg, "--armor", "--export"]))
        shutil.copytree(gpg[2], target, ignore=shutil.ignore_patterns("S.*"))


def _certificates(root: Path, sites: list[str]) -> None:
    ca_key, ca_cert = root / "ca.key", root / "ca.crt"
    curve = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run(["openssl", "req", "-x509", *curve, "-keyout", str(ca_key), "-out", str(ca_cert), "-days", "3650",
         "-subj", "/CN=xpd test hosts CA", "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"])  # fmt: skip
    issue_server_certificate(Identity(root), sites, root / "server.crt", root / "server.key", "mirror")


def issue_server_certificate(ident: Identity, names: list[str], cert: Path, key: Path, what: str) -> None:
    """A TLS server certificate for ``names``, signed by the identity's CA (which every test host trusts)."""
    curve = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    csr, ext = cert.with_suffix(".csr"), cert.with_suffix(".ext")
    run(["openssl", "req", *curve, "-keyout", str(key), "-out", str(csr), "-subj", f"/CN=xpd test hosts {what}"])
    ext.write_text(
        "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid,issuer\nsubjectAltName=" + ",".join(f"DNS:{n}" for n in names) + "\n"
    )
    run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ident.ca_cert), "-CAkey", str(ident.root / "ca.key"),
         "-CAcreateserial", "-out", str(cert), "-days", "3650", "-extfile", str(ext)])  # fmt: skip


def ensure_identity(cache: Path, sites: list[str]) -> Identity:
    """The cache's identity for these sites; made when missing (call under the cache lock)."""
    digest = hashlib.sha256("\n".join(sorted(sites)).encode()).hexdigest()[:12]
    final = Identity(cache / f"identity-{digest}")
    if final.server_cert.exists():
        return final
    partial = Path(tempfile.mkdtemp(prefix=".identity-", dir=cache))
    _gpg_key(partial / "gnupg", partial / "repo-key.asc")
    _certificates(partial, sites)
    partial.rename(final.root)
    return final
