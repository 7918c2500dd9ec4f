"""The ``kv_transfer_params`` contract of vLLM's NixlConnector, simulated honestly.

A prefill instance that computes a prompt for a remote decode holds its KV blocks as a *lease* and
returns parameters naming its engine id, the block ids, the request id and its side channel. A decode
instance given such parameters does what the real one does with NIXL: it contacts that side channel
and pulls the blocks. The prefill grants the pull only for a live lease of its own engine id, with the
same block ids and a digest of the same prompt, then frees the blocks. So a decode refuses parameters
that did not come from a live prefill instance (invented, replayed, expired, from a restarted prefill,
or for another prompt) without any shared secret. Unpulled leases expire after ``lease_s``, as vLLM's
``VLLM_NIXL_ABORT_REQUEST_TIMEOUT`` frees them.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

PULL_PATH = "/sim/kv/pull"


class KvRefused(Exception):
    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass
class Lease:
    block_ids: list[int]
    prompt_digest: str
    expires_at: float


class LeaseTable:
    def __init__(self, engine_id: str, num_blocks: int, block_size: int, lease_s: float):
        self.engine_id = engine_id
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.lease_s = lease_s
        self._leases: dict[str, Lease] = {}
        self._next_block = 1
        self.used_blocks = 0
        self.expired = 0

    def blocks_for(self, prompt_tokens: int) -> int:
        return max(1, math.ceil(prompt_tokens / self.block_size))

    def grant(self, request_id: str, prompt_tokens: int, prompt_digest: str) -> list[int]:
        self.expire()
        count = self.blocks_for(prompt_tokens)
        ids = [(self._next_block + i - 1) % self.num_blocks + 1 for i in range(count)]
        self._next_block = (self._next_block + count - 1) % self.num_blocks + 1
        self._leases[request_id] = Lease(ids, prompt_digest, time.monotonic() + self.lease_s)
        self.used_blocks += count
        return ids

    def claim(self, engine_id: str, request_id: str, block_ids: list[int], prompt_digest: str) -> None:
        self.expire()
        if engine_id != self.engine_id:
            raise KvRefused(404, f"engine {engine_id!r} is not this prefill instance (it is {self.engine_id!r}; restarted?)")
        lease = self._leases.get(request_id)
        if lease is None:
            raise KvRefused(404, f"no live KV lease for request {request_id!r} (never granted, already pulled, or expired)")
        if lease.block_ids != block_ids:
            raise KvRefused(409, f"block ids {block_ids} do not match the lease of request {request_id!r}")
        if lease.prompt_digest != prompt_digest:
            raise KvRefused(409, f"the KV of request {request_id!r} was computed for a different prompt")
        self._release(request_id)

    def outstanding(self) -> int:
        self.expire()
        return len(self._leases)

    def expire(self) -> None:
        now = time.monotonic()
        for request_id in [r for r, lease in self._leases.items() if lease.expires_at <= now]:
            self._release(request_id)
            self.expired += 1

    def _release(self, request_id: str) -> None:
        lease = self._leases.pop(request_id)
        self.used_blocks -= len(lease.block_ids)


def producer_params(table: LeaseTable, request_id: str, block_ids: list[int], host: str, port: int, prompt_tokens: int) -> dict[str, Any]:
    """What vLLM's prefill (NixlConnector, pull mode) returns in the response's ``kv_transfer_params``."""
    return {
        "do_remote_prefill": True,
        "do_remote_decode": False,
        "remote_block_ids": [block_ids],
        "remote_engine_id": table.engine_id,
        "remote_request_id": request_id,
        "remote_host": host,
        "remote_port": port,
        "tp_size": 1,
        "dcp_size": 1,
        "pp_size": 1,
        "remote_num_tokens": prompt_tokens,
        "remote_blocks_expiry_time": None,
        "transfer_mode": "pull",
    }


_REQUIRED = ("remote_engine_id", "remote_request_id", "remote_block_ids", "remote_host", "remote_port")


async def pull(session: aiohttp.ClientSession, params: dict[str, Any], prompt_digest: str, timeout_s: float) -> None:
    """Pull the KV that ``params`` name from the prefill's side channel; raises KvRefused."""
    missing = [k for k in _REQUIRED if params.get(k) in (None, "", [])]
    if missing:
        raise KvRefused(400, f"kv_transfer_params lacks {', '.join(missing)}: they must come from a prefill instance's response")
    groups = params["remote_block_ids"]
    if not (isinstance(groups, list) and groups and isinstance(groups[0], list)):
        raise KvRefused(400, "kv_transfer_params.remote_block_ids must be a list of block-id lists")
    url = f"http://{params['remote_host']}:{params['remote_port']}{PULL_PATH}"
    claim = {
        "engine_id": params["remote_engine_id"],
        "request_id": params["remote_request_id"],
        "block_ids": groups[0],
        "prompt_digest": prompt_digest,
    }
    try:
        async with session.post(url, json=claim, timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
            if resp.status != 200:
                detail = (await resp.json(content_type=None)).get("error", "refused")
                raise KvRefused(400, f"prefill side channel {params['remote_host']}:{params['remote_port']} refused the KV pull: {detail}")
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        raise KvRefused(503, f"cannot reach the prefill side channel {params['remote_host']}:{params['remote_port']}: {exc!r}") from exc
