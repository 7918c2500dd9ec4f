"""A host's status from captured section text (no SSH): the real H200 host's output, and an MI300X
host made of the hand-written AMD fixtures."""

from __future__ import annotations

import pytest
from observe_helpers import sections_text

from xpdctl.observe.hoststate import host_status
from xpdctl.observe.judge import judge
from xpdctl.observe.targets import HostTarget, ServiceTarget
from xpdctl.ssh.sections import new_marker, split_sections
from xpdctl.status_model import HostStatus, KvAgentStatus, KvPairHealth

MI300X_PCI = (
    "0000:0c:00.0 0x1002 0x74a1 0x120000\n0000:22:00.0 0x1002 0x74a1 0x120000\n0000:0d:00.0 0x15b3 0x1021 0x020000\n"
)


@pytest.fixture
def h200_sections(nvidia_text):
    """The real H200 host's captured output, cut into the status script's sections."""
    facts = nvidia_text("host-facts.txt").splitlines()

    def make(xml: str | None = None, **extra: tuple[str, str]):
        marker = new_marker()
        out = sections_text(
            marker,
            {
                "os-release": ("0", "\n".join(line for line in facts if "=" in line and line.split("=")[0].isupper())),
                "uname": ("0", next(line for line in facts if line.startswith("Linux "))),
                "nvidia-module": ("0", "\n".join(facts[:2])),
                "nvidia-smi": ("0", xml if xml is not None else nvidia_text("nvidia-smi-q.xml")),
                "amd-smi-static": ("-", ""),
                "amd-smi-metric": ("-", ""),
                "rocm-smi-product": ("-", ""),
                "ibv-devinfo": ("-", ""),
                "pci": ("0", "\n".join(line for line in facts if line.startswith("0000:"))),
                **extra,
                "end": ("0", ""),
            },
        )
        return split_sections(out, marker)

    return make


def _observe(target: HostTarget, sections) -> HostStatus:
    status, failures = host_status(target, sections)
    status.problems = judge(target, status, failures)
    return status


def test_h200_host_is_healthy(h200_sections):
    target = HostTarget(name="h200", address="10.0.0.5", gpu_pci_vendor="10de", gpu_count=2)
    status = _observe(target, h200_sections())
    assert status.os.pretty_name == "Ubuntu 24.04.3 LTS"
    assert status.accelerators.driver_version == "580.159.04"
    assert [g.uuid for g in status.accelerators.gpus] == [
        "GPU-5ce3095f-fb48-f4b7-c7d6-5ea1fa9f2599",
        "GPU-6b0adec1-f55e-9e76-512e-26bd8c1c4157",
    ]
    assert [d.address for d in status.pci if d.kind == "gpu"] == ["0000:00:06.0", "0000:00:07.0"]
    assert status.problems == []


def test_fewer_gpus_on_the_bus_than_the_inventory_says(h200_sections):
    target = HostTarget(name="h200", address="10.0.0.5", gpu_pci_vendor="10de", gpu_count=8)
    (problem,) = _observe(target, h200_sections()).problems
    assert (problem.severity, problem.what) == ("error", "2 of 8 GPUs on the PCI bus")


def test_a_gpu_the_driver_lost(h200_sections, nvidia_text):
    xml = nvidia_text("nvidia-smi-q.xml")
    second = xml.index('<gpu id="00000000:00:07.0">')
    one_gpu = xml[:second] + xml[xml.index("</gpu>", second) + len("</gpu>") :]
    target = HostTarget(name="h200", address="10.0.0.5", gpu_pci_vendor="10de", gpu_count=2)
    (problem,) = _observe(target, h200_sections(xml=one_gpu)).problems
    assert problem.what == "the driver sees 1 GPUs, the PCI bus 2"


def test_driver_failure_falls_back_to_the_kernel_module_version(h200_sections):
    sections = h200_sections(xml="Failed to initialize NVML: Driver/library version mismatch")
    sections["nvidia-smi"] = type(sections["nvidia-smi"])(18, sections["nvidia-smi"].text)
    status = _observe(HostTarget(name="h200", address="10.0.0.5"), sections)
    assert status.accelerators.driver_version == "580.159.04"
    assert [p.what for p in status.problems] == [
        "nvidia-smi exited 18: Failed to initialize NVML: Driver/library version mismatch"
    ]
    assert "reboot" in status.problems[0].hint and "apt-mark hold" in status.problems[0].hint


def test_mi300x_host_with_an_ecc_error_and_a_missing_nic(amd_text):
    """Hand-written AMD fixtures (see tests/fixtures/amd/README.md); GPU 1 carries 2 uncorrectable errors."""
    marker = new_marker()
    sections = split_sections(
        sections_text(
            marker,
            {
                "amd-smi-static": ("0", amd_text("amd-smi-static.json")),
                "amd-smi-metric": ("0", amd_text("amd-smi-metric.json")),
                "rocm-version": ("0", amd_text("rocm-version.txt")),
                "ibv-devinfo": ("0", "hca_id:\tmlx5_0\n\t\tport:\t1\n\t\t\tstate:\t\t\tPORT_DOWN (1)\n"),
                "pci": ("0", MI300X_PCI),
                "end": ("0", ""),
            },
        ),
        marker,
    )
    target = HostTarget(name="mi", address="10.0.0.6", gpu_pci_vendor="1002", gpu_count=2, nics=["mlx5_0", "mlx5_1:1"])
    status = _observe(target, sections)
    assert status.accelerators.rocm_version == "6.4.1"
    assert [p.what for p in status.problems] == [
        "GPU 1 (0000:22:00.0) has 2 uncorrectable ECC errors",
        "RDMA port mlx5_0 is PORT_DOWN",
        "RDMA device mlx5_1:1 not found",
    ]


def test_rocm_smi_names_gpus_when_amd_smi_is_absent(amd_text):
    marker = new_marker()
    sections = split_sections(
        sections_text(
            marker,
            {
                "amd-smi-static": ("-", ""),
                "amd-smi-metric": ("-", ""),
                "rocm-smi-product": ("0", amd_text("rocm-smi-productname.json")),
                "end": ("0", ""),
            },
        ),
        marker,
    )
    status, failures = host_status(HostTarget(name="old", address="10.0.0.7"), sections)
    assert failures == []
    assert [g.name for g in status.accelerators.gpus] == ["AMD Instinct MI300X OAM"] * 2


def test_units_that_are_not_active(h200_sections):
    target = HostTarget(
        name="h200",
        address="10.0.0.5",
        services=[
            ServiceTarget(name="xpd-lab-prefill-0", role="prefill", unit="xpd-lab-prefill-0.service"),
            ServiceTarget(name="xpd-lab-prefill-1", role="prefill", unit="xpd-lab-prefill-1.service"),
        ],
    )
    status = _observe(target, h200_sections(units=("0", "active\nfailed")))
    assert [(u.unit, u.active) for u in status.units] == [
        ("xpd-lab-prefill-0.service", "active"),
        ("xpd-lab-prefill-1.service", "failed"),
    ]
    assert [p.what for p in status.problems] == ["unit xpd-lab-prefill-1.service is failed"]


def test_cut_short_output_is_a_problem(h200_sections):
    sections = h200_sections()
    del sections["end"]
    status = _observe(HostTarget(name="h200", address="10.0.0.5"), sections)
    assert [p.what for p in status.problems] == ["the status script stopped before its end (output cut short)"]


def test_unit_states_that_do_not_line_up_are_unknown(h200_sections):
    services = [ServiceTarget(name=f"s{i}", role="prefill", unit=f"s{i}.service") for i in range(2)]
    status, _ = host_status(
        HostTarget(name="h", address="10.0.0.5", services=services), h200_sections(units=("0", "active"))
    )
    assert [u.active for u in status.units] == ["unknown", "unknown"]


def test_a_broken_kv_pair_is_the_measuring_hosts_problem_only():
    pair = KvPairHealth(
        prefill_url="http://p:8100", decode_url="http://d:8200", ok=False, reason="side channel refused"
    )
    agents = [
        KvAgentStatus(
            service="a", url="http://x:8788", reachable=True, pairs=[pair.model_copy(update={"measured_by": "d"})]
        )
    ]
    problems = {
        name: [
            p.what
            for p in judge(
                HostTarget(name=name, address="x"),
                HostStatus(name=name, address="x", reachable=True, kv_agents=agents),
                [],
            )
        ]
        for name in ("p", "d")
    }
    assert problems == {"p": [], "d": ["KV pair http://p:8100 -> http://d:8200 broken: side channel refused"]}


def test_fabric_manager_not_done_is_an_error(h200_sections, nvidia_text):
    """The real capture with GPU 0's fabric edited to the state a missing or mismatched fabric manager leaves."""
    xml = nvidia_text("nvidia-smi-q.xml").replace(
        "<state>Completed</state>\n\t\t\t<status>Success</status>",
        "<state>In Progress</state>\n\t\t\t<status>N/A</status>",
        1,
    )
    status = _observe(HostTarget(name="h200", address="10.0.0.5"), h200_sections(xml=xml))
    assert [p.what for p in status.problems] == ["GPU 0 (00000000:00:06.0) NVSwitch fabric is In Progress"]


def test_service_problems_name_the_alert_that_fires_for_them():
    """status and the rendered alert rules speak of one problem by one name (docs/observability.md)."""
    from xpdctl.observability import alerts
    from xpdctl.status_model import EngineStatus, RouterBackend, RouterStatus, UnitState

    status = HostStatus(
        name="d", address="x", reachable=True,
        units=[UnitState(service="xpd-lab-kv-agent", role="kv-agent", unit="xpd-lab-kv-agent.service", active="failed")],
        engines=[EngineStatus(service="xpd-lab-decode-0", role="decode", url="http://x:8200", healthy=False, error="refused")],
        routers=[RouterStatus(service="xpd-lab-router", url="http://x:8000", reachable=True, healthy=False, error="503",
                              backends=[RouterBackend(url="http://x:8200", pool="decode", state="unhealthy", healthy=False)])],
    )
    found = [(p.alert, p.metric) for p in judge(HostTarget(name="d", address="x"), status, [])]
    assert found == [
        (alerts.KV_AGENT_DOWN, 'up{job="xpd-kv-agents"}'),
        (alerts.ENGINE_DOWN, 'up{job="xpd-engines"}'),
        (alerts.NO_USABLE_PAIR, "xpd_router_usable_pairs"),
        (alerts.BACKEND_UNHEALTHY, 'xpd_router_backend_state{state="unhealthy"}'),
    ]
