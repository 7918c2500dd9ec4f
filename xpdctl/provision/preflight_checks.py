"""Preflight's verdict on one host, as xpdctl reads it from the playbook run.

The playbook's ``xpd_host_facts`` module reads the facts on the host (read-only); the preflight role
judges them with its ``xpd_preflight_report`` filter (playbooks/roles/preflight/filter_plugins/
preflight.py, self-contained so the playbooks run without xpdctl) and fails the host when a check
fails, before any role changes it; the report comes back through ``set_stats``. Every check is
``ok``, ``warn`` (works, but look) or ``fail`` with a detail line that says what was found and what to do.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

Status = Literal["ok", "warn", "fail"]


class Check(BaseModel):
    name: str
    status: Status
    detail: str


class HostReport(BaseModel):
    ok: bool
    checks: list[Check]
