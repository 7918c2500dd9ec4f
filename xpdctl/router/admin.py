"""The admin API: list, drain, undrain, add and remove backends. Off (404) unless a token is configured;
every call carries ``Authorization: Bearer <token>``. A config reload may turn it on, off, or change the token."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from aiohttp import web
from pydantic import ValidationError

from xpdctl.router import health
from xpdctl.router.backends import Backend, Registry
from xpdctl.router.config import Backend as BackendSpec
from xpdctl.router.config import Health

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _problem(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


class AdminApi:
    def __init__(self, token: str | None, registry: Registry, policy: Health):
        self.registry = registry
        self.configure(token, policy)

    def configure(self, token: str | None, policy: Health) -> None:
        self.token = token or None
        self._expected = f"Bearer {token}".encode() if token else None
        self.policy = policy

    def routes(self) -> list[web.RouteDef]:
        guard = self._guard
        return [
            web.get("/admin/backends", guard(self.list)),
            web.post("/admin/backends", guard(self.add)),
            web.delete("/admin/backends", guard(self.remove)),
            web.post("/admin/backends/drain", guard(self.drain)),
            web.post("/admin/backends/undrain", guard(self.undrain)),
        ]

    def _guard(self, handler: Handler) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            if self._expected is None:
                return _problem(404, "the admin API is off: the router config sets no admin.token, token_file or token_env")
            given = request.headers.get("Authorization", "").encode()
            if not hmac.compare_digest(given, self._expected):
                return web.json_response({"error": "missing or wrong bearer token (Authorization: Bearer <token>)"},
                                         status=401, headers={"WWW-Authenticate": "Bearer"})
            return await handler(request)

        return guarded

    async def list(self, request: web.Request) -> web.Response:
        return web.json_response({"backends": [b.describe() for b in self.registry]})

    async def _target(self, request: web.Request) -> Backend | web.Response:
        try:
            url = (await request.json())["url"]
        except (ValueError, KeyError, TypeError):
            return _problem(400, 'the body must be JSON with the backend\'s "url"')
        backend = self.registry.get(url)
        if backend is None:
            return _problem(404, f"no backend {url}; GET /admin/backends lists them")
        return backend

    async def drain(self, request: web.Request) -> web.Response:
        backend = await self._target(request)
        if isinstance(backend, web.Response):
            return backend
        backend.draining = True
        return web.json_response(backend.describe())

    async def undrain(self, request: web.Request) -> web.Response:
        backend = await self._target(request)
        if isinstance(backend, web.Response):
            return backend
        backend.draining = False
        return web.json_response(backend.describe())

    async def add(self, request: web.Request) -> web.Response:
        try:
            spec = BackendSpec.model_validate(await request.json())
        except (ValueError, ValidationError) as exc:
            return _problem(400, f"invalid backend: {exc}")
        try:
            backend = self.registry.add(spec)
        except KeyError:
            return _problem(409, f"backend {spec.url} already exists")
        # Admitted by its first successful check: no traffic until it has answered /health.
        await health.check(self.registry, backend, self.policy)
        return web.json_response(backend.describe(), status=201)

    async def remove(self, request: web.Request) -> web.Response:
        backend = await self._target(request)
        if isinstance(backend, web.Response):
            return backend
        self.registry.retire(backend.url)
        return web.json_response(backend.describe())
