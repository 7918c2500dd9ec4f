"""The status JSON schema: docs/status-schema.json is generated from the models, docs/status-schema.md
names every field, and a populated status survives a JSON round trip."""

from __future__ import annotations

import json
from pathlib import Path

from xpdctl.status_model import (
    ClusterStatus,
    EngineStatus,
    Gpu,
    HandshakeFactor,
    HostStack,
    HostStatus,
    KvAgentStatus,
    Problem,
    RouterStatus,
    StackPair,
    Stacks,
    json_schema,
)

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_committed_schema_is_the_generated_one():
    committed = json.loads((DOCS / "status-schema.json").read_text())
    assert committed == json_schema(), "regenerate docs/status-schema.json (command in docs/status-schema.md)"


def test_markdown_documents_every_field():
    text = (DOCS / "status-schema.md").read_text()
    for model in (ClusterStatus, HostStatus, Gpu, EngineStatus, KvAgentStatus, RouterStatus, Problem, Stacks,
                  HostStack, StackPair, HandshakeFactor):
        missing = [name for name in model.model_fields if f"`{name}`" not in text]
        assert not missing, f"docs/status-schema.md does not mention {model.__name__} fields {missing}"


def test_round_trip_and_unknown_fields_refused():
    status = ClusterStatus(
        cluster="lab",
        observed_at="2026-11-27T08:00:00+00:00",
        duration_s=0.5,
        healthy=False,
        hosts=[
            HostStatus(
                name="h1",
                address="10.0.0.11",
                reachable=True,
                engines=[EngineStatus(service="s", role="prefill", url="http://x", healthy=True, requests_running=2)],
                problems=[Problem(severity="error", host="h1", what="x", hint="y")],
            )
        ],
    )
    assert ClusterStatus.model_validate_json(status.model_dump_json()) == status
    data = json.loads(status.model_dump_json())
    data["hosts"][0]["surprise"] = 1
    try:
        ClusterStatus.model_validate(data)
    except ValueError:
        pass
    else:
        raise AssertionError("an unknown field must be refused: the schema says additionalProperties false")


def test_observed_status_validates_against_the_published_schema(tmp_path):
    """What observe produces for a real host (this machine through the local-shell transport, with the
    real H200 nvidia-smi capture from a stand-in) passes docs/status-schema.json as JSON Schema."""
    import asyncio

    from jsonschema import Draft202012Validator

    from xpdctl.observe.cluster import observe_targets
    from xpdctl.observe.targets import HostTarget
    from xpdctl.ssh.transport import LocalShellTransport

    capture = Path(__file__).resolve().parent / "fixtures" / "nvidia-h200-x2" / "nvidia-smi-q.xml"
    tools = tmp_path / "usr" / "bin"
    tools.mkdir(parents=True)
    (tools / "nvidia-smi").write_text(f'#!/bin/sh\nexec cat "{capture}"\n')
    (tools / "nvidia-smi").chmod(0o755)
    target = HostTarget(name="here", address="127.0.0.1", root=str(tmp_path), drift_checked=True)
    status = asyncio.run(observe_targets("c", [target], LocalShellTransport()))
    assert len(status.hosts[0].accelerators.gpus) == 2
    schema = json.loads((DOCS / "status-schema.json").read_text())
    errors = list(Draft202012Validator(schema).iter_errors(json.loads(status.model_dump_json())))
    assert errors == []
    broken = json.loads(status.model_dump_json())
    broken["hosts"][0]["accelerators"]["gpus"][0]["memory_total_mib"] = "lots"
    assert list(Draft202012Validator(schema).iter_errors(broken))
