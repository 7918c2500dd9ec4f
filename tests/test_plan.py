"""The desired state derived from inventories: services, commands, env, configs."""

import json

import pytest

from xpdctl.errors import InputError
from xpdctl.inventory import load_inventory
from xpdctl.plan import build_plan, router_twins, ucx_net_devices
from xpdctl.render import render_files


def _plan(path, environ=None):
    return build_plan(load_inventory(path), environ or {})


def _services(plan):
    return {s.name: s for s in plan.services()}


def _arg(args, flag):
    return args[args.index(flag) + 1]


def test_lab_services_per_host_in_start_order():
    plan = _plan("inventory/lab.yaml")
    layout = {name: [(s.name, s.role, s.port) for s in h.services] for name, h in plan.hosts.items()}
    assert layout == {
        "gw-01": [("xpd-lab-router", "router", 8000)],
        "h100-01": [("xpd-lab-prefill-0", "prefill", 8100), ("xpd-lab-kv-agent", "kv-agent", 8788)],
        "mi300x-01": [("xpd-lab-decode-0", "decode", 8200), ("xpd-lab-kv-agent", "kv-agent", 8788)],
    }
    assert plan.hosts["h100-01"].services[1].after == ("xpd-lab-prefill-0.service",)
    assert {s.nice for h in plan.hosts.values() for s in h.services} == {0}  # GPU hosts have cores to spare


def test_engine_env_carries_side_channel_ucx_and_visible_devices():
    services = _services(_plan("inventory/lab.yaml"))
    assert dict(services["xpd-lab-prefill-0"].env) == {
        "CUDA_VISIBLE_DEVICES": "0,1,2,3,4,5,6,7",
        "UCX_NET_DEVICES": "mlx5_0:1",
        "UCX_TLS": "rc,sm,self,cuda_copy,cuda_ipc",  # no tcp: a dead RDMA path fails
        "VLLM_NIXL_SIDE_CHANNEL_HOST": "10.0.0.11",
        "VLLM_NIXL_SIDE_CHANNEL_PORT": "5600",
        "VLLM_HTTP_TIMEOUT_KEEP_ALIVE": "60",  # far beyond the router's 4 s of idle keep-alive
        # vLLM's compile cache on the host, mounted into the container, so a restart does not recompile
        "VLLM_CACHE_ROOT": "/var/cache/xpdctl/vllm/xpd-lab-prefill-0",
    }
    assert services["xpd-lab-decode-0"].env["HIP_VISIBLE_DEVICES"] == "0,1,2,3,4,5,6,7"
    volume = "--volume=/var/cache/xpdctl/vllm/xpd-lab-prefill-0:/var/cache/xpdctl/vllm/xpd-lab-prefill-0"
    assert volume in services["xpd-lab-prefill-0"].command


def test_cross_vendor_vllm_args():
    services = _services(_plan("inventory/lab.yaml"))
    prefill, decode = services["xpd-lab-prefill-0"].vllm_args, services["xpd-lab-decode-0"].vllm_args
    assert json.loads(_arg(prefill, "--kv-transfer-config")) == {
        "kv_connector": "NixlConnector", "kv_role": "kv_producer", "kv_buffer_device": "cpu",
        "kv_load_failure_policy": "fail",
        # 0.15.0 and 0.15.0+rocm644: xpdctl compares the handshake factors (tests/test_kvcompat.py)
        "kv_connector_extra_config": {"enforce_handshake_compat": False},
    }
    assert json.loads(_arg(decode, "--kv-transfer-config"))["kv_role"] == "kv_consumer"
    for args in (prefill, decode):
        assert _arg(args, "--attention-backend") == "TRITON_ATTN"
        assert _arg(args, "--kv-cache-dtype") == "auto"
        assert _arg(args, "--tensor-parallel-size") == "8"
        assert _arg(args, "--model") == "/var/lib/xpdctl/models/openai/gpt-oss-120b"
        assert _arg(args, "--served-model-name") == "openai/gpt-oss-120b"
        assert "--no-enable-prefix-caching" in args
        assert "--no-disable-hybrid-kv-cache-manager" in args


def test_single_vendor_uses_device_buffer_and_no_forced_backend():
    services = _services(_plan("inventory/lab-single-vendor.yaml"))
    args = services["xpd-lab-single-prefill-0"].vllm_args
    assert json.loads(_arg(args, "--kv-transfer-config"))["kv_buffer_device"] == "cuda"
    assert "--attention-backend" not in args


def test_containers_get_vendor_device_flags_rdma_flags_and_the_image_by_digest():
    services = _services(_plan("inventory/lab.yaml"))
    decode = services["xpd-lab-decode-0"].command
    # Detached and followed by the wrapper, so that a dockerd restart leaves the unit running; no --rm,
    # which dockerd < 24.0.8 honours on its restart even with live-restore (moby/moby#46308).
    assert decode[:8] == ("/etc/xpdctl/container-run", "xpd-lab-decode-0", "/usr/bin/docker", "run", "--detach",
                          "--name=xpd-lab-decode-0", "--network=host", "--env-file=/etc/xpdctl/xpd-lab-decode-0.env")
    for flag in ("--device=/dev/kfd", "--device=/dev/dri", "--group-add=video", "--device=/dev/infiniband",
                 "--cap-add=IPC_LOCK", "--ulimit=memlock=-1:-1"):
        assert flag in decode
    image = decode.index("rocm/vllm@sha256:3e1f5a7c9b2d4f6a8c0e2b4d6f8a1c3e5b7d9f0a2c4e6b8d1f3a5c7e9b0d2f4a")
    assert decode[image - 1] == "--entrypoint=python3"
    assert decode[image + 1: image + 3] == ("-m", "vllm.entrypoints.openai.api_server")
    assert decode[image + 3:] == services["xpd-lab-decode-0"].vllm_args
    assert services["xpd-lab-decode-0"].stop_command == ("/usr/bin/docker", "stop", "xpd-lab-decode-0")
    assert "--runtime=nvidia" in services["xpd-lab-prefill-0"].command


def test_no_rdma_flags_without_nics(write_inventory, lab_data):
    del lab_data["hosts"][1]["nics"]
    services = _services(_plan(write_inventory(lab_data)))
    assert "--device=/dev/infiniband" not in services["xpd-lab-decode-0"].command
    assert "UCX_NET_DEVICES" not in services["xpd-lab-decode-0"].env


def test_router_and_kv_agent_run_the_xpdctl_image_in_containers():
    services = _services(_plan("inventory/lab.yaml"))
    router = services["xpd-lab-router"].command
    assert "--volume=/etc/xpdctl:/etc/xpdctl:ro" in router
    assert router[-5:] == ("-m", "xpdctl", "router", "--config", "/etc/xpdctl/router.yaml")


def test_kv_agents_on_container_hosts_run_the_engine_image_with_xpdctl_copied_from_its_image():
    """vLLM engines in containers: the KV agent runs the host's engine image (its NIXL and UCX are the
    engines'), with xpdctl's package copied out of the pinned xpdctl image before each start (a failed
    copy fails the start) and mounted read-only on PYTHONPATH; the copy's image is pulled too."""
    from xpdctl.provision.hosts import container_image

    plan = _plan("inventory/lab.yaml")
    inv = plan.inventory
    for host, vendor in (("h100-01", "nvidia"), ("mi300x-01", "amd")):
        agent = next(s for s in plan.hosts[host].services if s.role == "kv-agent")
        package = "/var/lib/xpdctl/xpd-lab-kv-agent"
        assert container_image(list(agent.command)) == inv.engine.images[vendor] == agent.details["image"]
        assert f"--volume={package}:{package}:ro" in agent.command
        assert agent.command[-5:] == ("-m", "xpdctl", "kv-agent", "--config", "/etc/xpdctl/kv-agent.yaml")
        assert agent.env == {"PYTHONPATH": package}
        (copy,) = agent.prepare_commands
        assert container_image(list(copy)) == inv.engine.xpdctl_image == agent.details["xpdctl_image"]
        assert f"--volume={package}:/out" in copy and "--network=none" in copy
    unit = render_files(plan)["hosts/h100-01/etc/systemd/system/xpd-lab-kv-agent.service"].content
    assert "\nExecStartPre=/usr/bin/docker run --rm --network=none --volume=/var/lib/xpdctl/xpd-lab-kv-agent:/out " in unit
    assert plan.hosts["gw-01"].services[0].details["image"] == inv.engine.xpdctl_image  # the router


def test_simulator_engines_kv_agents_stay_on_the_xpdctl_image(write_inventory, lab_data):
    """Simulator engines load no NIXL: the KV agent's own import is what moves bytes (xpdctl/identity)."""
    lab_data["engine"]["server"] = "sim"
    plan = _plan(write_inventory(lab_data))
    agent = next(s for s in plan.hosts["mi300x-01"].services if s.role == "kv-agent")
    assert agent.details["image"] == plan.inventory.engine.xpdctl_image and not agent.prepare_commands
    assert "PYTHONPATH" not in agent.env


def test_the_copy_of_xpdctl_runs_the_kv_agent_from_pythonpath_alone(tmp_path):
    """What the agent's ExecStartPre does, run here with this interpreter: the copy holds everything the
    agent imports (no data files of the install), and PYTHONPATH finds it before any installed xpdctl."""
    import subprocess
    import sys

    from xpdctl.plan import _copy_xpdctl

    copy = _copy_xpdctl("IMAGE", "/unused")
    script = copy[copy.index("-c") + 1].replace("'/out/xpdctl'", repr(str(tmp_path / "xpdctl")))
    subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path, timeout=60)
    env = {"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}
    found = subprocess.run([sys.executable, "-c", "import xpdctl.kvagent.server, xpdctl.kvagent.worker, xpdctl; "
                            "print(xpdctl.__file__)"], env=env, cwd="/", capture_output=True, text=True, timeout=120)
    assert found.stdout.strip() == str(tmp_path / "xpdctl" / "__init__.py"), found.stderr
    done = subprocess.run([sys.executable, "-m", "xpdctl", "kv-agent", "--help"], env=env, cwd="/",
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "GET /pairs" in done.stdout, done.stderr


def test_native_kv_agents_probe_with_the_engines_interpreter():
    """The agent's probe workers run its own interpreter (sys.executable): natively that is
    engine.python, so the NIXL and UCX that move probe bytes are the engines' (docs/kv-agent.md)."""
    plan = _plan("inventory/local.yaml")
    services = _services(plan)
    agent = services["xpd-local-kv-agent"].command
    assert agent[0] == plan.inventory.engine.python == services["xpd-local-decode-0"].command[0]
    assert agent[1:4] == ("-m", "xpdctl", "kv-agent")


def test_local_native_cpu_engines():
    plan = _plan("inventory/local.yaml")
    services = _services(plan)
    prefill, decode = services["xpd-local-prefill-0"], services["xpd-local-decode-0"]
    assert prefill.command[0].endswith("/.venv/bin/python")
    assert prefill.command[1:3] == ("-m", "vllm.entrypoints.openai.api_server")
    assert (prefill.env["VLLM_CPU_OMP_THREADS_BIND"], decode.env["VLLM_CPU_OMP_THREADS_BIND"]) == ("0", "1")
    assert prefill.env["VLLM_CPU_KVCACHE_SPACE"] == "1"
    assert (prefill.env["VLLM_NIXL_SIDE_CHANNEL_PORT"], decode.env["VLLM_NIXL_SIDE_CHANNEL_PORT"]) == ("5600", "5601")
    assert _arg(prefill.vllm_args, "--dtype") == "bfloat16"
    assert _arg(prefill.vllm_args, "--max-model-len") == "2048"
    assert json.loads(_arg(decode.vllm_args, "--kv-transfer-config"))["kv_buffer_device"] == "cpu"
    assert services["xpd-local-router"].command[1:] == ("-m", "xpdctl", "router", "--config", "/etc/xpdctl/router.yaml")
    assert not prefill.needs_docker and prefill.stop_command is None
    # CPU engines yield to the router and KV agent on the same cores (vendors/cpu.yaml: engine_nice).
    assert (prefill.nice, decode.nice, services["xpd-local-router"].nice) == (10, 10, 0)


def test_cpu_tensor_parallel_binds_one_core_group_per_rank(write_inventory):
    text = open("inventory/local.yaml").read().replace("count: 2", "count: 4").replace(
        "decode: {hosts: [local], tensor_parallel: 1}", "decode: {hosts: [local], tensor_parallel: 2}"
    )
    text = text.replace("python: ../.venv/bin/python", "python: /usr/bin/python3")
    services = _services(_plan(write_inventory(text)))
    assert services["xpd-local-prefill-0"].env["VLLM_CPU_OMP_THREADS_BIND"] == "0"
    assert services["xpd-local-decode-0"].env["VLLM_CPU_OMP_THREADS_BIND"] == "2|3"


def test_sim_server_renders_the_simulator_command(write_inventory):
    text = open("inventory/local.yaml").read().replace("server: vllm ", "server: sim  ")
    text = text.replace("python: ../.venv/bin/python", "python: /usr/bin/python3")
    services = _services(_plan(write_inventory(text)))
    assert services["xpd-local-decode-0"].command == (
        "/usr/bin/python3", "-m", "xpdctl", "sim", "--role", "decode", "--host", "127.0.0.1", "--port", "8200",
        "--model", "tiny-gpt-oss",
    )
    assert services["xpd-local-decode-0"].vllm_args is None
    assert services["xpd-local-decode-0"].env["VLLM_NIXL_SIDE_CHANNEL_PORT"] == "5601"


def test_secrets_come_from_the_environment_into_secret_env_only():
    services = _services(_plan("inventory/lab.yaml", {"HF_TOKEN": "hf_secret", "OTHER": "x"}))
    prefill = services["xpd-lab-prefill-0"]
    assert dict(prefill.secret_env) == {"HF_TOKEN": "hf_secret"}
    assert "HF_TOKEN" not in prefill.env
    assert not any("hf_secret" in word for word in prefill.command)


def test_router_config_lists_backends_with_one_generation_and_the_kv_agents():
    plan = _plan("inventory/lab.yaml")
    config = plan.hosts["gw-01"].router_config
    assert config.model == "openai/gpt-oss-120b"
    assert [(b.url, b.pool, b.name) for b in config.backends] == [
        ("http://10.0.0.11:8100", "prefill", "xpd-lab-prefill-0"),
        ("http://10.0.0.21:8200", "decode", "xpd-lab-decode-0"),
    ]
    assert len({b.generation for b in config.backends}) == 1
    assert config.kv_agents == ["http://10.0.0.11:8788", "http://10.0.0.21:8788"]
    assert (config.listen.host, config.listen.port) == ("0.0.0.0", 8000)


def test_kv_agent_config_lists_the_pairs_of_its_host():
    plan = _plan("inventory/lab.yaml")
    config = plan.hosts["mi300x-01"].kv_agent_config
    assert (config.host, config.address, config.expect_rdma) == ("mi300x-01", "10.0.0.21", True)
    # Its probe moves host memory: RDMA, shared memory, loopback; no tcp to fall back on.
    assert config.ucx_env == {"UCX_NET_DEVICES": "mlx5_0:1", "UCX_TLS": "rc,sm,self"}
    (pair,) = config.pairs
    assert (pair.prefill, pair.decode, pair.side_channel, pair.peer_agent) == (
        "xpd-lab-prefill-0", "xpd-lab-decode-0", "10.0.0.11:5600", "http://10.0.0.11:8788"
    )
    assert plan.hosts["gw-01"].kv_agent_config is None


def test_ucx_net_devices_adds_port_one_unless_given():
    assert ucx_net_devices(["mlx5_0", "mlx5_1:2"]) == "mlx5_0:1,mlx5_1:2"


def test_router_admin_token_from_the_environment_stays_in_the_router_env(monkeypatch):
    plan = _plan("inventory/lab.yaml", {"XPDCTL_ROUTER_ADMIN_TOKEN": "t0ken"})
    router = _services(plan)["xpd-lab-router"]
    assert dict(router.secret_env) == {"XPDCTL_ROUTER_ADMIN_TOKEN": "t0ken"}
    config = plan.hosts["gw-01"].router_config
    assert (config.admin.token, config.admin.token_file, config.admin.token_env) == (
        None, None, "XPDCTL_ROUTER_ADMIN_TOKEN"
    )
    # The router reads it from its environment, which systemd or docker fill from the env file.
    monkeypatch.setenv("XPDCTL_ROUTER_ADMIN_TOKEN", "t0ken")
    assert config.admin.resolved_token() == "t0ken"


def test_no_admin_token_leaves_the_admin_api_off():
    config = _plan("inventory/lab.yaml").hosts["gw-01"].router_config
    assert config.admin.token_env is None and config.admin.resolved_token() is None


def test_declared_rdma_nics_leave_ucx_no_tcp_to_fall_back_on():
    """A dead RDMA path must fail the transfer, not move KV over TCP at a fraction of the speed."""
    services = _services(_plan("inventory/lab.yaml"))
    assert services["xpd-lab-prefill-0"].env["UCX_TLS"] == "rc,sm,self,cuda_copy,cuda_ipc"
    assert services["xpd-lab-decode-0"].env["UCX_TLS"] == "rc,sm,self,rocm_copy,rocm_ipc"
    assert "UCX_TLS" not in _services(_plan("inventory/local.yaml"))["xpd-local-decode-0"].env  # no NICs


def test_kv_load_failure_policy_is_rendered_and_recompute_only_when_asked(write_inventory, lab_data):
    def policies(data):
        plan = build_plan(load_inventory(write_inventory(data)), {})
        return {json.loads(_arg(s.vllm_args, "--kv-transfer-config"))["kv_load_failure_policy"] for s in plan.engines}

    assert policies(lab_data) == {"fail"}
    lab_data["kv"]["load_failure_policy"] = "recompute"
    assert policies(lab_data) == {"recompute"}
    lab_data["pools"]["decode"]["extra_args"] = ["--kv-transfer-config", '{"kv_load_failure_policy": "recompute"}']
    with pytest.raises(InputError) as refused:
        load_inventory(write_inventory(lab_data))
    assert "--kv-transfer-config is set by xpdctl" in refused.value.details[0]


def test_prefix_caching_is_per_pool_and_on_by_default(lab_data, write_inventory):
    """The report's grid inventories keep it off; an inventory that says nothing gets it on."""
    lab = _services(_plan("inventory/lab.yaml"))
    assert "--no-enable-prefix-caching" in lab["xpd-lab-prefill-0"].vllm_args
    del lab_data["pools"]["prefill"]["prefix_caching"]
    services = _services(_plan(write_inventory(lab_data)))
    assert "--enable-prefix-caching" in services["xpd-lab-prefill-0"].vllm_args
    assert "--no-enable-prefix-caching" in services["xpd-lab-decode-0"].vllm_args


def test_a_router_twin_is_each_router_under_its_own_name():
    """The stand-in of a router handoff (deploy/handoff.py): same port, config, secrets and release; every
    name in its command (container, env file) its own, so starting it leaves the router's container alone."""
    environ = {"XPDCTL_ROUTER_ADMIN_TOKEN": "t0ken"}
    loaded = load_inventory("inventory/lab.yaml")
    routers = {s.host: s for s in _services(build_plan(loaded, environ)).values() if s.role == "router"}
    twins = router_twins(loaded, environ, "-handoff")
    assert sorted(t.host for t in twins) == sorted(routers)
    for twin in twins:
        router = routers[twin.host]
        assert twin.name == f"{router.name}-handoff" and twin.env_file == router.env_file.replace(router.name, twin.name)
        assert (twin.port, twin.config, twin.secret_env) == (router.port, router.config, router.secret_env)
        assert any(router.name in word for word in router.command)  # the container runtime names it
        assert twin.command == tuple(word.replace(router.name, twin.name) for word in router.command)
        assert twin.stop_command == tuple(w.replace(router.name, twin.name) for w in router.stop_command)


def test_cpu_engine_containers_share_the_hosts_ipc_namespace(tmp_path):
    """vllm-cpu's engine needs 160 MiB of /dev/shm, docker gives 64 MiB (xpdctl/vendors/cpu.yaml)."""
    import yaml

    local = yaml.safe_load(open("inventory/local.yaml").read())
    local["engine"] = {**local["engine"], "runtime": "container", "images": {"cpu": "x/engine-cpu@sha256:" + "1" * 64},
                       "xpdctl_image": "x/xpdctl@sha256:" + "2" * 64}  # fmt: skip
    path = tmp_path / "containers.yaml"
    path.write_text(yaml.safe_dump(local))
    engines = [s for s in build_plan(load_inventory(path), {}).services() if s.role in ("prefill", "decode")]
    assert engines and all("--ipc=host" in s.command for s in engines)
