"""Reading `systemctl show` output: Debian's daemonless systemctl (the test hosts' PID 1, output
captured from one) and systemd's (the properties the state script keeps)."""

from xpdctl.remote.unitstate import last_exit, parse_show, proc_state, unit_state

DAEMONLESS = """\
Id=xpd-upg-decode-0.service
Names=xpd-upg-decode-0.service
Description=xpdctl upg: decode engine 0 (simulator, amd GPUs 0)
MainPID=1074
SubState=running
ActiveState=active
LoadState=loaded
UnitFileState=enabled
TimeoutStartUSec=1min 30s
NeedDaemonReload=no
EnvironmentFile=/etc/xpdctl/xpd-upg-decode-0.env

Id=nonexist.service
Names=nonexist.service
Description=NOT-FOUND nonexist.service
MainPID=0
SubState=dead
ActiveState=inactive
LoadState=not-found

Id=xpd-upg-kv-agent.service
MainPID=1089
SubState=running
ActiveState=active
LoadState=loaded
"""

# systemd's own properties for a unit waiting to restart after its engine crashed, filtered to the
# state script's keys (written from systemd's documented show output: no systemd runs here).
SYSTEMD_CRASHING = """\
Id=xpd-lab-decode-1.service
LoadState=loaded
ActiveState=activating
SubState=auto-restart
MainPID=0
ExecMainStatus=1
Result=exit-code
NRestarts=4
"""


def test_blocks_per_unit():
    units = parse_show(DAEMONLESS)
    assert list(units) == ["xpd-upg-decode-0", "nonexist", "xpd-upg-kv-agent"]
    assert units["xpd-upg-decode-0"]["MainPID"] == "1074"
    assert units["nonexist"]["LoadState"] == "not-found"
    assert units["xpd-upg-decode-0"]["TimeoutStartUSec"] == "1min 30s"


def test_states():
    units = parse_show(DAEMONLESS + "\n" + SYSTEMD_CRASHING)
    assert {n: proc_state(p) for n, p in units.items()} == {
        "xpd-upg-decode-0": "running", "nonexist": "stopped", "xpd-upg-kv-agent": "running",
        "xpd-lab-decode-1": "restarting"}
    assert proc_state({"ActiveState": "activating", "SubState": "start"}) == "starting"
    assert proc_state({"ActiveState": "failed", "SubState": "failed"}) == "failed"
    assert proc_state({"ActiveState": "deactivating"}) == "stopped"


def test_exit_of_a_crashing_unit():
    props = parse_show(SYSTEMD_CRASHING)["xpd-lab-decode-1"]
    state = unit_state("xpd-lab-decode-1", "mi300x-02", "decode", props, "abc")
    assert (state.state, state.pid, state.restarts, state.last_exit) == ("restarting", None, 4, "exit 1")
    assert "journalctl -u xpd-lab-decode-1" in state.log and "mi300x-02" in state.log
    assert last_exit({"ExecMainStatus": "0", "Result": "signal"}) == "signal"
    assert last_exit(parse_show(DAEMONLESS)["xpd-upg-decode-0"]) is None


def test_running_unit_has_its_pid():
    state = unit_state("xpd-upg-decode-0", "upg-2", "decode", parse_show(DAEMONLESS)["xpd-upg-decode-0"], "h")
    assert (state.state, state.pid, state.content_hash) == ("running", 1074, "h")
