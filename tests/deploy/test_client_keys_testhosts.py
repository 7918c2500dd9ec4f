"""The router's front door on test hosts (the shared fleet of tests/doors_fleet.py): `up` with
``router.auth.mode: keys``, then requests from this machine through the virtual address.
Changes nothing on the cluster.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from tests.doors_fleet import CAPPED_PER_MINUTE, DECODE, PREFILL, VIP

pytestmark = pytest.mark.testhosts


def _get(url: str, key: str | None = None, body: dict | None = None) -> tuple[int, dict, dict]:
    """(status, headers, parsed body) of one GET, or POST of ``body``; errors are answers too."""
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    request = urllib.request.Request(url, headers=headers, data=json.dumps(body).encode() if body else None)
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), json.loads(err.read() or b"{}")


def test_up_served_its_smoke_request_through_the_vip_with_its_own_key(doors_fleet):
    result = json.loads(doors_fleet.up.stdout)
    assert doors_fleet.up.returncode == 0 and result["ok"], (result.get("problems"), doors_fleet.up.stderr[-2000:])
    assert result["smoke"]["completion_tokens"] > 0  # router -> prefill -> decode, KV over the side channel
    assert result["router_url"] == f"http://{VIP}:8000"  # the smoke request went through the virtual address


def test_no_key_or_a_wrong_key_is_401_and_a_listed_key_is_served(doors_fleet):
    models = f"http://{VIP}:8000/v1/models"
    for key in (None, "not-a-listed-key-" + "x" * 32):
        status, headers, body = _get(models, key)
        assert (status, headers.get("WWW-Authenticate"), body["error"]["type"]) == (401, "Bearer", "AuthenticationError")
    status, _, body = _get(models, doors_fleet.keys["tenant"])
    assert status == 200 and body["data"], body


def test_a_key_over_its_requests_per_minute_gets_429_with_retry_after(doors_fleet):
    """Limits count completions (listing the models is free)."""
    url = f"http://{VIP}:8000/v1/completions"
    body = {"model": doors_fleet.data["model"]["name"], "prompt": "limits", "max_tokens": 2, "temperature": 0}
    answers = [_get(url, doors_fleet.keys["capped"], body) for _ in range(CAPPED_PER_MINUTE + 1)]
    assert [status for status, _, _ in answers] == [200] * CAPPED_PER_MINUTE + [429], answers[-1]
    _, headers, answer = answers[-1]
    assert answer["error"]["type"] == "RateLimitError" and int(headers["Retry-After"]) >= 1
    assert _get(url, doors_fleet.keys["tenant"], body)[0] == 200  # another key's budget is its own


def test_the_engines_take_only_the_internal_key_under_v1(doors_fleet):
    for host, port in ((PREFILL, 8100), (DECODE, 8200)):
        url = f"http://{doors_fleet.address(host)}:{port}"
        assert _get(f"{url}/v1/models")[0] == 401  # a client key is no use here either
        assert _get(f"{url}/v1/models", doors_fleet.keys["tenant"])[0] == 401
        assert _get(f"{url}/v1/models", doors_fleet.engine_key)[0] == 200
