from pathlib import Path

import pytest

from xpdctl.errors import InputError
from xpdctl.units.unitfile import HostPaths, load_unit, parse_env_file, reload_suffices

UNIT = """\
[Unit]
Description=xpd demo prefill 0
After=network-online.target xpd-demo-kv-agent.service
Wants=network-online.target
Requires=xpd-demo-kv-agent.service

[Service]
Type=simple
EnvironmentFile=/etc/xpdctl/prefill-0.env
EnvironmentFile=-/etc/xpdctl/missing.env
Environment="A=1" B=two VLLM_CONFIG=/etc/xpdctl/x.json
ExecStartPre=-/bin/mkdir -p /var/lib/xpdctl
ExecStart=/opt/venv/bin/python -m vllm.entrypoints.openai.api_server \\
    --model /var/lib/xpdctl/models/tiny --kv-transfer-config '{"kv_connector": "NixlConnector"}' \\
    --config=/etc/xpdctl/engine.yaml
WorkingDirectory=/tmp
Restart=on-failure
RestartSec=5s
Nice=10

[Install]
WantedBy=multi-user.target
"""


def write_tree(tmp_path: Path, unit_text: str = UNIT) -> tuple[Path, HostPaths]:
    root = tmp_path / "hosts" / "h1"
    (root / "etc/xpdctl").mkdir(parents=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    (root / "etc/xpdctl/prefill-0.env").write_text('# engine\nVLLM_CPU_KVCACHE_SPACE=1\nexport QUOTED="a b"\n')
    unit = root / "etc/systemd/system/xpd-demo-prefill-0.service"
    unit.write_text(unit_text)
    return unit, HostPaths(root)


def test_parses_every_directive_and_maps_rendered_paths(tmp_path):
    path, host_paths = write_tree(tmp_path)
    unit = load_unit(path, host_paths)
    root = str(host_paths.host_root)
    assert unit.name == "xpd-demo-prefill-0"
    assert unit.exec_start.argv == [
        "/opt/venv/bin/python", "-m", "vllm.entrypoints.openai.api_server",
        "--model", "/var/lib/xpdctl/models/tiny",
        "--kv-transfer-config", '{"kv_connector": "NixlConnector"}',
        f"--config={root}/etc/xpdctl/engine.yaml",
    ]
    assert [c.argv for c in unit.exec_start_pre] == [["/bin/mkdir", "-p", "/var/lib/xpdctl"]]
    assert unit.exec_start_pre[0].ignore_failure
    assert unit.environment == {
        "VLLM_CPU_KVCACHE_SPACE": "1", "QUOTED": "a b", "A": "1", "B": "two",
        "VLLM_CONFIG": f"{root}/etc/xpdctl/x.json",
    }
    assert unit.working_directory == "/tmp"
    assert (unit.restart, unit.restart_sec, unit.nice) == ("on-failure", 5.0, 10)
    assert unit.after == ["network-online.target", "xpd-demo-kv-agent"]
    assert unit.requires == ["xpd-demo-kv-agent"]
    assert unit.wants == ["network-online.target"]


def test_hash_follows_environment_files(tmp_path):
    path, host_paths = write_tree(tmp_path)
    before = load_unit(path, host_paths).content_hash
    assert load_unit(path, host_paths).content_hash == before
    (host_paths.host_root / "etc/xpdctl/prefill-0.env").write_text("VLLM_CPU_KVCACHE_SPACE=2\n")
    assert load_unit(path, host_paths).content_hash != before


def test_unknown_service_directive_is_refused(tmp_path):
    path, host_paths = write_tree(tmp_path, UNIT.replace("Restart=on-failure", "Restart=on-failure\nPrivateTmp=yes"))
    with pytest.raises(InputError, match="PrivateTmp"):
        load_unit(path, host_paths)


@pytest.mark.parametrize("value", ["ten", "20", "-21"])
def test_nice_outside_systemds_range_is_refused(tmp_path, value):
    path, host_paths = write_tree(tmp_path, UNIT.replace("Nice=10", f"Nice={value}"))
    with pytest.raises(InputError, match=f"Nice={value} is not a whole number from -20 to 19"):
        load_unit(path, host_paths)


def test_missing_required_environment_file_is_an_error(tmp_path):
    path, host_paths = write_tree(tmp_path)
    (host_paths.host_root / "etc/xpdctl/prefill-0.env").unlink()
    with pytest.raises(InputError, match="prefill-0.env does not exist"):
        load_unit(path, host_paths)


def test_env_file_parsing():
    assert parse_env_file("A=1\n\n; comment\nB='x=y'\nnot a pair\n") == {"A": "1", "B": "x=y"}


def test_hash_follows_config_files_the_command_names(tmp_path):
    path, host_paths = write_tree(tmp_path)
    config = host_paths.host_root / "etc/xpdctl/engine.yaml"
    config.write_text("a: 1\n")
    before = load_unit(path, host_paths).content_hash
    config.write_text("a: 2\n")
    assert load_unit(path, host_paths).content_hash != before


def test_a_reloadable_units_config_files_are_hashed_apart(tmp_path):
    """With ExecReload=, a change to the config file alone is one `reload_suffices` accepts; a change
    to the unit or its environment file is not."""
    reloadable = UNIT.replace("Nice=10\n", "Nice=10\nExecReload=/bin/kill -HUP $MAINPID\n")
    path, host_paths = write_tree(tmp_path, reloadable)
    config = host_paths.host_root / "etc/xpdctl/engine.yaml"
    config.write_text("a: 1\n")
    unit = load_unit(path, host_paths)
    assert unit.exec_reload is not None and unit.exec_reload.argv == ["/bin/kill", "-HUP", "$MAINPID"]
    before = unit.content_hash
    config.write_text("a: 2\n")
    after = load_unit(path, host_paths).content_hash
    assert after != before and reload_suffices(before, after)
    assert not reload_suffices(after, after)
    env = host_paths.host_root / "etc/xpdctl/prefill-0.env"
    env.write_text(env.read_text() + "NEW=1\n")
    assert not reload_suffices(after, load_unit(path, host_paths).content_hash)
    # A unit without ExecReload= has one hash: any change restarts it.
    plain, plain_paths = write_tree(tmp_path / "plain")
    (plain_paths.host_root / "etc/xpdctl/engine.yaml").write_text("a: 1\n")
    first = load_unit(plain, plain_paths).content_hash
    (plain_paths.host_root / "etc/xpdctl/engine.yaml").write_text("a: 2\n")
    assert not reload_suffices(first, load_unit(plain, plain_paths).content_hash)
