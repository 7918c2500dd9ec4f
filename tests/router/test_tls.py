"""TLS at the router with a self-signed CA made by openssl: clients that trust the CA are served over
HTTPS, a reload presents a new certificate from the next handshake on, and a bad pair changes nothing."""

import asyncio
import ssl
import subprocess

import aiohttp
import pytest
import yaml

from xpdctl.router.reload import reload_file

BODY = {"model": "m", "prompt": "hello there", "max_tokens": 3}


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA and two server certificates for 127.0.0.1 signed by it (serials 1 and 2)."""
    d = tmp_path_factory.mktemp("pki")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(d / "ca.key"), "-out", str(d / "ca.pem"),
             "-days", "1", "-subj", "/CN=xpdctl test CA")
    ext = d / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")
    for serial in ("1", "2"):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(d / f"server{serial}.key"),
                 "-out", str(d / f"server{serial}.csr"), "-subj", f"/CN=router {serial}")
        _openssl("x509", "-req", "-in", str(d / f"server{serial}.csr"), "-CA", str(d / "ca.pem"), "-CAkey", str(d / "ca.key"),
                 "-set_serial", serial, "-days", "1", "-out", str(d / f"server{serial}.pem"), "-extfile", str(ext))
    return d


def _tls(pki, serial: str) -> dict:
    return {"cert_file": str(pki / f"server{serial}.pem"), "key_file": str(pki / f"server{serial}.key")}


async def _served_serial(url: str, ca: str) -> int:
    """The serial of the certificate the router presented to a client that trusts ``ca`` only."""
    context = ssl.create_default_context(cafile=ca)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:
        async with session.post(url + "/v1/completions", json=BODY) as resp:
            assert resp.status == 200
    host, port = url.removeprefix("https://").split(":")
    _, writer = await asyncio.open_connection(host, int(port), ssl=context)
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    await writer.wait_closed()
    pem = ssl.DER_cert_to_PEM_cert(der)
    done = subprocess.run(["openssl", "x509", "-noout", "-serial"], input=pem, capture_output=True, text=True, check=True)
    return int(done.stdout.strip().split("=")[1], 16)


async def test_https_with_a_private_ca_and_a_reloaded_certificate(cluster, pki, tmp_path):
    prefill, decode = await cluster.sim("prefill"), await cluster.sim("decode")
    doc = {"model": "m", "health": {"interval_s": 0.05, "timeout_s": 5.0},
           "backends": [{"url": prefill.url, "pool": "prefill"}, {"url": decode.url, "pool": "decode"}]}
    router = await cluster.router(**doc, tls=_tls(pki, "1"))
    assert router.url.startswith("https://127.0.0.1:")
    assert await _served_serial(router.url, str(pki / "ca.pem")) == 1
    async with aiohttp.ClientSession() as session:  # the system's CAs do not know ours
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await session.get(router.url + "/health")

    path = tmp_path / "router.yaml"
    path.write_text(yaml.safe_dump({**doc, "tls": _tls(pki, "2")}))
    assert await reload_file(router, path)
    assert await _served_serial(router.url, str(pki / "ca.pem")) == 2

    path.write_text(yaml.safe_dump({**doc, "tls": {"cert_file": str(pki / "server1.pem"), "key_file": str(pki / "server2.key")}}))
    assert not await reload_file(router, path)  # key of another certificate: refused, the old pair stays
    assert await _served_serial(router.url, str(pki / "ca.pem")) == 2
    path.write_text(yaml.safe_dump(doc))
    assert not await reload_file(router, path)  # plain HTTP on a TLS socket needs a restart
