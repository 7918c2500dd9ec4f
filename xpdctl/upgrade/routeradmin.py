"""A client of the router's admin API (``xpdctl/router/admin.py``): list, drain, undrain, add, remove."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from pathlib import Path

from pydantic import BaseModel

from xpdctl.errors import ExecutionError, InputError
from xpdctl.units.unitfile import parse_env_file


class BackendView(BaseModel):
    url: str
    pool: str
    generation: str
    name: str = ""
    state: str
    health: str
    draining: bool
    in_flight: int

    @property
    def serving(self) -> bool:
        """What the router would send a request to (selection.py: healthy and not draining)."""
        return self.health == "healthy" and not self.draining


def admin_token(token_env: str, environ: dict[str, str], router_env_file: Path | None) -> str:
    """The token from the environment, else from the router's rendered env file (local clusters)."""
    if environ.get(token_env):
        return environ[token_env]
    if router_env_file is not None and router_env_file.exists():
        token = parse_env_file(router_env_file.read_text()).get(token_env)
        if token:
            return token
    raise InputError(
        f"the router's admin API needs a token and {token_env} is not set; an upgrade drains instances "
        f"through it. Export {token_env}=<secret> and run `xpdctl up` (or provision) once so the router "
        "gets it, then run the upgrade with the same variable set"
    )


class AdminRefused(ExecutionError):
    """The admin API answered with an error status (``status``)."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


class RouterAdmin:
    """Every call is safe to repeat (drain and undrain are idempotent, add and remove check first), so a
    call that times out is tried again: a router on a busy host can be slow to answer its admin API."""

    ATTEMPTS = 3

    def __init__(self, router_url: str, token: str, timeout_s: float = 10.0, context: ssl.SSLContext | None = None):
        """``context``: what an https router is verified against (the cluster's CA), else the system's store."""
        self.base = router_url.rstrip("/") + "/admin/backends"
        self.token = token
        self.context = context
        self.timeout_s = timeout_s

    def _call(self, method: str, path: str = "", body: dict | None = None) -> dict:
        for _ in range(self.ATTEMPTS - 1):
            try:
                return self._once(method, path, body)
            except TimeoutError:
                continue
        try:
            return self._once(method, path, body)
        except TimeoutError as exc:
            raise ExecutionError(
                f"the router's admin API at {self.base} did not answer {method} in {self.timeout_s:g} s, "
                f"{self.ATTEMPTS} times; its host may be overloaded. Check `xpdctl status`, then run the "
                "upgrade again with --resume") from exc

    def _once(self, method: str, path: str, body: dict | None) -> dict:
        """One request; a timeout is raised as TimeoutError, whichever layer noticed it."""
        request = urllib.request.Request(
            self.base + path, method=method, data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s, context=self.context) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            text = exc.read()[:300].decode(errors="replace")
            if exc.code == 401:
                raise ExecutionError(f"the router at {self.base} refused the admin token ({text}); "
                                     "export the token the router was rendered with") from exc
            raise AdminRefused(f"router admin {method} {self.base}{path}: HTTP {exc.code} {text}", exc.code) from exc
        except (urllib.error.URLError, OSError) as exc:
            if isinstance(exc, TimeoutError) or isinstance(getattr(exc, "reason", None), TimeoutError):
                raise TimeoutError(str(exc)) from exc
            raise ExecutionError(f"cannot reach the router's admin API at {self.base} ({exc}); "
                                 "is the router running? `xpdctl status` shows it") from exc

    def backends(self) -> list[BackendView]:
        return [BackendView.model_validate(b) for b in self._call("GET")["backends"]]

    def backend(self, url: str) -> BackendView | None:
        url = url.rstrip("/")
        return next((b for b in self.backends() if b.url == url), None)

    def drain(self, url: str) -> None:
        self._call("POST", "/drain", {"url": url})

    def undrain(self, url: str) -> None:
        self._call("POST", "/undrain", {"url": url})

    def add(self, url: str, pool: str, generation: str, name: str) -> None:
        if self.backend(url) is not None:  # a resumed step may find it added
            return
        try:
            self._call("POST", "", {"url": url, "pool": pool, "generation": generation, "name": name})
        except AdminRefused as exc:
            if exc.status != 409:  # 409: an earlier try that timed out went through
                raise

    def remove(self, url: str) -> None:
        if self.backend(url) is None:
            return
        try:
            self._call("DELETE", "", {"url": url})
        except AdminRefused as exc:
            if exc.status != 404:  # 404: an earlier try that timed out went through
                raise


class RouterAdmins:
    """Every router host's admin API as one: behind ``router.vip`` each router keeps its own backend list,
    and a client's request may reach either, so a drain, add or remove must reach every router before it
    counts. A backend is serving only where every router would send it requests; its in-flight count is
    the sum of theirs; a router that does not list it makes it absent (not serving, not healthy)."""

    def __init__(self, admins: list[RouterAdmin]):
        self.admins = admins

    def backends(self) -> list[BackendView]:
        views = [{b.url: b for b in admin.backends()} for admin in self.admins]
        urls = list(dict.fromkeys(url for view in views for url in view))
        return [_merged([view.get(url) for view in views], url) for url in urls]

    def backend(self, url: str) -> BackendView | None:
        url = url.rstrip("/")
        return next((b for b in self.backends() if b.url == url), None)

    def drain(self, url: str) -> None:
        for admin in self.admins:
            if admin.backend(url) is not None:
                admin.drain(url)

    def undrain(self, url: str) -> None:
        for admin in self.admins:
            if admin.backend(url) is not None:
                admin.undrain(url)

    def add(self, url: str, pool: str, generation: str, name: str) -> None:
        for admin in self.admins:
            admin.add(url, pool, generation, name)

    def remove(self, url: str) -> None:
        for admin in self.admins:
            admin.remove(url)


def _merged(views: list[BackendView | None], url: str) -> BackendView:
    present = [v for v in views if v is not None]
    first = present[0]
    if len(present) < len(views):
        return first.model_copy(update={"state": "absent on a router", "health": "absent"})
    worst = next((v for v in present if not v.serving), first)
    return first.model_copy(update={
        "state": worst.state, "health": worst.health, "draining": any(v.draining for v in present),
        "in_flight": sum(v.in_flight for v in present)})
