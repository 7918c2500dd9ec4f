"""Active and passive health: thresholds, exclusion, re-admission."""

from xpdctl.router.config import Backend as BackendSpec


async def _faults(http, sim, **faults):
    async with http.post(sim.url + "/sim/faults", json=faults) as resp:
        assert resp.status == 200


BODY = {"model": "m", "prompt": "hello", "max_tokens": 2}


async def test_failing_health_checks_take_a_backend_out_and_successes_bring_it_back(cluster, http, wait_until):
    prefill = await cluster.sim("prefill")
    sick, well = await cluster.sim("decode"), await cluster.sim("decode")
    policy = {"interval_s": 0.05, "unhealthy_threshold": 3, "healthy_threshold": 2}
    router = await cluster.router([prefill], [sick, well], health=policy)
    backend = router.router.registry.get(sick.url)

    await _faults(http, sick, health_status=503)
    await wait_until(lambda: backend.health == "unhealthy")
    assert backend.fails >= 3
    for _ in range(4):
        async with http.post(router.url + "/v1/completions", json=BODY) as resp:
            assert resp.status == 200
    assert not sick.engine.log and len(well.engine.log) == 4

    async with http.delete(sick.url + "/sim/faults") as resp:
        assert resp.status == 200
    await wait_until(lambda: backend.health == "healthy")
    assert backend.successes >= 2
    assert router.router.metrics.registry.get_sample_value(
        "xpd_router_backend_up", {"url": sick.url, "pool": "decode"}) == 1


async def test_request_failures_mark_a_backend_unhealthy_passively(cluster, http, wait_until):
    prefill, decode = await cluster.sim("prefill"), await cluster.sim("decode")
    # Active checks far apart: only the failed requests can take the decode out.
    router = await cluster.router([prefill], [decode], health={"interval_s": 60, "unhealthy_threshold": 2})
    await _faults(http, decode, fail_status=500)
    statuses = []
    for _ in range(3):
        async with http.post(router.url + "/v1/completions", json=BODY) as resp:
            statuses.append(resp.status)
    assert statuses == [502, 502, 503]  # the third finds no decode left to pair with
    assert router.router.registry.get(decode.url).health == "unhealthy"
    assert len(decode.engine.log) == 2


async def test_a_backend_down_at_start_is_admitted_when_it_comes_up(cluster, http, wait_until):
    prefill = await cluster.sim("prefill")
    late = await cluster.sim("decode", faults={"health_status": 503})
    router = await cluster.router([prefill], [late], wait=False, health={"interval_s": 0.05})
    backend = router.router.registry.get(late.url)
    await wait_until(lambda: backend.fails >= 1)
    assert backend.health in ("unknown", "unhealthy")
    async with http.post(router.url + "/v1/completions", json=BODY) as resp:
        assert resp.status == 503
    async with http.delete(late.url + "/sim/faults") as resp:
        assert resp.status == 200
    await wait_until(lambda: backend.health == "healthy")
    async with http.post(router.url + "/v1/completions", json=BODY) as resp:
        assert resp.status == 200


async def test_timeouts_never_take_out_the_last_usable_backend_of_a_pool(cluster, http, wait_until):
    """A decode whose /health answers too late (CPU starved) stays in rotation while it is the only one;
    once a second decode serves, the same timeouts take it out."""
    prefill, slow = await cluster.sim("prefill"), await cluster.sim("decode")
    policy = {"interval_s": 0.05, "timeout_s": 0.05, "unhealthy_threshold": 2, "healthy_threshold": 1}
    router = await cluster.router([prefill], [slow], health=policy)
    backend = router.router.registry.get(slow.url)
    await _faults(http, slow, health_delay_ms=500)
    await wait_until(lambda: backend.fails >= 4)
    assert backend.health == "healthy"
    async with http.post(router.url + "/v1/completions", json=BODY) as resp:
        assert resp.status == 200

    other = await cluster.sim("decode")
    router.router.registry.add(BackendSpec(url=other.url, pool="decode"))
    await wait_until(lambda: backend.health == "unhealthy")
    assert router.router.registry.get(other.url).health == "healthy"


async def test_a_refusing_last_backend_is_still_taken_out(cluster, http, wait_until):
    prefill, decode = await cluster.sim("prefill"), await cluster.sim("decode")
    router = await cluster.router([prefill], [decode], health={"interval_s": 0.05, "unhealthy_threshold": 2})
    await _faults(http, decode, health_status=503)
    await wait_until(lambda: router.router.registry.get(decode.url).health == "unhealthy")
