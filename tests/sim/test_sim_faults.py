"""Runtime fault injection on the simulator (what the router's failure tests lean on)."""

import asyncio

import aiohttp
import pytest

BODY = {"model": "m", "prompt": "one two three", "max_tokens": 8}


async def _set(http, sim, **faults):
    async with http.post(sim.url + "/sim/faults", json=faults) as resp:
        assert resp.status == 200


async def test_fail_status_for_a_number_of_requests(sims, http):
    sim = await sims()
    await _set(http, sim, fail_status=500, times=2)
    statuses = []
    for _ in range(3):
        async with http.post(sim.url + "/v1/completions", json=BODY) as resp:
            statuses.append(resp.status)
    assert statuses == [500, 500, 200]


async def test_drop_mid_stream_cuts_the_connection_after_n_tokens(sims, http):
    sim = await sims()
    await _set(http, sim, fail_after_tokens=3)
    received = b""
    with pytest.raises(aiohttp.ClientPayloadError):
        async with http.post(sim.url + "/v1/completions", json={**BODY, "stream": True}) as resp:
            assert resp.status == 200
            async for chunk in resp.content.iter_any():
                received += chunk
    assert received.count(b"data: ") == 3 and b"[DONE]" not in received
    async with http.get(sim.url + "/sim/requests") as resp:
        assert (await resp.json())["requests"][-1]["outcome"] == "dropped"


async def test_drop_without_stream_leaves_no_response(sims, http):
    sim = await sims()
    await _set(http, sim, fail_after_tokens=2)
    with pytest.raises(aiohttp.ClientError):
        async with http.post(sim.url + "/v1/completions", json=BODY) as resp:
            await resp.read()


async def test_health_fault_and_clear(sims, http):
    sim = await sims()
    await _set(http, sim, health_status=503)
    async with http.get(sim.url + "/health") as resp:
        assert resp.status == 503
    async with http.delete(sim.url + "/sim/faults") as resp:
        assert resp.status == 200
    async with http.get(sim.url + "/health") as resp:
        assert resp.status == 200


async def test_first_byte_delay_holds_the_response(sims, http):
    sim = await sims()
    await _set(http, sim, first_byte_delay_ms=5000, times=1)
    with pytest.raises(asyncio.TimeoutError):
        async with http.post(sim.url + "/v1/completions", json=BODY, timeout=aiohttp.ClientTimeout(total=0.3)) as resp:
            await resp.read()


async def test_client_disconnect_is_recorded_as_an_abort(sims, http):
    sim = await sims(itl_ms=20)
    async with http.post(sim.url + "/v1/completions", json={**BODY, "max_tokens": 500, "stream": True},
                         headers={"X-Request-Id": "gone"}) as resp:
        await resp.content.readline()
        resp.close()
    for _ in range(200):
        record = [r for r in sim.engine.log if r["request_id"] == "gone"][0]
        if record["outcome"] != "running":
            break
        await asyncio.sleep(0.01)
    assert record["outcome"] == "aborted"
    assert sim.engine.running == 0


async def test_bad_fault_document_is_400(sims, http):
    sim = await sims()
    async with http.post(sim.url + "/sim/faults", json={"fail_status": 200}) as resp:
        assert resp.status == 400
