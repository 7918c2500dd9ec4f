"""vLLM's prefix-cache block hash, computed here the way the engines compute it, so the router can
look a request's blocks up in the index of what each engine announced in its KV events.

vLLM 0.32 (vllm/v1/core/kv_cache_utils.py, vllm/utils/hashing.py), with
``--prefix-caching-hash-algo sha256_cbor`` (what the plan renders):

- a block is ``block_size`` prompt tokens; only full blocks are hashed (kv_cache_utils.py:979-983);
- ``hash(block) = sha256(cbor2.dumps((parent_hash, tuple(token_ids), extra_keys), canonical=True))``
  (kv_cache_utils.py:719-725, hashing.py:44-59), chained: each block's parent is the previous
  block's hash, so a hash names the whole prefix up to its block's end;
- the first block's parent is ``NONE_HASH = sha256_cbor("vllm-none-hash")`` (kv_cache_utils.py:122,
  160-172) unless the engine's environment sets PYTHONHASHSEED (then that string is the seed; the
  plan never sets it);
- ``extra_keys`` is None for a text-only request without LoRA or cache_salt
  (kv_cache_utils.py:625-663); requests carrying those are not looked up (``hashable``).

The default algorithm, ``sha256``, hashes Python's pickle of the same tuple: reproducible only by
another CPython with the same pickle protocol, which is why the plan renders ``sha256_cbor``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import cbor2

NONE_HASH_SEED = "vllm-none-hash"


def sha256_cbor(value: object) -> bytes:
    return hashlib.sha256(cbor2.dumps(value, canonical=True)).digest()


NONE_HASH = sha256_cbor(NONE_HASH_SEED)


def block_hashes(token_ids: Sequence[int], block_size: int, seed_hash: bytes = NONE_HASH) -> list[bytes]:
    """The chained hash of every full block of ``token_ids``."""
    hashes = []
    parent = seed_hash
    for start in range(0, len(token_ids) - block_size + 1, block_size):
        parent = sha256_cbor((parent, tuple(token_ids[start:start + block_size]), None))
        hashes.append(parent)
    return hashes


def event_key(block_hash: bytes | int) -> int:
    """A block hash as vLLM 0.32 publishes it by default: the low 64 bits of the big-endian hash
    (kv_cache_utils.py:96-99, maybe_convert_block_hash; VLLM_KV_EVENTS_USE_INT_BLOCK_HASHES defaults to 1,
    envs.py:2033-2035). Events carrying the whole hash (the variable set to 0) give the same key."""
    return block_hash if isinstance(block_hash, int) else int.from_bytes(block_hash[-8:], "big")


def hashable(body: dict) -> bool:
    """Whether vLLM hashes this request's blocks without extra keys (LoRA names, multimodal inputs and
    cache_salt go into the hash; the router does not model them)."""
    return not body.get("cache_salt") and not body.get("lora_request")
