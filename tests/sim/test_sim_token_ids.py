"""What request migration needs from the simulator: vLLM's return_token_ids fields, a prompt of token ids
that continues a generation exactly, and a crash that cuts every answer under way."""

import json

import aiohttp
import pytest

PROMPT = "The quick brown fox jumps over the lazy dog"
CHAT = [{"role": "user", "content": "hello there"}]


async def _answer(http, sim, chat: bool, stream: bool, **extra) -> tuple[list[int], list[int], str]:
    """(prompt ids, generated ids, text) of one request asking for token ids."""
    body = {"model": "m", "max_tokens": 8, "stream": stream, "return_token_ids": True, **extra}
    if "prompt" not in extra:
        body.update({"messages": CHAT} if chat else {"prompt": PROMPT})
    path = "/v1/chat/completions" if chat and "prompt" not in extra else "/v1/completions"
    async with http.post(sim.url + path, json=body) as resp:
        assert resp.status == 200
        if not stream:
            data = await resp.json()
            choice = data["choices"][0]
            prompt = data["prompt_token_ids"] if "messages" in body else choice["prompt_token_ids"]
            return prompt, choice["token_ids"], choice["message"]["content"] if "messages" in body else choice["text"]
        prompt, ids, text = None, [], ""
        for line in (await resp.read()).split(b"\n\n"):
            if not line or line == b"data: [DONE]":
                continue
            event = json.loads(line.removeprefix(b"data: "))
            choice = event["choices"][0]
            # vLLM: a chat's prompt ids at the top of its first chunk, a completion's in its first choice
            prompt = prompt or event.get("prompt_token_ids") or choice.get("prompt_token_ids")
            ids += choice.get("token_ids") or []
            text += (choice["delta"].get("content") or "") if "messages" in body else choice["text"]
        return prompt, ids, text


@pytest.mark.parametrize("chat", [False, True], ids=["completions", "chat"])
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_prompt_plus_generated_ids_continues_the_same_text(sims, http, chat, stream):
    sim = await sims()
    prompt, ids, text = await _answer(http, sim, chat, stream)
    assert len(ids) == 8 and prompt
    _, rest, rest_text = await _answer(http, sim, chat, stream, prompt=prompt + ids[:3], max_tokens=5)
    assert rest == ids[3:]
    assert text.endswith(rest_text) and len(rest_text) < len(text)


async def test_no_token_ids_unless_asked(sims, http):
    sim = await sims()
    async with http.post(sim.url + "/v1/completions", json={"model": "m", "prompt": PROMPT, "stream": True}) as resp:
        assert b"token_ids" not in await resp.read()


async def test_crash_cuts_streams_under_way_and_later_connections(sims, http):
    sim = await sims(itl_ms=20)
    body = {"model": "m", "prompt": PROMPT, "max_tokens": 200, "stream": True}
    async with http.post(sim.url + "/v1/completions", json=body) as resp:
        await resp.content.readany()
        async with http.post(sim.url + "/sim/crash") as crash:
            assert (await crash.json())["cut"] == 1
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()
    for path in ("/health", "/v1/completions"):
        with pytest.raises(aiohttp.ServerDisconnectedError):
            async with http.post(sim.url + path, json=body) if path != "/health" else http.get(sim.url + path):
                pass
    assert not sim.engine.jobs  # the cut stream ended; the later request never ran, only its cut is logged
    assert [r["outcome"] for r in sim.engine.log][1:] == ["cut"]
