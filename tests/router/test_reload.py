"""Reloading the router's config file: every field reaches the running router, nothing in flight is dropped.

In-process routers reload through ``reload_file`` (what SIGHUP runs); one test runs `xpdctl router --config`
as a process and sends it real SIGHUPs. Engines are simulators (`xpdctl sim`).
"""

import asyncio
import hashlib
import logging
import signal
import socket
import sys

import aiohttp
import pytest
import yaml

from xpdctl.router.config import RouterConfig
from xpdctl.router.reload import reload_file
from xpdctl.router.server import start as start_router

TOKEN = "first-token"
BODY = {"model": "m", "prompt": "hello", "max_tokens": 3}
LONG = {**BODY, "max_tokens": 60, "stream": True}


def document(prefills, decodes, **extra) -> dict:
    """The config cluster.router builds, as a file would hold it."""
    backends = [{"url": s.url, "pool": "prefill"} for s in prefills] + [{"url": s.url, "pool": "decode"} for s in decodes]
    return {"model": "m", "backends": backends, "health": {"interval_s": 0.05, "timeout_s": 5.0},
            "load_scrape_interval_s": 0.05, **extra}


async def start(cluster, doc):
    return await cluster.router(**doc)


async def reload_with(router, path, doc) -> bool:
    path.write_text(yaml.safe_dump(doc))
    return await reload_file(router, path)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _metric(http, url: str, line_start: str) -> str | None:
    async with http.get(url + "/metrics") as resp:
        text = await resp.text()
    return next((line for line in text.splitlines() if line.startswith(line_start)), None)


async def test_reload_swaps_a_decode_while_a_stream_is_in_flight_on_it(cluster, http, tmp_path, wait_until, caplog):
    caplog.set_level(logging.INFO, logger="xpdctl.router.reload")
    prefill, old, new = await cluster.sim("prefill"), await cluster.sim("decode", itl_ms=20), await cluster.sim("decode")
    router = await start(cluster, document([prefill], [old]))
    retired = router.router.registry.get(old.url)
    stream = await http.post(router.url + "/v1/completions", json=LONG)
    await stream.content.readline()  # the decode leg is under way on `old`

    path = tmp_path / "router.yaml"
    assert await reload_with(router, path, document([prefill], [new]))
    # Admitted by its first health check before the reload returned: no gap without a decode.
    assert router.router.registry.get(new.url).health == "healthy"
    assert router.router.registry.get(old.url) is None and retired.removed
    assert f"reloaded {path}: +1 backend, -1 backend" in caplog.text

    for _ in range(3):
        async with http.post(router.url + "/v1/completions", json=BODY) as resp:
            assert resp.status == 200
    assert len(new.engine.log) == 3 and len(old.engine.log) == 1
    assert (await stream.read()).endswith(b"data: [DONE]\n\n")  # the stream on the removed decode finished whole
    stream.release()
    await wait_until(lambda: retired.session.closed)  # its connections close once it is idle


async def test_a_new_backend_that_fails_its_first_checks_is_added_but_not_used(cluster, http, tmp_path, wait_until, caplog):
    prefill, decode = await cluster.sim("prefill"), await cluster.sim("decode")
    sick = await cluster.sim("decode", faults={"health_status": 503})
    router = await start(cluster, document([prefill], [decode]))
    assert await reload_with(router, tmp_path / "router.yaml", document([prefill], [decode, sick]))
    assert f"new backend {sick.url} failed its first 3 health checks" in caplog.text
    added = router.router.registry.get(sick.url)
    assert added is not None and not added.usable
    for _ in range(3):
        async with http.post(router.url + "/v1/completions", json=BODY) as resp:
            assert resp.status == 200
    assert not sick.engine.log
    async with http.delete(sick.url + "/sim/faults") as resp:
        assert resp.status == 200
    await wait_until(lambda: added.usable)


async def test_a_kept_backend_keeps_its_drain_flag_and_health(cluster, http, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="xpdctl.router.reload")
    prefill, drained, spare = await cluster.sim("prefill"), await cluster.sim("decode"), await cluster.sim("decode")
    doc = document([prefill], [drained], admin={"token": TOKEN})
    router = await start(cluster, doc)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with http.post(router.url + "/admin/backends/drain", json={"url": drained.url}, headers=auth) as resp:
        assert resp.status == 200
    kept = router.router.registry.get(drained.url)

    assert await reload_with(router, tmp_path / "router.yaml",
                             {**document([prefill], [drained, spare]), "admin": {"token": TOKEN}, "prefill_retries": 3, "model": "m2"})
    assert router.router.registry.get(drained.url) is kept
    assert kept.draining and kept.health == "healthy"
    async with http.get(router.url + "/admin/backends", headers=auth) as resp:
        states = {b["url"]: b["state"] for b in (await resp.json())["backends"]}
    assert states == {prefill.url: "healthy", drained.url: "draining", spare.url: "healthy"}
    async with http.post(router.url + "/v1/completions", json=BODY) as resp:
        assert resp.status == 200
    assert not drained.engine.log and len(spare.engine.log) == 1
    assert "+1 backend, model, prefill_retries" in caplog.text and router.router.config.prefill_retries == 3
    async with http.get(router.url + "/v1/models") as resp:
        assert (await resp.json())["data"][0]["id"] == "m2"


async def test_a_kept_url_with_another_generation_is_replaced(cluster, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="xpdctl.router.reload")
    prefill, decode = await cluster.sim("prefill"), await cluster.sim("decode")
    router = await start(cluster, document([prefill], [decode]))
    before = router.router.registry.get(decode.url)
    doc = document([prefill], [decode])
    doc["backends"] = [{**b, "generation": "g2"} for b in doc["backends"]]
    assert await reload_with(router, tmp_path / "router.yaml", doc)
    after = router.router.registry.get(decode.url)
    assert after is not before and before.removed and after.generation == "g2" and after.health == "healthy"
    assert "2 backends replaced" in caplog.text


@pytest.mark.parametrize(("text", "words"), [
    ("model: m\nbackends: [{url: 'http://127.0.0.1:1', pool: sideways}]\n", "invalid router config"),
    ("model: [unclosed\n", "not valid YAML"),
    (None, "cannot read router config"),
    ("model: m\nadmin: {token_file: /nonexistent/token}\n", "admin.token_file /nonexistent/token: cannot read"),
])
async def test_a_bad_file_keeps_the_old_config_and_the_router_serves(cluster, http, tmp_path, caplog, text, words):
    prefill, decode = await cluster.sim("prefill"), await cluster.sim("decode")
    router = await start(cluster, document([prefill], [decode]))
    old = router.router.config
    path = tmp_path / "router.yaml"
    if text is not None:
        path.write_text(text)
    assert not await reload_file(router, path)
    (line,) = [r for r in caplog.records if r.name == "xpdctl.router.reload"]
    assert line.levelname == "ERROR" and str(path) in line.message and words in line.message
    assert router.router.config is old and len(list(router.router.registry)) == 2
    async with http.post(router.url + "/v1/completions", json=BODY) as resp:
        assert resp.status == 200
    assert await _metric(http, router.url, 'xpd_router_config_reloads_total{result="error"}') == \
        'xpd_router_config_reloads_total{result="error"} 1.0'


async def test_listen_port_change_serves_on_the_new_port_and_finishes_streams_on_the_old(cluster, http, tmp_path):
    prefill, decode = await cluster.sim("prefill"), await cluster.sim("decode", itl_ms=20)
    first, second = _free_port(), _free_port()
    doc = document([prefill], [decode])
    router = await start_router(RouterConfig.model_validate({**doc, "listen": {"host": "127.0.0.1", "port": first}}))
    try:
        assert router.port == first
        for _ in range(500):
            if all(b.health == "healthy" for b in router.router.registry):
                break
            await asyncio.sleep(0.01)
        stream = await http.post(f"http://127.0.0.1:{first}/v1/completions", json=LONG)
        await stream.content.readline()

        assert await reload_with(router, tmp_path / "router.yaml", {**doc, "listen": {"host": "127.0.0.1", "port": second}})
        assert router.port == second and router.url == f"http://127.0.0.1:{second}"
        async with http.post(f"http://127.0.0.1:{second}/v1/completions", json=BODY) as resp:
            assert resp.status == 200
        async with aiohttp.ClientSession() as fresh:  # a new connection: the old address no longer listens
            with pytest.raises(aiohttp.ClientConnectorError):
                await fresh.get(f"http://127.0.0.1:{first}/health")
        assert (await stream.read()).endswith(b"data: [DONE]\n\n")
        stream.release()
    finally:
        await router.stop()


async def test_a_listen_address_in_use_fails_the_reload_and_changes_nothing(cluster, http, tmp_path, caplog, wait_until):
    prefill, decode = await cluster.sim("prefill"), await cluster.sim("decode")
    listen = {"host": "127.0.0.1", "port": _free_port()}
    router = await start_router(RouterConfig.model_validate({**document([prefill], [decode]), "listen": listen}))
    try:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen(1)
            port = taken.getsockname()[1]
            assert not await reload_with(router, tmp_path / "router.yaml",
                                         {**document([prefill], []), "listen": {"host": "127.0.0.1", "port": port}})
        assert f"cannot listen on 127.0.0.1:{port}" in caplog.text
        assert router.router.registry.get(decode.url) is not None  # the rest of the file was not applied either
        assert router.port == listen["port"]
        await wait_until(lambda: all(b.health == "healthy" for b in router.router.registry))
        async with http.post(router.url + "/v1/completions", json=BODY) as resp:  # still where it was
            assert resp.status == 200
    finally:
        await router.stop()


async def test_queue_limits_change_at_reload(cluster, http, tmp_path, wait_until):
    prefill, decode = await cluster.sim("prefill"), await cluster.sim("decode", itl_ms=20)
    doc = document([prefill], [decode])
    router = await start(cluster, doc)
    path = tmp_path / "router.yaml"
    assert await reload_with(router, path, {**doc, "queue": {"max_in_flight": 1, "max_waiting": 0}})

    stream = await http.post(router.url + "/v1/completions", json=LONG)
    await stream.content.readline()  # holds the only slot
    async with http.post(router.url + "/v1/completions", json=BODY) as resp:
        assert resp.status == 429

    assert await reload_with(router, path, {**doc, "queue": {"max_in_flight": 1, "max_waiting": 4}})

    async def post() -> int:
        async with http.post(router.url + "/v1/completions", json=BODY) as resp:
            return resp.status

    waiting = asyncio.create_task(post())
    admission = router.router.admission
    await wait_until(lambda: admission.waiting == 1)
    # A raised limit admits the waiter at once, while the stream still holds its slot.
    assert await reload_with(router, path, {**doc, "queue": {"max_in_flight": 2, "max_waiting": 4}})
    assert (admission.active, admission.waiting) == (2, 0)
    assert await waiting == 200
    assert (await stream.read()).endswith(b"data: [DONE]\n\n")
    stream.release()
    await wait_until(lambda: admission.active == 0)


async def test_admin_token_changes_on_and_off(cluster, http, tmp_path):
    prefill, decode = await cluster.sim("prefill"), await cluster.sim("decode")
    doc = document([prefill], [decode])
    router = await start(cluster, {**doc, "admin": {"token": TOKEN}})
    path = tmp_path / "router.yaml"

    async def status(token: str) -> tuple[int, dict]:
        async with http.get(router.url + "/admin/backends", headers={"Authorization": f"Bearer {token}"}) as resp:
            return resp.status, await resp.json()

    assert (await status(TOKEN))[0] == 200
    assert await reload_with(router, path, {**doc, "admin": {"token": "second-token"}})
    assert (await status(TOKEN))[0] == 401 and (await status("second-token"))[0] == 200
    assert await reload_with(router, path, doc)
    code, body = await status("second-token")
    assert code == 404 and "admin API is off" in body["error"]
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    assert await reload_with(router, path, {**doc, "admin": {"token_file": str(token_file)}})
    assert (await status(TOKEN))[0] == 200


async def test_a_new_health_policy_takes_effect(cluster, http, tmp_path, wait_until):
    prefill, decode = await cluster.sim("prefill"), await cluster.sim("decode")
    doc = document([prefill], [decode])
    patient = {"interval_s": 0.05, "timeout_s": 5.0, "unhealthy_threshold": 1_000_000}
    router = await start(cluster, {**doc, "health": patient})
    assert await reload_with(router, tmp_path / "router.yaml", {**doc, "health": {**patient, "unhealthy_threshold": 1}})
    async with http.post(decode.url + "/sim/faults", json={"health_status": 503}) as resp:
        assert resp.status == 200
    await wait_until(lambda: router.router.registry.get(decode.url).health == "unhealthy")


async def test_kv_agents_added_and_removed_by_a_reload(cluster, http, tmp_path, wait_until, kv_agent):
    """The agent is a stand-in serving the /pairs contract."""
    prefill, good, bad = await cluster.sim("prefill"), await cluster.sim("decode"), await cluster.sim("decode")
    report = {"pairs": [{"prefill_url": prefill.url, "decode_url": bad.url, "ok": False, "reason": "probe failed"}]}
    agent = await kv_agent(report)
    doc = document([prefill], [good, bad])
    router = await start(cluster, doc)
    path = tmp_path / "router.yaml"
    assert await reload_with(router, path, {**doc, "kv_agents": [agent], "kv_agent_poll_interval_s": 0.05})
    await wait_until(lambda: router.router.registry.broken_pairs == {(prefill.url, bad.url)})
    for _ in range(4):
        async with http.post(router.url + "/v1/completions", json=BODY) as resp:
            assert resp.status == 200
    assert not bad.engine.log
    assert await reload_with(router, path, doc)
    assert not router.router.registry.broken_pairs  # no agent left to report the pair broken


async def test_a_new_connect_timeout_reaches_existing_backends(cluster, http, tmp_path, unanswered):
    """The prefill's session was made under connect_s 600: after the reload its legs give up after 0.3 s."""
    doomed, decode = await cluster.sim("prefill"), await cluster.sim("decode")
    doc = {**document([doomed], [decode]), "health": {"interval_s": 60}}
    router = await start(cluster, {**doc, "timeouts": {"connect_s": 600}})
    assert await reload_with(router, tmp_path / "router.yaml", {**doc, "timeouts": {"connect_s": 0.3}})
    await doomed.stop()
    async with unanswered(doomed.port):
        resp = await asyncio.wait_for(http.post(router.url + "/v1/completions", json=BODY), 60)
        async with resp:
            assert resp.status == 504 and "ConnectionTimeoutError" in (await resp.json())["error"]["message"]


async def _line(stream: asyncio.StreamReader) -> str:
    return (await asyncio.wait_for(stream.readline(), 60)).decode()


async def test_router_process_reloads_on_sighup(cluster, http, tmp_path, wait_until):
    """`xpdctl router --config F --port 0`: SIGHUP runs the edited file; --port keeps overriding its listen port."""
    prefill, old, new = await cluster.sim("prefill"), await cluster.sim("decode"), await cluster.sim("decode")
    path, log = tmp_path / "router.yaml", tmp_path / "router.log"
    file_port = _free_port()
    doc = {**document([prefill], [old]), "listen": {"host": "127.0.0.1", "port": file_port}}
    path.write_text(yaml.safe_dump(doc))
    with log.open("w") as stderr:
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "xpdctl", "router", "--config", str(path), "--port", "0",
                                                    stdout=asyncio.subprocess.PIPE, stderr=stderr)
    try:
        url = (await _line(proc.stdout)).rsplit(" ", 1)[1].strip()
        assert not url.endswith(f":{file_port}")

        async def reloads(result: str) -> str | None:
            return await _metric(http, url, f'xpd_router_config_reloads_total{{result="{result}"}}')

        async def served() -> bool:
            async with http.get(url + "/health") as resp:
                return resp.status == 200

        for _ in range(600):
            if await served():
                break
            await asyncio.sleep(0.05)

        path.write_text(yaml.safe_dump({**document([prefill], [new]), "listen": {"host": "127.0.0.1", "port": file_port},
                                        "admin": {"token": TOKEN}}))
        proc.send_signal(signal.SIGHUP)
        for _ in range(600):
            if (await reloads("ok")).endswith(" 1.0"):
                break
            await asyncio.sleep(0.05)
        assert (await reloads("ok")).endswith(" 1.0")
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        assert f'sha256="{sha}"' in await _metric(http, url, "xpd_router_config_info")

        async with http.post(url + "/v1/completions", json=BODY) as resp:
            assert resp.status == 200
        assert len(new.engine.log) == 1 and not old.engine.log
        async with http.get(url + "/admin/backends", headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
            assert sorted(b["url"] for b in (await resp.json())["backends"]) == sorted([prefill.url, new.url])
        with pytest.raises(aiohttp.ClientConnectorError):  # still on --port's, not the file's
            await http.get(f"http://127.0.0.1:{file_port}/health")

        path.write_text("model: m\nqueue: {max_in_flight: -}\n")
        proc.send_signal(signal.SIGHUP)
        for _ in range(600):
            if (await reloads("error")).endswith(" 1.0"):
                break
            await asyncio.sleep(0.05)
        assert (await reloads("error")).endswith(" 1.0")
        async with http.post(url + "/v1/completions", json=BODY) as resp:
            assert resp.status == 200
    finally:
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    text = log.read_text()
    assert f"reloaded {path}: +1 backend, -1 backend, admin token" in text
    assert f"reload of {path} failed, still running the previous config: {path}: invalid router config" in text


async def test_router_process_moves_its_listen_address(cluster, http, tmp_path, wait_until):
    """Under the process's own event loop (uvloop when installed): the old site stops listening, its stream finishes."""
    prefill, decode = await cluster.sim("prefill"), await cluster.sim("decode", itl_ms=20)
    path, log = tmp_path / "router.yaml", tmp_path / "router.log"
    first, second = _free_port(), _free_port()
    doc = document([prefill], [decode])
    path.write_text(yaml.safe_dump({**doc, "listen": {"host": "127.0.0.1", "port": first}}))
    with log.open("w") as stderr:
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "xpdctl", "router", "--config", str(path),
                                                    stdout=asyncio.subprocess.PIPE, stderr=stderr)
    try:
        old = (await _line(proc.stdout)).rsplit(" ", 1)[1].strip()
        assert old == f"http://127.0.0.1:{first}"
        for _ in range(600):
            async with http.get(old + "/health") as resp:
                if resp.status == 200:
                    break
            await asyncio.sleep(0.05)
        stream = await http.post(old + "/v1/completions", json=LONG)
        await stream.content.readline()

        path.write_text(yaml.safe_dump({**doc, "listen": {"host": "127.0.0.1", "port": second}}))
        proc.send_signal(signal.SIGHUP)
        await wait_until(lambda: "reloaded" in log.read_text(), timeout_s=60)
        assert f"reloaded {path}: listen" in log.read_text()
        async with http.post(f"http://127.0.0.1:{second}/v1/completions", json=BODY) as resp:
            assert resp.status == 200
        async with aiohttp.ClientSession() as fresh:
            with pytest.raises(aiohttp.ClientConnectorError):
                await fresh.get(old + "/health")
        assert (await stream.read()).endswith(b"data: [DONE]\n\n")
        stream.release()
    finally:
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 30) == 0


async def test_quick_form_logs_and_ignores_sighup(cluster, http, tmp_path, wait_until):
    prefill, decode = await cluster.sim("prefill"), await cluster.sim("decode")
    log = tmp_path / "router.log"
    with log.open("w") as stderr:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "xpdctl", "router", "--prefill", prefill.url, "--decode", decode.url,
            "--host", "127.0.0.1", "--port", str(_free_port()), stdout=asyncio.subprocess.PIPE, stderr=stderr)
    try:
        url = (await _line(proc.stdout)).rsplit(" ", 1)[1].strip()
        proc.send_signal(signal.SIGHUP)
        await wait_until(lambda: "SIGHUP ignored" in log.read_text(), timeout_s=60)
        async with http.get(url + "/v1/models") as resp:
            assert resp.status == 200
    finally:
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 30) == 0
