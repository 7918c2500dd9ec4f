"""Per-key limits: requests per minute, tokens per minute, requests at once.

Both per-minute limits are token buckets holding a minute's worth and refilled continuously, so a
key may spend its minute in a burst and then gets its share back second by second. Tokens are known
only when an answer ends (the engine's ``usage``): a request is admitted while the token bucket is
above zero, and its tokens are taken when it ends, which may leave the bucket in debt; the key's next
requests wait (429 with Retry-After) until the refill has paid it back.
"""

from __future__ import annotations

import math
import time

from xpdctl.router.config import ClientKey, Limits


class Bucket:
    def __init__(self, per_minute: int):
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0  # per second
        self.level = self.capacity
        self.stamp = time.monotonic()

    def _refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait_s(self, now: float, need: float) -> float:
        """0 when ``need`` is there now, else the seconds until the refill brings it."""
        self._refill(now)
        return 0.0 if self.level >= need else (need - self.level) / self.rate

    def take(self, now: float, amount: float) -> None:
        self._refill(now)
        self.level -= amount

    def resize(self, per_minute: int) -> None:
        """A reload: keeps what was spent, within the new minute."""
        self._refill(time.monotonic())
        spent = self.capacity - self.level
        self.capacity, self.rate = float(per_minute), per_minute / 60.0
        self.level = self.capacity - spent


class OverLimit(Exception):
    def __init__(self, reason: str, message: str, retry_after_s: float):
        super().__init__(message)
        self.reason = reason  # requests_per_minute, tokens_per_minute, max_concurrent
        self.message = message
        self.retry_after = str(max(1, math.ceil(retry_after_s)))


class KeyState:
    """One client key at run time: its limits, what it has used, what it may use next."""

    def __init__(self, key: ClientKey):
        self.id = key.id
        self.in_flight = 0
        self.requests: dict[int, int] = {}  # by status
        self.rejected: dict[str, int] = {}  # by limit
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self._requests: Bucket | None = None
        self._tokens: Bucket | None = None
        self.limits = Limits()
        self.configure(key)

    def configure(self, key: ClientKey) -> None:
        self.id = key.id
        self.limits = Limits(**{f: getattr(key, f) for f in Limits.model_fields})
        self._requests = _bucket(self._requests, key.requests_per_minute)
        self._tokens = _bucket(self._tokens, key.tokens_per_minute)

    def admit(self) -> None:
        """Raises OverLimit, or counts the request in."""
        limits = self.limits
        if limits.max_concurrent is not None and self.in_flight >= limits.max_concurrent:
            raise self._over("max_concurrent", f"{limits.max_concurrent} requests at once", 1.0)
        now = time.monotonic()
        if self._requests is not None and (wait := self._requests.wait_s(now, 1.0)):
            raise self._over("requests_per_minute", f"{limits.requests_per_minute} requests per minute", wait)
        if self._tokens is not None and (wait := self._tokens.wait_s(now, 1e-9)):
            raise self._over("tokens_per_minute", f"{limits.tokens_per_minute} tokens per minute", wait)
        if self._requests is not None:
            self._requests.take(now, 1.0)
        self.in_flight += 1

    def finish(self, status: int, usage: tuple[int, int] | None) -> None:
        self.in_flight -= 1
        self.requests[status] = self.requests.get(status, 0) + 1
        if usage is None:
            return
        prompt, completion = usage
        self.prompt_tokens += prompt
        self.completion_tokens += completion
        if self._tokens is not None:
            self._tokens.take(time.monotonic(), prompt + completion)

    def _over(self, reason: str, limit: str, wait_s: float) -> OverLimit:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1
        return OverLimit(reason, f"key {self.id!r} is over its limit of {limit}; retry later", wait_s)


def _bucket(old: Bucket | None, per_minute: int | None) -> Bucket | None:
    if per_minute is None:
        return None
    if old is None:
        return Bucket(per_minute)
    old.resize(per_minute)
    return old
