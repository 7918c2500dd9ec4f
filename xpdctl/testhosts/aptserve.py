"""The package mirror test hosts reach on their bridge: ``python -m xpdctl.testhosts.aptserve``.

Test hosts resolve the vendor sites (archive.ubuntu.com, repo.radeon.com, ...) to the bridge address,
so this server answers for all of them, on HTTP (80) and HTTPS (443), but only at the URLs of the
repositories ``packages.yaml`` lists (``sites.json`` in the built mirror): under a repository's URL,
``dists/<suite>/{InRelease,Release,Release.gpg}`` of its suites, ``dists/<suite>/<component>/binary-amd64/
Packages[.gz]`` of its components (or ``InRelease``, ``Packages``, ... of a flat one), ``pool/<deb>`` of
its own packages, and its key at exactly its key URL. Anything else is a 404, so apt fails on a
wrong URL, suite or component with the message it gives for the vendor's own repository.
"""

from __future__ import annotations

import argparse
import http.server
import json
import ssl
import threading
import urllib.parse
from functools import cache
from pathlib import Path

_RELEASE = ("InRelease", "Release", "Release.gpg")
_INDEX = ("Packages", "Packages.gz")


@cache
def _sites(root: Path) -> list[dict]:
    return json.loads((root / "sites.json").read_text())


def _parts(path: str) -> list[str]:
    return [p for p in path.split("/") if p and p != "."]


def _in_repo(root: Path, site: dict, rest: list[str]) -> Path | None:
    folder = root / "repos" / site["name"]
    if len(rest) == 2 and rest[0] == "pool" and rest[1] in site["debs"]:
        return root / "pool" / rest[1]
    if site.get("flat"):
        return folder / rest[0] if len(rest) == 1 and rest[0] in _RELEASE + _INDEX else None
    if len(rest) < 3 or rest[0] != "dists" or rest[1] not in site["suites"]:
        return None
    if len(rest) == 3 and rest[2] in _RELEASE:
        return folder / "dists" / rest[1] / rest[2]
    if len(rest) == 5 and rest[2] in site["components"] and rest[3] == "binary-amd64" and rest[4] in _INDEX:
        return folder / rest[4]
    return None


def resolve(root: Path, scheme: str, host: str, url_path: str) -> Path | None:
    """The mirror file ``scheme://host/url_path`` means, or None (404)."""
    path = _parts(urllib.parse.unquote(url_path.split("?", 1)[0]))
    host = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    for site in _sites(root):
        key = urllib.parse.urlsplit(site.get("key") or "")
        if (key.scheme, key.hostname, _parts(key.path)) == (scheme, host, path):
            return root / "repo-key.asc"
        for url in site["urls"]:
            base = urllib.parse.urlsplit(url)
            prefix = _parts(base.path)
            if (base.scheme, base.hostname) == (scheme, host) and path[: len(prefix)] == prefix:
                found = _in_repo(root, site, path[len(prefix) :])
                if found is not None and found.is_file():
                    return found
    return None


class _Handler(http.server.BaseHTTPRequestHandler):
    repo: Path
    scheme: str

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._answer(body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer(body=False)

    def _answer(self, body: bool) -> None:
        found = resolve(self.repo, self.scheme, self.headers.get("Host", ""), self.path)
        if found is None:
            self.send_error(404, "not in the test-host mirror")
            return
        data = found.read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        if body:
            self.wfile.write(data)


def serve(repo: Path, bind: str, http_port: int, https_port: int, cert: Path, key: Path) -> None:
    plain = http.server.ThreadingHTTPServer((bind, http_port), type("Handler", (_Handler,), {"repo": repo, "scheme": "http"}))
    secure = http.server.ThreadingHTTPServer(
        (bind, https_port), type("Handler", (_Handler,), {"repo": repo, "scheme": "https"})
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    secure.socket = context.wrap_socket(secure.socket, server_side=True)
    threading.Thread(target=secure.serve_forever, daemon=True).start()
    plain.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, required=True)
    parser.add_argument("--bind", required=True)
    parser.add_argument("--http-port", type=int, default=80)
    parser.add_argument("--https-port", type=int, default=443)
    parser.add_argument("--cert", type=Path, required=True)
    parser.add_argument("--key", type=Path, required=True)
    args = parser.parse_args()
    serve(args.repo, args.bind, args.http_port, args.https_port, args.cert, args.key)


if __name__ == "__main__":
    main()
