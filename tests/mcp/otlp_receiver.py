#!/usr/bin/env python3
"""A minimal OTLP/HTTP trace receiver for the tests (tests/e2e/otlp.rs).

Listens on 127.0.0.1 (an ephemeral port unless --port), accepts
``POST /v1/traces`` with a protobuf ``ExportTraceServiceRequest``, decodes it
with the official ``opentelemetry-proto`` package (PyPI, pinned in
requirements-otlp.txt, installed into venv-otlp by setup.sh) and appends one
JSON line per span to OUT:

    {"resource": {attr: value}, "scope": name, "name", "kind", "trace_id", "span_id",
     "parent_span_id", "start_ns", "end_ns", "attributes": {...},
     "events": [{"name", "ts_ns", "attributes": {...}}], "dropped_events_count",
     "status": {"code", "message"}}

``--grpc`` serves OTLP/gRPC (the TraceService, with ``grpcio`` and the
package's generated service) instead of OTLP/HTTP; ``--fail-first`` then
answers UNAVAILABLE (retryable) and headers are the call's metadata.

``--tls CERT KEY`` serves HTTPS (or gRPC over TLS) with that certificate chain and key (PEM);
``--client-ca CA`` then also requires a client certificate signed by CA
(mutual TLS). A connection whose handshake fails is noted in OUT.requests
as ``tls-error``.

``--fail-first N`` answers the first N posts 503 (retryable in OTLP/HTTP) without
reading them, so a test sees the exporter retry; every post's status is appended to
OUT.requests, one line each.

Prints ``listening PORT`` on stdout once it accepts connections; stops on
SIGTERM or when stdin closes. Anything else it is sent is answered 404/400.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

try:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
        ExportTraceServiceResponse,
    )
except ImportError as e:  # pragma: no cover - usage error
    print(f"otlp_receiver.py: {e}; run it with the venv-otlp python (tests/mcp/setup.sh)", file=sys.stderr)
    sys.exit(2)


def value(v):
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: value(kv.value) for kv in v.kvlist_value.values}
    if kind == "bytes_value":
        return v.bytes_value.hex()
    return getattr(v, kind)


def attrs(kvs):
    return {kv.key: value(kv.value) for kv in kvs}


def spans_of(req):
    for rs in req.resource_spans:
        resource = attrs(rs.resource.attributes)
        for ss in rs.scope_spans:
            for s in ss.spans:
                yield {
                    "resource": resource,
                    "scope": ss.scope.name,
                    "name": s.name,
                    "kind": s.kind,
                    "trace_id": s.trace_id.hex(),
                    "span_id": s.span_id.hex(),
                    "parent_span_id": s.parent_span_id.hex(),
                    "start_ns": s.start_time_unix_nano,
                    "end_ns": s.end_time_unix_nano,
                    "attributes": attrs(s.attributes),
                    "events": [
                        {"name": e.name, "ts_ns": e.time_unix_nano, "attributes": attrs(e.attributes)}
                        for e in s.events
                    ],
                    "dropped_events_count": s.dropped_events_count,
                    "status": {"code": s.status.code, "message": s.status.message},
                }


def serve_grpc(args, failing, write) -> int:
    import grpc
    from concurrent import futures
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

    class Servicer(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(self, request, context):  # noqa: N802 (the service's name)
            if failing():
                context.abort(grpc.StatusCode.UNAVAILABLE, "failing on purpose (--fail-first)")
            write(request, context.invocation_metadata())
            return ExportTraceServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Servicer(), server)
    addr = f"127.0.0.1:{args.port}"
    if args.tls:
        read = lambda p: open(p, "rb").read()  # noqa: E731
        ca = read(args.client_ca) if args.client_ca else None
        creds = grpc.ssl_server_credentials([(read(args.tls[1]), read(args.tls[0]))], root_certificates=ca,
                                            require_client_auth=ca is not None)
        port = server.add_secure_port(addr, creds)
    else:
        port = server.add_insecure_port(addr)
    server.start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    print(f"listening {port}", flush=True)
    done.wait()
    server.stop(0)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", help="JSON lines file, one decoded span a line")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--fail-first", type=int, default=0)
    ap.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    ap.add_argument("--client-ca")
    ap.add_argument("--grpc", action="store_true")
    args = ap.parse_args()
    lock = threading.Lock()
    posts = [0]

    def note(status) -> None:
        with open(args.out + ".requests", "a", encoding="utf-8") as f:
            f.write(f"{status}\n")

    def failing() -> bool:
        with lock:
            posts[0] += 1
            fail = posts[0] <= args.fail_first
            note(503 if fail else 200)
        return fail

    def write(req, headers) -> None:
        with lock, open(args.out, "a", encoding="utf-8") as f:
            for span in spans_of(req):
                span["headers"] = {k.lower(): v for k, v in headers if k.lower().startswith("x-")}
                f.write(json.dumps(span) + "\n")

    if args.grpc:
        return serve_grpc(args, failing, write)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.path != "/v1/traces":
                self.send_error(404)
                return
            if failing():
                self.send_error(503, "failing on purpose (--fail-first)")
                return
            req = ExportTraceServiceRequest()
            try:
                req.ParseFromString(body)
            except Exception as e:  # a body that is not the message
                self.send_error(400, str(e))
                return
            write(req, self.headers.items())
            reply = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *a):
            pass

    class Server(ThreadingHTTPServer):
        def handle_error(self, request, client_address):
            # a TLS handshake the client broke off (it did not trust us)
            # or could not complete (no client certificate)
            if isinstance(sys.exc_info()[1], (ssl.SSLError, ConnectionError)):
                note("tls-error")
                return
            super().handle_error(request, client_address)

    server = Server(("127.0.0.1", args.port), Handler)
    if args.tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls[0], args.tls[1])
        if args.client_ca:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(args.client_ca)
        # the handshake runs in the request's thread (its first read), so a
        # failed one is that request's error, not the accept loop's
        server.socket = ctx.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())

    def stdin_closed():
        sys.stdin.read()
        server.shutdown()

    threading.Thread(target=stdin_closed, daemon=True).start()
    print(f"listening {server.server_address[1]}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
