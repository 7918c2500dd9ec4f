"""The router's Prometheus metrics, one registry per router."""

BODY = {"model": "m", "prompt": "hello metrics", "max_tokens": 4}


async def test_metrics_count_requests_latencies_and_backends(cluster, http):
    prefill, decode = await cluster.sim("prefill"), await cluster.sim("decode")
    router = await cluster.router([prefill], [decode])
    other = await cluster.router([prefill], [decode])  # a second router in the same process
    for stream in (False, True):
        async with http.post(router.url + "/v1/completions", json={**BODY, "stream": stream}) as resp:
            await resp.read()
    async with http.post(router.url + "/v1/chat/completions", data=b"{") as resp:
        assert resp.status == 400
    async with http.get(router.url + "/metrics") as resp:
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = await resp.text()
    lines = set(text.splitlines())
    assert 'xpd_router_requests_total{route="completions",status="200"} 2.0' in lines
    assert 'xpd_router_requests_total{route="chat",status="400"} 1.0' in lines
    assert "xpd_router_prefill_seconds_count 2.0" in lines
    assert "xpd_router_ttft_seconds_count 2.0" in lines
    assert "xpd_router_e2e_seconds_count 3.0" in lines
    assert f'xpd_router_backend_in_flight{{pool="decode",url="{decode.url}"}} 0.0' in lines
    assert f'xpd_router_backend_state{{pool="prefill",state="healthy",url="{prefill.url}"}} 1.0' in lines
    assert f'xpd_router_backend_up{{pool="decode",url="{decode.url}"}} 1.0' in lines
    assert "xpd_router_queue_waiting 0.0" in lines

    async with http.get(other.url + "/metrics") as resp:
        assert "xpd_router_e2e_seconds_count 0.0" in (await resp.text()).splitlines()
