"""Request migration on real vLLM engines: the session's decode engine and its aggregated engine serve
as two decodes behind a router of this test; the host of the one streaming an answer is cut off
mid-stream (every TCP connection to it reset, new ones refused, as when its host or network fails:
the engine itself keeps running, so the session's other tests keep their cluster). The client's answer
must be complete and equal to an uninterrupted greedy run."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from vllm_client import call
from xpdctl.router.config import RouterConfig
from xpdctl.router.server import start as start_router

pytestmark = pytest.mark.vllm

MAX_TOKENS = 40
CUT_AFTER_EVENTS = 6


class HostCut:
    """A TCP relay to an engine; ``cut()`` resets every connection through it and refuses new ones. Armed,
    the first relay whose answers carry ``CUT_AFTER_EVENTS`` SSE events cuts itself there (and disarms the
    others): a tiny model streams faster than a client could react."""

    def __init__(self, target: str, armed: dict):
        host, port = target.removeprefix("http://").rsplit(":", 1)
        self.target = (host, int(port))
        self.armed = armed
        self.down = False
        self.events = 0  # SSE data events that went through it
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _serve(self, client_r, client_w):
        if self.down:
            client_w.transport.abort()
            return
        engine_r, engine_w = await asyncio.open_connection(*self.target)
        self.writers += [client_w, engine_w]
        await asyncio.gather(self._pipe(client_r, engine_w, False), self._pipe(engine_r, client_w, True),
                             return_exceptions=True)

    async def _pipe(self, reader, writer, answers: bool):
        while data := await reader.read(65536):
            if answers and self.armed["on"] and self.events + data.count(b"data:") >= CUT_AFTER_EVENTS:
                self.armed["on"] = False
                at = -1
                for _ in range(CUT_AFTER_EVENTS - self.events):  # up to the event that would be the last one
                    at = data.find(b"data:", at + 1)
                writer.write(data[:at])
                await writer.drain()
                self.cut()
                return
            if answers:
                self.events += data.count(b"data:")
            writer.write(data)
            await writer.drain()
        writer.close()

    def cut(self) -> None:
        self.down = True
        for writer in self.writers:
            writer.transport.abort()

    async def stop(self) -> None:
        self.cut()
        self.server.close()
        await self.server.wait_closed()


@pytest.mark.parametrize("chat", [False, True], ids=["completions", "chat"])
async def test_a_decode_host_lost_mid_stream_is_migrated_with_equal_greedy_output(local_cluster, aggregated_url, prompt_of, chat):
    decode_url = next(s["url"] for s in local_cluster.status()["services"] if s["role"] == "decode")
    prompt = prompt_of(40)
    expected = call(aggregated_url, local_cluster.model, prompt, chat=chat, stream=False, max_tokens=MAX_TOKENS)
    assert expected.status == 200 and expected.text, expected.body
    armed = {"on": False}
    hosts = [HostCut(decode_url, armed), HostCut(aggregated_url, armed)]
    urls = [await h.start() for h in hosts]
    router = await start_router(RouterConfig.model_validate({
        "model": local_cluster.model, "backends": [{"url": u, "pool": "decode"} for u in urls],
        "decode_only_on_prefill_failure": True, "health": {"interval_s": 0.5, "timeout_s": 5}}), port=0)
    try:
        for _ in range(100):
            if all(b.health == "healthy" for b in router.router.registry):
                break
            await asyncio.sleep(0.1)
        body = {"model": local_cluster.model, "max_tokens": MAX_TOKENS, "temperature": 0, "stream": True,
                "stream_options": {"include_usage": True}}
        body.update({"messages": [{"role": "user", "content": prompt}]} if chat else {"prompt": prompt})
        async with aiohttp.ClientSession() as http:
            armed["on"] = True
            async with http.post(router.url + ("/v1/chat/completions" if chat else "/v1/completions"), json=body) as resp:
                assert resp.status == 200
                got = await resp.read()
        assert sum(h.down for h in hosts) == 1  # one engine's host was lost mid-stream
        events = [json.loads(e[5:]) for e in got.split(b"\n\n") if e.startswith(b"data: {")]
        text = "".join((c.get("delta", {}).get("content") or "") if chat else c["text"] for e in events for c in e["choices"])
        assert "error" not in got.decode(), got[-600:]
        assert text == expected.text
        assert events[-1]["usage"]["completion_tokens"] == expected.body["usage"]["completion_tokens"]
        assert events[-1]["usage"]["prompt_tokens"] == expected.body["usage"]["prompt_tokens"]
        assert got.endswith(b"data: [DONE]\n\n")
        assert router.router.metrics.registry.get_sample_value("xpd_router_migrations_total", {"kind": "stream"}) == 1
    finally:
        await router.stop()
        for h in hosts:
            await h.stop()
