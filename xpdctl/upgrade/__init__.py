"""Rolling and blue-green upgrades of a pool, as a persisted, resumable state machine.

``upgrade(Request(...))`` renders the inventory as it is now (the target), decides whether the pool
may be upgraded in place (``target.verdict``), builds the phases (``phases``) and runs their steps
(``steps``) through the cluster's executor and the router's admin API, recording every step in
``<state dir>/upgrade/rollout.json`` (``state``).
"""

from xpdctl.upgrade.rollout import Request, UpgradeResult, upgrade

__all__ = ["Request", "UpgradeResult", "upgrade"]
