"""Rendered files: golden trees, determinism, file modes, secrets, config contracts, plan diffs.

Golden files live in tests/golden/<inventory>/ and are reviewed like code. After an intended change,
regenerate them with

    XPDCTL_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_render.py -k golden

and review `git diff tests/golden`.
"""

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from xpdctl.inventory import load_inventory
from xpdctl.kvagent.config import load_kv_agent_config
from xpdctl.plan import build_plan
from xpdctl.render import exec_line, read_tree, render_files, write_tree
from xpdctl.router.config import load_router_config

GOLDEN = Path(__file__).parent / "golden"


def _files(inventory, environ=None):
    return render_files(build_plan(load_inventory(inventory), environ or {}))


@pytest.mark.parametrize("name", ["lab", "lab-single-vendor"])
def test_golden(name):
    files = _files(f"inventory/{name}.yaml")
    golden = GOLDEN / name
    if os.environ.get("XPDCTL_UPDATE_GOLDEN"):
        write_tree(files, golden)
    found = {rel: f.content for rel, f in read_tree(golden).items()}
    assert found == {rel: f.content for rel, f in files.items()}, (
        "rendered output differs from tests/golden; if intended, regenerate (see module docstring)"
    )


def test_render_twice_gives_identical_bytes(tmp_path):
    for directory in ("a", "b"):
        write_tree(_files("inventory/lab.yaml", {"HF_TOKEN": "hf_x"}), tmp_path / directory)
    write_tree(_files("inventory/lab.yaml", {"HF_TOKEN": "hf_x"}), tmp_path / "b")  # over itself
    a = {p.relative_to(tmp_path / "a"): p.read_bytes() for p in (tmp_path / "a").rglob("*") if p.is_file()}
    b = {p.relative_to(tmp_path / "b"): p.read_bytes() for p in (tmp_path / "b").rglob("*") if p.is_file()}
    assert a == b and len(a) == 25  # 16 host files, the manifest, 8 observability files


def test_layout_and_modes(tmp_path):
    write_tree(_files("inventory/lab.yaml"), tmp_path)
    host = tmp_path / "hosts" / "h100-01"
    assert sorted(p.relative_to(host).as_posix() for p in host.rglob("*") if p.is_file()) == [
        "etc/systemd/system/xpd-lab-kv-agent.service",
        "etc/systemd/system/xpd-lab-prefill-0.service",
        "etc/xpdctl/container-run",
        "etc/xpdctl/kv-agent.yaml",
        "etc/xpdctl/xpd-lab-kv-agent.env",
        "etc/xpdctl/xpd-lab-prefill-0.env",
    ]
    assert (host / "etc/xpdctl/xpd-lab-prefill-0.env").stat().st_mode & 0o777 == 0o600
    assert (host / "etc/systemd/system/xpd-lab-prefill-0.service").stat().st_mode & 0o777 == 0o644


def test_secrets_only_in_0600_env_files(tmp_path):
    environ = {"HF_TOKEN": "hf_very_secret", "XPDCTL_ROUTER_ADMIN_TOKEN": "admin_very_secret"}
    write_tree(_files("inventory/lab.yaml", environ), tmp_path)
    holders = [p for p in tmp_path.rglob("*") if p.is_file() and "very_secret" in p.read_text()]
    assert sorted(p.name for p in holders) == ["xpd-lab-decode-0.env", "xpd-lab-prefill-0.env", "xpd-lab-router.env"]
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in holders)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["hosts"]["h100-01"]["services"][0]["secret_env"] == ["HF_TOKEN"]


def test_engine_api_key_reaches_engines_and_router_only_in_0600_env_files(tmp_path):
    write_tree(_files("inventory/lab.yaml", {"XPDCTL_ENGINE_API_KEY": "engine_very_secret"}), tmp_path)
    holders = {p.name: p.read_text() for p in tmp_path.rglob("*") if p.is_file() and "engine_very_secret" in p.read_text()}
    assert sorted(holders) == ["xpd-lab-decode-0.env", "xpd-lab-prefill-0.env", "xpd-lab-router.env"]
    assert "VLLM_API_KEY=" in holders["xpd-lab-prefill-0.env"] and "XPDCTL_ENGINE_API_KEY=" in holders["xpd-lab-router.env"]
    router = load_router_config(tmp_path / "hosts/gw-01/etc/xpdctl/router.yaml")
    assert router.engine_api_key_env == "XPDCTL_ENGINE_API_KEY" and router.admin.token_env is None


def test_rendered_configs_load_with_the_router_and_kv_agent_schemas(tmp_path):
    loaded = load_inventory("inventory/lab.yaml")
    plan = build_plan(loaded, {})
    write_tree(render_files(plan), tmp_path)
    router = load_router_config(tmp_path / "hosts/gw-01/etc/xpdctl/router.yaml")
    assert router == plan.hosts["gw-01"].router_config
    agent = load_kv_agent_config(tmp_path / "hosts/mi300x-01/etc/xpdctl/kv-agent.yaml")
    assert agent == plan.hosts["mi300x-01"].kv_agent_config


def test_manifest_lists_every_service_with_paths_relative_to_the_render(tmp_path):
    write_tree(_files("inventory/local.yaml"), tmp_path)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["cluster"] == "local"
    assert manifest["model"]["builder"] == "tiny-gpt-oss"
    assert manifest["router"] == {"hosts": ["local"], "url": "http://127.0.0.1:8000"}
    services = manifest["hosts"]["local"]["services"]
    assert [(s["name"], s["role"], s["port"]) for s in services] == [
        ("xpd-local-prefill-0", "prefill", 8100),
        ("xpd-local-decode-0", "decode", 8200),
        ("xpd-local-kv-agent", "kv-agent", 8788),
        ("xpd-local-router", "router", 8000),
    ]
    for s in services:
        assert (tmp_path / s["unit"]).is_file() and (tmp_path / s["env_file"]).is_file()
        assert (s["vllm_args"] is None) == (s["role"] in ("router", "kv-agent"))
    assert services[0]["env"]["VLLM_CPU_OMP_THREADS_BIND"] == "0"
    assert services[0]["command"][-len(services[0]["vllm_args"]):] == services[0]["vllm_args"]
    assert services[3]["config"] == "hosts/local/etc/xpdctl/router.yaml"


def test_stale_files_of_an_earlier_render_are_removed(tmp_path, write_inventory, lab_data):
    write_tree(_files("inventory/lab.yaml"), tmp_path)
    lab_data["pools"]["decode"]["tensor_parallel"] = 8
    lab_data["router"]["hosts"] = ["mi300x-01"]
    removed = write_tree(_files(write_inventory(lab_data)), tmp_path)
    assert sorted(removed) == [
        "hosts/gw-01/etc/systemd/system/xpd-lab-router.service",
        "hosts/gw-01/etc/xpdctl/container-run",
        "hosts/gw-01/etc/xpdctl/router.yaml",
        "hosts/gw-01/etc/xpdctl/xpd-lab-router.env",
    ]


def test_exec_line_quotes_like_systemd_reads():
    argv = ["/bin/x", "--kv-transfer-config", '{"a":"b c"}', "100%", "$HOME", "plain=1,2:3"]
    line = exec_line(argv)
    assert line == '/bin/x --kv-transfer-config "{\\"a\\":\\"b c\\"}" "100%%" "$$HOME" plain=1,2:3'
    # systemd unquotes like a shell (for these characters) and then turns %% and $$ back.
    assert [w.replace("%%", "%").replace("$$", "$") for w in shlex.split(line)] == argv


def _xpdctl(*args):
    return subprocess.run([sys.executable, "-m", "xpdctl", *args], capture_output=True, text=True)


def test_plan_exit_status_follows_diff(tmp_path, write_inventory, lab_data):
    assert _xpdctl("render", "-i", "inventory/lab.yaml", "-o", str(tmp_path)).returncode == 0
    same = _xpdctl("plan", "-i", "inventory/lab.yaml", "--against", str(tmp_path))
    assert (same.returncode, same.stdout) == (0, "")
    lab_data["model"]["max_model_len"] = 8192
    changed = _xpdctl("plan", "-i", str(write_inventory(lab_data)), "--against", str(tmp_path), "-o", "json")
    assert changed.returncode == 1
    report = json.loads(changed.stdout)
    assert report["changed"] is True
    paths = {f["path"]: f for f in report["files"]}
    unit = paths["hosts/h100-01/etc/systemd/system/xpd-lab-prefill-0.service"]
    assert unit["status"] == "changed"
    assert "--max-model-len 16640" in unit["diff"] and "--max-model-len 8192" in unit["diff"]
    assert "manifest.json" in paths


def test_plan_masks_secret_values(tmp_path):
    env = {**os.environ, "HF_TOKEN": "hf_old_secret"}
    subprocess.run([sys.executable, "-m", "xpdctl", "render", "-i", "inventory/lab.yaml", "-o", str(tmp_path)],
                   env=env, check=True, capture_output=True)
    env["HF_TOKEN"] = "hf_new_secret"
    result = subprocess.run([sys.executable, "-m", "xpdctl", "plan", "-i", "inventory/lab.yaml", "--against",
                             str(tmp_path)], env=env, capture_output=True, text=True)
    assert result.returncode == 1
    assert "hf_old_secret" not in result.stdout and "hf_new_secret" not in result.stdout
    assert "-HF_TOKEN=<secret sha256:" in result.stdout and "+HF_TOKEN=<secret sha256:" in result.stdout


def test_files_render_does_not_own_are_left_alone(tmp_path):
    write_tree(_files("inventory/local.yaml"), tmp_path)
    state = tmp_path / "hosts/local/var/log/xpdctl/router.log"
    state.parent.mkdir(parents=True)
    state.write_text("running\n")
    assert write_tree(_files("inventory/local.yaml"), tmp_path) == []
    assert state.read_text() == "running\n"
    assert "hosts/local/var/log/xpdctl/router.log" not in read_tree(tmp_path)


SYSTEM_UNITS = Path("/usr/lib/systemd/system")


@pytest.mark.parametrize("name", ["lab", "lab-single-vendor", "local"])
def test_units_pass_systemd_analyze_verify(tmp_path, name):
    """systemd's own parser reads every rendered unit without a warning.

    `systemd-analyze verify --root` runs without a systemd daemon. The programs the units start
    (docker, the venv's python) and docker.service are stood in for by empty files in the root:
    verify checks that ExecStart programs exist and are executable, not what they do.
    """
    analyze = shutil.which("systemd-analyze")
    if analyze is None or not SYSTEM_UNITS.is_dir():
        # CI installs it (./install.sh --test): there a missing tool fails instead of skipping the check.
        (pytest.fail if os.environ.get("CI") else pytest.skip)(
            "systemd-analyze is not installed (./install.sh --test installs it)")
    write_tree(_files(f"inventory/{name}.yaml"), tmp_path / "render")
    manifest = json.loads((tmp_path / "render" / "manifest.json").read_text())
    for host, entry in manifest["hosts"].items():
        if not entry["services"]:
            continue
        root = tmp_path / f"root-{host}"
        shutil.copytree(tmp_path / "render" / "hosts" / host, root)
        shutil.copytree(SYSTEM_UNITS, root / "usr/lib/systemd/system", symlinks=True)
        (root / "etc/systemd/system/docker.service").write_text("[Service]\nExecStart=/usr/bin/docker\n")
        for service in entry["services"]:
            # ExecReload= of a service that reloads its config runs /bin/kill (as on Ubuntu 22.04).
            # A container service's ExecStop= is docker's.
            docker = ["/usr/bin/docker"] if "/usr/bin/docker" in service["command"] else []
            for path in [service["command"][0], *docker] + (["/bin/kill"] if service.get("reloads_config") else []):
                program = root / path.lstrip("/")
                program.parent.mkdir(parents=True, exist_ok=True)
                program.write_text("#!/bin/sh\n")
                program.chmod(0o755)
        units = [Path(s["unit"]).name for s in entry["services"]]
        result = subprocess.run([analyze, "verify", "--man=no", f"--root={root}", *units],
                                capture_output=True, text=True, timeout=120)
        assert (result.returncode, result.stderr) == (0, ""), f"{host}: {result.stderr}"


def test_engine_hook_follows_the_progress_poll_setting(lab_data, write_inventory):
    """kv.nixl_progress_poll_ms reaches vLLM engines as the start-up hook and its environment; 0 (NIXL's
    own busy polling, the default) renders neither, and the router/KV agent never get it."""
    assert "nixl_progress_poll_ms" not in lab_data["kv"]
    lab_data["kv"]["nixl_progress_poll_ms"] = 100
    plan = build_plan(load_inventory(write_inventory(lab_data)), {})
    engines = [s for s in plan.services() if s.role in ("prefill", "decode")]
    assert {s.env["XPD_NIXL_PROGRESS_POLL_US"] for s in engines} == {"100000"}
    assert {s.env["PYTHONPATH"] for s in engines} == {"/etc/xpdctl/python"}
    # Containers see the hook through a read-only volume of that folder.
    assert all("--volume=/etc/xpdctl/python:/etc/xpdctl/python:ro" in s.command for s in engines)
    # (a KV agent in an engine image has xpdctl's package on PYTHONPATH, tests/test_plan.py; never the hook)
    assert not any(s.env.get("PYTHONPATH") == "/etc/xpdctl/python" for s in plan.services()
                   if s.role not in ("prefill", "decode"))
    files = render_files(plan)
    hook = Path("templates/engine/sitecustomize.py").read_text()
    assert [rel for rel, f in files.items() if f.content == hook] == [
        "hosts/h100-01/etc/xpdctl/python/sitecustomize.py",
        "hosts/mi300x-01/etc/xpdctl/python/sitecustomize.py",
    ]
    del lab_data["kv"]["nixl_progress_poll_ms"]  # the default: NIXL's own
    plan = build_plan(load_inventory(write_inventory(lab_data)), {})
    assert not any(s.env.get("PYTHONPATH") == "/etc/xpdctl/python" or "XPD_NIXL_PROGRESS_POLL_US" in s.env
                   for s in plan.services())
    assert not [rel for rel in render_files(plan) if rel.endswith("sitecustomize.py")]


def test_tracing_endpoint_reaches_the_router_and_every_vllm_engine(lab_data, write_inventory):
    lab_data["observability"] = {"otlp_traces_endpoint": "http://collector:4318/v1/traces"}
    files = _files(write_inventory(lab_data))
    manifest = json.loads(files["manifest.json"].content)
    engines = [s for h in manifest["hosts"].values() for s in h["services"] if s["role"] in ("prefill", "decode")]
    assert len(engines) == 2
    for engine in engines:
        args = engine["vllm_args"]
        assert args[args.index("--otlp-traces-endpoint") + 1] == "http://collector:4318/v1/traces"
        assert engine["env"]["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"] == "http/protobuf"
        assert engine["env"]["OTEL_SERVICE_NAME"] == engine["name"]
    router = files["hosts/gw-01/etc/xpdctl/router.yaml"].content
    assert "otlp_endpoint: http://collector:4318/v1/traces" in router


def test_bytecode_python_writes_beside_the_hook_is_not_part_of_the_render(tmp_path, lab_data, write_inventory):
    """A local engine runs the hook from the rendered tree, and Python caches its bytecode there: the
    next `up` reads the tree back and must neither read nor remove that file."""
    lab_data["kv"]["nixl_progress_poll_ms"] = 100  # the hook is rendered only then
    files = render_files(build_plan(load_inventory(write_inventory(lab_data)), {}))
    tmp_path = tmp_path / "tree"
    write_tree(files, tmp_path)
    cache = tmp_path / "hosts" / "h100-01" / "etc" / "xpdctl" / "python" / "__pycache__" / "sitecustomize.cpython-311.pyc"
    cache.parent.mkdir()
    cache.write_bytes(b"\xa7\r\r\n not text")
    assert read_tree(tmp_path) == files
    write_tree(files, tmp_path)
    assert cache.exists()
