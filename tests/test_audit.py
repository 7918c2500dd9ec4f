"""The audit log: one JSON line per host-changing command, written on failure too."""

from __future__ import annotations

import pytest

from xpdctl.audit import audited, read_audit
from xpdctl.errors import ExecutionError


def test_ok_and_failed_lines(tmp_path, monkeypatch):
    monkeypatch.setenv("XPDCTL_STATE_DIR", str(tmp_path))
    with audited("c1", "upgrade", pool="decode") as details:
        details["instances"] = ["d0"]
    with pytest.raises(ExecutionError):
        with audited("c1", "down"):
            raise ExecutionError("the supervisor died; see its log")
    ok, failed = read_audit("c1")
    assert (ok.command, ok.result, ok.args, ok.details) == ("upgrade", "ok", {"pool": "decode"}, {"instances": ["d0"]})
    assert (failed.command, failed.result, failed.error) == ("down", "failed", "the supervisor died; see its log")
    assert "@" in ok.who and ok.at.endswith("+00:00")
    assert (tmp_path / "c1" / "audit.jsonl").stat().st_mode & 0o777 == 0o600
    assert read_audit("other") == []


def test_interrupt_is_recorded(tmp_path, monkeypatch):
    monkeypatch.setenv("XPDCTL_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("SUDO_USER", "alice")
    with pytest.raises(KeyboardInterrupt):
        with audited("c1", "up"):
            raise KeyboardInterrupt
    [line] = read_audit("c1")
    assert line.result == "failed" and line.error == "KeyboardInterrupt" and line.who.startswith("alice@")
