"""What one remote `apply` does on a host: start, restart, stop, leave alone; which files to write."""

from xpdctl.observe.drift import ExpectedFile
from xpdctl.remote.decide import UNKNOWN_HASH, host_actions, parse_records, running_hash, valid_record


def test_records_count_while_the_recorded_process_runs():
    records = parse_records("xpd-a 1111 42\nxpd-b 2222\n\n")
    assert records == {"xpd-a": ("1111", "42"), "xpd-b": ("2222", "")}
    assert valid_record(records["xpd-a"], "42") == "1111"
    assert valid_record(records["xpd-a"], 43) is None  # restarted by `up`, by systemd, by hand
    assert valid_record(records["xpd-b"], "0") is None
    assert valid_record(None, "42") is None


def test_running_hash_of_a_unit_up_started():
    expected = {"/etc/systemd/system/u.service": ExpectedFile(sha256="s1", mode=0o644),
                "/etc/xpdctl/u.env": ExpectedFile(sha256="s2", mode=0o600)}
    files = list(expected)
    assert running_hash("rec", files, expected, {}, "render") == "rec"
    same = {"/etc/systemd/system/u.service": "s1", "/etc/xpdctl/u.env": "s2"}
    assert running_hash(None, files, expected, same, "render") == "render"
    assert running_hash(None, files, expected, {**same, "/etc/xpdctl/u.env": "other"}, "render") == UNKNOWN_HASH
    assert running_hash(None, [], expected, same, None) == UNKNOWN_HASH


def test_host_actions():
    expected = {"/etc/xpdctl/a.env": ExpectedFile(sha256="x", mode=0o600),
                "/etc/xpdctl/b.env": ExpectedFile(sha256="y", mode=0o600),
                "/etc/xpdctl/c.env": ExpectedFile(sha256="z", mode=0o600)}
    present = {"/etc/xpdctl/a.env": "x", "/etc/xpdctl/b.env": "y", "/etc/xpdctl/old.env": "q"}
    modes = {"/etc/xpdctl/a.env": 0o600, "/etc/xpdctl/b.env": 0o644, "/etc/xpdctl/old.env": 0o600}
    changes = {"a": "unchanged", "b": "restarted", "c": "started", "old": "stopped"}
    actions = host_actions(changes, {"a": "1", "b": "2", "c": "3"}, {"a": "1", "b": "1"}, expected, present, modes)
    assert actions.stop == ["old"] and actions.start == ["c"] and actions.restart == ["b"]
    # b's file holds the right bytes with a mode that exposes a secret: written again.
    assert actions.write == ["/etc/xpdctl/b.env", "/etc/xpdctl/c.env"]
    assert actions.remove == ["/etc/xpdctl/old.env"]
    assert actions.record == {"b": "2", "c": "3"}
    idle = host_actions({"a": "unchanged"}, {"a": "1"}, {"a": "1"}, {k: v for k, v in expected.items() if "a." in k},
                        {"/etc/xpdctl/a.env": "x"}, {"/etc/xpdctl/a.env": 0o600})
    assert not idle.needed()
    reload = host_actions({"r": "reloaded"}, {"r": "u+c2"}, {"r": "u+c1"}, {}, {}, {})
    assert reload.reload == ["r"] and reload.restart == [] and reload.record == {"r": "u+c2"} and reload.needed()
