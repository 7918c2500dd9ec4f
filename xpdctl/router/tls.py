"""TLS at the router: one server SSLContext for the life of the process, its certificate reloadable.

A reload loads the new certificate and key into the same context: the listening socket keeps it, and
every handshake from then on presents the new pair; connections already open keep theirs. The pair
is first loaded into a scratch context, so a bad file changes nothing.
"""

from __future__ import annotations

import ssl

from xpdctl.errors import XpdError
from xpdctl.router.config import Tls


def _load(context: ssl.SSLContext, tls: Tls) -> None:
    try:
        context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    except (OSError, ssl.SSLError) as exc:
        raise XpdError(f"cannot load the TLS certificate {tls.cert_file} with key {tls.key_file}: {exc}; "
                       "check both paths, that they are PEM and that the key matches the certificate") from exc


def _context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def server_context(tls: Tls | None) -> ssl.SSLContext | None:
    if tls is None:
        return None
    context = _context()
    _load(context, tls)
    return context


def reload_context(context: ssl.SSLContext | None, tls: Tls | None) -> None:
    """Present ``tls``'s pair from the next handshake on; raises XpdError and changes nothing if it cannot."""
    if (context is None) != (tls is None):
        raise XpdError("turning TLS on or off needs a restart of the router (the listening socket is plain or TLS)")
    if context is None or tls is None:
        return
    _load(_context(), tls)  # a bad pair fails here, before the live context is touched
    _load(context, tls)
