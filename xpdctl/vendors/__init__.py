"""Vendor profiles: everything vendor-specific, as data (one YAML file per vendor in this folder).

Code asks a profile ("which env var names the visible devices?") instead of branching on vendor
names, so a new accelerator is a new file here, not new ``if`` statements. What a vLLM release imports
as NIXL on each vendor changes between releases: that is :mod:`xpdctl.releases`, keyed by release.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict

from xpdctl.errors import XpdError

_DIR = Path(__file__).resolve().parent


class VendorProfile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str
    pci_vendor_id: str | None  # sysfs PCI vendor id of the GPUs, for detection
    device_type: str  # vLLM's device type; kv_buffer_device for a device-memory KV buffer
    visible_devices_env: str
    visible_devices_separator: str
    container_device_flags: tuple[str, ...]
    container_rdma_flags: tuple[str, ...]
    attention_backends: tuple[str, ...]  # supported, in vLLM's priority order (first = default)
    smi: str | None
    default_block_size: int
    fp8_kv_format: str | None  # element format of an "fp8" KV cache; None = unknown
    engine_env: dict[str, str]
    # UCX transports for this vendor's GPU memory, added to UCX_TLS where RDMA NICs are declared.
    ucx_gpu_transports: tuple[str, ...] = ()
    # Scheduling priority of engine processes (systemd Nice=); 0 = the default.
    engine_nice: int = 0

    @property
    def default_attention_backend(self) -> str:
        return self.attention_backends[0]

    def visible_devices(self, indices: list[int]) -> str:
        return self.visible_devices_separator.join(str(i) for i in indices)


@cache
def vendor_profiles() -> dict[str, VendorProfile]:
    """Every shipped profile by name."""
    profiles = {}
    for path in sorted(_DIR.glob("*.yaml")):
        try:
            profile = VendorProfile.model_validate(yaml.safe_load(path.read_text()))
        except Exception as exc:  # a broken shipped file is a bug in xpdctl, not user input
            raise XpdError(f"{path}: invalid vendor profile: {exc}; fix the file or reinstall xpdctl") from exc
        profiles[profile.name] = profile
    return profiles
