"""An inventory's pools as simulator engines on loopback: a heterogeneous cluster without GPUs.

Every prefill and decode instance the inventory's pools describe becomes an ``xpdctl sim`` engine
timed by its host's hardware profile (the performance model: xpdctl/perfmodel/simtiming.py) at the
pool's TP, decode instances pulling KV over the path the inventory's KV rule picks; our router goes in
front. Everything runs in one background event loop of this process and stops on exit.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field

from xpdctl.errors import InputError
from xpdctl.inventory.schema import Inventory

_HEALTHY_WITHIN_S = 30.0
# The report's largest scenario (8K in + 8K out) fits; the inventory's max_model_len wins when set.
_DEFAULT_MAX_MODEL_LEN = 16640


@dataclass
class SimulatedCluster:
    inv: Inventory
    time_scale: float = 1.0
    url: str = ""
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _running: list = field(default_factory=list)

    def __enter__(self) -> SimulatedCluster:
        from xpdctl.perfmodel.options import current_option

        option = current_option(self.inv)
        if option is None:
            raise InputError(f"cluster {self.inv.cluster}: every pooled host needs a GPU model with a performance profile "
                             "(e.g. H100-SXM, MI300X) to be simulated")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="simulated-cluster", daemon=True)
        self._thread.start()
        try:
            self.url = self._call(self._start(option))
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def engine_configs(self) -> list:
        """The SimConfig of every running engine."""
        return [r.engine.config for r in self._running if hasattr(r, "engine")]

    def _call(self, coro, timeout: float = 120.0):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _start(self, option) -> str:
        from xpdctl.router.config import RouterConfig
        from xpdctl.router.server import start as start_router
        from xpdctl.sim.config import SimConfig
        from xpdctl.sim.server import start as start_sim

        common = {"model": self.inv.model.name, "port": 0, "time_scale": self.time_scale,
                  "max_model_len": self.inv.model.max_model_len or _DEFAULT_MAX_MODEL_LEN}
        backends = []
        for role, choice in (("prefill", option.prefill), ("decode", option.decode)):
            for _ in range(choice.instances):
                sim = await start_sim(SimConfig(role=role, profile=choice.hardware, profile_tp=choice.tp,
                                                kv_path=option.path, **common))
                self._running.append(sim)
                backends.append({"url": sim.url, "pool": role})
        config = RouterConfig.model_validate({"model": self.inv.model.name, "listen": {"host": "127.0.0.1"},
                                              "backends": backends, "health": {"interval_s": 0.1, "timeout_s": 5.0},
                                              "load_scrape_interval_s": 0.1})
        router = await start_router(config, port=0)
        self._running.append(router)
        for _ in range(int(_HEALTHY_WITHIN_S / 0.05)):
            if all(b.health == "healthy" for b in router.router.registry):
                return router.url
            await asyncio.sleep(0.05)
        raise InputError(f"the simulated cluster's router found no healthy backends within {_HEALTHY_WITHIN_S:g} s; "
                         "the machine may be overloaded: try again")

    def __exit__(self, *exc) -> None:
        if self._loop is None:
            return
        for item in reversed(self._running):
            self._call(item.stop(), timeout=30)
        self._running.clear()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
        self._loop = None
