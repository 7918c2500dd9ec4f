"""The bounded queue in front of the proxy: ``max_in_flight`` requests run, up to ``max_waiting``
wait (first come, first served) for at most ``wait_timeout_s``, and the rest are turned away."""

from __future__ import annotations

import asyncio
import collections


class QueueFull(Exception):
    pass


class QueueTimeout(Exception):
    pass


class Admission:
    def __init__(self, max_in_flight: int, max_waiting: int, wait_timeout_s: float):
        self.active = 0
        self._waiters: collections.deque[asyncio.Future] = collections.deque()
        self.resize(max_in_flight, max_waiting, wait_timeout_s)

    def resize(self, max_in_flight: int, max_waiting: int, wait_timeout_s: float) -> None:
        """New limits (a config reload): a raise admits waiters at once; after a cut, requests over the
        new limit finish and their slots are not passed on until ``active`` is below it. Requests already
        waiting keep their place (and their timeout) even beyond a smaller ``max_waiting``."""
        self.max_in_flight = max_in_flight
        self.max_waiting = max_waiting
        self.wait_timeout_s = wait_timeout_s
        while self.active < self.max_in_flight and self._hand_over():
            self.active += 1

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def acquire(self) -> None:
        if self.active < self.max_in_flight and not self._waiters:
            self.active += 1
            return
        if len(self._waiters) >= self.max_waiting:
            raise QueueFull()
        slot = asyncio.get_running_loop().create_future()
        self._waiters.append(slot)
        try:
            await asyncio.wait_for(asyncio.shield(slot), self.wait_timeout_s)
        except asyncio.TimeoutError:
            if not slot.done():
                slot.cancel()
                raise QueueTimeout() from None
        except asyncio.CancelledError:
            if slot.done() and not slot.cancelled():
                self.release()  # a slot was handed to us as we were cancelled: pass it on
            else:
                slot.cancel()
            raise
        finally:
            if slot in self._waiters:
                self._waiters.remove(slot)

    def release(self) -> None:
        # Handing the slot over leaves ``active`` the same: the waiter now holds it.
        if self.active > self.max_in_flight or not self._hand_over():
            self.active -= 1

    def _hand_over(self) -> bool:
        """Wake the first live waiter; False when none waits."""
        while self._waiters:
            slot = self._waiters.popleft()
            if not slot.done():
                slot.set_result(None)
                return True
        return False
