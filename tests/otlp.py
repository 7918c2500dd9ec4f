"""An OTLP/HTTP traces receiver for tests: what a collector gets, decoded with OpenTelemetry's own
protobuf classes (docs/observability.md, tracing)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest, ExportTraceServiceResponse

RESPONSE = ExportTraceServiceResponse().SerializeToString()


def decode_export(body: bytes) -> list[tuple[str, object]]:
    """``(service.name, span)`` for every span of one OTLP export request."""
    export = ExportTraceServiceRequest.FromString(body)
    found = []
    for resource in export.resource_spans:
        service = next(a.value.string_value for a in resource.resource.attributes if a.key == "service.name")
        found.extend((service, s) for scope in resource.scope_spans for s in scope.spans)
    return found


class ThreadedReceiver:
    """A receiver outside any event loop, for processes that live as long as a test session
    (real vLLM engines export from their own processes, on their own schedule)."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, object]] = []
        lock = threading.Lock()
        spans = self.spans

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with lock:
                    spans.extend(decode_export(body))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(RESPONSE)))
                self.end_headers()
                self.wfile.write(RESPONSE)

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}/v1/traces"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
