"""The package mirror test hosts reach on their bridge: ``python -m xpdctl.testhosts.aptserve``.

Test hosts resolve the vendor sites (archive.ubuntu.com, repo.radeon.com, ...) to the bridge address,
so this server answers for all of them, on HTTP (80) and HTTPS (443), and maps any request path to the
one repository by its tail: ``.../dists/<suite>/...`` to the components layout, ``.../InRelease`` or
``.../Packages`` elsewhere to the flat layout, ``.../pool/<file>.deb`` to the package, and any other
path that looks like a key download (``gpgkey``, ``*.asc``, ``*.gpg.key``, ``*.pub``) to the signing key.
"""

from __future__ import annotations

import argparse
import http.server
import re
import ssl
import threading
import urllib.parse
from pathlib import Path

_KEY = re.compile(r"(gpgkey|gpg|\.asc|\.gpg\.key|\.key|\.pub)$")
_INDEX = ("InRelease", "Release", "Release.gpg", "Packages", "Packages.gz")


def resolve(repo: Path, url_path: str) -> Path | None:
    """The repository file a request path means, or None (404)."""
    path = urllib.parse.unquote(url_path.split("?", 1)[0])
    parts = [p for p in path.split("/") if p and p != "."]
    if not parts:
        return None
    tail = parts[-1]
    if "pool" in parts and tail.endswith(".deb"):
        found = repo / "pool" / tail
    elif "dists" in parts and tail in _INDEX:
        # dists/<suite>/<file> or dists/<suite>/<component>/binary-amd64/<file>
        if parts[-2] == "binary-amd64":
            found = repo / tail
        else:
            suite = repo / "dists" / parts[parts.index("dists") + 1]
            found = (suite if suite.is_dir() else repo / "dists" / "_any") / tail
    elif tail in _INDEX:
        found = repo / "flat" / tail if tail.startswith("Release") or tail == "InRelease" else repo / tail
    elif _KEY.search(tail):
        found = repo / "repo-key.asc"
    else:
        return None
    return found if found.is_file() else None


class _Handler(http.server.BaseHTTPRequestHandler):
    repo: Path

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._answer(body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer(body=False)

    def _answer(self, body: bool) -> None:
        found = resolve(self.repo, self.path)
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
    handler = type("Handler", (_Handler,), {"repo": repo})
    plain = http.server.ThreadingHTTPServer((bind, http_port), handler)
    secure = http.server.ThreadingHTTPServer((bind, https_port), handler)
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
