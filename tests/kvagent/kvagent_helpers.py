"""Helpers for KV-agent tests: free ports and agent configs on loopback."""

from __future__ import annotations

import socket

import yaml


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pair(prefill: str, decode: str, prefill_host: str, decode_host: str, side_channel: str, peer_agent: str) -> dict:
    return {
        "prefill": prefill,
        "decode": decode,
        "prefill_host": prefill_host,
        "decode_host": decode_host,
        "prefill_url": f"http://127.0.0.1:81{prefill[-1]}0",
        "decode_url": f"http://127.0.0.1:82{decode[-1]}0",
        "side_channel": side_channel,
        "peer_agent": peer_agent,
    }


def agent_config(host: str, port: int, pairs: list[dict], **extra) -> dict:
    # Small buffer and quick retries: the machine is shared and the probe's size is not under test.
    return {
        "host": host,
        "address": "127.0.0.1",
        "listen_host": "127.0.0.1",
        "port": port,
        "probe_size_mib": 8,
        "check_interval_s": 1.0,
        "probe_interval_s": 3600.0,
        "startup_grace_s": 0.0,
        "pairs": pairs,
        **extra,
    }


def write_config(path, config: dict):
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path
