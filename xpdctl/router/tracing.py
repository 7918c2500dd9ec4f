"""The router's spans, exported over OTLP/HTTP when ``tracing.otlp_endpoint`` is configured.

One client request is a ``router request`` span (a child of the client's W3C ``traceparent`` when it
sent one) with children ``router queue`` (admission wait), ``prefill leg`` and ``decode leg``, whose child ``kv handoff``
lasts from sending the decode leg to its first byte (the KV pull and the first decode step). Each leg sends
its own span's ``traceparent`` to the engine, so vLLM's spans (``--otlp-traces-endpoint``) join the
trace. Tracing off, every hook is a shared no-op object and the client's ``traceparent`` is passed to
both legs unchanged (proxy's passed headers): the hot path pays a method call per hook.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

SERVICE_NAME = "xpdctl-router"
_W3C = TraceContextTextMapPropagator()


class _NoSpan:
    def set_attribute(self, key: str, value) -> None:
        pass


_NO_SPAN = _NoSpan()


class NoTracing:
    enabled = False
    endpoint = None

    @contextlib.contextmanager
    def request(self, headers: Mapping[str, str], route: str) -> Iterator[_NoSpan]:
        yield _NO_SPAN

    def span(self, name: str) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext(_NO_SPAN)

    def leg(self, name: str, headers: dict) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext(headers)

    def shutdown(self) -> None:
        pass


class OtlpTracing:
    """Spans batched and sent to ``endpoint`` (OTLP over HTTP, protobuf) from a background thread."""

    enabled = True

    def __init__(self, endpoint: str):
        self.endpoint = endpoint
        self._provider = TracerProvider(resource=Resource.create({"service.name": SERVICE_NAME}))
        self._provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
        self._tracer = self._provider.get_tracer("xpdctl.router")

    @contextlib.contextmanager
    def request(self, headers: Mapping[str, str], route: str) -> Iterator[trace.Span]:
        parent = _W3C.extract({k.lower(): v for k, v in headers.items() if k.lower() in ("traceparent", "tracestate")})
        with self._tracer.start_as_current_span("router request", context=parent, kind=trace.SpanKind.SERVER,
                                                attributes={"xpdctl.route": route}) as span:
            yield span

    def span(self, name: str) -> contextlib.AbstractContextManager:
        return self._tracer.start_as_current_span(name)

    @contextlib.contextmanager
    def leg(self, name: str, headers: dict) -> Iterator[dict]:
        """A client span around one leg; yields ``headers`` with that span's ``traceparent``."""
        with self._tracer.start_as_current_span(name, kind=trace.SpanKind.CLIENT):
            carrier = dict(headers)
            _W3C.inject(carrier)  # writes traceparent (and tracestate when there is one)
            yield carrier

    def shutdown(self) -> None:
        self._provider.shutdown()


def tracing_for(endpoint: str | None) -> NoTracing | OtlpTracing:
    return OtlpTracing(endpoint) if endpoint else NoTracing()
