"""Runtime fault state: what /sim/faults set, consumed one generate request at a time."""

from __future__ import annotations

from xpdctl.sim.config import Faults

_NONE = Faults()


class FaultState:
    def __init__(self, initial: Faults):
        self.current = initial
        self._left = initial.times

    def replace(self, faults: Faults) -> None:
        self.current = faults
        self._left = faults.times

    def take(self) -> Faults:
        """The faults that apply to the next generate request (counting down ``times``)."""
        faults = self.current
        if self._left is not None:
            if self._left <= 0:
                return _NONE
            self._left -= 1
            if self._left == 0:
                # /health keeps its fault; only the generate faults are used up.
                self.current = Faults(health_status=faults.health_status)
                self._left = None
        return faults
