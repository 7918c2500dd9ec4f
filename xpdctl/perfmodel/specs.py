"""Accelerator and model shapes the performance model computes with.

Devices: the ``perf`` figures of the GPU catalog (playbooks/vars/gpu_catalog.yml, :mod:`xpdctl.gpu_catalog`);
models: ``models.yaml`` beside this file. Adding a device or a model is adding an entry there; no code
names a vendor or a device.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field

from xpdctl.errors import InputError
from xpdctl.gpu_catalog import catalog_path, find_gpu, gpu_catalog, match_key

_DIR = Path(__file__).resolve().parent


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HardwareProfile(_Frozen):
    name: str
    vendor: str
    aliases: tuple[str, ...] = ()
    hbm_gb: float = Field(gt=0)
    hbm_tb_s: float = Field(gt=0)
    bf16_tflops: float = Field(gt=0)
    fp8_tflops: float = Field(gt=0)
    onchip_kb_per_unit: float = Field(gt=0)
    intra_node_gb_s: float = Field(gt=0)
    gpudirect_rdma: bool = False


class ModelSpec(_Frozen):
    name: str
    aliases: tuple[str, ...] = ()
    layers: int = Field(ge=1)
    full_attention_layers: int = Field(ge=0)
    sliding_window: int | None = Field(None, ge=1)
    q_heads: int = Field(ge=1)
    kv_heads: int = Field(ge=1)
    head_dim: int = Field(ge=1)
    hidden: int = Field(ge=1)
    experts: int = Field(1, ge=1)
    experts_per_token: int = Field(1, ge=1)
    dense_params: float = Field(ge=0)
    dense_bytes_per_param: float = Field(gt=0)
    expert_params: float = Field(0.0, ge=0)
    expert_bytes_per_param: float = Field(2.0, gt=0)
    kv_bytes_per_value: float = Field(2.0, gt=0)

    @property
    def sliding_layers(self) -> int:
        return self.layers - self.full_attention_layers

    @property
    def active_params(self) -> float:
        return self.dense_params + self.expert_params * self.experts_per_token / self.experts

    @property
    def weight_bytes(self) -> float:
        return self.dense_params * self.dense_bytes_per_param + self.expert_params * self.expert_bytes_per_param

    @property
    def kv_bytes_per_token_layer(self) -> float:
        """K and V of one token in one layer (GPT-OSS in bf16: 2 x 8 x 64 x 2 B = 2 KiB)."""
        return 2 * self.kv_heads * self.head_dim * self.kv_bytes_per_value

    def attended_tokens(self, context: float) -> float:
        """Tokens attended to, summed over layers, by one query token at ``context`` tokens of context."""
        window = self.sliding_window or context
        return self.full_attention_layers * context + self.sliding_layers * min(context, window)

    def kv_bytes(self, tokens: float, hybrid: bool = True) -> float:
        """KV bytes a sequence of ``tokens`` holds (and a prefill hands to decode).

        With vLLM's hybrid KV cache manager, sliding-window layers keep only the window; without it
        every layer keeps every token (REFERENCE section 7: 8K prompt ~307 MB vs ~twice that).
        """
        if hybrid:
            return self.attended_tokens(tokens) * self.kv_bytes_per_token_layer
        return self.layers * tokens * self.kv_bytes_per_token_layer

    def weight_bytes_touched(self, tokens: float) -> float:
        """Weight bytes one forward step over ``tokens`` tokens must read.

        Dense weights are read once per step; each expert is read when at least one token routes to
        it. With uniform routing an expert escapes ``tokens`` tokens with probability
        (1 - k/E)^tokens, so one token reads k experts per layer and a few hundred tokens read them all.
        """
        miss = (1.0 - self.experts_per_token / self.experts) ** max(tokens, 1.0)
        return self.dense_params * self.dense_bytes_per_param + self.expert_params * self.expert_bytes_per_param * (1.0 - miss)


def _load(filename: str) -> dict:
    return yaml.safe_load((_DIR / filename).read_text())


@cache
def hardware_profiles() -> dict[str, HardwareProfile]:
    """The catalog's models that have performance figures."""
    return {name: HardwareProfile(name=name, vendor=entry["vendor"], aliases=tuple(entry.get("aliases", ())), **entry["perf"])
            for name, entry in gpu_catalog().items() if entry.get("perf")}


@cache
def model_specs() -> dict[str, ModelSpec]:
    return {name: ModelSpec(name=name, **body) for name, body in _load("models.yaml").items()}


def find_hardware(gpu_model: str) -> HardwareProfile | None:
    """The profile whose name or alias matches ``gpu_model`` (e.g. ``"NVIDIA H100 80GB HBM3"``)."""
    return hardware_profiles().get(find_gpu(gpu_model) or "")


def hardware(gpu_model: str) -> HardwareProfile:
    profile = find_hardware(gpu_model)
    if profile is None:
        known = ", ".join(sorted(hardware_profiles()))
        raise InputError(
            f"no performance profile for GPU model {gpu_model!r}; use one of {known} "
            f"(or add its perf figures to {catalog_path()})"
        )
    return profile


def model_spec(name: str) -> ModelSpec:
    wanted = match_key(name)
    candidates = {wanted, match_key(name.rsplit("/", 1)[-1])}
    for spec in model_specs().values():
        if candidates & {match_key(spec.name), *map(match_key, spec.aliases)}:
            return spec
    known = ", ".join(sorted(model_specs()))
    raise InputError(
        f"no performance model for model {name!r}; pass --model-spec with one of {known} "
        f"(or add the model's shape to {_DIR / 'models.yaml'})"
    )
