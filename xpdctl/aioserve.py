"""Serve an aiohttp application from a command until SIGINT/SIGTERM (the router and the simulator);
SIGHUP calls an optional reload hook.

Handler cancellation is on: when a client closes its connection the handler is cancelled, which is
how vLLM behaves (it aborts the request) and how the router passes an abort on to its upstream legs.
"""

from __future__ import annotations

import asyncio
import resource
import signal
import ssl
from collections.abc import Callable

from aiohttp import web


async def start_site(app: web.Application, host: str, port: int,
                     ssl_context: ssl.SSLContext | None = None) -> tuple[web.AppRunner, int]:
    """Start ``app`` on host:port (0 = any free port); returns the runner and the bound port."""
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
    await runner.setup()
    site = await add_site(runner, host, port, ssl_context)
    return runner, bound_port(site)


async def add_site(runner: web.AppRunner, host: str, port: int, ssl_context: ssl.SSLContext | None = None) -> web.TCPSite:
    """Listen on one more address with the same application (a config reload moving the listen address)."""
    # reuse_port: a second process of the same user may listen on the port too, which is how a router is
    # restarted without refusing a connection (deploy/handoff.py: the new one listens before the old one
    # stops listening and finishes its requests).
    site = web.TCPSite(runner, host, port, backlog=4096, reuse_address=True, reuse_port=True, ssl_context=ssl_context)
    await site.start()
    return site


def bound_port(site: web.TCPSite) -> int:
    server = site._server  # aiohttp exposes the listening sockets only here
    return server.sockets[0].getsockname()[1]


def raise_fd_limit() -> None:
    """Every stream holds two sockets (client and upstream): lift the soft open-files limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass  # the kernel's cap is lower: keep what we have


def run_until_signal(serve: Callable[[asyncio.Event], object], on_reload: Callable[[], None] | None = None) -> None:
    """Run ``serve(stop)`` on a fresh event loop (uvloop when installed); ``stop`` is set on SIGINT/SIGTERM.

    ``on_reload`` is called on the loop at each SIGHUP (systemd's ExecReload). It is installed before
    ``serve`` starts: SIGHUP's default action would end the process.
    """
    raise_fd_limit()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if on_reload is not None:
            loop.add_signal_handler(signal.SIGHUP, on_reload)
        await serve(stop)

    try:
        import uvloop
    except ImportError:  # uvloop is an accelerator, not a requirement
        asyncio.run(main())
    else:
        uvloop.run(main())


def announce(what: str, host: str, port: int) -> None:
    """One line on stdout that tests and scripts read to learn the bound port."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    print(f"{what} listening on http://{shown}:{port}", flush=True)
